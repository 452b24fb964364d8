"""Read-only access to ledger.duckdb (FORMAT.md §5).

Rows are copied into plain tuples and nothing in them is trusted: every value
is later checked against hashes and signatures. The catalog is read too and
compared with §5: anything beyond the five tables (another table, column,
view, schema, comment …) is a place data could outlive its deletion. A table
whose columns differ from §5 is reported and read as empty, so a retyped
column (a BLOB payload, say) is a FAIL line, never a crash further on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
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

# Every user-made catalog object of the ledger's database other than its tables.
_OTHER_OBJECTS = """
SELECT 'schema ' || schema_name FROM duckdb_schemas()
  WHERE database_name = current_database() AND schema_name <> 'main'
UNION ALL SELECT 'view ' || view_name FROM duckdb_views()
  WHERE database_name = current_database() AND NOT internal
UNION ALL SELECT 'sequence ' || sequence_name FROM duckdb_sequences()
  WHERE database_name = current_database()
UNION ALL SELECT 'index ' || index_name FROM duckdb_indexes()
  WHERE database_name = current_database()
UNION ALL SELECT 'macro ' || function_name FROM duckdb_functions()
  WHERE database_name = current_database() AND NOT internal
UNION ALL SELECT 'type ' || type_name FROM duckdb_types()
  WHERE database_name = current_database() AND NOT internal
UNION ALL SELECT 'comment on the database' FROM duckdb_databases()
  WHERE database_name = current_database() AND coalesce(comment, '') <> ''
"""
_TABLES = """
SELECT schema_name, table_name, coalesce(comment, '') <> '' OR cardinality(tags) > 0
FROM duckdb_tables() WHERE database_name = current_database() ORDER BY table_name
"""
_COLUMNS = """
SELECT table_name, column_name, data_type, column_default IS NOT NULL OR coalesce(comment, '') <> ''
FROM duckdb_columns() WHERE database_name = current_database() AND schema_name = 'main'
ORDER BY table_name, column_index
"""


def _read_schema(con: duckdb.DuckDBPyConnection) -> tuple[set[str], list[str]]:
    """The §5 tables that can be read, and every way the catalog differs from §5."""
    problems = [f"unexpected {obj}" for (obj,) in con.execute(_OTHER_OBJECTS).fetchall()]
    columns: dict[str, list[tuple[str, str]]] = {}
    for table, column, dtype, annotated in con.execute(_COLUMNS).fetchall():
        columns.setdefault(table, []).append((column, dtype))
        if annotated:
            problems.append(f"column {table}.{column} has a default or a comment")
    for schema, table, annotated in con.execute(_TABLES).fetchall():
        if schema != "main" or table not in SCHEMA:
            problems.append(f"unexpected table {schema}.{table}")
        elif annotated:
            problems.append(f"table {table} has a comment or tags")
    readable = set()
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
        readable, problems = _read_schema(con)

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
    except Exception as exc:
        raise UnreadableInput(f"cannot read {db}: {exc}") from None
    finally:
        con.close()
    return ledger
