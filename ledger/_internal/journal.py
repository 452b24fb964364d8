"""One writer at a time, and no half-done writes.

A write records its planned renames and deletions in ``journal.json``, stages
every new file under a temporary name, commits the database transaction,
then applies the plan. Whoever next takes the lock finishes the plan if the
database committed (its event count reached the journal's target) and rolls
it back otherwise, so a crash at any point leaves the old state or the new one.

Journal paths are relative to the ledger folder and refused if they leave it:
the journal is a file in a folder others may write to, and recovery must not
become a way to move or delete arbitrary files.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from ledger._internal.errors import LedgerError
from ledger._internal.tensorfile import fsync_dir, write_bytes_durable

JOURNAL = "journal.json"


@contextmanager
def writer_lock(root: Path) -> Iterator[None]:
    try:
        fd = os.open(root / "LOCK", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError as exc:
        raise LedgerError(f"cannot open the lock file of {root}: {exc.strerror}") from None
    with os.fdopen(fd, "r+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = handle.read().strip() or "another process"
            raise LedgerError(f"ledger {root} is locked by {holder}") from None
        handle.truncate()
        handle.write(f"pid {os.getpid()} ({' '.join(os.path.basename(a) for a in sys.argv[:2])})")
        handle.flush()
        yield


@dataclass
class Plan:
    """Renames (staged -> final) and deletions, relative to the ledger folder."""

    target_size: int
    moves: list[tuple[str, str]] = field(default_factory=list)
    deletes: list[str] = field(default_factory=list)
    writers: dict[str, Callable[[Path], None]] = field(default_factory=dict, repr=False)

    def put(self, final: str, writer: Callable[[Path], None]) -> None:
        """``writer`` writes and fsyncs the new file at the staged path it is given."""
        staged = f"{final}.staged-{self.target_size}"
        self.moves.append((staged, final))
        self.writers[staged] = writer


def _inside(root: Path, relative: Any) -> Path:
    if not isinstance(relative, str):
        raise LedgerError(f"{root / JOURNAL} is damaged: a path is not a string")
    parts = PurePosixPath(relative).parts
    if not parts or relative.startswith("/") or ".." in parts or JOURNAL in parts[:1]:
        raise LedgerError(f"{root / JOURNAL} names a path outside the ledger: {relative!r}")
    return root.joinpath(*parts)


def prepare(root: Path, plan: Plan) -> None:
    """Journal first, then the staged files: a crash in between leaves nothing untracked."""
    tmp = root / (JOURNAL + ".tmp")
    data = {"target_size": plan.target_size, "moves": plan.moves, "deletes": plan.deletes}
    write_bytes_durable(tmp, json.dumps(data).encode())
    os.replace(tmp, root / JOURNAL)
    fsync_dir(root)
    for staged, writer in plan.writers.items():
        writer(_inside(root, staged))


def apply_plan(root: Path, plan: Plan) -> None:
    """Idempotent, so recovery can rerun it after a crash halfway through."""
    touched = {root}
    for staged, final in plan.moves:
        source, target = _inside(root, staged), _inside(root, final)
        if source.exists():
            os.replace(source, target)
        touched.add(target.parent)
    for relative in plan.deletes:
        path = _inside(root, relative)
        path.unlink(missing_ok=True)
        touched.add(path.parent)
    for directory in touched:
        fsync_dir(directory)
    (root / JOURNAL).unlink(missing_ok=True)
    fsync_dir(root)


def discard_plan(root: Path, plan: Plan) -> None:
    for staged, _ in plan.moves:
        _inside(root, staged).unlink(missing_ok=True)
    (root / JOURNAL).unlink(missing_ok=True)
    fsync_dir(root)


def _read_plan(root: Path) -> Plan:
    try:
        data = json.loads((root / JOURNAL).read_text())
        plan = Plan(int(data["target_size"]))
        for staged, final in data["moves"]:
            plan.moves.append((str(_inside(root, staged).relative_to(root)), str(final)))
            _inside(root, final)
        plan.deletes = [str(_inside(root, d).relative_to(root)) for d in data["deletes"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise LedgerError(f"{root / JOURNAL} is damaged ({exc}); restore the folder") from exc
    return plan


def settle(root: Path, committed_size: int, plan: Plan | None = None) -> str | None:
    """Finish or roll back the journalled write; says which, or None if there was none."""
    if plan is None:
        (root / (JOURNAL + ".tmp")).unlink(missing_ok=True)
        if not (root / JOURNAL).exists():
            return None
        plan = _read_plan(root)
    if committed_size >= plan.target_size:
        apply_plan(root, plan)
        return "finished"
    discard_plan(root, plan)
    return "rolled back"
