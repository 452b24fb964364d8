"""The DuckDB ledger file: config, events, signed tree heads, tasks, certificates.

DuckDB enforces nothing append-only, so nothing here is trusted by a reader:
every row is re-derived from event payloads whose hashes are committed to by
signed tree heads (docs/FORMAT.md §4–§6). One write = one transaction.

The file is the adversary's (FORMAT.md §5): it is opened with external access
and extension loading off and the configuration locked, so that no view or
macro it holds can read a file or pull in code; its catalog must be exactly
the five tables, checked before any row is read; and no text value is fetched
before its length is checked against the format's cap.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from ledger._internal.errors import LedgerError
from ledger._internal.log.jcs import canonical, loads_strict
from ledger._internal.log.merkle import leaf_hash

FORMAT = "ulg/ledger/v1"

_SCHEMA = """
CREATE TABLE config (
    format VARCHAR NOT NULL, log_id VARCHAR NOT NULL, base_digest VARCHAR NOT NULL,
    sign_seed UBIGINT NOT NULL, scale_bits INTEGER NOT NULL, threads INTEGER NOT NULL,
    public_key VARCHAR NOT NULL, retain_vectors BOOLEAN NOT NULL);
CREATE TABLE events (
    seq BIGINT PRIMARY KEY, kind VARCHAR NOT NULL, task_id VARCHAR, payload VARCHAR NOT NULL);
CREATE TABLE tree_heads (
    size BIGINT PRIMARY KEY, body VARCHAR NOT NULL, signature VARCHAR NOT NULL);
CREATE TABLE tasks (
    task_id VARCHAR PRIMARY KEY, method VARCHAR NOT NULL, status VARCHAR NOT NULL,
    add_seq BIGINT NOT NULL, unlearn_seq BIGINT, data_hash VARCHAR NOT NULL,
    vector_digest VARCHAR NOT NULL, mask_digest VARCHAR);
CREATE TABLE certificates (
    seq BIGINT PRIMARY KEY, task_id VARCHAR NOT NULL, envelope VARCHAR NOT NULL);
"""


_TASK_COLUMNS = (
    "task_id, method, status, add_seq, unlearn_seq, data_hash, vector_digest, mask_digest"
)

# FORMAT.md §5: the catalog, column by column in order, and the caps on text values.
TABLES: dict[str, tuple[tuple[str, str], ...]] = {
    "certificates": (("seq", "BIGINT"), ("task_id", "VARCHAR"), ("envelope", "VARCHAR")),
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
    "tasks": tuple(
        (c, "BIGINT" if c.endswith("_seq") else "VARCHAR") for c in _TASK_COLUMNS.split(", ")
    ),
    "tree_heads": (("size", "BIGINT"), ("body", "VARCHAR"), ("signature", "VARCHAR")),
}
LONG_TEXT = {("events", "payload"), ("certificates", "envelope")}
LONG_TEXT_BYTES = 1 << 20
TEXT_BYTES = 4096
TOTAL_TEXT_BYTES = 1 << 28  # all text of the database together
_HEADER_BYTES = 3 * 4096  # DuckDB's file header and its two database headers
# First, and with no unqualified function call: a database can hold a macro named
# like a built-in (current_database, strlen, a table macro pragma_storage_info)
# that every later query would call instead, answering as it likes.
_USER_FUNCTIONS = (
    "SELECT function_type, function_name FROM system.main.duckdb_functions() WHERE NOT internal"
)
_BLOCKS = "SELECT block_size, total_blocks FROM system.main.pragma_database_size()"

_HOSTILE: dict[str, str | bool | int | float | list[str]] = {
    "enable_external_access": False,
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "lock_configuration": True,
}
_OTHER_OBJECTS = """
SELECT 'schema ' || schema_name FROM duckdb_schemas()
  WHERE database_name = current_database() AND schema_name <> 'main'
UNION ALL SELECT 'view ' || view_name FROM duckdb_views()
  WHERE database_name = current_database() AND NOT internal
UNION ALL SELECT 'sequence ' || sequence_name FROM duckdb_sequences()
  WHERE database_name = current_database()
UNION ALL SELECT 'index ' || index_name FROM duckdb_indexes()
  WHERE database_name = current_database()
UNION ALL SELECT 'type ' || type_name FROM duckdb_types()
  WHERE database_name = current_database() AND NOT internal
UNION ALL SELECT 'table ' || schema_name || '.' || table_name FROM duckdb_tables()
  WHERE database_name = current_database()
    AND (schema_name <> 'main' OR table_name NOT IN (SELECT unnest(?::VARCHAR[])))
UNION ALL SELECT 'comment or tags on table ' || table_name FROM duckdb_tables()
  WHERE database_name = current_database() AND (comment IS NOT NULL OR cardinality(tags) > 0)
"""
_COLUMNS = """
SELECT c.table_name, c.column_name, c.data_type,
       c.column_default IS NOT NULL OR c.comment IS NOT NULL
