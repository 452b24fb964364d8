"""The compact vector encoding (FORMAT.md §3), written apart twice: the ledger's writer and
reader and the verifier's reader must agree on every vector, and on golden bytes."""

from __future__ import annotations

import json
import os
import struct
import tempfile
from pathlib import Path

import numpy as np
import numpy.typing as npt
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger._internal.vectors.digest import set_digest
from ledger._internal.vectors.encoding import DENSE, NONZERO, encode, read_vector
from ledger._internal.vectors.tensorfile import write_tensors
from ledger._internal.vectors.vector import pack_mask
from verifier import vectors as verifier_vectors

GOLDEN = Path(__file__).parent / "golden"
I64 = np.iinfo(np.int64)
EDGES = [0, 1, -1, 127, -128, 128, -129, 32767, -32768, 32768, 2**31 - 1, -(2**31), 2**31]
EDGES += [I64.max, I64.min, 2**31 + 1, (2**24 - 1) << 39, -((2**24 + 1) << 38), 2**62, 3 << 50]

Arrays = dict[str, npt.NDArray[np.int64]]


def _both_read(folder: Path, q: Arrays, method: str) -> tuple[Arrays, Arrays, str]:
    """q written by the ledger, read back by the ledger and by the verifier."""
    path = folder / "vectors" / "t.safetensors"
    path.parent.mkdir(exist_ok=True)
    path.unlink(missing_ok=True)
    stored, metadata = encode(q, masked=method == "sift")
    write_tensors(path, stored, metadata)
    masks = {n: pack_mask(v) for n, v in q.items()}
    trainable = {n: v.shape for n, v in q.items()}
    ours = read_vector(path, folder, trainable, method, lambda: masks)
    theirs = verifier_vectors.read_vector(path, trainable, method, lambda: masks)
    return ours, {n: np.array(theirs[n]) for n in theirs}, theirs.digest()


@st.composite
def vectors(draw: st.DrawFn) -> Arrays:
    """A few tensors of int64 entries, most zero (as sift leaves them), some at the edges."""
    out = {}
    for i in range(draw(st.integers(1, 3))):
        shape = tuple(draw(st.lists(st.integers(0, 5), min_size=0, max_size=3)))
        numel = int(np.prod(shape))
        entries = st.one_of(st.just(0), st.sampled_from(EDGES), st.integers(I64.min, I64.max))
        values = draw(st.lists(entries, min_size=numel, max_size=numel))
        out[f"t{i}.weight"] = np.array(values, dtype=np.int64).reshape(shape)
    return out


