"""Read-only access to ledger.duckdb (FORMAT.md §5), a file the operator crafted.

It is opened with external access, extension loading and configuration changes
off, so no view or macro in it can reach a file or pull in code. Before any row
is read, its catalog must be the five tables of §5 and nothing else (a view, a
macro, another table or a comment could make two readers see different ledgers,
or keep data past its deletion), and no text value may exceed §5's caps, which
are checked inside DuckDB (first from the column statistics, which cost no
memory, then value by value) so that no oversized value ever reaches Python.
Rows are copied into plain tuples and nothing in them is trusted: every value
is later checked against hashes and signatures. A §5 table whose columns differ
is reported and read as empty, so a retyped column (a BLOB payload, say) is a
FAIL line, never a crash further on.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from verifier.files import entry_problem


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
    schema_problems: list[str] = field(default_factory=list)


# FORMAT.md §5, in column order; the first column of each table but config is its key.
SCHEMA: dict[str, tuple[tuple[str, str], ...]] = {
    "config": (
        ("format", "VARCHAR"),
        ("log_id", "VARCHAR"),
        ("base_digest", "VARCHAR"),
        ("sign_seed", "UBIGINT"),
        ("scale_bits", "INTEGER"),
        ("threads", "INTEGER"),
        ("public_key", "VARCHAR"),
        ("retain_vectors", "BOOLEAN"),
    ),
    "events": (
        ("seq", "BIGINT"),
        ("kind", "VARCHAR"),
        ("task_id", "VARCHAR"),
        ("payload", "VARCHAR"),
    ),
    "tree_heads": (("size", "BIGINT"), ("body", "VARCHAR"), ("signature", "VARCHAR")),
    "tasks": (
        ("task_id", "VARCHAR"),
        ("method", "VARCHAR"),
        ("status", "VARCHAR"),
        ("add_seq", "BIGINT"),
        ("unlearn_seq", "BIGINT"),
        ("data_hash", "VARCHAR"),
        ("vector_digest", "VARCHAR"),
        ("mask_digest", "VARCHAR"),
    ),
    "certificates": (("seq", "BIGINT"), ("task_id", "VARCHAR"), ("envelope", "VARCHAR")),
}
ORDER = {"events": "seq", "tree_heads": "size", "tasks": "task_id", "certificates": "seq"}
LONG_TEXT = {("events", "payload"), ("certificates", "envelope")}
TEXT_CAP = 1 << 20  # a LONG_TEXT value, in UTF-8 bytes
SHORT_CAP = 4096  # every other VARCHAR value
TOTAL_CAP = 1 << 28  # all text of the database together, from its statistics
_HEADER_BYTES = 3 * 4096  # DuckDB's file header and its two database headers
# Run before any other query, with no unqualified function in it: a database may
# hold a macro named like a built-in (current_database, strlen, even a table
# macro pragma_storage_info), which every later query would call instead.
_USER_FUNCTIONS = (
    "SELECT function_type, function_name FROM system.main.duckdb_functions() WHERE NOT internal"
)
_BLOCKS = "SELECT block_size, total_blocks FROM system.main.pragma_database_size()"
HOSTILE: dict[str, str | bool | int | float | list[str]] = {
    "enable_external_access": False,
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "lock_configuration": True,
    "threads": 1,
}

_THIS_DB = "database_name = current_database()"
_TABLE_NAMES = ", ".join(f"'{t}'" for t in SCHEMA)
_OTHER_OBJECTS = f"""
SELECT 'schema', schema_name FROM duckdb_schemas() WHERE {_THIS_DB} AND schema_name <> 'main'
UNION ALL SELECT 'a comment or tags on schema', schema_name FROM duckdb_schemas()
  WHERE {_THIS_DB} AND (coalesce(comment, '') <> '' OR cardinality(tags) > 0)
