"""Every file of the folder is opened here, because the folder is the operator's.

A symbolic link could lead a reader outside the folder, a FIFO or device could
block it or feed it without end, and a hard link lets one file stand for two
(a deleted vector kept under a second name). So nothing is opened through a
link, nothing blocks, and a file is only ever read in bounded pieces.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from verifier.dsse import FormatError

_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0)
_PIECE = 1 << 20


def shown(path: Path) -> str:
    """The file's name with its folder's: `vectors/a.safetensors`, not just `a.safetensors`."""
    return "/".join(path.parts[-2:])


def entry_problem(st: os.stat_result) -> str | None:
    """Why an entry (from os.lstat or os.fstat) is not a plain file, or None if it is."""
    if stat.S_ISLNK(st.st_mode):
        return "a symbolic link"
    if stat.S_ISDIR(st.st_mode):
        return "a folder"
    if not stat.S_ISREG(st.st_mode):
        return "a FIFO, socket or device"
    if st.st_nlink > 1:
        return f"a hard link ({st.st_nlink} names)"
    return None


def identity(st: os.stat_result) -> tuple[int, ...]:
    """What changes when a file is replaced or rewritten: a file read again later must
    still have it, so bytes checked once are the bytes used."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


@contextmanager
def open_regular(path: Path) -> Iterator[tuple[int, os.stat_result]]:
    """(fd, stat) of a plain file; O_NONBLOCK so that opening a FIFO cannot hang."""
    try:
        fd = os.open(path, _FLAGS)
    except OSError as exc:
        why = "a symbolic link" if exc.errno == errno.ELOOP else exc.strerror
        raise FormatError(f"{shown(path)}: cannot open: {why}") from None
    try:
        st = os.fstat(fd)
        if (problem := entry_problem(st)) is not None:
            raise FormatError(f"{shown(path)} is {problem}")
        yield fd, st
    finally:
        os.close(fd)


def read_regular(path: Path, cap: int) -> bytes:
    with open_regular(path) as (fd, st):
        if st.st_size > cap:
            raise FormatError(f"{shown(path)} is {st.st_size} bytes, more than {cap}")
        return os.pread(fd, st.st_size, 0)


def sha256_regular(path: Path) -> str:
    h = hashlib.sha256()
    with open_regular(path) as (fd, _):
        while piece := os.read(fd, _PIECE):
            h.update(piece)
    return h.hexdigest()
