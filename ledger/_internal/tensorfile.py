"""safetensors files of numpy arrays.

Written by a streaming writer (header, then each tensor's buffer straight to
the file) so that saving the merged state never holds a second serialised
copy of it in memory; read with the reference ``safetensors`` reader.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import numpy.typing as npt
from safetensors import SafetensorError
from safetensors.numpy import load_file

from ledger._internal.digest import dtype_code
from ledger._internal.errors import LedgerError

Tensors = dict[str, npt.NDArray[np.generic]]


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
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def write_tensors(path: Path, tensors: Mapping[str, npt.NDArray[np.generic]]) -> None:
    header: dict[str, object] = {}
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
    with open(path, "wb") as handle:
        handle.write(struct.pack("<Q", len(encoded)) + encoded)
        for name in names:
            array = np.ascontiguousarray(tensors[name])
            handle.write(array.astype(array.dtype.newbyteorder("<"), copy=False).data)
        handle.flush()
        os.fsync(handle.fileno())


def read_tensors(path: Path) -> Tensors:
    try:
        return dict(load_file(str(path)))
    except (SafetensorError, OSError, ValueError) as exc:
        raise LedgerError(f"cannot read tensor file {path}: {exc}") from exc
