"""Read-only access to ledger.duckdb (FORMAT.md §5).

Rows are copied into plain tuples and nothing in them is trusted: every value
is later checked against hashes and signatures. Columns are selected by name,
so a reordered table reads the same and a missing one is an unreadable ledger.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb


class UnreadableInput(Exception):
    """An input (folder, database, key, certificate) cannot be read at all: an `error:` line."""


@dataclass(frozen=True)
class Event:
    seq: int
    kind: str | None
    task_id: str | None
    payload: str | None


@dataclass(frozen=True)
class Head:
    size: int
    body: str | None
    signature: str | None


@dataclass
class LedgerDB:
    config: list[dict[str, Any]]
    events: list[Event]  # ordered by seq
    heads: list[Head]  # ordered by size
    tasks: list[dict[str, Any]]
    certificates: list[tuple[int, str | None, str | None]]  # (seq, task_id, envelope)


CONFIG_COLS = ("format", "log_id", "base_digest", "sign_seed", "scale_bits", "threads",
               "public_key", "retain_vectors")
TASK_COLS = ("task_id", "method", "status", "add_seq", "unlearn_seq", "data_hash",
             "vector_digest", "mask_digest")


def read_ledger(ledger_dir: Path) -> LedgerDB:
    if not ledger_dir.is_dir():
        raise UnreadableInput(f"ledger folder {ledger_dir} does not exist")
    db = ledger_dir / "ledger.duckdb"
    if not db.is_file():
        raise UnreadableInput(f"no ledger.duckdb in {ledger_dir}")
    try:
        con = duckdb.connect(str(db), read_only=True)
    except Exception as exc:  # duckdb raises several unrelated types for bad or locked files
        raise UnreadableInput(f"cannot open {db}: {exc}") from None
    try:
        def rows(sql: str) -> list[tuple[Any, ...]]:
            return list(con.execute(sql).fetchall())

        config = [dict(zip(CONFIG_COLS, r, strict=True))
                  for r in rows(f"SELECT {', '.join(CONFIG_COLS)} FROM config")]
        events = [Event(*r) for r in rows(
            "SELECT seq, kind, task_id, payload FROM events ORDER BY seq")]
        heads = [Head(*r) for r in rows(
            "SELECT size, body, signature FROM tree_heads ORDER BY size")]
        tasks = [dict(zip(TASK_COLS, r, strict=True))
                 for r in rows(f"SELECT {', '.join(TASK_COLS)} FROM tasks ORDER BY task_id")]
        certs = [(int(s), t, e) for s, t, e in rows(
            "SELECT seq, task_id, envelope FROM certificates ORDER BY seq")]
    except Exception as exc:
        raise UnreadableInput(f"cannot read {db}: {exc}") from None
    finally:
        con.close()
    return LedgerDB(config, events, heads, tasks, certs)
