"""A retained task vector as stored (FORMAT.md §3), decoded to the int64 tensors its digest covers.

The ledger stores a sift vector as its non-zero entries alone, at its mask's
positions, and every vector in the narrowest dtype that holds it exactly
(folders written before hold plain I64). The digest stays over the logical
int64 tensors, so nothing signed changes meaning; what a reader must guard is
the decoding. The header is checked against the trainable map before any data
is read, every allocation is sized by that map, never by a count the file
claims, and an encoding with any freedom left (a wider dtype than needed, a
stored zero, a count the mask does not have) is refused: each vector has
exactly one file per encoding, so no byte of it can carry anything else.
Tensors are decoded one at a time, when asked for, from the mapped file.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import numpy as np
import numpy.typing as npt

from verifier.dsse import FormatError
from verifier.files import shown
from verifier.tensors import (
    ITEMSIZE,
    I64Array,
    Slot,
    Tensor,
    Tight,
    from_arrays,
    read_tight,
    set_digest,
)

NONZERO = "ulg:nonzero:v1"  # sift: the non-zero entries, in C order, at the mask's set bits
DENSE = "ulg:dense:v1"  # ft: every entry, in C order
ENCODING = {"sift": NONZERO, "ft": DENSE}
# Narrowest first. An F32 holds each integer whose magnitude has at most 24 significant bits,
# as every q quantised from a float32 has: a vector past 2^31 needs 4 bytes an entry, not 8.
STORED = ("I8", "I16", "I32", "F32", "I64")
U8Array = npt.NDArray[np.uint8]


def layouts(trainable: Mapping[str, tuple[int, ...]], method: str) -> list[Tight]:
    """The method's compact encoding, and the legacy one (no metadata, I64, trainable shapes)."""
    legacy = Tight(None, {n: Slot(("I64",), s) for n, s in trainable.items()})
    if method == "sift":
        compact = Tight(
            NONZERO, {n: Slot(STORED, None, math.prod(s)) for n, s in trainable.items()}
        )
    else:
        compact = Tight(DENSE, {n: Slot(STORED, s) for n, s in trainable.items()})
    return [compact, legacy]


def narrowest(values: I64Array) -> str:
    """The first of `STORED` that holds every value exactly (I8 for none)."""
    if not values.size:
        return STORED[0]
    lo, hi = int(values.min()), int(values.max())
    for dtype in STORED[:3]:
        half = 1 << (8 * ITEMSIZE[dtype] - 1)
        if -half <= lo and hi < half:
            return dtype
    near = values.astype(np.float32)  # rounds to nearest: exact iff it comes back the same
    fits = near < np.float32(2.0**63)  # int64's maximum rounds up to 2^63, out of range
    back = np.where(fits, near, np.float32(0)).astype(np.int64)
    return "F32" if bool(np.all(fits & (back == values))) else "I64"


def widened(rel: str, name: str, stored: Tensor) -> I64Array:
    """The stored values as int64, exactly, once their dtype is the narrowest that holds them.
    A float32 must be an integer of int64's range, and not −0 (one value, one bit pattern)."""
    values = stored.array().reshape(-1)
    if stored.dtype == "F32" and not (  # NaN is no integer, ±inf outside the range
        bool(np.all(np.floor(values) == values))
        and bool(np.all(values >= np.float32(-(2.0**63))))
        and bool(np.all(values < np.float32(2.0**63)))
        and not bool(np.any((values == 0) & np.signbit(values)))
    ):
        raise FormatError(f"{rel}: {name} stores an F32 that is not an int64 value")
    ints = values.astype(np.int64)
    if (fits := narrowest(ints)) != stored.dtype:
        raise FormatError(
            f"{rel}: {name} is stored as {stored.dtype}, but its values fit {fits} "
            "(FORMAT.md §3: the narrowest dtype)"
        )
    return ints


class StoredVector(Mapping[str, I64Array]):
    """q_t by trainable name, each tensor decoded (and its encoding checked) when asked for."""

    def __init__(
        self,
        rel: str,
        encoding: str | None,
        tensors: Mapping[str, Tensor],
        trainable: Mapping[str, tuple[int, ...]],
        masks: Mapping[str, U8Array] | None,
    ) -> None:
        self.rel, self.encoding = rel, encoding
        self._tensors, self._trainable, self._masks = tensors, trainable, masks

    def __iter__(self) -> Iterator[str]:
        return iter(self._trainable)

    def __len__(self) -> int:
        return len(self._trainable)

    def __getitem__(self, name: str) -> I64Array:
        stored, shape = self._tensors[name], self._trainable[name]
        if self.encoding is None:  # legacy: the I64 tensor itself, as the header said
            return stored.array()
        values = widened(self.rel, name, stored)
        if self.encoding == DENSE:
            return values.reshape(shape)
        assert self._masks is not None  # read_vector passes the mask for NONZERO
        numel = math.prod(shape)
        where = np.flatnonzero(np.unpackbits(self._masks[name], count=numel, bitorder="little"))
        if where.size != values.size:
            raise FormatError(
                f"{self.rel}: {name} stores {values.size} values, but its mask sets {where.size}"
            )
        if not np.all(values):
            raise FormatError(f"{self.rel}: {name} stores a zero where its mask says non-zero")
        out = np.zeros(numel, dtype=np.int64)
        out[where] = values
        return out.reshape(shape)

    def digest(self) -> str:
        """set_digest of the logical int64 tensors (FORMAT.md §3), one tensor in memory at once."""
        return set_digest(_AsTensors(self))


class _AsTensors(Mapping[str, Tensor]):
    def __init__(self, arrays: Mapping[str, I64Array]) -> None:
        self._arrays = arrays

    def __iter__(self) -> Iterator[str]:
        return iter(self._arrays)

    def __len__(self) -> int:
        return len(self._arrays)

    def __getitem__(self, name: str) -> Tensor:
        return from_arrays({name: self._arrays[name]})[name]


def read_vector(
    path: Path,
    trainable: Mapping[str, tuple[int, ...]],
    method: str,
    masks: Callable[[], Mapping[str, U8Array]],
) -> StoredVector:
    """The file's header checked against the method's encodings; `masks` (the task's mask,
    checked against its digest) is asked for only by the encoding that needs it."""
    tight, tensors = read_tight(path, layouts(trainable, method))
    mask = masks() if tight.encoding == NONZERO else None
    return StoredVector(shown(path), tight.encoding, tensors, trainable, mask)
