"""Safetensors reading, the tensor-set digest, the sign vector and mask packing (FORMAT.md §2–3).

The reader is our own: it validates every header field so a tampered file
becomes a FormatError (a FAIL line) instead of a crash, and it hands back the
raw little-endian bytes, so digests never depend on numpy's view of them.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import struct
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import rfc8785

from verifier.dsse import FormatError, parse_json
from verifier.files import identity, open_regular, shown

CHUNK = 16 * 1024 * 1024
HEADER_CAP = 16 * 1024 * 1024
# Entries a header may give one tensor, a 0 dimension counted as 1: numpy refuses to shape
# an empty array whose other dimensions multiply past its address space (a ValueError,
# not a FAIL line), and no real model comes near.
MAX_ENTRIES = 2**48
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
    "I8": np.dtype("i1"),
    "I16": np.dtype("<i2"),
    "I32": np.dtype("<i4"),
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
class Source:
    """A checked file, read again at each use through a fresh descriptor: no mapping and no
    descriptor outlives a read, so memory and open files stay bounded whatever T; and a
    file replaced or rewritten after its header was checked is refused, not read."""

    path: Path
    identity: tuple[int, ...]

    def read(self, lo: int, hi: int) -> memoryview:
        buf = np.empty(hi - lo, dtype=np.uint8).data  # not zero-filled: every byte is read
        with open_regular(self.path) as (fd, st):
            if identity(st) != self.identity:
                raise FormatError(f"{shown(self.path)} changed while it was being verified")
            got = 0
            while got < len(buf):
                n = os.preadv(fd, [buf[got:]], lo + got)
                if n == 0:
                    raise FormatError(f"{shown(self.path)}: truncated while being read")
                got += n
            if identity(os.fstat(fd)) != self.identity:  # written to while it was read
                raise FormatError(f"{shown(self.path)} changed while it was being verified")
        return buf


@dataclass(frozen=True)
class Tensor:
    dtype: str
    shape: tuple[int, ...]
    stored: memoryview | tuple[Source, int, int]  # bytes in memory, or (file, lo, hi)

    def raw(self) -> memoryview:
        """The raw little-endian C-order bytes; a file's are read now, one tensor at once."""
        if isinstance(self.stored, memoryview):
            return self.stored
        source, lo, hi = self.stored
        return source.read(lo, hi)

    def array(self) -> npt.NDArray[Any]:
        if self.dtype not in NUMPY:
            raise FormatError(f"dtype {self.dtype} is not one the ledger uses")
        arr: npt.NDArray[Any] = np.frombuffer(self.raw(), dtype=NUMPY[self.dtype])
        return arr.reshape(self.shape)


class Arrays(Mapping[str, npt.NDArray[Any]]):
    """A file's tensors as arrays, each read when asked for and not kept."""

    def __init__(self, tensors: Mapping[str, Tensor]) -> None:
        self.tensors = tensors

    def __iter__(self) -> Iterator[str]:
        return iter(self.tensors)

    def __len__(self) -> int:
        return len(self.tensors)

    def __getitem__(self, name: str) -> npt.NDArray[Any]:
        return self.tensors[name].array()


@dataclass(frozen=True)
class Slot:
    """What one tensor of a ledger file may be: one of `dtypes`, of `shape`; or, with no
    shape, one dimension of at most `most` entries (a sift vector's non-zero entries)."""

    dtypes: tuple[str, ...]
    shape: tuple[int, ...] | None
    most: int = 0

    def admits(self, dtype: str, shape: tuple[int, ...]) -> bool:
        if dtype not in self.dtypes:
            return False
        if self.shape is not None:
            return shape == self.shape
        return len(shape) == 1 and shape[0] <= self.most

    def describe(self) -> str:
        dims = list(self.shape) if self.shape is not None else f"[n ≤ {self.most}]"
        return f"{' or '.join(self.dtypes)} {dims}"


