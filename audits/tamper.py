"""Audit: which tamperings of a ledger folder the independent verifier notices.

    python -m audits.tamper [--quick] [--out DIR] [--jobs N]

A real ledger is built with the tiny model (a, b, c, d added, a by `ft`; c
unlearned between c's and d's adds, so its certificate's head is not the
latest; the key rotated after the unlearn, so d's add and the latest heads
are signed by the new key and the audit follows the chain from the first).
Each case copies it, applies one mutation and runs `verifier audit`
(`run_audit`), and `verifier check` (`run_check`) with the certificate its
owner holds when the audit saw nothing. A case is detected when either says
FAIL or refuses the input (`UnreadableInput`, an `error:` line); any other
exception is a verifier crash and counts as undetected.

Cases come from the ledger's structure (DuckDB's catalog, the safetensors
headers, the JSON trees), never from byte offsets into files whose layout
varies between machines, so a new column, tensor or field is covered without
editing this file. The untampered copy must pass first: otherwise "detected"
would mean nothing, and the run aborts.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import datetime
import hashlib
import itertools
import json
import math
import multiprocessing
import os
import platform
import random
import re
import shutil
import string
import struct
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import duckdb
import numpy as np
import rfc8785
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger.log import leaf_hash, root_from_leaf_hashes
from verifier.checks import run_audit, run_check
from verifier.dsse import pae
from verifier.ledger_reader import UnreadableInput

NAME = "tamper"
REPORTS = Path(__file__).resolve().parent / "reports"
CLASSES = (
    "column",
    "file",
    "certificate-field",
    "signature-byte",
    "vector-swap",
    "resigned-other-key",
    "row-deleted",
    "row-duplicated",
    "view-for-table",
    "symlink-for-file",
    "truncated-file",
    "rollback",
    "fork",
    "resurrection",
    "key-rotation",
)
LED = "led"  # the ledger folder inside a case's workspace
HELD = "held.dsse.json"  # the certificate as its owner received it, outside the folder
OUTSIDE = "outside"  # where symlinked copies live, next to (not in) the folder
DATABASE = "ledger.duckdb"
IGNORED = {
    "LOCK": "FORMAT.md §1: the lock file's contents are ignored (only its presence as a "
    "regular file is part of the format; symlink-for-file covers that)",
    "signing_key_path": "FORMAT.md §1: its contents are ignored (only its presence as a "
    "regular file is part of the format; symlink-for-file covers that)",
}
PROGRESS_EVERY = 3.0  # seconds between progress lines
_WORDS = {
    1: ["good", "great", "fun", "lovely", "superb", "moving", "clever", "charming"],
    0: ["bad", "awful", "dull", "boring", "weak", "messy", "tedious", "bland"],
}
JsonPath = tuple[str | int, ...]


# --- mutations: plain data, so a case can be sent to a worker process --------------------------


@dataclass(frozen=True)
class Sql:
    """Statements run in one transaction; if a constraint refuses them, `table` is recreated
    without its constraints (CREATE TABLE AS) and they run again. Constraints are dropped only
    when needed, so a mutation DuckDB allows as is leaves the catalog exactly as it was."""

    table: str
    statements: tuple[tuple[str, tuple[Any, ...]], ...]

    def apply(self, ws: Path) -> None:
        con = duckdb.connect(str(ws / LED / DATABASE))
        try:
            try:
                _transaction(con, self.statements)
            except duckdb.ConstraintException:
                _transaction(con, _unconstrained(self.table))
                _transaction(con, self.statements)
        finally:
            con.close()


@dataclass(frozen=True)
class Patch:
    rel: str
    offset: int
    xor: int

    def apply(self, ws: Path) -> None:
        path = ws / self.rel
        data = bytearray(path.read_bytes())
        data[self.offset] ^= self.xor
        path.write_bytes(bytes(data))


@dataclass(frozen=True)
class Write:
    rel: str
    data: bytes

    def apply(self, ws: Path) -> None:
        (ws / self.rel).write_bytes(self.data)


@dataclass(frozen=True)
class Header:
    """A safetensors file with a new JSON header, padded with spaces to the old length when it
    fits (the data stays where it was), else to a multiple of 8 (the data moves with it)."""

    rel: str
    header: bytes

    def apply(self, ws: Path) -> None:
        path = ws / self.rel
        data = path.read_bytes()
        (old,) = struct.unpack("<Q", data[:8])
        size = old if len(self.header) <= old else -(-len(self.header) // 8) * 8
        head = self.header + b" " * (size - len(self.header))
        path.write_bytes(struct.pack("<Q", size) + head + data[8 + old :])


@dataclass(frozen=True)
class Truncate:
    rel: str
    size: int

    def apply(self, ws: Path) -> None:
        os.truncate(ws / self.rel, self.size)


@dataclass(frozen=True)
class Link:
    """The entry moved outside the folder and a symbolic link to it left in its place."""

    rel: str

    def apply(self, ws: Path) -> None:
        target = ws / OUTSIDE / self.rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(ws / self.rel, target)
        (ws / self.rel).symlink_to(target)


@dataclass(frozen=True)
class Swap:
    a: str
    b: str

    def apply(self, ws: Path) -> None:
        tmp = ws / "swap.tmp"
        os.replace(ws / self.a, tmp)
        os.replace(ws / self.b, ws / self.a)
        os.replace(tmp, ws / self.b)


@dataclass(frozen=True)
class Replace:
    """The whole folder replaced by another history of it (an older copy, a fork, …)."""

    source: str

    def apply(self, ws: Path) -> None:
        shutil.rmtree(ws / LED)
        shutil.copytree(self.source, ws / LED, symlinks=True)


Op = Sql | Patch | Write | Header | Truncate | Link | Swap | Replace


@dataclass(frozen=True)
class Case:
    klass: str
    name: str
    ops: tuple[Op, ...]

    @property
    def touches_held(self) -> bool:
        return any(isinstance(op, Write) and op.rel == HELD for op in self.ops)


@dataclass(frozen=True)
class Verdict:
    name: str
    detected: bool
    by: str  # "audit", "check", "refused", "crash" or "" (nothing noticed)
    detail: str


def _transaction(con: Any, statements: Sequence[tuple[str, tuple[Any, ...]]]) -> None:
    con.execute("BEGIN TRANSACTION")
    try:
        for sql, params in statements:
            con.execute(sql, list(params))
        con.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(duckdb.Error):
            con.execute("ROLLBACK")
        raise


def _unconstrained(table: str) -> tuple[tuple[str, tuple[Any, ...]], ...]:
    """The table rebuilt by CREATE TABLE AS, which keeps columns, order and rows, no keys."""
    t, tmp = _q(table), _q(f"{table}__unconstrained")
    return (
        (f"CREATE TABLE {tmp} AS SELECT * FROM {t}", ()),
        (f"DROP TABLE {t}", ()),
        (f"ALTER TABLE {tmp} RENAME TO {t}", ()),
    )


def _q(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


# --- judging one case (runs in a worker) ---------------------------------------------------------


@dataclass(frozen=True)
class Sources:
    ledger: Path
    held: Path
    public: bytes
    scratch: Path
    checkpoint: bytes  # the latest head as an auditor kept it (`ledger checkpoint`)


def judge(src: Sources, case: Case) -> Verdict:
    with tempfile.TemporaryDirectory(dir=src.scratch, prefix="case-") as tmp:
        ws = Path(tmp)
        shutil.copytree(src.ledger, ws / LED, symlinks=True)
        shutil.copy2(src.held, ws / HELD)
        for op in case.ops:
            op.apply(ws)
        return _verdict(case.name, ws, src.public, src.checkpoint)


def _verdict(name: str, ws: Path, public: bytes, checkpoint: bytes) -> Verdict:
    led = ws / LED
    try:
        kept = [("kept checkpoint", checkpoint)]
        failed = [r.line() for r in run_audit(led, public, kept) if r.status == "FAIL"]
        if failed:
            return Verdict(name, True, "audit", failed[0])
        certificate = (ws / HELD).read_bytes()
        failed = [r.line() for r in run_check(led, certificate, public) if r.status == "FAIL"]
        if failed:
            return Verdict(name, True, "check", failed[0])
    except UnreadableInput as exc:
        return Verdict(name, True, "refused", f"error: {exc}")
    except Exception as exc:
        return Verdict(name, False, "crash", f"{type(exc).__name__}: {exc}".splitlines()[0])
    return Verdict(name, False, "", "")


# --- the ledger under test -----------------------------------------------------------------------


@dataclass(frozen=True)
class World:
    sources: Sources
    signer: Ed25519PrivateKey  # the ledger's first key, which signed the certificate
    other: Ed25519PrivateKey  # an independently generated key: a stranger re-signing
    stored_seq: int  # the certificate's seq in certificates/
    new: Ed25519PrivateKey  # the key the ledger rotated to after the unlearn


def _records(task: str, n: int) -> str:
    rng = random.Random(task)
    lines = []
    for _ in range(n):
        label = rng.randint(0, 1)
        words = [rng.choice(_WORDS[label]), rng.choice(_WORDS[rng.randint(0, 1)]), "movie"]
        lines.append(json.dumps({"text": " ".join(words), "label": label, "user": task}) + "\n")
    return "".join(lines)


def _ledger_cli(*args: str | Path) -> None:
    """`ledger` in this process (one torch import for every command), as the tests call it."""
    from ledger.cli import main

    try:
        with contextlib.redirect_stdout(sys.stderr):
            main([str(a) for a in args])
    except SystemExit as exc:
        if exc.code:
            raise RuntimeError(f"ledger {args[0]} exited with {exc.code}") from None


def _private(path: Path) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    assert isinstance(key, Ed25519PrivateKey)
    return key


def build(root: Path) -> World:
    """init; add a (ft), b, c; unlearn c; add d: three active tasks (two sift, so masks can be
    swapped), a certificate whose head_after is not the latest (a real consistency proof), and
    a key rotation between the unlearn and d's add."""
    base, led, held = root / "base", root / "ledger", root / "certificate.dsse.json"
    _ledger_cli("base", "tiny", base)
    _ledger_cli("keygen", root / "ledger.key")
    _ledger_cli("keygen", root / "other.key")
    _ledger_cli("keygen", root / "new.key")
    for task in "abcd":
        (root / f"{task}.jsonl").write_text(_records(task, 24))
    _ledger_cli("init", led, "--base", base, "--key", root / "ledger.key")

    def add(task: str, method: str) -> None:
        data = root / f"{task}.jsonl"
        _ledger_cli("add", led, "--task", task, "--data", data, "--method", method, "--steps", "3")

    add("a", "ft")
    add("b", "sift")
    add("c", "sift")
    _histories_before_unlearn(root, led)
    _ledger_cli("unlearn", led, "--task", "c", "--data", root / "c.jsonl", "--certificate", held)
    shutil.copytree(led, root / "histories" / "before-last-add")
    _histories_before_rotation(root, led)
    _ledger_cli("rotate-key", led, "--key", root / "ledger.key", "--new-key", root / "new.key")
    add("d", "sift")
    _histories_after(root, led)
    stored = [int(p.name.split(".")[0]) for p in (led / "certificates").iterdir()]
    scratch = root / "cases"
    scratch.mkdir()
    checkpoint = root / "kept.checkpoint"
    from ledger.cli import main

    with checkpoint.open("w") as out, contextlib.redirect_stdout(out):
        main(["checkpoint", str(led)])
    public = (root / "ledger.key.pub").read_bytes()
    sources = Sources(led, held, public, scratch, checkpoint.read_bytes())
    keys = [_private(root / f"{name}.key") for name in ("ledger", "other", "new")]
    return World(sources, keys[0], keys[1], stored[0], keys[2])


