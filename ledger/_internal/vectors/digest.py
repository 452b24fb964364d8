"""The tensor-set digest of docs/FORMAT.md §2.

Each tensor's data is hashed in 16 MiB chunks so that one large tensor is
hashed on every core (hashlib releases the GIL); SHA-256, not int64 addition,
bounds merge and verify throughput.
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import numpy.typing as npt

from ledger._internal.log.jcs import canonical

CHUNK_BYTES = 16 * 1024 * 1024

_DTYPES = {
    np.dtype("i1"): "I8",
    np.dtype("<i2"): "I16",
    np.dtype("<i4"): "I32",
    np.dtype("<i8"): "I64",
    np.dtype("<f4"): "F32",
    np.dtype("u1"): "U8",
}


def dtype_code(array: npt.NDArray[np.generic]) -> str:
    try:
        return _DTYPES[array.dtype.newbyteorder("<")]
    except KeyError:
        raise ValueError(f"unsupported dtype {array.dtype}") from None


def _chunk_hash(view: memoryview) -> bytes:
    return hashlib.sha256(view).digest()


def _little_endian_bytes(array: npt.NDArray[np.generic]) -> memoryview:
    contiguous = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
    return contiguous.reshape(-1).view(np.uint8).data  # flat bytes: a (0, 0) tensor too


def set_digest(tensors: Mapping[str, npt.NDArray[np.generic]]) -> str:
    names = sorted(tensors, key=lambda n: n.encode("utf-8"))
    views = {name: _little_endian_bytes(tensors[name]) for name in names}
    jobs = [
        (name, views[name][start : start + CHUNK_BYTES])
        for name in names
        for start in range(0, len(views[name]), CHUNK_BYTES)
    ]
    workers = min(os.cpu_count() or 1, max(1, len(jobs)))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        chunk_hashes = list(pool.map(_chunk_hash, [view for _, view in jobs]))
    per_tensor: dict[str, list[bytes]] = {name: [] for name in names}
    for (name, _), chunk_hash in zip(jobs, chunk_hashes, strict=True):
        per_tensor[name].append(chunk_hash)
    outer = hashlib.sha256(b"ulg:tensorset:v1\x00" + struct.pack("<Q", len(names)))
    for name in names:
        array = tensors[name]
        header = canonical({"dtype": dtype_code(array), "name": name, "shape": list(array.shape)})
        inner = hashlib.sha256(b"ulg:tensor:v1\x00" + header + b"\x00")
        for chunk_hash in per_tensor[name]:
            inner.update(chunk_hash)
        outer.update(inner.digest())
    return "sha256:" + outer.hexdigest()


def file_sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
