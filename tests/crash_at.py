"""Run one `ledger` command and SIGKILL it at a named point of its write.

    python tests/crash_at.py POINT ledger-arg ...

The points are places between (and inside) the writes a commit makes: the
journal, each staged file, the database transaction, each move and deletion
(for ``rotate-key``, the default key's path is the one staged file).
A kill is the real thing (no handler runs, no buffer is flushed), so what the
next command finds is what a power cut or an OOM kill would leave.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _on_call(owner: Any, name: str, nth: int, *, after: bool = False, half: bool = False) -> None:
    """Kill at the nth call of owner.name: before it, after it, or halfway through a write."""
    real: Callable[..., Any] = getattr(owner, name)
    calls = [0]

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        if calls[0] != nth:
            return real(*args, **kwargs)
        if half:  # the file's first bytes reach the disk, then the process dies
            with open(args[0], "wb") as handle:
                handle.write(b"\0" * 64)
                handle.flush()
                os.fsync(handle.fileno())
            _die()
        if not after:
            _die()
        result = real(*args, **kwargs)
        _die()
        return result

    setattr(owner, name, wrapper)


def install(point: str) -> None:
    """Counts are of calls in a whole write: the recovery check at open unlinks a
    stray journal.json.tmp first, then unlearn deletes the vector and the mask."""
    from ledger._internal.folder import journal
    from ledger._internal.folder.store import Store
    from ledger._internal.ops import add, rotation, unlearn

    writers = {"add": add, "unlearn": unlearn, "rotate-key": rotation}[sys.argv[2]]
    points: dict[str, Callable[[], None]] = {
        "journal-half-written": lambda: _on_call(journal, "write_bytes_durable", 1, half=True),
        "journal-in-place": lambda: _on_call(journal, "fsync_dir", 1),
        "state-staged-half-written": lambda: _on_call(writers, "write_tensors", 1, half=True),
        "state-staged": lambda: _on_call(writers, "write_tensors", 1, after=True),
        "second-file-staged-half-written": lambda: (
            _on_call(writers, "write_tensors", 2, half=True)
            if writers is add
            else _on_call(unlearn, "write_bytes_durable", 1, half=True)
        ),
        "before-database-commit": lambda: _on_call(Store, "apply", 1),
        "after-database-commit": lambda: _on_call(Store, "apply", 1, after=True),
        "after-first-move": lambda: _on_call(os, "replace", 3),
        "key-path-staged-half-written": lambda: _on_call(
            rotation, "write_bytes_durable", 1, half=True
        ),
        "after-key-path-moved": lambda: _on_call(os, "replace", 2, after=True),
        "after-moves-and-deletes": lambda: _on_call(journal, "fsync_dir", 2),
        "after-vector-deleted": lambda: _on_call(Path, "unlink", 2, after=True),
        "journal-removed-before-fsync": lambda: _on_call(
            Path, "unlink", 2 if writers is add else 4, after=True
        ),
    }
    points[point]()


if __name__ == "__main__":
    install(sys.argv[1])
    from ledger.cli import main

    main(sys.argv[2:])