def _histories_before_rotation(root: Path, led: Path) -> None:
    """What a holder of the retired key alone can make: a rotation to a key of their own,
    and one to the real new key whose signature they cannot make (a stranger's instead)."""
    histories = root / "histories"
    own = Path(shutil.copytree(led, histories / "rotated-by-old-key-to-its-own"))
    _ledger_cli("rotate-key", own, "--key", root / "ledger.key", "--new-key", root / "other.key")
    _ledger_cli("add", own, "--task", "d", "--data", root / "d.jsonl", "--steps", "3")
    shutil.copytree(led, histories / "before-rotation")


def _histories_before_unlearn(root: Path, led: Path) -> None:
    """An older copy (before c was unlearned), and a fork from it: x instead of the unlearn."""
    histories = root / "histories"
    shutil.copytree(led, histories / "before-unlearn")
    shutil.copytree(led, histories / "fork-at-5")
    fork = histories / "fork-at-5"
    for task in ("x", "d"):
        data = root / f"{task}.jsonl"
        data.write_text(_records(task, 24))
        _ledger_cli("add", fork, "--task", task, "--data", data, "--steps", "3")


def _histories_after(root: Path, led: Path) -> None:
    """The deleted task brought back: into the state file alone, and announced as a new id."""
    from ledger import open_ledger

    histories = root / "histories"
    merged = Path(shutil.copytree(led, histories / "vector-merged-back"))
    with open_ledger(histories / "before-unlearn") as before:  # its int64 q, not as stored
        deleted = before.read_vector("c")
    state = bytearray((merged / "state.safetensors").read_bytes())
    (length,) = struct.unpack("<Q", state[:8])
    for name, entry in json.loads(state[8 : 8 + length]).items():  # the header kept as it is
        start, end = (8 + length + offset for offset in entry["data_offsets"])
        total = np.frombuffer(state[start:end], "<i8") + deleted[name].reshape(-1)
        state[start:end] = total.astype("<i8").tobytes()
    (merged / "state.safetensors").write_bytes(bytes(state))
    readded = Path(shutil.copytree(led, histories / "data-re-added"))
    data = root / "c.jsonl"
    _ledger_cli("add", readded, "--task", "c2", "--data", data, "--steps", "3", "--readd-deleted")


