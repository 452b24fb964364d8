"""Exact merge arithmetic: order independence, exact removal, refused overflow."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger._internal.errors import LedgerError
from ledger._internal.vectors import state
from ledger._internal.vectors.codec import checked_add, checked_sub, dequantise, quantise

SHAPES = {"layer.weight": (3, 4), "layer.bias": (4,), "head": (2,)}
# Magnitudes up to 2^58 so that sums of up to 8 vectors cannot overflow.
_entry = st.integers(min_value=-(2**58), max_value=2**58)


def _vector(draw: st.DrawFn) -> dict[str, np.ndarray]:
    return {
        name: np.array(
            draw(st.lists(_entry, min_size=int(np.prod(s)), max_size=int(np.prod(s)))),
            dtype=np.int64,
        ).reshape(s)
        for name, s in SHAPES.items()
    }


@st.composite
def vector_sets(draw: st.DrawFn) -> list[dict[str, np.ndarray]]:
    return [_vector(draw) for _ in range(draw(st.integers(1, 8)))]


def _zeros() -> dict[str, np.ndarray]:
    return {name: np.zeros(s, dtype=np.int64) for name, s in SHAPES.items()}


def _merge(vectors: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    merged = _zeros()
    for v in vectors:
        merged = state.add(merged, v)
    return merged


def _same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return a.keys() == b.keys() and all(a[k].tobytes() == b[k].tobytes() for k in a)


@settings(max_examples=60, deadline=None)
@given(vectors=vector_sets(), data=st.data())
def test_every_add_order_gives_the_same_state(
    vectors: list[dict[str, Any]], data: st.DataObject
) -> None:
    order = data.draw(st.permutations(range(len(vectors))))
    assert _same(_merge(vectors), _merge([vectors[i] for i in order]))


@settings(max_examples=60, deadline=None)
@given(vectors=vector_sets(), data=st.data())
def test_removing_any_subset_in_any_order_equals_merging_the_rest(
    vectors: list[dict[str, Any]], data: st.DataObject
) -> None:
    removed = data.draw(st.lists(st.sampled_from(range(len(vectors))), unique=True))
    merged = _merge(vectors)
    for i in data.draw(st.permutations(removed)):
        merged = state.subtract(merged, vectors[i])
    rest = [v for i, v in enumerate(vectors) if i not in removed]
    assert _same(merged, _merge(rest))


@pytest.mark.parametrize(
    ("a", "b"),
    [(2**63 - 1, 1), (2**62, 2**62), (-(2**63), -1), (-(2**62), -(2**62) - 1)],
)
def test_add_overflow_is_refused_not_wrapped(a: int, b: int) -> None:
    with pytest.raises(LedgerError, match="overflow"):
        checked_add(np.array([0, a], dtype=np.int64), np.array([0, b], dtype=np.int64), "t")


@pytest.mark.parametrize(("a", "b"), [(-(2**63), 1), (2**63 - 1, -1), (0, -(2**63))])
def test_subtract_overflow_is_refused_not_wrapped(a: int, b: int) -> None:
    with pytest.raises(LedgerError, match="overflow"):
        checked_sub(np.array([a], dtype=np.int64), np.array([b], dtype=np.int64), "t")


def test_extremes_that_fit_are_exact() -> None:
    top, bottom = np.array([2**63 - 1]), np.array([-(2**63)])
    assert checked_add(top - 1, np.array([1]), "t")[0] == 2**63 - 1
    assert checked_sub(bottom + 1, np.array([1]), "t")[0] == -(2**63)
    assert checked_add(top, bottom, "t")[0] == -1


def test_quantise_rounds_half_to_even_at_the_scale() -> None:
    tau = {"t": np.array([0.5, 1.5, 2.5, -0.5, 0.25, 2.0**-41], dtype=np.float32)}
    assert quantise(tau, 0)["t"].tolist() == [0, 2, 2, 0, 0, 0]
    assert quantise(tau, 1)["t"].tolist() == [1, 3, 5, -1, 0, 0]
    assert quantise(tau, 41)["t"][-1] == 1


def test_quantise_refuses_overflow_and_non_finite() -> None:
    with pytest.raises(LedgerError, match="overflows int64"):
        quantise({"t": np.array([2.0], dtype=np.float32)}, 62)
    with pytest.raises(LedgerError, match="non-finite"):
        quantise({"t": np.array([np.nan], dtype=np.float32)}, 40)
    largest_ok = np.nextafter(np.float32(2.0), np.float32(0))
    assert quantise({"t": np.array([largest_ok], dtype=np.float32)}, 62)["t"][0] > 0


def test_round_trip_error_is_half_a_scale_step_plus_float32_rounding() -> None:
    rng = np.random.default_rng(0)
    tau = (rng.standard_normal(10_000) * 1e-3).astype(np.float32)
    back = dequantise(quantise({"t": tau}, 40)["t"], 40)
    bound = 2.0**-41 + np.spacing(np.abs(tau)).astype(np.float64)
    assert np.all(np.abs(back.astype(np.float64) - tau) <= bound)
    # entries of ordinary magnitude are exact: their float32 ulp is a multiple of 2^-40
    big = np.abs(tau) >= 2.0**-16
    assert np.array_equal(back[big], tau[big])


def test_state_refuses_mismatched_tensors() -> None:
    with pytest.raises(LedgerError, match="do not match"):
        state.add(_zeros(), {"other": np.zeros(2, dtype=np.int64)})
    wrong = _zeros()
    wrong["head"] = np.zeros(3, dtype=np.int64)
    with pytest.raises(LedgerError, match="shape"):
        state.add(_zeros(), wrong)


def test_overflow_in_a_late_block_of_a_large_tensor_is_found() -> None:
    a = np.zeros((3, 70_000), dtype=np.int64)
    b = np.ones_like(a)
    a[2, -1] = 2**63 - 1
    with pytest.raises(LedgerError, match="overflow"):
        checked_add(a, b, "big")
    a[2, -1] = 0
    total = checked_add(a, b, "big")
    assert total.shape == a.shape and int(total.sum()) == a.size
    assert np.array_equal(checked_sub(total, b, "big"), a)


_any_int64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_any_int64, _any_int64), min_size=1, max_size=40), st.booleans())
def test_checked_arithmetic_matches_python_ints(pairs: list[tuple[int, int]], sub: bool) -> None:
    """Blocks whose extremes allow overflow take the exact sign-bit path: every int64 pair,
    near the limits or not, either gives Python's exact result or is refused."""
    a = np.array([p[0] for p in pairs], dtype=np.int64)
    b = np.array([p[1] for p in pairs], dtype=np.int64)
    exact = [x - y if sub else x + y for x, y in pairs]
    if all(-(2**63) <= v < 2**63 for v in exact):
        got = (checked_sub if sub else checked_add)(a, b, "t")
        assert got.tolist() == exact
    else:
        with pytest.raises(LedgerError, match="overflow"):
            (checked_sub if sub else checked_add)(a, b, "t")