FROM duckdb_columns() c JOIN duckdb_tables() t
  ON c.database_name = t.database_name AND c.schema_name = t.schema_name
 AND c.table_name = t.table_name
WHERE c.database_name = current_database() AND c.schema_name = 'main'
ORDER BY c.table_name, c.column_index
"""


@dataclass(frozen=True)
class Config:
    log_id: str
    base_digest: str
    sign_seed: int
    scale_bits: int
    threads: int
    public_key: str
    retain_vectors: bool


@dataclass(frozen=True)
class TaskRow:
    task_id: str
    method: str
    status: str
    add_seq: int
    unlearn_seq: int | None
    data_hash: str
    vector_digest: str
    mask_digest: str | None


@dataclass(frozen=True)
class SignedHead:
    body: str
    signature: str

    def as_json(self) -> dict[str, str]:
        return {"body": self.body, "signature": self.signature}


@dataclass(frozen=True)
class Write:
    """Everything one ledger write changes in the database, applied atomically."""

    event: dict[str, Any]
    head: SignedHead
    task: TaskRow | None  # None for a key rotation, which no task row records
    certificate: bytes | None = None


_DB = "ledger.duckdb"


def _parse_event(seq: int, payload: str) -> dict[str, Any]:
    try:
        event = loads_strict(payload)
    except ValueError as exc:
        raise LedgerError(f"event {seq} is not strict JSON ({exc})") from None
    if not isinstance(event, dict):
        raise LedgerError(f"event {seq} is not a JSON object")
    return event


class StoreLocked(LedgerError):
    """Another process holds the database in a mode that excludes ours: try again soon."""


class Store:
    def __init__(self, path: Path, read_only: bool = False) -> None:
        try:
            self._con = duckdb.connect(str(path), read_only=read_only, config=_HOSTILE)
        except duckdb.IOException as exc:
            if "lock" in str(exc).lower():
                raise StoreLocked(f"{path} is in use") from exc
            raise LedgerError(f"cannot open ledger database {path}: {exc}") from exc
        except duckdb.Error as exc:
            first = (str(exc).splitlines() or [type(exc).__name__])[0]
            raise LedgerError(f"cannot open ledger database {path}: {first}") from exc

    def check_catalog(self, path: Path) -> None:
        """No user function, no bytes past DuckDB's blocks (a place to keep a deleted
        vector), exactly FORMAT.md §5's tables and columns, and no text past its caps."""
        functions = self._rows(_USER_FUNCTIONS)
        if functions:
            kind, name = functions[0]
            raise LedgerError(f"{_DB} holds {kind} {name!r}, which FORMAT.md §5 does not allow")
        block_size, blocks = self._rows(_BLOCKS)[0]
        if path.stat().st_size > _HEADER_BYTES + block_size * blocks:
            raise LedgerError(f"{_DB} has bytes past its last block (FORMAT.md §5)")
        others = self._rows(_OTHER_OBJECTS, [sorted(TABLES)])
        if others:
            raise LedgerError(f"{_DB} holds {others[0][0]}, which FORMAT.md §5 does not allow")
        columns: dict[str, list[tuple[str, str]]] = {}
        for table, column, dtype, annotated in self._rows(_COLUMNS):
            if annotated:
                raise LedgerError(f"{_DB}: column {table}.{column} has a default or a comment")
            columns.setdefault(table, []).append((column, dtype))
        total = 0
        for table, want in TABLES.items():
            if tuple(columns.get(table, ())) != want:
                raise LedgerError(f"{_DB}: table {table} does not have FORMAT.md §5's columns")
            total += self._text_total(table)
            if total > TOTAL_TEXT_BYTES:
                raise LedgerError(
                    f"{_DB} holds over {TOTAL_TEXT_BYTES} bytes of text (FORMAT.md §5)"
                )
            self._check_text_stats(table)
            key = want[0][0]
            limits = " OR ".join(
                f'strlen("{c}") > {LONG_TEXT_BYTES if (table, c) in LONG_TEXT else TEXT_BYTES}'
                for c, dtype in want
                if dtype == "VARCHAR"
            )
            long = self._rows(f'SELECT "{key}" FROM {table} WHERE {limits} LIMIT 1')
            if long:
                raise LedgerError(
                    f"{_DB}: a text value of {table} row {long[0][0]!r} exceeds FORMAT.md §5's cap"
                )

    def _text_total(self, table: str) -> int:
        sql = (
            "SELECT coalesce(sum(stats['total_string_length']::BIGINT), 0) "
            f"FROM pragma_storage_info('{table}') WHERE segment_type = 'VARCHAR'"
        )
        return int(self._rows(sql)[0][0])

    def _check_text_stats(self, table: str) -> None:
        """Refuse from the column statistics alone: evaluating ``strlen`` on a 200 MiB
        value would load it. Stats can lie, so the SQL check runs afterwards anyway."""
        sql = (
            "SELECT column_name, max(stats['max_string_length']::BIGINT) "
            f"FROM pragma_storage_info('{table}') WHERE segment_type = 'VARCHAR' "
            "GROUP BY column_name"
        )
        for column, longest in self._rows(sql):
            cap = LONG_TEXT_BYTES if (table, column) in LONG_TEXT else TEXT_BYTES
            if longest is not None and longest > cap:
                raise LedgerError(
                    f"{_DB}: column {table}.{column} holds a {longest}-byte value, over "
                    f"FORMAT.md §5's cap of {cap}"
                )

    def close(self) -> None:
        self._con.close()

    @classmethod
    def create(
        cls, path: Path, config: Config, init_event: dict[str, Any], head: SignedHead
    ) -> Store:
        store = cls(path)
        con = store._con
        con.execute("BEGIN TRANSACTION")
        con.execute(_SCHEMA)
        con.execute(
            "INSERT INTO config VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                FORMAT,
                config.log_id,
                config.base_digest,
                config.sign_seed,
                config.scale_bits,
                config.threads,
                config.public_key,
                config.retain_vectors,
            ],
        )
        con.execute(
            "INSERT INTO events VALUES (0, 'init', NULL, ?)", [canonical(init_event).decode()]
        )
        con.execute("INSERT INTO tree_heads VALUES (1, ?, ?)", [head.body, head.signature])
        con.execute("COMMIT")
        return store

    def _rows(self, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
        try:
            return self._con.execute(sql, params or []).fetchall()
        except duckdb.Error as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise LedgerError(f"ledger database is damaged or not a ledger: {first}") from exc

    def config(self) -> Config:
        rows = self._rows(
            "SELECT log_id, base_digest, sign_seed, scale_bits, threads, public_key, "
            "retain_vectors FROM config"
        )
        if len(rows) != 1:
            raise LedgerError("ledger database must have exactly one config row")
        return Config(*rows[0])

    def event(self, seq: int) -> dict[str, Any]:
        rows = self._rows("SELECT payload FROM events WHERE seq = ?", [seq])
        if not rows:
            raise LedgerError(f"ledger has no event {seq}")
        return _parse_event(seq, rows[0][0])

    def size(self) -> int:
        return int(self._rows("SELECT count(*) FROM events")[0][0])

    def head(self, size: int) -> SignedHead:
        rows = self._rows("SELECT body, signature FROM tree_heads WHERE size = ?", [size])
        if not rows:
            raise LedgerError(f"ledger has no tree head of size {size}")
        return SignedHead(*rows[0])

    def task(self, task_id: str) -> TaskRow | None:
        rows = self._rows(f"SELECT {_TASK_COLUMNS} FROM tasks WHERE task_id = ?", [task_id])
        return TaskRow(*rows[0]) if rows else None

    def tasks(self) -> list[TaskRow]:
        rows = self._rows(f"SELECT {_TASK_COLUMNS} FROM tasks ORDER BY task_id")
        return [TaskRow(*row) for row in rows]

    def log(self) -> tuple[list[bytes], list[dict[str, Any]]]:
        """Every event's leaf hash and parsed payload, from one read of the table.

        The kind and task_id columns are an index of the payloads: one that
        disagrees would make this reader and the verifier see different ledgers."""
        rows = self._rows("SELECT seq, kind, task_id, payload FROM events ORDER BY seq")
        events = []
        for seq, kind, task_id, payload in rows:
            event = _parse_event(seq, payload)
            if (kind, task_id) != (event.get("kind"), event.get("task_id")):
                raise LedgerError(f"event {seq}: its kind or task_id column is not its payload's")
            events.append(event)
        return [leaf_hash(payload.encode("utf-8")) for *_, payload in rows], events

    def active_ids(self) -> list[str]:
        return sorted(t.task_id for t in self.tasks() if t.status == "active")

    def apply(self, write: Write) -> None:
        con, event, task = self._con, write.event, write.task
        try:
            con.execute("BEGIN TRANSACTION")
            con.execute(
                "INSERT INTO events VALUES (?, ?, ?, ?)",
                [event["seq"], event["kind"], event.get("task_id"), canonical(event).decode()],
            )
            con.execute(
                "INSERT INTO tree_heads VALUES (?, ?, ?)",
                [event["seq"] + 1, write.head.body, write.head.signature],
            )
            if task is not None:
                con.execute("DELETE FROM tasks WHERE task_id = ?", [task.task_id])
                con.execute(
                    "INSERT INTO tasks VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        task.task_id,
                        task.method,
                        task.status,
                        task.add_seq,
                        task.unlearn_seq,
                        task.data_hash,
                        task.vector_digest,
                        task.mask_digest,
                    ],
                )
            if write.certificate is not None:
                con.execute(
                    "INSERT INTO certificates VALUES (?, ?, ?)",
                    [event["seq"], event["task_id"], write.certificate.decode("utf-8")],
                )
            con.execute("COMMIT")
        except duckdb.Error as exc:
            con.execute("ROLLBACK")
            raise LedgerError(f"ledger database write failed, nothing changed: {exc}") from exc