def history_cases(plan: Plan, root: Path) -> None:
    """Rollback, fork and resurrection: whole other histories of the folder."""
    histories = root / "histories"
    for klass, name in (
        ("rollback", "before-unlearn"),
        ("rollback", "before-last-add"),
        ("fork", "fork-at-5"),
        ("resurrection", "vector-merged-back"),
        ("resurrection", "data-re-added"),
        ("key-rotation", "rotated-by-old-key-to-its-own"),
        ("key-rotation", "before-rotation"),
    ):
        plan.cases.append(Case(klass, f"{klass}:{name}", (Replace(str(histories / name)),)))


# --- the ledger's structure, read once -----------------------------------------------------------


@dataclass
class Table:
    name: str
    columns: list[tuple[str, str]]  # (name, DuckDB type), in column order
    key: str | None  # the PRIMARY KEY column, if any
    rows: list[tuple[Any, ...]]

    def where(self, i: int) -> tuple[str, tuple[Any, ...]]:
        """Row i picked by its key, or by rowid order in a table without one (config)."""
        if self.key is not None:
            return f"{_q(self.key)} = ?", (self.rows[i][self.column(self.key)],)
        return f"rowid = (SELECT rowid FROM {_q(self.name)} ORDER BY rowid LIMIT 1 OFFSET {i})", ()

    def label(self, i: int) -> str:
        if self.key is None:
            return f"[row={i}]"
        return f"[{self.key}={self.rows[i][self.column(self.key)]}]"

    def column(self, name: str) -> int:
        return [c for c, _ in self.columns].index(name)


def read_tables(db: Path) -> list[Table]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        names = [
            t
            for (t,) in con.execute(
                "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() "
                "AND schema_name = 'main' ORDER BY table_name"
            ).fetchall()
        ]
        tables = []
        for name in names:
            columns = con.execute(
                "SELECT column_name, data_type FROM duckdb_columns() WHERE database_name = "
                "current_database() AND schema_name = 'main' AND table_name = ? "
                "ORDER BY column_index",
                [name],
            ).fetchall()
            keys = con.execute(
                "SELECT constraint_column_names FROM duckdb_constraints() WHERE database_name = "
                "current_database() AND table_name = ? AND constraint_type = 'PRIMARY KEY'",
                [name],
            ).fetchall()
            key = keys[0][0][0] if keys else None
            order = _q(key) if key else "rowid"
            rows = con.execute(f"SELECT * FROM {_q(name)} ORDER BY {order}").fetchall()
            tables.append(Table(name, [(c, t) for c, t in columns], key, rows))
        return tables
    finally:
        con.close()


def walk(folder: Path) -> tuple[list[str], list[str]]:
    """Every file and every subfolder under `folder`, relative, "/"-separated, sorted."""
    files, dirs = [], []
    for top, subdirs, names in os.walk(folder):
        subdirs.sort()
        rel = Path(top).relative_to(folder)
        dirs += [(rel / d).as_posix() for d in subdirs]
        files += [(rel / n).as_posix() for n in sorted(names)]
    return files, dirs


# --- value mutations -----------------------------------------------------------------------------

_HEX = "0123456789abcdef"


_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")


def bump(text: str) -> str:
    """The last character changed to its neighbour in the same alphabet (a hex digit stays a
    hex digit, a letter a letter; a §4 time becomes one second later, still a valid time), so
    the change is plausible rather than a syntax error any parser would refuse."""
    if not text:
        return "x"
    if _TIME.fullmatch(text):
        later = datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ") + datetime.timedelta(0, 1)
        return later.strftime("%Y-%m-%dT%H:%M:%SZ")
    last = text[-1]
    alphabets = [_HEX] if all(c in _HEX for c in text.rsplit(":", 1)[-1]) else []
    alphabets += [string.digits, string.ascii_lowercase, string.ascii_uppercase]
    for alphabet in alphabets:
        if last in alphabet:
            return text[:-1] + alphabet[(alphabet.index(last) + 1) % len(alphabet)]
    return text[:-1] + chr(ord(last) ^ 1)


