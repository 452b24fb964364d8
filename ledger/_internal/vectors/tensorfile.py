"""safetensors files of numpy arrays.

Written by a streaming writer (header, then each tensor's buffer straight to
the file) so that saving the merged state never holds a second serialised
copy of it in memory. Read by our own reader, because the file is the
adversary's: the header is checked against the layout the caller expects and
against the file's real size before a single data byte is read, so a file
that claims (or is) gigabytes costs neither memory nor time.
"""

from __future__ import annotations

import json
import math
import os
import struct
from collections.abc import Callable, Mapping
from io import BufferedReader
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ledger._internal.errors import LedgerError
from ledger._internal.folder.safefs import create_exclusive, open_regular
from ledger._internal.log.jcs import loads_strict
from ledger._internal.vectors.digest import dtype_code

Tensors = dict[str, npt.NDArray[np.generic]]
Layout = Mapping[str, tuple[str, tuple[int, ...]]]  # name -> (safetensors dtype, shape)
MAX_HEADER_BYTES = 1 << 24
# Entries one tensor may claim, a 0 dimension counted as 1: numpy cannot even shape an
# empty array whose other dimensions multiply past its address space.
MAX_ENTRIES = 1 << 48
Entry = tuple[str, tuple[int, ...], int, int]  # dtype, shape, data start, data end
_NUMPY: dict[str, np.dtype[Any]] = {
    "I8": np.dtype("i1"),
    "I16": np.dtype("<i2"),
    "I32": np.dtype("<i4"),
    "I64": np.dtype("<i8"),
    "F32": np.dtype("<f4"),
    "U8": np.dtype("u1"),
}


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def refuse_nonempty(out: Path) -> None:
    """Outputs go to a new or empty folder: never mixed into, never overwriting."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise LedgerError(f"{out} exists and is not an empty folder")


def fsync_tree(root: Path) -> None:
    """Every file and folder under root, before the folder is renamed into view."""
    for path in sorted(root.rglob("*"), reverse=True):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
        else:
            fsync_dir(path)
    fsync_dir(root)


def write_bytes_durable(path: Path, data: bytes) -> None:
    with create_exclusive(path) as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def write_tensors(
    path: Path,
    tensors: Mapping[str, npt.NDArray[np.generic]],
    metadata: Mapping[str, str] | None = None,
) -> None:
    """``metadata`` (a vector's encoding, FORMAT.md §3) goes first in the header, as
    the tight layout of §2 requires."""
    header: dict[str, object] = {"__metadata__": dict(metadata)} if metadata else {}
    offset = 0
    names = sorted(tensors)
    for name in names:
        array = tensors[name]
        header[name] = {
            "dtype": dtype_code(array),
            "shape": list(array.shape),
            "data_offsets": [offset, offset + array.nbytes],
        }
        offset += array.nbytes
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)  # the reference writer aligns data to 8 bytes
    with create_exclusive(path) as handle:
        handle.write(struct.pack("<Q", len(encoded)) + encoded)
        for name in names:
            array = np.ascontiguousarray(tensors[name])
            handle.write(array.astype(array.dtype.newbyteorder("<"), copy=False).data)
        handle.flush()
        os.fsync(handle.fileno())


def _metadata(header: dict[str, Any], where: str) -> dict[str, str]:
    meta = header.get("__metadata__", {})
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise LedgerError(f"{where}: __metadata__ is not a map of strings")
    return meta


def _entries(header: object, where: str) -> dict[str, Entry]:
    if not isinstance(header, dict):
        raise LedgerError(f"{where}: header is not a JSON object")
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (lo, hi) = info["dtype"], info["shape"], info["data_offsets"]
        except (TypeError, KeyError, ValueError):
            raise LedgerError(f"{where}: bad header entry for {name!r}") from None
        if (
            not isinstance(dtype, str)  # a JSON list is unhashable, not a dtype
            or dtype not in _NUMPY
            or not isinstance(shape, list)
            or not all(type(d) is int and d >= 0 for d in shape)
            or math.prod(max(d, 1) for d in shape) > MAX_ENTRIES
            or not all(type(o) is int for o in (lo, hi))
            or not 0 <= lo <= hi
            or hi - lo != math.prod(shape) * _NUMPY[dtype].itemsize
        ):
            raise LedgerError(f"{where}: inconsistent header entry for {name!r}")
        out[name] = (dtype, tuple(shape), lo, hi)
    return out


def _layout(handle: BufferedReader, where: str) -> tuple[int, dict[str, str], dict[str, Entry]]:
    """Header length, metadata and entries, checked against the file's real size before
    any data."""
    size = os.fstat(handle.fileno()).st_size
    prefix = handle.read(8)
    if len(prefix) != 8:
        raise LedgerError(f"{where}: truncated tensor file")
    (n,) = struct.unpack("<Q", prefix)
    if n > min(MAX_HEADER_BYTES, size - 8):
        raise LedgerError(f"{where}: header length {n} exceeds the file or the cap")
    try:
        header = loads_strict(handle.read(n))
    except (ValueError, RecursionError) as exc:
        raise LedgerError(f"{where}: header is not strict JSON ({exc})") from None
    entries = _entries(header, where)
    end = 0
    for lo, hi in sorted((lo, hi) for _, _, lo, hi in entries.values()):
        if lo != end:
            raise LedgerError(f"{where}: tensor data has a gap or overlap")
        end = hi
    if 8 + n + end != size:
        raise LedgerError(
            f"{where}: file holds {size} bytes, its header accounts for {8 + n + end}"
        )
    return n, _metadata(header, where), entries


def check_size(path: Path, root: Path) -> None:
    """A tensor file whose header accounts for every byte: a cheap check before hashing it."""
    with open_regular(path, root) as handle:
        _layout(handle, path.relative_to(root).as_posix())


def read_tensors(path: Path, expect: Layout | None = None, root: Path | None = None) -> Tensors:
    """The tensors of a file whose header matches ``expect`` (when given) and its size.

    Data must tile the file exactly after the header; ``root`` only shortens
    the names in messages.
    """

    def exactly(metadata: Mapping[str, str], found: Layout, where: str) -> None:
        if expect is not None and found != dict(expect):
            raise LedgerError(
                f"{where}: tensors are not the trainable layout (names, dtypes, shapes)"
            )

    return read_checked(path, exactly, root)[1]


HeaderCheck = Callable[[Mapping[str, str], Layout, str], None]  # metadata, layout, file name


def read_checked(
    path: Path,
    check: HeaderCheck,
    root: Path | None = None,
    each: Callable[[str, npt.NDArray[np.generic]], npt.NDArray[np.generic]] | None = None,
) -> tuple[dict[str, str], Tensors]:
    """Metadata and tensors of a file whose header ``check`` accepts (it raises otherwise),
    run before a single data byte is read. ``each`` turns a tensor into what is kept of it
    as soon as it is read (a vector's decoding), so the file is never in memory whole."""
    where = path.name if root is None else path.relative_to(root).as_posix()
    with open_regular(path, root or path.parent) as handle:
        n, metadata, entries = _layout(handle, where)
        check(metadata, {k: (dtype, shape) for k, (dtype, shape, _, _) in entries.items()}, where)
        tensors: Tensors = {}
        for name, (dtype, shape, lo, _) in entries.items():
            array = np.empty(shape, dtype=_NUMPY[dtype])
            handle.seek(8 + n + lo)
            if handle.readinto(array.reshape(-1).view(np.uint8).data) != array.nbytes:
                raise LedgerError(f"{where}: truncated while reading {name!r}")
            tensors[name] = array if each is None else each(name, array)
    return metadata, tensors
