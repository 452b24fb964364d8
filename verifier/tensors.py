"""Safetensors reading, the tensor-set digest, the sign vector and mask packing (FORMAT.md §2–3).

The reader is our own: it validates every header field so a tampered file
becomes a FormatError (a FAIL line) instead of a crash, and it hands back the
raw little-endian bytes, so digests never depend on numpy's view of them.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import mmap
import os
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import rfc8785

from verifier.dsse import FormatError, parse_json
from verifier.files import open_regular, shown

CHUNK = 16 * 1024 * 1024
HEADER_CAP = 16 * 1024 * 1024
ITEMSIZE = {
    "BOOL": 1,
    "U8": 1,
    "I8": 1,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
    "I16": 2,
    "U16": 2,
    "F16": 2,
    "BF16": 2,
    "I32": 4,
    "U32": 4,
    "F32": 4,
    "I64": 8,
    "U64": 8,
    "F64": 8,
}
NUMPY: dict[str, np.dtype[Any]] = {
    "I64": np.dtype("<i8"),
    "F32": np.dtype("<f4"),
    "U8": np.dtype("u1"),
}
DTYPE_NAME = {dt: name for name, dt in NUMPY.items()}
ENTRY_KEYS = ("dtype", "shape", "data_offsets")

I64Array = npt.NDArray[np.int64]
Layout = Mapping[str, tuple[str, tuple[int, ...]]]  # name → (dtype, shape)
Entry = tuple[str, tuple[int, ...], int, int]  # dtype, shape, data offsets


@dataclass(frozen=True)
class Tensor:
    dtype: str
    shape: tuple[int, ...]
    data: memoryview  # raw little-endian C-order bytes

    def array(self) -> npt.NDArray[Any]:
        if self.dtype not in NUMPY:
            raise FormatError(f"dtype {self.dtype} is not one the ledger uses")
        arr: npt.NDArray[Any] = np.frombuffer(self.data, dtype=NUMPY[self.dtype])
        return arr.reshape(self.shape)


def read_safetensors(path: Path, layout: Layout | None = None) -> dict[str, Tensor]:
    """Check the header and the file's size, then map the data; no tensor byte is read here.

    `layout` is for the ledger's own files, which must be tight (FORMAT.md §2): exactly
    those tensors, a compact header padded to a multiple of 8, no metadata, and data in
    name order that tiles the rest of the file. The digest covers only names, shapes and
    data, so any other byte would be a place to keep a deleted task's vector inside a
    folder that still verifies. Without a layout (base/model.safetensors, whose every
    byte base_files pins) the file need only be as long as its header says. Either way
    the header is bounded and the size checked before any data is touched, so a forged
    header or a sparse file costs neither memory nor time.
    """
    name = shown(path)
    with open_regular(path) as (fd, size):
        if size < 8:
            raise FormatError(f"{name}: truncated")
        (n,) = struct.unpack("<Q", os.pread(fd, 8, 0))
        cap = HEADER_CAP if layout is None else _header_bound(layout)
        if n > min(cap, size - 8):
            raise FormatError(f"{name}: header length {n} exceeds the file or {cap} bytes")
        raw = os.pread(fd, n, 8)
        header = parse_json(raw, f"{name} header")
        if not isinstance(header, dict):
            raise FormatError(f"{name}: header is not a JSON object")
        entries = {
            k: _entry(name, k, v, layout is not None)
            for k, v in header.items()
            if k != "__metadata__"
        }
        if layout is not None:
            _check_tight(name, raw, header, entries, layout)
        end = 8 + n + max((e[3] for e in entries.values()), default=0)
        if size != end:
            raise FormatError(f"{name}: {size} bytes, but its header accounts for {end}")
        data = memoryview(mmap.mmap(fd, size, access=mmap.ACCESS_READ))[8 + n :]
    return {k: Tensor(d, s, data[lo:hi]) for k, (d, s, lo, hi) in entries.items()}


def _entry(file: str, name: str, info: object, tight: bool) -> Entry:
    if not isinstance(info, dict) or not set(ENTRY_KEYS) <= set(info):
        raise FormatError(f"{file}: bad header entry for {name!r}")
    dtype, shape, offsets = (info[k] for k in ENTRY_KEYS)
    if (
        not isinstance(dtype, str)
        or dtype not in ITEMSIZE
        or not isinstance(shape, list)
        or not all(type(d) is int and d >= 0 for d in shape)
        or not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(type(o) is int for o in offsets)
        or not 0 <= offsets[0] <= offsets[1]
        or offsets[1] - offsets[0] != math.prod(shape) * ITEMSIZE[dtype]
        or (tight and len(info) != len(ENTRY_KEYS))
    ):
        raise FormatError(f"{file}: inconsistent header entry for {name!r}")
    return dtype, tuple(shape), offsets[0], offsets[1]


def _header_bound(layout: Layout) -> int:
    """The longest tight header `layout` allows (escaped names, empty metadata, 7 spaces), so
    a header that could not be valid is never parsed: a JSON parser's objects are far bigger
    than the text that makes them."""
    names = sorted(layout, key=str.encode)
    sizes = [math.prod(layout[k][1]) * ITEMSIZE[layout[k][0]] for k in names]
    header = {
        k: {"dtype": layout[k][0], "shape": list(layout[k][1]), "data_offsets": [lo, lo + b]}
        for k, lo, b in zip(names, itertools.accumulate(sizes, initial=0), sizes, strict=False)
    }
    return len(json.dumps(header, separators=(",", ":"))) + len(',"__metadata__":{}') + 7


def _check_tight(
    file: str, raw: bytes, header: dict[str, Any], entries: dict[str, Entry], layout: Layout
) -> None:
    text = raw.rstrip(b" ")
    compact = {
        json.dumps(header, separators=(",", ":"), ensure_ascii=a).encode() for a in (True, False)
    }
    if len(raw) % 8 or len(raw) - len(text) > 7 or text not in compact:
        raise FormatError(f"{file}: header is not compact JSON padded to a multiple of 8 bytes")
    if header.get("__metadata__", {}) != {}:
        raise FormatError(f"{file}: header has a non-empty __metadata__")
    if set(entries) != set(layout):
        missing, extra = sorted(set(layout) - set(entries)), sorted(set(entries) - set(layout))
        raise FormatError(f"{file}: tensors missing {missing[:3]}, unexpected {extra[:3]}")
    if list(entries) != sorted(entries, key=str.encode):
        raise FormatError(f"{file}: tensors are not in UTF-8 byte order of their names")
    end = 0
    for name, (dtype, shape, lo, hi) in entries.items():
        if (dtype, shape) != layout[name]:
            want, dims = layout[name]
            raise FormatError(f"{file}: {name} is {dtype} {list(shape)}, not {want} {list(dims)}")
        if lo != end:
            raise FormatError(f"{file}: tensor data has a gap or overlap at byte {lo}")
        end = hi


def tensor_digest(name: str, dtype: str, shape: Iterable[int], data: bytes | memoryview) -> bytes:
    h = hashlib.sha256(b"ulg:tensor:v1\x00")
    h.update(rfc8785.dumps({"dtype": dtype, "name": name, "shape": list(shape)}))
    h.update(b"\x00")
    view = memoryview(data).cast("B")
    for start in range(0, len(view), CHUNK):
        h.update(hashlib.sha256(view[start : start + CHUNK]).digest())
    return h.digest()


def set_digest(tensors: Mapping[str, Tensor]) -> str:
    h = hashlib.sha256(b"ulg:tensorset:v1\x00" + struct.pack("<Q", len(tensors)))
    for name in sorted(tensors, key=str.encode):
        t = tensors[name]
        h.update(tensor_digest(name, t.dtype, t.shape, t.data))
    return "sha256:" + h.hexdigest()


def from_arrays(arrays: Mapping[str, npt.NDArray[Any]]) -> dict[str, Tensor]:
    """Wrap computed arrays (e.g. a recomputed Q) so they digest exactly like a file would."""
    out = {}
    for name, a in arrays.items():
        c = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<"))
        out[name] = Tensor(DTYPE_NAME[c.dtype], tuple(c.shape), c.reshape(-1).view(np.uint8).data)
    return out


def sign_bits(sign_seed: int, name: str, numel: int) -> npt.NDArray[np.bool_]:
    """True where v = +1: bit i of SHAKE-256(domain ‖ u64le(seed) ‖ name), LSB first."""
    stream = hashlib.shake_256(
        b"ulg:sign:v1\x00" + struct.pack("<Q", sign_seed) + name.encode("utf-8")
    ).digest((numel + 7) // 8)
    bits = np.unpackbits(np.frombuffer(stream, dtype=np.uint8), bitorder="little")
    return bits[:numel].astype(bool)


def sign_violations(q: I64Array, plus: npt.NDArray[np.bool_]) -> int:
    """Entries with q·v < 0, counted by comparison so −2^63 cannot overflow a product."""
    flat = q.reshape(-1)
    return int(np.count_nonzero(np.where(plus, flat < 0, flat > 0)))


def pack_mask(q: I64Array) -> npt.NDArray[np.uint8]:
    return np.packbits(q.reshape(-1) != 0, bitorder="little")


def checked_add(acc: I64Array, x: I64Array, name: str) -> I64Array:
    """acc + x in int64, refusing (OverflowError) any entry whose true sum leaves int64."""
    r = acc + x
    if np.any(((acc ^ r) & (x ^ r)) < 0):
        raise OverflowError(f"int64 overflow summing {name}")
    return r