def changed(value: Any) -> Any:
    """A leaf of a JSON tree changed: int +1, bool negated, string's last character, null 0."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value + 1
    if isinstance(value, str):
        return bump(value)
    if value is None:
        return 0
    if isinstance(value, list):
        return [0]  # an empty list: a leaf
    return {"x": 0}  # an empty object: a leaf


def leaves(tree: Any, path: JsonPath = ()) -> Iterator[tuple[JsonPath, Any]]:
    """Every leaf (scalars and empty containers), depth first, in the tree's own order."""
    if isinstance(tree, dict) and tree:
        for k, v in tree.items():
            yield from leaves(v, (*path, k))
    elif isinstance(tree, list) and tree:
        for i, v in enumerate(tree):
            yield from leaves(v, (*path, i))
    else:
        yield path, tree


def replaced(tree: Any, path: JsonPath, value: Any) -> Any:
    out = copy.deepcopy(tree)
    if not path:
        return value
    node = out
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    return out


def dotted(path: JsonPath) -> str:
    out = ""
    for step in path:
        out += f"[{step}]" if isinstance(step, int) else (f".{step}" if out else str(step))
    return out or "(root)"


def as_json_tree(text: str) -> Any:
    """The JSON object or array a string holds, or None: such strings get field-level cases."""
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict | list) and value else None


def serialiser(original: str) -> Callable[[Any], str]:
    """The serialisation that reproduces `original` exactly (JCS for payloads and heads, the
    ledger's own style for envelopes), so a re-serialised change differs only by the change."""
    value = json.loads(original)
    candidates: list[Callable[[Any], str]] = [
        lambda v: str(rfc8785.dumps(v).decode("utf-8")),
        lambda v: json.dumps(v, indent=2),
        lambda v: json.dumps(v, indent=2, sort_keys=True),
        lambda v: json.dumps(v),
        lambda v: json.dumps(v, separators=(",", ":")),
    ]
    for make, end in itertools.product(candidates, ("", "\n")):
        if make(value) + end == original:
            return _ending(make, end)
    raise RuntimeError(f"no known JSON style reproduces {original[:60]!r}…")


def _ending(make: Callable[[Any], str], end: str) -> Callable[[Any], str]:
    return lambda v: make(v) + end


def _quick_leaves(items: list[tuple[JsonPath, Any]]) -> list[tuple[JsonPath, Any]]:
    return items if len(items) <= 2 else [items[0], items[-1]]


# --- case classes --------------------------------------------------------------------------------


@dataclass
class Plan:
    cases: list[Case] = field(default_factory=list)
    excluded: list[dict[str, str]] = field(default_factory=list)

    def add(self, klass: str, name: str, *ops: Op) -> None:
        self.cases.append(Case(klass, f"{klass}:{name}", ops))

    def exclude(self, case: str, reason: str) -> None:
        self.excluded.append({"case": case, "reason": reason})


def _rows(table: Table, quick: bool) -> list[int]:
    """Quick: the last row (the newest write) of each table."""
    return list(range(len(table.rows)))[-1:] if quick else list(range(len(table.rows)))


def column_cases(plan: Plan, tables: list[Table], quick: bool) -> None:
    for t in tables:
        for c, (col, _) in enumerate(t.columns):
            chosen = set(_rows(t, quick))
            if quick:  # and the column's first NULL, so NULL → value is exercised too
                chosen |= set([i for i, r in enumerate(t.rows) if r[c] is None][:1])
            for i in sorted(chosen):
                value = t.rows[i][c]
                where, params = t.where(i)
                base = f"{t.name}.{col}{t.label(i)}"

                sql = f"UPDATE {_q(t.name)} SET {_q(col)} = ? WHERE {where}"

                def update(new: Any, sql: str = sql, t: Table = t, key: Any = params) -> Sql:
                    return Sql(t.name, ((sql, (new, *key)),))

                if value is None:
                    plan.add("column", f"{base}=value", update(_plausible(t, c)))
                    continue
                new = (not value) if isinstance(value, bool) else changed(value)
                plan.add("column", base, update(new))
                plan.add("column", f"{base}=NULL", update(None))
                tree = as_json_tree(value) if isinstance(value, str) else None
                if tree is not None:
                    style = serialiser(value)
                    found = list(leaves(tree))
                    for path, leaf in _quick_leaves(found) if quick else found:
                        text = style(replaced(tree, path, changed(leaf)))
                        plan.add("column", f"{base}/json:{dotted(path)}", update(text))


def _plausible(t: Table, c: int) -> Any:
    """For a NULL cell: the same column's value in another row, else a value of its type."""
    for row in t.rows:
        if row[c] is not None:
            return row[c]
    kind = t.columns[c][1]
    return True if kind == "BOOLEAN" else 0 if "INT" in kind else "x"


def _safetensors(path: Path) -> tuple[int, dict[str, Any]]:
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header: dict[str, Any] = json.loads(data[8 : 8 + n])
    return n, header


_SAME_WIDTH = {"I64": "F64", "F64": "I64", "F32": "I32", "I32": "F32", "U8": "I8", "I8": "U8"}
_SAME_WIDTH |= {"F16": "BF16", "BF16": "F16", "I16": "U16", "U16": "I16"}
HEADER_FIELDS = ("dtype", "shape", "data_offsets")


