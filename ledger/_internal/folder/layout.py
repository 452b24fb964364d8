"""The names a ledger folder may hold (docs/FORMAT.md §1), and the scan that enforces them.

Every command scans the folder before it reads or writes anything in it: a
link or a special file anywhere is refused by name, since recovery's moves
and deletes, or the next write, would otherwise act wherever it points, and
an entry the format does not name could keep a deleted vector.
"""

from __future__ import annotations

import re
from pathlib import Path

from ledger._internal.errors import LedgerError
from ledger._internal.folder.safefs import check_entry, entries

DB_NAME = "ledger.duckdb"
KEY_PATH_FILE = "signing_key_path"
STATE = "state.safetensors"
JOURNAL = "journal.json"
BASE = "base"
_TOP_FILES = {DB_NAME, DB_NAME + ".wal", STATE, JOURNAL, "LOCK", KEY_PATH_FILE}
_TASK_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_SUBFOLDERS = {
    "vectors": re.compile(rf"{_TASK_ID.pattern}\.safetensors"),
    "masks": re.compile(rf"{_TASK_ID.pattern}\.safetensors"),
    "certificates": re.compile(r"(0|[1-9][0-9]*)\.dsse\.json"),
}
_STAGED = re.compile(r"(?P<final>.+)\.staged-(0|[1-9][0-9]*)|journal\.json\.tmp")


def check_task_id(task_id: str) -> str:
    if not _TASK_ID.fullmatch(task_id):
        raise LedgerError(
            f"invalid task id {task_id!r}: use 1-128 of A-Z a-z 0-9 . _ - "
            "(not starting with . _ -)",
            exit_code=2,
        )
    return task_id


def vector_file(task_id: str) -> str:
    return f"vectors/{task_id}.safetensors"


def mask_file(task_id: str) -> str:
    return f"masks/{task_id}.safetensors"


def certificate_file(seq: int) -> str:
    return f"certificates/{seq}.dsse.json"


def is_task_file(relative: str) -> bool:
    """A vector, mask or certificate path: the only files below the top that writes touch."""
    folder, _, name = relative.partition("/")
    return folder in _SUBFOLDERS and bool(_SUBFOLDERS[folder].fullmatch(name))


def _allowed(name: str, subfolder: str | None) -> bool:
    if subfolder is None:
        return name in _TOP_FILES
    return bool(_SUBFOLDERS[subfolder].fullmatch(name))


def scan(root: Path) -> list[str]:
    """Refuse what §1 forbids; return the staged files (relative paths) found.

    Staged files are legitimate only while a journal names them; the caller
    decides what to do with the rest (a writer removes them, ``status`` shows them).
    """
    staged: list[str] = []
    for path in entries(root, root):
        name = path.name
        if name == BASE:
            for inner in entries(path, root):
                check_entry(inner, root)  # flat: a subfolder here is refused too
        elif name in _SUBFOLDERS:
            for inner in entries(path, root):
                check_entry(inner, root)
                staged += _classify(inner, root, name)
        else:
            check_entry(path, root)
            staged += _classify(path, root, None)
    return staged


def _classify(path: Path, root: Path, subfolder: str | None) -> list[str]:
    relative = path.relative_to(root).as_posix()
    match = _STAGED.fullmatch(path.name)
    final = (match.group("final") or JOURNAL) if match else path.name
    if not _allowed(final, subfolder):
        raise LedgerError(f"{relative} is not a file a ledger folder holds (FORMAT.md §1)")
    return [relative] if match else []