@dataclass(frozen=True)
class Tight:
    """A tight file's layout (FORMAT.md §2): the encoding its `__metadata__` declares (None:
    no `__metadata__`, or `{}`) and what each trainable tensor may be. `metadata`, when
    set, is the exact `__metadata__` instead (an export's `{"format": "pt"}`, §12)."""

    encoding: str | None
    slots: Mapping[str, Slot]
    metadata: Mapping[str, str] | None = None

    @classmethod
    def exact(cls, layout: Layout, metadata: Mapping[str, str] | None = None) -> Tight:
        return cls(None, {k: Slot((d,), s) for k, (d, s) in layout.items()}, metadata)

    def declared(self) -> dict[str, str]:
        """The `__metadata__` this layout's header holds ({}: none)."""
        if self.metadata is not None:
            return dict(self.metadata)
        return {} if self.encoding is None else {"encoding": self.encoding}

    def declared_by(self, header: dict[str, Any]) -> bool:
        return bool(header.get("__metadata__", {}) == self.declared())


def read_safetensors(path: Path, layout: Layout | None = None) -> dict[str, Tensor]:
    """Check the header and the file's size; no tensor byte is read here (Source).

    `layout` is for the ledger's own files, which must be tight (FORMAT.md §2): exactly
    those tensors, a compact header padded to a multiple of 8, no metadata, and data in
    name order that tiles the rest of the file. The digest covers only names, shapes and
    data, so any other byte would be a place to keep a deleted task's vector inside a
    folder that still verifies. Without a layout (base/model.safetensors, whose every
    byte base_files pins) the file need only be as long as its header says. Either way
    the header is bounded and the size checked before any data is touched, so a forged
    header or a sparse file costs neither memory nor time.
    """
    if layout is not None:
        return read_tight(path, [Tight.exact(layout)])[1]
    return _read(path, None)[1]


def read_tight(path: Path, choices: Sequence[Tight]) -> tuple[Tight, dict[str, Tensor]]:
    """A ledger file in one of the layouts `choices` allows, picked by the encoding its
    header declares (a vector file: compact or legacy, FORMAT.md §3), and that layout."""
    chosen, tensors = _read(path, choices)
    assert chosen is not None  # _read picks one of the choices or raises
    return chosen, tensors


def _read(path: Path, choices: Sequence[Tight] | None) -> tuple[Tight | None, dict[str, Tensor]]:
    name = shown(path)
    with open_regular(path) as (fd, st):
        size = st.st_size
        if size < 8:
            raise FormatError(f"{name}: truncated")
        (n,) = struct.unpack("<Q", os.pread(fd, 8, 0))
        cap = HEADER_CAP if choices is None else max(_header_bound(c) for c in choices)
        if n > min(cap, size - 8):
            raise FormatError(f"{name}: header length {n} exceeds the file or {cap} bytes")
        raw = os.pread(fd, n, 8)
        header = parse_json(raw, f"{name} header")
        if not isinstance(header, dict):
            raise FormatError(f"{name}: header is not a JSON object")
        entries = {
            k: _entry(name, k, v, choices is not None)
            for k, v in header.items()
            if k != "__metadata__"
        }
        chosen = None if choices is None else _choose(name, header, choices)
        if chosen is not None:
            _check_tight(name, raw, header, entries, chosen)
        end = 8 + n + max((e[3] for e in entries.values()), default=0)
        if size != end:
            raise FormatError(f"{name}: {size} bytes, but its header accounts for {end}")
    source, at = Source(path, identity(st)), 8 + n
    return chosen, {
        k: Tensor(d, s, (source, at + lo, at + hi)) for k, (d, s, lo, hi) in entries.items()
    }


def _choose(file: str, header: dict[str, Any], choices: Sequence[Tight]) -> Tight:
    """The layout the header's `__metadata__` declares; declaring none of them is refused."""
    for choice in choices:
        if choice.declared_by(header):
            return choice
    if all(not c.declared() for c in choices):
        raise FormatError(f"{file}: header has a non-empty __metadata__")
    said = json.dumps(header.get("__metadata__"), ensure_ascii=True)
    allowed = [c.declared() for c in choices]
    raise FormatError(
        f"{file}: __metadata__ {said[:100]} is none of {json.dumps(allowed)} (FORMAT.md §3)"
    )