def _header_change(header: dict[str, Any], name: str, which: str) -> dict[str, Any]:
    """One field of one tensor entry changed so that the file still looks sane: a dtype of the
    same width, a shape of the same element count, the offsets of an equally long tensor."""
    out = copy.deepcopy(header)
    entry = out[name]
    if which == "dtype":
        entry["dtype"] = _SAME_WIDTH.get(entry["dtype"], "U8")
    elif which == "shape":
        shape = list(entry["shape"])
        if len(shape) >= 2 and shape != shape[::-1]:
            entry["shape"] = shape[::-1]
        elif len(shape) >= 2:
            entry["shape"] = [math.prod(shape)]
        else:
            entry["shape"] = [1, *shape]
    else:
        start, end = entry["data_offsets"]
        twins = [
            k
            for k, v in out.items()
            if k not in (name, "__metadata__")
            and v["data_offsets"][1] - v["data_offsets"][0] == end - start
        ]
        if twins:
            entry["data_offsets"], out[twins[0]]["data_offsets"] = (
                out[twins[0]]["data_offsets"],
                entry["data_offsets"],
            )
        else:
            entry["data_offsets"] = [start, end - 1]
    return out


def _compact(header: dict[str, Any]) -> bytes:
    return json.dumps(header, separators=(",", ":")).encode("utf-8")


def file_cases(plan: Plan, led: Path, quick: bool) -> None:
    files, _ = walk(led)
    for rel in files:
        where = f"{LED}/{rel}"
        size = (led / rel).stat().st_size
        if rel in IGNORED:
            plan.exclude(f"file:{rel}", IGNORED[rel])
            continue
        if rel.startswith(DATABASE):
            plan.exclude(
                f"file:{rel}",
                "covered by the column, row and view classes; a byte flip may land in a free "
                "page, which FORMAT.md §11 says no verifier can see",
            )
            continue
        plan.add("file", f"{rel}/first-byte", Patch(where, 0, 1))
        if not rel.endswith(".safetensors"):
            if size > 1:
                plan.add("file", f"{rel}/last-byte", Patch(where, size - 1, 1))
            continue
        n, header = _safetensors(led / rel)
        plan.add("file", f"{rel}/header-last-byte", Patch(where, 8 + n - 1, 1))
        meta = header.get("__metadata__")
        if isinstance(meta, dict) and meta:
            key = next(iter(meta))
            new = copy.deepcopy(header)
            new["__metadata__"][key] = bump(str(meta[key]))
            plan.add("file", f"{rel}/header:__metadata__.{key}", Header(where, _compact(new)))
        tensors = sorted(
            (k for k in header if k != "__metadata__"), key=lambda k: header[k]["data_offsets"][0]
        )
        for index, name in enumerate(tensors):
            if quick and 0 < index < len(tensors) - 1:
                continue
            start, end = (8 + n + o for o in header[name]["data_offsets"])
            if end > start:
                plan.add("file", f"{rel}[{name}]/data-first", Patch(where, start, 1))
            if end - 1 > start:
                plan.add("file", f"{rel}[{name}]/data-last", Patch(where, end - 1, 1))
            which = HEADER_FIELDS[index % len(HEADER_FIELDS)]
            new_header = _compact(_header_change(header, name, which))
            plan.add("file", f"{rel}[{name}]/header:{which}", Header(where, new_header))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _sign_envelope(envelope: dict[str, Any], statement: bytes, key: Ed25519PrivateKey) -> None:
    signature = key.sign(pae(envelope["payloadType"], statement))
    envelope["payload"] = _b64(statement)
    envelope["signatures"][0]["sig"] = _b64(signature)


def _stored(world: World, data: bytes) -> tuple[Op, ...]:
    """A certificate replaced in the folder consistently: its file and its row."""
    seq = world.stored_seq
    sql = "UPDATE certificates SET envelope = ? WHERE seq = ?"
    return (
        Write(f"{LED}/certificates/{seq}.dsse.json", data),
        Sql("certificates", ((sql, (data.decode("utf-8"), seq)),)),
    )


def certificate_cases(plan: Plan, world: World, quick: bool) -> None:
    original = world.sources.held.read_text("utf-8")
    style = serialiser(original)
    envelope = json.loads(original)
    statement_bytes = base64.b64decode(envelope["payload"])
    statement = json.loads(statement_bytes)
    jcs = serialiser(statement_bytes.decode("utf-8"))
    key = world.signer

    noop = copy.deepcopy(envelope)
    _sign_envelope(noop, jcs(statement).encode("utf-8"), key)
    if style(noop) != original:
        raise RuntimeError("re-signing an unchanged certificate does not reproduce it")

    def emit(name: str, how: str, env: dict[str, Any]) -> None:
        """The forged envelope as its owner holds it, and put back into the folder."""
        data = style(env).encode("utf-8")
        plan.add("certificate-field", f"{name}[{how},held]", Write(HELD, data))
        plan.add("certificate-field", f"{name}[{how},stored]", *_stored(world, data))

    for path, leaf in leaves(envelope):
        name = f"envelope.{dotted(path)}"
        unsigned = replaced(envelope, path, changed(leaf))
        emit(name, "unsigned", unsigned)
        if path[-1] == "sig":
            plan.exclude(
                f"certificate-field:{name}[signed,*]",
                "re-signing restores the original signature (Ed25519 is deterministic)",
            )
            continue
        signed = copy.deepcopy(unsigned)
        try:
            payload = base64.b64decode(signed["payload"], validate=True)
        except ValueError:
            plan.exclude(
                f"certificate-field:{name}[signed,*]",
                "the changed payload is not base64: there are no bytes to sign",
            )
            continue
        signed["signatures"][0]["sig"] = _b64(key.sign(pae(signed["payloadType"], payload)))
        emit(name, "signed", signed)

    found = list(leaves(statement))
    if quick:  # the predicate's own fields and the envelope's; not the records inside them
        found = [(p, v) for p, v in found if len(p) <= 2]
    for path, leaf in found:
        variants: list[tuple[str, Any, tuple[JsonPath, str] | None]] = [
            (dotted(path), replaced(statement, path, changed(leaf)), None)
        ]
        inner = as_json_tree(leaf) if isinstance(leaf, str) and not quick else None
        if inner is not None:  # a tree head body: each of its fields, the head re-signed too
            inner_style = serialiser(leaf)
            for ipath, ileaf in leaves(inner):
                body = inner_style(replaced(inner, ipath, changed(ileaf)))
                tree = replaced(statement, path, body)
                variants.append((f"{dotted(path)}/json:{dotted(ipath)}", tree, (path, body)))
        for name, tree, head in variants:
            unsigned = copy.deepcopy(envelope)
            unsigned["payload"] = _b64(jcs(tree).encode("utf-8"))
            emit(f"statement.{name}", "unsigned", unsigned)
            if head is not None and head[0][-1] == "body":
                sig_path = (*head[0][:-1], "signature")
                head_sig = _b64(key.sign(head[1].encode("utf-8")))
                tree = replaced(tree, sig_path, head_sig)
            signed = copy.deepcopy(envelope)
            _sign_envelope(signed, jcs(tree).encode("utf-8"), key)
            emit(f"statement.{name}", "signed", signed)


