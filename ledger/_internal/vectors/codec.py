"""Fixed-point codec: float32 task vectors <-> int64 at one scale 2^-k per ledger.

Integer addition is associative, so an int64 accumulator can be un-merged
bit for bit; a float one cannot. Overflow is refused,
never wrapped: a wrapped sum would still subtract back exactly, but the served
model would be garbage and no error would say so.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import numpy.typing as npt

from ledger._internal.errors import LedgerError

Int64Array = npt.NDArray[np.int64]
Float32Array = npt.NDArray[np.float32]

_LIMIT = float(2**63)


def quantise(tau: Mapping[str, Float32Array], scale_bits: int) -> dict[str, Int64Array]:
    out: dict[str, Int64Array] = {}
    for name, values in tau.items():
        scaled = np.ldexp(np.asarray(values, dtype=np.float64), scale_bits)
        if not np.all(np.isfinite(scaled)):
            raise LedgerError(f"task vector tensor {name!r} has a non-finite entry")
        if np.any(np.abs(scaled) >= _LIMIT):
            raise LedgerError(
                f"task vector tensor {name!r} overflows int64 at scale 2^-{scale_bits} "
                f"(max |tau| = {float(np.max(np.abs(values))):.6g})"
            )
        out[name] = np.rint(scaled).astype(np.int64)
    return out


def dequantise(q: Int64Array, scale_bits: int, divisor: int | Int64Array = 1) -> Float32Array:
    """float32(float64(q) * 2^-k / float64(divisor)): IEEE operations on the integers, in
    this order, so any implementation gets the same bits (FORMAT.md §3, "Serving")."""
    scaled = np.ldexp(q.astype(np.float64), -scale_bits)
    return (scaled / np.asarray(divisor, dtype=np.float64)).astype(np.float32)


def served_delta(
    merged: Int64Array,
    mask: npt.NDArray[np.bool_] | None,
    scale_bits: int,
    divisor: int | Int64Array,
) -> Float32Array:
    """dequant(Q ⊙ m_t) / divisor, or Q / divisor without a mask; the divisor is the
    serving rule's (ledger.serving: |T|, each entry's contributor count, or 1).

    One function for the ledger's served model and the audits' SIFT-Masks rows, so
    the accuracy an audit reports is that of the model the ledger serves."""
    return dequantise(merged if mask is None else np.where(mask, merged, 0), scale_bits, divisor)


_BLOCK = 1 << 17  # entries per block: the operands stay in cache for the bounds and the check
_HIGH, _LOW = 2**63, -(2**63)


def _may_overflow(x: Int64Array, y: Int64Array, subtract: bool) -> bool:
    """Whether the block's extremes (Python ints: no wrap) let any entry of x ± y leave int64.

    False proves no entry can overflow; True only sends the block to the exact
    sign-bit test. Four in-cache reductions cost less than that test's three
    temporaries, and the merges the ledger does (|q| far below 2^62) never
    need it."""
    if subtract:
        return int(x.max()) - int(y.min()) >= _HIGH or int(x.min()) - int(y.max()) < _LOW
    return int(x.max()) + int(y.max()) >= _HIGH or int(x.min()) + int(y.min()) < _LOW


def _checked(a: Int64Array, b: Int64Array, name: str, subtract: bool) -> Int64Array:
    """a ± b in int64, refusing any entry whose true result leaves the int64 range.

    Two's complement overflow shows in the sign bits: for a + b both operands
    share a sign the result lacks; for a - b the operands differ in sign and the
    result's sign differs from a's. Blocked so the checks cost cache, not memory
    bandwidth, and a block whose extremes rule overflow out skips the sign-bit
    test (benchmarks/throughput.py measures both against a plain numpy add).
    """
    out = np.empty_like(a)
    flat_a, flat_b, flat_out = a.reshape(-1), b.reshape(-1), out.reshape(-1)
    left = np.empty(min(_BLOCK, flat_a.size), dtype=np.int64)
    right = np.empty_like(left)
    for start in range(0, flat_a.size, _BLOCK):
        end = min(start + _BLOCK, flat_a.size)
        x, y, z = flat_a[start:end], flat_b[start:end], flat_out[start:end]
        if subtract:
            np.subtract(x, y, out=z)
        else:
            np.add(x, y, out=z)
        if not _may_overflow(x, y, subtract):
            continue
        t, u = left[: end - start], right[: end - start]
        np.bitwise_xor(x if subtract else z, y, out=t)
        np.bitwise_xor(x, z, out=u)
        np.bitwise_and(t, u, out=t)
        if t.min() < 0:
            raise LedgerError(f"merged state tensor {name!r} would overflow int64; nothing changed")
    return out


def checked_add(a: Int64Array, b: Int64Array, name: str) -> Int64Array:
    return _checked(a, b, name, subtract=False)


def checked_sub(a: Int64Array, b: Int64Array, name: str) -> Int64Array:
    return _checked(a, b, name, subtract=True)