def _entry(file: str, name: str, info: object, tight: bool) -> Entry:
    if not isinstance(info, dict) or not set(ENTRY_KEYS) <= set(info):
        raise FormatError(f"{file}: bad header entry for {name!r}")
    dtype, shape, offsets = (info[k] for k in ENTRY_KEYS)
    if (
        not isinstance(dtype, str)
        or dtype not in ITEMSIZE
        or not isinstance(shape, list)
        or not all(type(d) is int and d >= 0 for d in shape)
        or math.prod(max(d, 1) for d in shape) > MAX_ENTRIES
        or not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(type(o) is int for o in offsets)
        or not 0 <= offsets[0] <= offsets[1]
        or offsets[1] - offsets[0] != math.prod(shape) * ITEMSIZE[dtype]
        or (tight and len(info) != len(ENTRY_KEYS))
    ):
        raise FormatError(f"{file}: inconsistent header entry for {name!r}")
    return dtype, tuple(shape), offsets[0], offsets[1]


def _header_bound(tight: Tight) -> int:
    """The longest tight header `tight` allows (escaped names, the widest dtype and shape of
    each slot, its metadata, 7 spaces), so a header that could not be valid is never parsed:
    a JSON parser's objects are far bigger than the text that makes them."""
    header: dict[str, Any] = {}
    lo = 0
    for k in sorted(tight.slots, key=str.encode):
        slot = tight.slots[k]
        shape = list(slot.shape) if slot.shape is not None else [slot.most]
        size = math.prod(shape) * max(ITEMSIZE[d] for d in slot.dtypes)
        dtype = max(slot.dtypes, key=len)
        header[k] = {"dtype": dtype, "shape": shape, "data_offsets": [lo, lo + size]}
        lo += size
    meta = tight.declared()
    extra = len(json.dumps({"__metadata__": meta}, separators=(",", ":")))
    return len(json.dumps(header, separators=(",", ":"))) + extra + 7


def _check_tight(
    file: str, raw: bytes, header: dict[str, Any], entries: dict[str, Entry], tight: Tight
) -> None:
    if tight.declared() and next(iter(header)) != "__metadata__":
        raise FormatError(f"{file}: __metadata__ is not the header's first entry")
    text = raw.rstrip(b" ")
    # One canonical text: __metadata__ (when the encoding needs it) first, entries in name
    # order with their keys in the writer's order, non-ASCII escaped as json.dumps does.
    canonical: dict[str, Any] = {}
    if tight.declared() and "__metadata__" in header:
        canonical["__metadata__"] = header["__metadata__"]
    for k, v in header.items():
        if k != "__metadata__":
            canonical[k] = {e: v[e] for e in ENTRY_KEYS} if isinstance(v, dict) else v
    compact = json.dumps(canonical, separators=(",", ":")).encode()
    if len(raw) % 8 or len(raw) - len(text) > 7 or text != compact:
        raise FormatError(f"{file}: header is not compact JSON padded to a multiple of 8 bytes")
    if set(entries) != set(tight.slots):
        missing = sorted(set(tight.slots) - set(entries))
        extra = sorted(set(entries) - set(tight.slots))
        raise FormatError(f"{file}: tensors missing {missing[:3]}, unexpected {extra[:3]}")
    if list(entries) != sorted(entries, key=str.encode):
        raise FormatError(f"{file}: tensors are not in UTF-8 byte order of their names")
    end = 0
    for name, (dtype, shape, lo, hi) in entries.items():
        slot = tight.slots[name]
        if not slot.admits(dtype, shape):
            raise FormatError(f"{file}: {name} is {dtype} {list(shape)}, not {slot.describe()}")
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


def set_hasher(count: int) -> hashlib._Hash:
    """set_digest's hash before its first tensor digest."""
    return hashlib.sha256(b"ulg:tensorset:v1\x00" + struct.pack("<Q", count))


def set_digest(tensors: Mapping[str, Tensor]) -> str:
    h = set_hasher(len(tensors))
    for name in sorted(tensors, key=str.encode):
        t = tensors[name]
        h.update(tensor_digest(name, t.dtype, t.shape, t.raw()))
    return "sha256:" + h.hexdigest()


def from_arrays(arrays: Mapping[str, npt.NDArray[Any]]) -> dict[str, Tensor]:
    """Wrap computed arrays (e.g. a recomputed Q) so they digest exactly like a file would."""
    out = {}
    for name, a in arrays.items():
        c = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<"))  # 0-d comes back 1-d
        out[name] = Tensor(DTYPE_NAME[c.dtype], tuple(a.shape), c.reshape(-1).view(np.uint8).data)
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