def signature_cases(plan: Plan, world: World, quick: bool) -> None:
    original = world.sources.held.read_text("utf-8")
    style, envelope = serialiser(original), json.loads(original)
    signature = base64.b64decode(envelope["signatures"][0]["sig"])
    for i in range(len(signature)):
        if quick and i % 8 and i != len(signature) - 1:
            continue
        flipped = bytearray(signature)
        flipped[i] ^= 1 << (i % 8)
        env = copy.deepcopy(envelope)
        env["signatures"][0]["sig"] = _b64(bytes(flipped))
        data = style(env).encode("utf-8")
        plan.add("signature-byte", f"byte{i}.bit{i % 8}[held]", Write(HELD, data))
        plan.add("signature-byte", f"byte{i}.bit{i % 8}[stored]", *_stored(world, data))


def swap_cases(plan: Plan, led: Path, tables: list[Table]) -> None:
    tasks = next(t for t in tables if t.name == "tasks")
    tid, status = tasks.column("task_id"), tasks.column("status")
    active = sorted(r[tid] for r in tasks.rows if r[status] == "active")
    for a, b in itertools.combinations(active, 2):
        pairs = {
            sub: Swap(f"{LED}/{sub}/{a}.safetensors", f"{LED}/{sub}/{b}.safetensors")
            for sub in ("vectors", "masks")
            if (led / sub / f"{a}.safetensors").exists()
            and (led / sub / f"{b}.safetensors").exists()
        }
        for sub, op in pairs.items():
            plan.add("vector-swap", f"{a}<->{b}/{sub}", op)
        if len(pairs) == 2:
            plan.add("vector-swap", f"{a}<->{b}/vectors+masks", *pairs.values())


def resigned_cases(plan: Plan, world: World, tables: list[Table], quick: bool) -> None:
    """A stranger's rewrite: one event changed (a field readers must ignore, so the key is
    the only evidence), the Merkle roots recomputed and heads signed with another key; the
    folder still names the ledger's own key."""
    events = next(t for t in tables if t.name == "events")
    heads = next(t for t in tables if t.name == "tree_heads")
    payloads = [r[events.column("payload")] for r in events.rows]
    bodies = {r[heads.column("size")]: r[heads.column("body")] for r in heads.rows}
    jcs = serialiser(payloads[0])
    latest = max(bodies)

    def rewrite(seq: int | None, which: str) -> tuple[Op, ...]:
        texts = list(payloads)
        statements: list[tuple[str, tuple[Any, ...]]] = []
        if seq is not None:
            texts[seq] = jcs({**json.loads(texts[seq]), "tampered": "re-signed"})
            statements.append(("UPDATE events SET payload = ? WHERE seq = ?", (texts[seq], seq)))
        hashes = [leaf_hash(t.encode("utf-8")) for t in texts]
        log_id = hashes[0].hex()
        if seq == 0:
            statements.append(("UPDATE config SET log_id = ?", (log_id,)))
        for size in [latest] if which == "latest-head" else sorted(bodies):
            body = json.loads(bodies[size])
            body["root"] = root_from_leaf_hashes(hashes[:size]).hex()
            if "log_id" in body:
                body["log_id"] = log_id
            text = serialiser(bodies[size])(body)
            sig = _b64(world.other.sign(text.encode("utf-8")))
            sql = "UPDATE tree_heads SET body = ?, signature = ? WHERE size = ?"
            statements.append((sql, (text, sig, size)))
        return (Sql("tree_heads", tuple(statements)),)

    for seq in [None, *(range(len(payloads))[-1:] if quick else range(len(payloads)))]:
        for which in ("all-heads", "latest-head"):
            what = "no-change" if seq is None else f"event[seq={seq}]"
            plan.add("resigned-other-key", f"{what}/{which}", *rewrite(seq, which))


