"""One writer at a time, and no half-done writes.

A write stages every new file under a temporary name, records the planned
renames and deletions in ``journal.json``, commits the database transaction,
then applies the plan. Whoever next takes the lock finishes the plan if the
database committed (its event count reached the journal's target) and rolls
it back otherwise, so a crash at any point leaves the old state or the new one.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ledger._internal.errors import LedgerError
from ledger._internal.tensorfile import fsync_dir, write_bytes_durable

JOURNAL = "journal.json"


@contextmanager
def writer_lock(root: Path) -> Iterator[None]:
    path = root / "LOCK"
    handle = open(path, "a+")  # noqa: SIM115 - held for the whole write
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise LedgerError(f"ledger {root} is locked by {holder}") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} ({' '.join(os.path.basename(a) for a in sys.argv[:2])})")
        handle.flush()
        yield
    finally:
        handle.close()


@dataclass
class Plan:
    """Renames (staged -> final) and deletions that make one write's files current."""

    target_size: int
    moves: list[tuple[str, str]] = field(default_factory=list)
    deletes: list[str] = field(default_factory=list)
    writers: dict[str, Callable[[Path], None]] = field(default_factory=dict, repr=False)

    def put(self, final: Path, writer: Callable[[Path], None]) -> None:
        """``writer`` writes and fsyncs the new file at the staged path it is given."""
        staged = str(final.with_name(f"{final.name}.staged-{self.target_size}"))
        self.moves.append((staged, str(final)))
        self.writers[staged] = writer


def prepare(root: Path, plan: Plan) -> None:
    """Journal first, then the staged files: a crash in between leaves nothing untracked."""
    tmp = root / (JOURNAL + ".tmp")
    data = {"target_size": plan.target_size, "moves": plan.moves, "deletes": plan.deletes}
    write_bytes_durable(tmp, json.dumps(data).encode())
    os.replace(tmp, root / JOURNAL)
    fsync_dir(root)
    for staged, writer in plan.writers.items():
        writer(Path(staged))


def apply_plan(root: Path, plan: Plan) -> None:
    """Idempotent, so recovery can rerun it after a crash halfway through."""
    touched = {root}
    for staged, final in plan.moves:
        if os.path.exists(staged):
            os.replace(staged, final)
        touched.add(Path(final).parent)
    for path in plan.deletes:
        if os.path.exists(path):
            os.remove(path)
        touched.add(Path(path).parent)
    for directory in touched:
        fsync_dir(directory)
    (root / JOURNAL).unlink(missing_ok=True)
    fsync_dir(root)


def discard_plan(root: Path, plan: Plan) -> None:
    for staged, _ in plan.moves:
        if os.path.exists(staged):
            os.remove(staged)
    (root / JOURNAL).unlink(missing_ok=True)
    fsync_dir(root)


def recover(root: Path, committed_size: int) -> str | None:
    """Finish or roll back an interrupted write; says which, or None if there was none."""
    path = root / JOURNAL
    if not path.exists():
        (root / (JOURNAL + ".tmp")).unlink(missing_ok=True)
        return None
    data = json.loads(path.read_text())
    plan = Plan(data["target_size"], [tuple(m) for m in data["moves"]], data["deletes"])
    if committed_size >= plan.target_size:
        apply_plan(root, plan)
        return "finished"
    discard_plan(root, plan)
    return "rolled back"