@settings(max_examples=150, deadline=None)
@given(q=vectors(), method=st.sampled_from(["sift", "ft"]))
def test_both_readers_decode_what_the_ledger_wrote(q: Arrays, method: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        ours, theirs, digest = _both_read(Path(tmp), q, method)
    for name, values in q.items():
        assert ours[name].dtype == np.int64 and np.array_equal(ours[name], values)
        assert np.array_equal(theirs[name], values)
    assert digest == set_digest(q) == set_digest(ours)


def _significant_bits(v: int) -> int:
    m = abs(v)
    return (m >> ((m & -m).bit_length() - 1)).bit_length() if m else 0


@given(
    values=st.lists(st.one_of(st.sampled_from(EDGES), st.integers(I64.min, I64.max)), max_size=6)
)
def test_the_stored_dtype_is_the_narrowest_that_holds_every_value(values: list[int]) -> None:
    """In Python integers, apart from both implementations: the first signed integer type
    whose range holds them, else F32 when each has at most 24 significant bits, else I64."""
    array = np.array(values, dtype=np.int64)
    ranges = [
        (f"I{b}", all(-(2 ** (b - 1)) <= v < 2 ** (b - 1) for v in values)) for b in (8, 16, 32)
    ]
    want = next((name for name, fits in ranges if fits), None)
    if want is None:
        want = "F32" if all(_significant_bits(v) <= 24 for v in values) else "I64"
    stored, _ = encode({"x": array}, masked=False)
    names = {"i1": "I8", "i2": "I16", "i4": "I32", "f4": "F32", "i8": "I64"}
    assert names[stored["x"].dtype.str[1:]] == want
    assert np.array_equal(stored["x"].astype(np.int64), array)
    assert verifier_vectors.narrowest(array) == want


def test_every_quantised_float32_fits_an_f32(tmp_path: Path) -> None:
    """Why F32 is a stored dtype: q = rint(τ · 2^k) of a float32 τ has at most 24 significant
    bits, so a vector past 2^31 still takes 4 bytes an entry, exactly."""
    from ledger._internal.vectors.codec import quantise

    rng = np.random.default_rng(0)
    tau = (rng.standard_normal(10_000) * 10.0 ** rng.integers(-12, 2, 10_000)).astype(np.float32)
    q = quantise({"x": tau}, 40)
    assert np.abs(q["x"]).max() >= 2**31
    assert verifier_vectors.narrowest(q["x"]) == "F32"
    ours, theirs, digest = _both_read(tmp_path, q, "ft")
    assert np.array_equal(ours["x"], q["x"]) and np.array_equal(theirs["x"], q["x"])
    assert digest == set_digest(q)


def _golden_vector() -> Arrays:
    """Every dtype once, a tensor with no non-zero entry, a 0-d tensor, C order in 2-d."""
    return {
        "a.i8": np.array([[0, 3, 0], [-128, 0, 127]], dtype=np.int64),
        "b.i16": np.array([0, 0, 200, 0, 0, 0, 0, 0, -1], dtype=np.int64),
        "c.i32": np.array([2**31 - 1, 0, -(2**31)], dtype=np.int64),
        "d.i64": np.array([[I64.max], [0]], dtype=np.int64),
        "d.f32": np.array([0, 2**31, I64.min, -(3 << 40)], dtype=np.int64),
        "e.zero": np.zeros((2, 2), dtype=np.int64),
        "f.scalar": np.array(5, dtype=np.int64),
    }


def test_golden_vector_files(tmp_path: Path) -> None:
    """The bytes an outside writer must produce for this vector, in each encoding; and the
    header of the sift one spelled out, as FORMAT.md §3 specifies it."""
    q = _golden_vector()
    for method, encoding in (("sift", NONZERO), ("ft", DENSE)):
        name = f"vector-{method}.safetensors"
        path = tmp_path / name
        write_tensors(path, *encode(q, masked=method == "sift"))
        produced = path.read_bytes()
        if os.environ.get("ULG_WRITE_GOLDEN") == "1":  # only when a format change is intended
            (GOLDEN / name).write_bytes(produced)
        assert produced == (GOLDEN / name).read_bytes(), f"{name} changed: the format changed"
        (n,) = struct.unpack("<Q", produced[:8])
        header = json.loads(produced[8 : 8 + n])
        assert next(iter(header)) == "__metadata__"
        assert header["__metadata__"] == {"encoding": encoding}
        ours, theirs, digest = _both_read(tmp_path, q, method)
        assert digest == set_digest(q) == set_digest(ours)
        assert all(np.array_equal(theirs[k], v) for k, v in q.items())
    (n,) = struct.unpack("<Q", (GOLDEN / "vector-sift.safetensors").read_bytes()[:8])
    header = json.loads((GOLDEN / "vector-sift.safetensors").read_bytes()[8 : 8 + n])
    layout = {k: (v["dtype"], v["shape"]) for k, v in header.items() if k != "__metadata__"}
    assert layout == {
        "a.i8": ("I8", [3]),
        "b.i16": ("I16", [2]),
        "c.i32": ("I32", [2]),
        "d.f32": ("F32", [3]),
        "d.i64": ("I64", [1]),
        "e.zero": ("I8", [0]),
        "f.scalar": ("I8", [1]),
    }