def rotation_cases(plan: Plan, world: World, tables: list[Table]) -> None:
    """Key holders forging around the rotation: the retired key signing later heads, the
    rotation's new-key signature broken (every head then re-signed by its rightful key, so
    only that signature is wrong), the rotation removed and the whole log re-signed by the
    old key, and the certificate re-signed by the key that was not yet in force."""
    events = next(t for t in tables if t.name == "events")
    heads = next(t for t in tables if t.name == "tree_heads")
    payloads = [r[events.column("payload")] for r in events.rows]
    bodies = {r[heads.column("size")]: r[heads.column("body")] for r in heads.rows}
    (rotation,) = [i for i, p in enumerate(payloads) if json.loads(p)["kind"] == "key_rotation"]
    old, new = world.signer, world.new

    def resigned(texts: list[str], key_for: Callable[[int], Ed25519PrivateKey]) -> Sql:
        hashes = [leaf_hash(t.encode("utf-8")) for t in texts]
        statements: list[tuple[str, tuple[Any, ...]]] = [
            ("DELETE FROM events", ()),
            ("DELETE FROM tree_heads", ()),
        ]
        for seq, text in enumerate(texts):
            ev = json.loads(text)
            values = (seq, ev["kind"], ev.get("task_id"), text)
            statements.append(("INSERT INTO events VALUES (?, ?, ?, ?)", values))
            body = json.loads(bodies[min(seq + 1, max(bodies))])
            body.update(size=seq + 1, root=root_from_leaf_hashes(hashes[: seq + 1]).hex())
            head = serialiser(bodies[1])(body)
            sig = _b64(key_for(seq + 1).sign(head.encode("utf-8")))
            statements.append(("INSERT INTO tree_heads VALUES (?, ?, ?)", (seq + 1, head, sig)))
        return Sql("tree_heads", tuple(statements))

    def rightful(size: int) -> Ed25519PrivateKey:
        return new if size >= rotation + 2 else old

    plan.add("key-rotation", "later-heads-signed-by-old-key", resigned(payloads, lambda _: old))
    plan.add(
        "key-rotation",
        "latest-head-signed-by-old-key",
        resigned(payloads, lambda size: old if size == len(payloads) else rightful(size)),
    )
    broken = list(payloads)
    event = json.loads(broken[rotation])
    event["new_key_signature"] = _b64(world.other.sign(b"not the rotation message"))
    broken[rotation] = serialiser(payloads[rotation])(event)
    plan.add("key-rotation", "new-key-signature-forged", resigned(broken, rightful))
    later = [json.loads(p) for p in payloads[rotation + 1 :]]
    without = payloads[:rotation] + [
        serialiser(payloads[rotation])({**ev, "seq": ev["seq"] - 1}) for ev in later
    ]
    plan.add(
        "key-rotation", "rotation-removed-resigned-by-old-key", resigned(without, lambda _: old)
    )
    envelope = json.loads(world.sources.held.read_text("utf-8"))
    statement = base64.b64decode(envelope["payload"])
    _sign_envelope(envelope, statement, new)
    envelope["signatures"][0]["keyid"] = _key_id(new)
    data = serialiser(world.sources.held.read_text("utf-8"))(envelope).encode("utf-8")
    plan.add("key-rotation", "certificate-re-signed-by-new-key[held]", Write(HELD, data))


def _key_id(key: Ed25519PrivateKey) -> str:
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def row_cases(plan: Plan, tables: list[Table], quick: bool) -> None:
    for t in tables:
        for i in _rows(t, quick):
            where, params = t.where(i)
            name = f"{t.name}{t.label(i)}"
            delete = f"DELETE FROM {_q(t.name)} WHERE {where}"
            plan.add("row-deleted", name, Sql(t.name, ((delete, params),)))
            insert = f"INSERT INTO {_q(t.name)} SELECT * FROM {_q(t.name)} WHERE {where}"
            plan.add("row-duplicated", name, Sql(t.name, ((insert, params),)))


def view_cases(plan: Plan, tables: list[Table]) -> None:
    outside = "/etc/hostname" if Path("/etc/hostname").is_file() else "/etc/passwd"
    for t in tables:
        name, cols = _q(t.name), ", ".join(_q(c) for c, _ in t.columns)
        moved = _q(f"{t.name}__table")
        renamed = (f"ALTER TABLE {name} RENAME TO {moved}", ())
        variants: dict[str, tuple[tuple[str, tuple[Any, ...]], ...]] = {
            "renamed": (renamed, (f"CREATE VIEW {name} AS SELECT {cols} FROM {moved}", ())),
            "other-schema": (
                ("CREATE SCHEMA hidden", ()),
                (f"CREATE TABLE hidden.{name} AS SELECT * FROM {name}", ()),
                (f"DROP TABLE {name}", ()),
                (f"CREATE VIEW {name} AS SELECT {cols} FROM hidden.{name}", ()),
            ),
            "read_text": (
                renamed,
                (
                    f"CREATE VIEW {name} AS SELECT {cols} FROM {moved} WHERE (SELECT count(*) "
                    f"FROM read_text('{outside}')) > 0",
                    (),
                ),
            ),
        }
        for variant, statements in variants.items():
            plan.add("view-for-table", f"{t.name}[{variant}]", Sql(t.name, statements))


def _few(files: list[str], quick: bool) -> list[str]:
    """Quick: the top-level files and the first file of each subfolder."""
    if not quick:
        return files
    seen: set[str] = set()
    out = []
    for rel in files:
        folder = rel.rsplit("/", 1)[0] if "/" in rel else None
        if folder is None or folder not in seen:
            out.append(rel)
        if folder is not None:
            seen.add(folder)
    return out


def link_cases(plan: Plan, led: Path, quick: bool) -> None:
    files, dirs = walk(led)
    for rel in [*_few(files, quick), *dirs]:
        suffix = "/" if rel in dirs else ""
        plan.add("symlink-for-file", f"{rel}{suffix}", Link(f"{LED}/{rel}"))


