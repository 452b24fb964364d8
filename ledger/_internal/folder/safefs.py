"""Files inside a ledger folder, which whoever hands it over may have crafted.

Nothing here follows a symbolic link, opens a special file or reads more than
the caller allows: a link would let recovery or a write act outside the folder,
a FIFO would block a reader forever, a hard link would make a "deleted" vector
live on under another name, and a sparse multi-gigabyte file would exhaust
memory. Paths are checked with ``lstat`` and opened with ``O_NOFOLLOW``, then
``fstat`` judges what was actually opened.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from io import BufferedReader, BufferedWriter
from pathlib import Path

from ledger._internal.errors import LedgerError

_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
_HASH_BLOCK = 1 << 20


def _kind(mode: int) -> str:
    if stat.S_ISREG(mode):
        return "a file"
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "a special file"


def check_entry(path: Path, root: Path, *, folder: bool = False) -> os.stat_result:
    """A regular, singly linked file (or a real folder): anything else is refused by name."""
    try:
        info = os.lstat(path)
    except OSError as exc:
        raise LedgerError(f"cannot examine {_shown(path, root)}: {exc.strerror}") from None
    if folder:
        if not stat.S_ISDIR(info.st_mode):
            raise LedgerError(f"{_shown(path, root)} is {_kind(info.st_mode)}, not a folder")
        return info
    if not stat.S_ISREG(info.st_mode):
        raise LedgerError(f"{_shown(path, root)} is {_kind(info.st_mode)}; refusing to use it")
    if info.st_nlink != 1:
        raise LedgerError(
            f"{_shown(path, root)} is hard-linked ({info.st_nlink} names); "
            "a deleted file could live on under another name"
        )
    return info


def _shown(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix() or str(root)
    except ValueError:
        return str(path)


def entries(folder: Path, root: Path) -> list[Path]:
    """A folder's entries, the folder itself checked first (never listed through a link)."""
    check_entry(folder, root, folder=True)
    try:
        return sorted(folder / name for name in os.listdir(folder))
    except OSError as exc:
        raise LedgerError(f"cannot list {_shown(folder, root)}: {exc.strerror}") from None


@contextmanager
def open_regular(path: Path, root: Path, limit: int | None = None) -> Iterator[BufferedReader]:
    """Open a file for reading without following a link; refuse it past ``limit`` bytes."""
    try:
        fd = os.open(path, _READ_FLAGS)
    except OSError as exc:
        raise LedgerError(f"cannot open {_shown(path, root)}: {exc.strerror}") from None
    handle = os.fdopen(fd, "rb")
    with handle:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise LedgerError(f"{_shown(path, root)} is {_kind(info.st_mode)}; refusing to read it")
        if info.st_nlink != 1:
            raise LedgerError(f"{_shown(path, root)} is hard-linked; refusing to read it")
        if limit is not None and info.st_size > limit:
            raise LedgerError(
                f"{_shown(path, root)} holds {info.st_size} bytes, more than the {limit} allowed"
            )
        yield handle


def read_regular(path: Path, root: Path, limit: int) -> bytes:
    with open_regular(path, root, limit) as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:  # grew while being read
        raise LedgerError(f"{_shown(path, root)} holds more than the {limit} bytes allowed")
    return data


def sha256_file(path: Path, root: Path) -> str:
    """Streamed: a file's size costs time, never memory."""
    digest = hashlib.sha256()
    with open_regular(path, root) as handle:
        while block := handle.read(_HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def create_exclusive(path: Path, mode: int = 0o644) -> BufferedWriter:
    """A new file: never an existing one, never through a link planted at its name."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    return os.fdopen(os.open(path, flags, mode), "wb")


def read_user_file(path: Path, limit: int) -> bytes:
    """A file the user names (a key, say): links followed, as they chose the path, but never
    a FIFO or device, which would block or never end."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise LedgerError(f"cannot read {path}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise LedgerError(f"{path} is not a regular file")
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise LedgerError(f"{path} is larger than {limit} bytes")
    return data
