"""Safetensors reading, the tensor-set digest, the sign vector and mask packing (FORMAT.md §2–3).

The reader is our own: it validates every header field so a tampered file
becomes a FormatError (a FAIL line) instead of a crash, and it hands back the
raw little-endian bytes, so digests never depend on numpy's view of them.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import rfc8785

from verifier.dsse import FormatError

CHUNK = 16 * 1024 * 1024
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

I64Array = npt.NDArray[np.int64]


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


def read_safetensors(path: Path, *, strict: bool = True) -> dict[str, Tensor]:
    """Parse a safetensors file; `strict` (the default) is for the ledger's own files.

    Strict means every byte is accounted for (FORMAT.md §2): a compact JSON header
    padded with at most 7 spaces, no metadata, exactly dtype/shape/data_offsets per
    entry, and tensor data that tiles the rest of the file. The digest covers only
    names, shapes and data, so any other byte would be a place to keep a deleted
    task's vector inside a folder that still verifies. base/model.safetensors is read
    with strict=False: its whole file is pinned by base_files' SHA-256 instead.
    """
    try:
        blob = path.read_bytes()
    except OSError as exc:
        raise FormatError(f"{path.name}: cannot read: {exc.strerror}") from None
    if len(blob) < 8:
        raise FormatError(f"{path.name}: truncated")
    (n,) = struct.unpack("<Q", blob[:8])
    if n > len(blob) - 8:
        raise FormatError(f"{path.name}: header length {n} exceeds the file")
    raw = blob[8 : 8 + n]
    try:
        header = json.loads(raw)
    except (ValueError, RecursionError):
        raise FormatError(f"{path.name}: header is not JSON") from None
    if not isinstance(header, dict):
        raise FormatError(f"{path.name}: header is not a JSON object")
    if strict:
        _check_tight_header(path.name, raw, header)
    data = memoryview(blob)[8 + n :]
    out: dict[str, Tensor] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (lo, hi) = info["dtype"], info["shape"], info["data_offsets"]
        except (TypeError, KeyError, ValueError):
            raise FormatError(f"{path.name}: bad header entry for {name!r}") from None
        if (
            dtype not in ITEMSIZE
            or not isinstance(shape, list)
            or not all(type(d) is int and d >= 0 for d in shape)
            or not all(type(o) is int for o in (lo, hi))
            or not 0 <= lo <= hi <= len(data)
            or hi - lo != math.prod(shape) * ITEMSIZE[dtype]
            or (strict and set(info) != {"dtype", "shape", "data_offsets"})
        ):
            raise FormatError(f"{path.name}: inconsistent header entry for {name!r}")
        out[name] = Tensor(dtype, tuple(shape), data[lo:hi])
    if strict:
        end = 0
        for lo, hi in sorted(tuple(header[k]["data_offsets"]) for k in out):
            if lo != end:
                raise FormatError(f"{path.name}: tensor data has a gap or overlap at byte {lo}")
            end = hi
        if end != len(data):
            raise FormatError(f"{path.name}: {len(data) - end} bytes after the tensor data")
    return out


def _check_tight_header(name: str, raw: bytes, header: dict[str, Any]) -> None:
    """The header must be its own compact JSON: whitespace, escapes or metadata could carry data."""
    text = raw.rstrip(b" ")
    compact = {
        json.dumps(header, separators=(",", ":"), ensure_ascii=a).encode() for a in (True, False)
    }
    if len(raw) - len(text) > 7 or text not in compact:
        raise FormatError(f"{name}: header is not compact JSON padded with at most 7 spaces")
    if header.get("__metadata__", {}) != {}:
        raise FormatError(f"{name}: header has a non-empty __metadata__")


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
    for name in sorted(tensors, key=lambda s: s.encode("utf-8")):
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