def truncate_cases(plan: Plan, led: Path, quick: bool) -> None:
    files, _ = walk(led)
    for rel in _few(files, quick):
        if rel in IGNORED:
            plan.exclude(f"truncated-file:{rel}", IGNORED[rel])
            continue
        size = (led / rel).stat().st_size
        for label, length in (("half", size // 2), ("zero", 0)):
            if length < size:
                plan.add("truncated-file", f"{rel}[{label}]", Truncate(f"{LED}/{rel}", length))


def plan_cases(world: World, quick: bool) -> Plan:
    plan, led = Plan(), world.sources.ledger
    tables = read_tables(led / DATABASE)
    column_cases(plan, tables, quick)
    file_cases(plan, led, quick)
    certificate_cases(plan, world, quick)
    signature_cases(plan, world, quick)
    swap_cases(plan, led, tables)
    resigned_cases(plan, world, tables, quick)
    rotation_cases(plan, world, tables)
    row_cases(plan, tables, quick)
    view_cases(plan, tables)
    link_cases(plan, led, quick)
    truncate_cases(plan, led, quick)
    history_cases(plan, led.parent)
    names = [c.name for c in plan.cases]
    if len(set(names)) != len(names):
        raise RuntimeError("two cases share a name")
    return plan


# --- running and reporting -----------------------------------------------------------------------


def _log(message: str) -> None:
    print(f"[{NAME}] {message}", file=sys.stderr, flush=True)


def judge_all(world: World, cases: list[Case], jobs: int) -> list[Verdict]:
    done, total, last = 0, len(cases), time.monotonic()

    def tick() -> None:
        nonlocal done, last
        done += 1
        if time.monotonic() - last >= PROGRESS_EVERY or done == total:
            _log(f"{done}/{total} cases done")
            last = time.monotonic()

    if jobs <= 1:
        out = []
        for case in cases:
            out.append(judge(world.sources, case))
            tick()
        return out
    # spawn, not fork: the parent has torch (and its threads) loaded from building the ledger.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        futures: list[Future[Verdict]] = [pool.submit(judge, world.sources, c) for c in cases]
        results = []
        for future in futures:
            results.append(future.result())
            tick()
        return results


def summarise(cases: list[Case], verdicts: list[Verdict]) -> list[dict[str, Any]]:
    out = []
    for klass in CLASSES:
        pairs = [(c, v) for c, v in zip(cases, verdicts, strict=True) if c.klass == klass]
        entry: dict[str, Any] = {
            "class": klass,
            "cases": len(pairs),
            "detected": sum(v.detected for _, v in pairs),
            "undetected": [v.name for _, v in pairs if not v.detected],
        }
        crashes = [{"case": v.name, "error": v.detail} for _, v in pairs if v.by == "crash"]
        if crashes:
            entry["crashed"] = crashes
        check_only = [v.name for c, v in pairs if v.by == "check" and not c.touches_held]
        if check_only:
            entry["caught_only_by_check"] = check_only
        out.append(entry)
    return out


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} cores, {cpu}, {platform.system()} {platform.machine()}"


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.fchmod(fd, 0o644)  # mkstemp's 0600 would make committed reports private
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def markdown(report: dict[str, Any]) -> str:
    h = report["header"]
    lines = [
        "# Tamper audit: what the independent verifier notices",
        "",
        f"- date: {h['date']}",
        f"- machine: {h['machine']}",
        f"- command: `{h['command']}`",
        f"- wall time: {h['wall_seconds']} s",
        f"- untampered ledger: {report['clean']['status']} ({report['clean']['checks']} checks, "
        "no FAIL)",
        "",
        "Each case copies a freshly built ledger (tiny model: a (ft), b, c, d added, c unlearned "
        "with a certificate, the key then rotated so d's add is signed by the new one), applies "
        "one mutation and runs `run_audit`, then `run_check` with "
        "the held certificate; detected = a FAIL or an `error:` refusal (`UnreadableInput`). "
        "A verifier crash counts as undetected.",
        "",
        "| class | cases | detected |",
        "|---|---|---|",
    ]
    lines += [f"| {c['class']} | {c['cases']} | {c['detected']} |" for c in report["classes"]]
    total = sum(c["cases"] for c in report["classes"])
    found = sum(c["detected"] for c in report["classes"])
    lines += [f"| **all** | **{total}** | **{found}** |", "", "## Undetected", ""]
    missed = [c for c in report["classes"] if c["undetected"]]
    if not missed:
        lines.append("None.")
    for c in missed:
        lines += [f"### {c['class']} ({len(c['undetected'])})", ""]
        lines += [f"- `{n}`" for n in c["undetected"]]
        lines += [f"- crashed: `{x['case']}`: {x['error']}" for x in c.get("crashed", [])]
        lines.append("")
    only = [(c["class"], n) for c in report["classes"] for n in c.get("caught_only_by_check", [])]
    if only:
        lines += ["", "## Ledger tampering only `verifier check` caught (`audit` passed)", ""]
        lines += [f"- `{n}` ({k})" for k, n in only]
    lines += ["", "## Excluded by design", ""]
    lines += [f"- `{x['case']}`: {x['reason']}" for x in report["excluded"]]
    return "\n".join(lines).rstrip() + "\n"


def run(quick: bool, out: Path, jobs: int | None = None, command: str | None = None) -> Any:
    """Build, check the clean copy, judge every case, write tamper.json and tamper.md."""
    started = time.perf_counter()
    jobs = jobs or os.cpu_count() or 1
    root = Path(tempfile.mkdtemp(prefix="ulg-tamper-"))
    try:
        _log("building the ledger (tiny model)")
        world = build(root)
        clean = judge(world.sources, Case("clean", "clean", ()))
        if clean.detected or clean.by == "crash":
            raise SystemExit(f"error: the untampered ledger does not verify: {clean.detail}")
        checks = len(run_audit(world.sources.ledger, world.sources.public))
        plan = plan_cases(world, quick)
        _log(f"{len(plan.cases)} cases in {len(CLASSES)} classes, {jobs} worker(s)")
        verdicts = judge_all(world, plan.cases, jobs)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    report: dict[str, Any] = {
        "header": {
            "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": _machine(),
            "command": command or "python -m audits.tamper" + (" --quick" if quick else ""),
            "quick": quick,
            "wall_seconds": round(time.perf_counter() - started),
        },
        "clean": {"status": "passed", "checks": checks},
        "classes": summarise(plan.cases, verdicts),
        "excluded": plan.excluded,
    }
    _write_atomic(out / f"{NAME}.json", json.dumps(report, indent=1, sort_keys=True) + "\n")
    _write_atomic(out / f"{NAME}.md", markdown(report))
    found = sum(c["detected"] for c in report["classes"])
    _log(f"{found}/{len(plan.cases)} detected; report in {out}")
    return report


@click.command()
@click.option("--quick", is_flag=True, help="Every class on a structural subset: under a minute.")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Report folder.")
@click.option("--jobs", type=click.IntRange(1), default=None, help="Worker processes (all cores).")
def main(quick: bool, out: Path | None, jobs: int | None) -> None:
    out = out or (REPORTS / "quick" if quick else REPORTS)
    run(quick, out, jobs, " ".join(["python -m audits.tamper", *sys.argv[1:]]))


if __name__ == "__main__":
    main()
