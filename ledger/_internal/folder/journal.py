"""One writer at a time, and no half-done writes.

A write records its planned renames and deletions in ``journal.json``, stages
every new file under a temporary name, commits the database transaction,
then applies the plan. Whoever next takes the lock finishes the plan if the
database committed (its event count reached the journal's target) and rolls
it back otherwise, so a crash at any point leaves the old state or the new one.

Journal paths are relative to the ledger folder and must name files a write
makes (the state, the default key's path, a task's vector, mask or
certificate, and their staged copies): the journal is a file in a folder
others may write to, and recovery must not become a way to move or delete
arbitrary files, base/ included.
Staged files are created exclusively, so a link planted at a staged name is
never written through.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from ledger._internal.errors import LedgerError
from ledger._internal.folder.layout import JOURNAL, KEY_PATH_FILE, STATE, is_task_file
from ledger._internal.folder.safefs import read_regular
from ledger._internal.log.jcs import loads_strict
from ledger._internal.vectors.tensorfile import fsync_dir, write_bytes_durable

_JOURNAL_LIMIT = 1 << 20


DEFAULT_WAIT = 30.0  # seconds a writer waits for another's commit (commits take about a second)


def lock_holder(root: Path) -> str:
    """What the lock file says about its holder, for a message: never trusted otherwise."""
    try:
        text = read_regular(root / "LOCK", root, 4096).decode("utf-8", errors="replace").strip()
    except LedgerError:
        text = ""
    return " ".join(text.split()) or "another process"


@contextmanager
def writer_lock(root: Path, wait: float = DEFAULT_WAIT) -> Iterator[None]:
    """The one writer's lock, held only to commit; a second writer waits up to ``wait``."""
    try:
        fd = os.open(root / "LOCK", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError as exc:
        raise LedgerError(f"cannot open the lock file of {root}: {exc.strerror}") from None
    deadline = time.monotonic() + wait
    with os.fdopen(fd, "r+") as handle:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise LedgerError(f"ledger busy: held by {lock_holder(root)}") from None
                time.sleep(0.05)
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
        """``writer`` creates (exclusively), writes and fsyncs the file at the staged path."""
        staged = f"{final}.staged-{self.target_size}"
        self.moves.append((staged, final))
        self.writers[staged] = writer


def _inside(root: Path, relative: Any, *, deletion: bool = False) -> Path:
    """A path a write may move into place (or, for ``deletion``, remove): nothing else."""
    if not isinstance(relative, str):
        raise LedgerError(f"{root / JOURNAL} is damaged: a path is not a string")
    if deletion:
        allowed = is_task_file(relative) and not relative.startswith("certificates/")
    else:
        allowed = relative in (STATE, KEY_PATH_FILE) or is_task_file(relative)
    if not allowed or PurePosixPath(relative).as_posix() != relative:
        raise LedgerError(f"{root / JOURNAL} names a path a write never touches: {relative!r}")
    return root.joinpath(*PurePosixPath(relative).parts)


def _staged(root: Path, final: str, target_size: int) -> Path:
    return _inside(root, final).with_name(f"{PurePosixPath(final).name}.staged-{target_size}")


def prepare(root: Path, plan: Plan) -> None:
    """Journal first, then the staged files: a crash in between leaves nothing untracked."""
    tmp = root / (JOURNAL + ".tmp")
    data = {"target_size": plan.target_size, "moves": plan.moves, "deletes": plan.deletes}
    write_bytes_durable(tmp, json.dumps(data).encode())
    os.replace(tmp, root / JOURNAL)
    fsync_dir(root)
    for staged, writer in plan.writers.items():
        writer(root / staged)


def apply_plan(root: Path, plan: Plan) -> None:
    """Idempotent, so recovery can rerun it after a crash halfway through."""
    touched = {root}
    for staged, final in plan.moves:
        source, target = root / staged, _inside(root, final)
        if os.path.lexists(source):
            os.replace(source, target)
        touched.add(target.parent)
    for relative in plan.deletes:
        path = _inside(root, relative, deletion=True)
        path.unlink(missing_ok=True)
        touched.add(path.parent)
    for directory in touched:
        fsync_dir(directory)
    (root / JOURNAL).unlink(missing_ok=True)
    fsync_dir(root)


def discard_plan(root: Path, plan: Plan) -> None:
    for staged, _ in plan.moves:
        (root / staged).unlink(missing_ok=True)
    (root / JOURNAL).unlink(missing_ok=True)
    fsync_dir(root)


def _read_plan(root: Path) -> Plan:
    """The journal as written by ``prepare``; every path re-derived, none taken on trust."""
    try:
        data = loads_strict(read_regular(root / JOURNAL, root, _JOURNAL_LIMIT))
        target = data["target_size"]
        if (
            type(target) is not int
            or target < 1
            or set(data) != {"target_size", "moves", "deletes"}
        ):
            raise ValueError("not a journal")
        plan = Plan(target)
        for staged, final in data["moves"]:
            if staged != _staged(root, final, target).relative_to(root).as_posix():
                raise ValueError(f"staged name {staged!r} is not {final!r}'s")
            plan.moves.append((staged, final))
        plan.deletes = [str(d) for d in data["deletes"]]
        for relative in plan.deletes:
            _inside(root, relative, deletion=True)
    except (ValueError, KeyError, TypeError, RecursionError) as exc:
        raise LedgerError(f"{root / JOURNAL} is damaged ({exc}); restore the folder") from exc
    return plan


def remove_leftovers(root: Path, staged: list[str]) -> None:
    """Staged files no journal names: a crashed write's debris, or something planted."""
    for relative in staged:
        (root / relative).unlink(missing_ok=True)
    if staged:
        fsync_dir(root)


def settle(root: Path, committed_size: int, plan: Plan | None = None) -> str | None:
    """Finish or roll back the journalled write; says which, or None if there was none."""
    if plan is None:
        (root / (JOURNAL + ".tmp")).unlink(missing_ok=True)
        if not os.path.lexists(root / JOURNAL):
            return None
        plan = _read_plan(root)
        if plan.target_size not in (committed_size, committed_size + 1):
            raise LedgerError(
                f"{root / JOURNAL} plans write {plan.target_size} but the log holds "
                f"{committed_size} events: no write made it; restore the folder"
            )
    if committed_size >= plan.target_size:
        apply_plan(root, plan)
        return "finished"
    discard_plan(root, plan)
    return "rolled back"