UNION ALL SELECT 'view', view_name FROM duckdb_views() WHERE {_THIS_DB} AND NOT internal
UNION ALL SELECT 'sequence', sequence_name FROM duckdb_sequences() WHERE {_THIS_DB}
UNION ALL SELECT 'index', index_name FROM duckdb_indexes() WHERE {_THIS_DB}
UNION ALL SELECT 'macro', function_name FROM duckdb_functions() WHERE {_THIS_DB} AND NOT internal
UNION ALL SELECT 'type', type_name FROM duckdb_types() WHERE {_THIS_DB} AND NOT internal
UNION ALL SELECT 'table', schema_name || '.' || table_name FROM duckdb_tables()
  WHERE {_THIS_DB} AND (schema_name <> 'main' OR table_name NOT IN ({_TABLE_NAMES}))
UNION ALL SELECT 'a comment or tags on table', table_name FROM duckdb_tables()
  WHERE {_THIS_DB} AND (coalesce(comment, '') <> '' OR cardinality(tags) > 0)
UNION ALL SELECT 'a default or comment on column', table_name || '.' || column_name
  FROM duckdb_columns()
  WHERE {_THIS_DB} AND (column_default IS NOT NULL OR coalesce(comment, '') <> '')
UNION ALL SELECT 'a CHECK constraint on table', table_name FROM duckdb_constraints()
  WHERE {_THIS_DB} AND constraint_type = 'CHECK'
UNION ALL SELECT 'a comment on the database', database_name FROM duckdb_databases()
  WHERE {_THIS_DB} AND coalesce(comment, '') <> ''
"""
_COLUMNS = f"""
SELECT c.table_name, c.column_name, c.data_type
FROM duckdb_columns() c JOIN duckdb_tables() t ON c.table_oid = t.table_oid
WHERE c.{_THIS_DB} AND c.schema_name = 'main'
ORDER BY c.table_name, c.column_index
"""


def _read_schema(con: duckdb.DuckDBPyConnection, db: str) -> tuple[set[str], list[str]]:
    """The §5 tables that can be read, and how the others' columns differ from §5."""
    if other := con.execute(_OTHER_OBJECTS).fetchone():
        raise UnreadableInput(
            f"{db} holds {other[0]} {other[1]!r}, which FORMAT.md §5 does not allow"
        )
    columns: dict[str, list[tuple[str, str]]] = {}
    for table, column, dtype in con.execute(_COLUMNS).fetchall():
        columns.setdefault(table, []).append((column, dtype))
    readable, problems = set(), []
    for table, want in SCHEMA.items():
        got = tuple(columns.get(table, ()))
        if got == want:
            readable.add(table)
        elif not got:
            problems.append(f"table {table} is missing")
        else:
            shown = ", ".join(f"{c} {t}" for c, t in got)
            problems.append(f"table {table} has columns ({shown}), not those of FORMAT.md §5")
    return readable, problems


def _check_storage(con: duckdb.DuckDBPyConnection, db: Path) -> None:
    """No user function (see _USER_FUNCTIONS), no bytes past DuckDB's blocks (they could keep
    a deleted vector), and no more text in all than TOTAL_CAP (from statistics, unfetched)."""
    if found := con.execute(_USER_FUNCTIONS).fetchone():
        raise UnreadableInput(
            f"{db.name} holds {found[0]} {found[1]!r}, which FORMAT.md §5 does not allow"
        )
    block_size, blocks = con.execute(_BLOCKS).fetchone() or (0, 0)
    if os.lstat(db).st_size > _HEADER_BYTES + block_size * blocks:
        raise UnreadableInput(f"{db.name} has bytes past its last block (FORMAT.md §5)")
    total = 0
    for table in SCHEMA:
        if con.execute(
            "SELECT 1 FROM duckdb_tables() WHERE schema_name = 'main' AND table_name = ?", [table]
        ).fetchone():
            (size,) = con.execute(
                "SELECT coalesce(sum(stats.total_string_length::UBIGINT), 0) "
                f"FROM pragma_storage_info('{table}') WHERE segment_type = 'VARCHAR'"
            ).fetchone() or (0,)
            total += int(size)
    if total > TOTAL_CAP:
        raise UnreadableInput(f"{db.name} holds {total} bytes of text, over FORMAT.md §5's cap")


