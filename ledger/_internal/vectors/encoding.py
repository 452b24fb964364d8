"""How a retained task vector is stored (FORMAT.md §3): compact on disk, int64 in meaning.

A sift vector is about half zeros (the sign projection clears every entry that
disagrees with v), and its zeros are exactly the mask, which the ledger keeps
and signs anyway; and |q| at the default scale fits 32 bits. So a sift vector
is stored as its non-zero entries alone, in C order, at its mask's positions,
and every vector in the narrowest dtype that holds it exactly (I8, I16, I32,
then F32, which holds every q quantised from a float32, then I64): about a
quarter of dense int64, and never over half. The digests stay over the logical int64 tensors, so
nothing signed changes meaning and a folder written before (dense I64, no
metadata) still reads. The encoding is canonical (one file per vector and
encoding), so reading refuses any freedom: a wider dtype than needed, a stored
zero, a count the mask does not have.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ledger._internal.errors import LedgerError
from ledger._internal.vectors.codec import Int64Array
from ledger._internal.vectors.tensorfile import Layout, read_checked

NONZERO = "ulg:nonzero:v1"  # sift: the non-zero entries, in C order, at the mask's set bits
DENSE = "ulg:dense:v1"  # ft: every entry, in C order
# The stored dtypes, narrowest first. F32 holds every integer of at most 24 significant bits
# exactly, which every q quantised from a float32 τ is: so past 2^31 a vector takes 4 bytes
# an entry, not 8, and a sift vector stays under half its dense size at any scale.
STORED: dict[str, np.dtype[Any]] = {
    "I8": np.dtype("i1"),
    "I16": np.dtype("<i2"),
    "I32": np.dtype("<i4"),
    "F32": np.dtype("<f4"),
    "I64": np.dtype("<i8"),
}
_NAME = {dtype: name for name, dtype in STORED.items()}
_TWO_63 = np.float32(2.0**63)
Uint8Array = npt.NDArray[np.uint8]


def _float32_exact(values: Int64Array) -> bool:
    """Every |v| = m · 2^e with m < 2^24: a float32 holds it exactly (2^63 is in its range).
    In uint64, so that −2^63 has its magnitude too."""
    u = values.astype(np.uint64)
    magnitude = np.where(values < 0, ~u + np.uint64(1), u)
    lowest = magnitude & (~magnitude + np.uint64(1))  # the lowest set bit (0 for 0)
    odd = magnitude // np.maximum(lowest, np.uint64(1))  # m, the significant bits
    return bool(np.all(odd < np.uint64(1 << 24)))


def narrowest(values: Int64Array) -> str:
    """The first of I8, I16, I32, F32, I64 that holds every value exactly (I8 for none)."""
    if not values.size:
        return "I8"
    lo, hi = int(values.min()), int(values.max())
    for name in ("I8", "I16", "I32"):
        half = 1 << (8 * STORED[name].itemsize - 1)
        if -half <= lo and hi < half:
            return name
    return "F32" if _float32_exact(values) else "I64"


def encode(
    q: Mapping[str, Int64Array], masked: bool
) -> tuple[dict[str, npt.NDArray[Any]], dict[str, str]]:
    """The tensors and ``__metadata__`` of vectors/<id>.safetensors; ``masked`` for sift."""
    stored = {}
    for name, values in q.items():
        flat = values.reshape(-1)
        kept = flat[flat != 0] if masked else values
        stored[name] = kept.astype(STORED[narrowest(kept)], copy=False)
    return stored, {"encoding": NONZERO if masked else DENSE}


def read_vector(
    path: Path,
    root: Path,
    trainable: Mapping[str, tuple[int, ...]],
    method: str,
    masks: Callable[[], Mapping[str, Uint8Array]],
) -> dict[str, Int64Array]:
    """q from either encoding, its header checked before any data is read and each tensor
    decoded as it is read. ``masks`` (the task's, digest-checked) is called only when the
    compact sift encoding needs its positions."""
    compact = NONZERO if method == "sift" else DENSE
    legacy = {n: ("I64", s) for n, s in trainable.items()}
    found_mask: list[Mapping[str, Uint8Array] | None] = []  # set by check, before any data
    where = path.relative_to(root).as_posix()

    def check(metadata: Mapping[str, str], found: Layout, _: str) -> None:
        if not metadata:
            if found != legacy:
                raise LedgerError(f"{where}: tensors are not the trainable layout (legacy I64)")
            return
        if dict(metadata) != {"encoding": compact}:
            raise LedgerError(f"{where}: encoding {dict(metadata)} is not a {method} vector's")
        if set(found) != set(trainable):
            raise LedgerError(f"{where}: tensors are not the trainable names")
        for name, (dtype, shape) in found.items():
            if compact == DENSE:
                fits = shape == trainable[name]
            else:
                fits = len(shape) == 1 and shape[0] <= math.prod(trainable[name])
            if dtype not in STORED or not fits:
                raise LedgerError(f"{where}: {name} is {dtype} {list(shape)}, not {compact}")
        found_mask.append(masks() if compact == NONZERO else None)

    def decode(name: str, stored: npt.NDArray[np.generic]) -> npt.NDArray[np.generic]:
        if not found_mask:  # legacy: the I64 tensor itself
            return stored
        return _decode(where, name, stored, trainable[name], found_mask[0])

    return read_checked(path, check, root, decode)[1]  # type: ignore[return-value]


def _widened(where: str, name: str, stored: npt.NDArray[Any]) -> Int64Array:
    """The stored values as int64, exactly; a float32 must be an integer of int64's range
    (and not −0: one value, one bit pattern)."""
    values = stored.reshape(-1)
    if values.dtype.kind == "f" and not (  # NaN is no integer, ±inf outside the range
        np.all(values == np.trunc(values))
        and np.all((values >= -_TWO_63) & (values < _TWO_63))
        and not np.any(np.signbit(values) & (values == 0))
    ):
        raise LedgerError(f"{where}: {name} stores an F32 that is not an int64 value")
    ints = values.astype(np.int64)
    if (fits := narrowest(ints)) != _NAME[values.dtype]:
        raise LedgerError(
            f"{where}: {name} is stored as {_NAME[values.dtype]}, but its values fit {fits} "
            "(FORMAT.md §3: the narrowest dtype)"
        )
    return ints


def _decode(
    where: str,
    name: str,
    stored: npt.NDArray[Any],
    shape: tuple[int, ...],
    mask: Mapping[str, Uint8Array] | None,
) -> Int64Array:
    values = _widened(where, name, stored)
    if mask is None:
        return values.reshape(shape)
    numel = math.prod(shape)
    positions = np.flatnonzero(np.unpackbits(mask[name], count=numel, bitorder="little"))
    if positions.size != values.size:
        raise LedgerError(
            f"{where}: {name} stores {values.size} values, but its mask sets {positions.size}"
        )
    if not np.all(values):
        raise LedgerError(f"{where}: {name} stores a zero where its mask says non-zero")
    out = np.zeros(numel, dtype=np.int64)
    out[positions] = values
    return out.reshape(shape)