def _check_caps(con: duckdb.DuckDBPyConnection, db: str, table: str) -> None:
    """Refuse text past §5's caps without fetching it: the statistics first (which cost no
    memory, where strlen would load a huge value), then strlen for what they do not cover."""
    caps = {
        c: TEXT_CAP if (table, c) in LONG_TEXT else SHORT_CAP
        for c, t in SCHEMA[table]
        if t == "VARCHAR"
    }
    stats = con.execute(
        "SELECT column_name, max(stats.max_string_length::UBIGINT) "
        f"FROM pragma_storage_info('{table}') WHERE segment_type = 'VARCHAR' GROUP BY ALL"
    ).fetchall()
    for column, longest in stats:
        if longest is not None and longest > caps.get(column, 0):
            raise UnreadableInput(
                f"{db}: {table}.{column} holds a {longest}-byte value, over FORMAT.md §5's cap"
            )
    key = ORDER.get(table, "NULL")
    for column, cap in caps.items():
        sql = f'SELECT {key} FROM {table} WHERE strlen("{column}") > {cap} LIMIT 1'
        if row := con.execute(sql).fetchone():
            where = f" of {key} {row[0]!r}" if table in ORDER else ""
            raise UnreadableInput(
                f"{db}: {table}.{column}{where} is over FORMAT.md §5's {cap}-byte cap"
            )


def read_ledger(ledger_dir: Path) -> LedgerDB:  # noqa: C901  (§5's refusals, in their order)
    try:
        is_dir = stat.S_ISDIR(os.lstat(ledger_dir).st_mode)
    except OSError:
        is_dir = False
    if not is_dir:
        raise UnreadableInput(f"ledger folder {ledger_dir} does not exist or is a link")
    db = ledger_dir / "ledger.duckdb"
    for path in (db, ledger_dir / "ledger.duckdb.wal"):
        # DuckDB opens both by name: a FIFO would block it, a link lead it elsewhere
        if os.path.lexists(path) and (why := entry_problem(os.lstat(path))) is not None:
            raise UnreadableInput(f"{path.name} in {ledger_dir} is {why}")
    if not os.path.lexists(db):
        raise UnreadableInput(f"no ledger.duckdb in {ledger_dir}")
    if os.path.lexists(ledger_dir / "ledger.duckdb.tmp"):  # DuckDB may always read in there
        raise UnreadableInput(f"{ledger_dir} holds ledger.duckdb.tmp, which FORMAT.md §1 forbids")
    wal = ledger_dir / "ledger.duckdb.wal"
    if os.path.lexists(wal) and os.lstat(wal).st_size:  # replayed into memory on opening
        raise UnreadableInput(
            f"{wal.name} holds {os.lstat(wal).st_size} bytes: the ledger was not closed; "
            "let a ledger command recover it first (FORMAT.md §5)"
        )
    try:
        con = duckdb.connect(str(db), read_only=True, config=HOSTILE)
    except Exception as exc:  # duckdb raises several unrelated types for bad or locked files
        raise UnreadableInput(f"cannot open {db}: {exc}") from None
    try:
        _check_storage(con, db)
        readable, problems = _read_schema(con, db.name)
        for table in sorted(readable):
            _check_caps(con, db.name, table)

        def rows(table: str) -> list[tuple[Any, ...]]:
            if table not in readable:
                return []
            cols = ", ".join(f'"{c}"' for c, _ in SCHEMA[table])
            order = f' ORDER BY "{ORDER[table]}"' if table in ORDER else ""
            return list(con.execute(f"SELECT {cols} FROM {table}{order}").fetchall())

        def dicts(table: str) -> list[dict[str, Any]]:
            names = [c for c, _ in SCHEMA[table]]
            return [dict(zip(names, r, strict=True)) for r in rows(table)]

        ledger = LedgerDB(
            dicts("config"),
            [Event(*r) for r in rows("events")],
            [Head(*r) for r in rows("tree_heads")],
            dicts("tasks"),
            [(s, t, e) for s, t, e in rows("certificates")],
            problems,
        )
    except UnreadableInput:
        raise
    except Exception as exc:
        raise UnreadableInput(f"cannot read {db}: {exc}") from None
    finally:
        con.close()
    return ledger
