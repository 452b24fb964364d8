"""A folder and certificate crafted by the operator: every byte is hostile (FORMAT.md §1–2, §5, §7).

Each test is named after its attack and fails if the check it relies on is taken out. The
bounded ones run `verifier audit` in a subprocess and compare its peak RSS (ru_maxrss of
os.wait4) with that of the same command on the genuine folder: a refusal must cost no more
than twice an honest audit, and come within 5 s, however large the folder claims to be.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pytest
import rfc8785
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.helpers import ledger_ok, sql
from verifier.checks import run_audit, run_check
from verifier.context import CheckResult
from verifier.dsse import pae
from verifier.ledger_reader import HOSTILE, UnreadableInput

VERIFIER = Path(sys.executable).with_name("verifier")
GIB = 1 << 30
MIB = 1 << 20


@pytest.fixture(scope="module")
def genuine(
    tmp_path_factory: pytest.TempPathFactory,
    tiny_base: Path,
    key: Path,
    task_data: dict[str, Path],
) -> dict[str, Path]:
    """a (sift) and b (sift) added, b unlearned (certificate 3); a's vector and mask remain."""

    ledger = ledger_ok

    root = tmp_path_factory.mktemp("hostile")
    led = root / "led"
    ledger("init", led, "--base", tiny_base, "--key", key)
    for task in "ab":
        ledger("add", led, "--task", task, "--data", task_data[task], "--steps", "2")
    ledger("unlearn", led, "--task", "b", "--data", task_data["b"], "--certificate", root / "c")
    (led / "LOCK").unlink(missing_ok=True)
    return {"led": led, "cert": root / "c", "pub": key.with_name(key.name + ".pub")}


@pytest.fixture
def led(genuine: dict[str, Path], tmp_path: Path) -> Path:
    return Path(shutil.copytree(genuine["led"], tmp_path / "led"))


@pytest.fixture
def signer(key: Path) -> Ed25519PrivateKey:
    private = serialization.load_pem_private_key(key.read_bytes(), None)
    assert isinstance(private, Ed25519PrivateKey)
    return private


def _failed(results: list[CheckResult]) -> dict[str, str]:
    return {r.name: r.detail for r in results if r.status == "FAIL"}


def _audit(genuine: dict[str, Path], led: Path) -> dict[str, str]:
    return _failed(run_audit(led, genuine["pub"].read_bytes()))


def _check(genuine: dict[str, Path], led: Path, cert: bytes) -> dict[str, str]:
    return _failed(run_check(led, cert, genuine["pub"].read_bytes()))


# --- a subprocess audit, its peak memory and time ----------------------------------------------


@dataclass(frozen=True)
class Audit:
    code: int
    out: str
    err: str
    rss_kib: int
    seconds: float


# A child's ru_maxrss includes the memory of the process it was forked from, so the audit is
# started from a small launcher, not from pytest (which holds torch): the launcher's Popen +
# os.wait4 then give the verifier's own peak.
_LAUNCHER = """
import json, os, subprocess, sys, threading, time
out, err, *command = sys.argv[1:]
start = time.monotonic()
with open(out, "wb") as o, open(err, "wb") as e:
    proc = subprocess.Popen(command, stdout=o, stderr=e)
    killer = threading.Timer(60, proc.kill)  # a blocked read fails the test, never hangs it
    killer.start()
    _, status, usage = os.wait4(proc.pid, 0)
    killer.cancel()
print(json.dumps([os.waitstatus_to_exitcode(status), usage.ru_maxrss, time.monotonic() - start]))
"""


def _audit_process(led: Path, pub: Path, tmp_path: Path) -> Audit:
    """`verifier audit` in a fresh process: its exit code, output, peak RSS (KiB) and time."""
    out, err = tmp_path / "audit.out", tmp_path / "audit.err"
    command: list[str | Path] = [VERIFIER, "audit", "--ledger", led, "--public-key", pub]
    launched = subprocess.run(
        [sys.executable, "-S", "-c", _LAUNCHER, out, err, *command],
        capture_output=True,
        text=True,
        check=True,
    )
    code, rss, seconds = json.loads(launched.stdout)
    return Audit(code, out.read_text(), err.read_text(), rss, seconds)


@pytest.fixture(scope="module")
def baseline(genuine: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Audit:
    run = _audit_process(genuine["led"], genuine["pub"], tmp_path_factory.mktemp("baseline"))
    assert run.code == 0, run.out + run.err
    return run


def _bounded(run: Audit, baseline: Audit, expect: str) -> None:
    """Refused (an error line or a FAIL) within 5 s and twice the genuine audit's peak RSS."""
    case = os.environ.get("PYTEST_CURRENT_TEST", "").split("::")[-1].removesuffix(" (call)")
    print(f"\n{case}: peak RSS {run.rss_kib} KiB (genuine {baseline.rss_kib}), {run.seconds:.2f} s")
    assert run.code == 1 and expect in run.err, run.err
    assert run.seconds < 5
    assert run.rss_kib <= 2 * baseline.rss_kib


# --- 1. the database ---------------------------------------------------------------------------


def test_genuine_folder_audits_clean(genuine: dict[str, Path], baseline: Audit) -> None:
    print(f"genuine audit: peak RSS {baseline.rss_kib} KiB, {baseline.seconds:.2f} s")
    assert _audit(genuine, genuine["led"]) == {}
    assert _check(genuine, genuine["led"], genuine["cert"].read_bytes()) == {}


def test_view_substituted_for_events_table_is_refused(
    genuine: dict[str, Path], led: Path, tmp_path: Path
) -> None:
    """A view named `events` over a renamed table: duckdb_columns() lists a view's columns
    too, so only a catalog that admits base tables alone keeps it from passing for §5's."""
    sql(
        led,
        "ALTER TABLE events RENAME TO events_kept",
        "CREATE VIEW events AS SELECT * FROM events_kept",
    )
    with pytest.raises(UnreadableInput, match="holds view 'events'"):
        _audit(genuine, led)
    sql(led, "DROP VIEW events", "ALTER TABLE events_kept RENAME TO events")
    sql(led, "CREATE VIEW events_v AS SELECT * FROM events")
    run = _audit_process(led, genuine["pub"], tmp_path)
    assert (run.code, run.out) == (1, "")
    assert run.err == (
        "error: ledger.duckdb holds view 'events_v', which FORMAT.md §5 does not allow\n"
    )


def test_view_reading_a_file_cannot_read_it(genuine: dict[str, Path], led: Path) -> None:
    """Even a reader that did query the view would get no file: external access is off."""
    secret = led.parent / "secret.txt"
    secret.write_text("outside the folder")
    sql(led, f"CREATE VIEW leak AS SELECT content FROM read_text('{secret}')")
    with pytest.raises(UnreadableInput, match="view 'leak'"):
        _audit(genuine, led)
    con = duckdb.connect(str(led / "ledger.duckdb"), read_only=True, config=HOSTILE)
    with pytest.raises(duckdb.PermissionException):
        con.execute("SELECT * FROM leak").fetchall()
    with pytest.raises(duckdb.Error):
        con.execute("SET enable_external_access = true")
    con.close()


CATALOG = {
    "macro": ("CREATE MACRO kept(x) AS x + 1", "macro 'kept'"),
    "table macro": ("CREATE MACRO kept_t() AS TABLE SELECT 1 AS v", "macro 'kept_t'"),
    "sequence": ("CREATE SEQUENCE kept", "sequence 'kept'"),
    "index": ("CREATE INDEX kept ON tasks (method)", "index 'kept'"),
    "type": ("CREATE TYPE kept AS ENUM ('q_b')", "type 'kept'"),
    "schema": ("CREATE SCHEMA kept", "schema 'kept'"),
    "table": ("CREATE TABLE kept (v BLOB)", "table 'main.kept'"),
    "table in another schema": (
        "CREATE SCHEMA s; CREATE TABLE s.events (v BLOB)",
        "schema 's'",
    ),
    "table comment": ("COMMENT ON TABLE events IS 'q_b'", "on table 'events'"),
    "column comment": ("COMMENT ON COLUMN tasks.method IS 'q_b'", "column 'tasks.method'"),
    "column default": (
        "ALTER TABLE tasks ALTER COLUMN method SET DEFAULT 'q_b'",
        "column 'tasks.method'",
    ),
    "check constraint": (
        "CREATE TABLE t2 (task_id VARCHAR, method VARCHAR CHECK (method <> 'q_b'), "
        "status VARCHAR, add_seq BIGINT, unlearn_seq BIGINT, data_hash VARCHAR, "
        "vector_digest VARCHAR, mask_digest VARCHAR); INSERT INTO t2 SELECT * FROM tasks; "
        "DROP TABLE tasks; ALTER TABLE t2 RENAME TO tasks",
        "CHECK constraint on table 'tasks'",
    ),
}


@pytest.mark.parametrize("obj", sorted(CATALOG))
def test_catalog_object_beyond_section_5_is_refused(
    genuine: dict[str, Path], led: Path, obj: str
) -> None:
    statement, named = CATALOG[obj]
    sql(led, statement)
    runs: list[Callable[[], dict[str, str]]] = [
        lambda: _audit(genuine, led),
        lambda: _check(genuine, led, genuine["cert"].read_bytes()),
    ]
    for run in runs:
        with pytest.raises(UnreadableInput, match=r"which FORMAT\.md §5 does not allow") as exc:
            run()
        assert named in str(exc.value) and "\n" not in str(exc.value)


def test_oversized_payload_refused_before_fetch(
    genuine: dict[str, Path], led: Path, baseline: Audit, tmp_path: Path
) -> None:
    """200 MiB in one payload (4 MB on disk, compressed): strlen alone would load it, so the
    column statistics refuse it first, and peak memory stays that of an honest audit."""
    sql(led, f"UPDATE events SET payload = repeat('x', {200 * MIB}) WHERE seq = 1")
    run = _audit_process(led, genuine["pub"], tmp_path)
    _bounded(run, baseline, "events.payload holds a 209715200-byte value")


@pytest.mark.parametrize(
    ("statement", "named"),
    [
        (f"UPDATE events SET payload = payload || repeat(' ', {MIB}) WHERE seq = 2", "payload"),
        (f"UPDATE certificates SET envelope = repeat('x', {MIB + 1})", "certificates.envelope"),
        ("UPDATE tasks SET method = repeat('x', 4097) WHERE task_id = 'a'", "tasks.method"),
        ("UPDATE config SET public_key = repeat('x', 4097)", "config.public_key"),
    ],
    ids=["payload", "envelope", "tasks.method", "config.public_key"],
)
def test_text_over_its_cap_is_refused(
    genuine: dict[str, Path], led: Path, statement: str, named: str
) -> None:
    sql(led, statement)
    with pytest.raises(UnreadableInput, match=named):
        _audit(genuine, led)


def test_oversized_value_in_the_wal_is_refused(genuine: dict[str, Path], led: Path) -> None:
    """Rows still in the write-ahead log would be replayed into memory on opening, before
    any statistics or strlen could see them: the WAL itself is refused first."""
    code = (
        "import duckdb, os, sys;"
        "con = duckdb.connect(sys.argv[1]);"
        "con.execute('PRAGMA disable_checkpoint_on_shutdown');"
        "con.execute(\"SET checkpoint_threshold = '1GB'\");"
        f"con.execute(\"UPDATE events SET payload = repeat('x', {2 * MIB}) WHERE seq = 1\");"
        "os._exit(0)"
    )
    subprocess.run([sys.executable, "-c", code, led / "ledger.duckdb"], check=True)
    assert (led / "ledger.duckdb.wal").stat().st_size > 2 * MIB
    with pytest.raises(UnreadableInput, match="the ledger was not closed"):
        _audit(genuine, led)


# --- 2. tensor files and the base --------------------------------------------------------------


def _extend(path: Path, size: int = 4 * GIB, keep_header: bool = True) -> None:
    """`truncate -s 4G`: a sparse file, its old bytes kept (or zeroed), no disk used."""
    if not keep_header:
        os.truncate(path, 0)
    os.truncate(path, size)


@pytest.mark.parametrize("keep_header", [True, False], ids=["header-kept", "zeroed"])
def test_sparse_4gb_base_is_refused_within_bounds(
    genuine: dict[str, Path], led: Path, baseline: Audit, tmp_path: Path, keep_header: bool
) -> None:
    """With its header kept, only the size check stands between the audit and 4 GB of
    hashing (base_files, base_digest); zeroed, the header itself is refused."""
    _extend(led / "base/model.safetensors", keep_header=keep_header)
    run = _audit_process(led, genuine["pub"], tmp_path)
    _bounded(run, baseline, "first base: base/model.safetensors")


@pytest.mark.parametrize("keep_header", [True, False], ids=["header-kept", "zeroed"])
@pytest.mark.parametrize("target", ["state.safetensors", "vectors/a.safetensors"])
def test_sparse_4gb_ledger_file_is_refused_within_bounds(
    genuine: dict[str, Path],
    led: Path,
    baseline: Audit,
    tmp_path: Path,
    target: str,
    keep_header: bool,
) -> None:
    _extend(led / target, keep_header=keep_header)
    run = _audit_process(led, genuine["pub"], tmp_path)
    _bounded(run, baseline, target)


def _rewrite_header(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    blob = path.read_bytes()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8 : 8 + n])
    change(header)
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + blob[8 + n :])


def _claim_huge(header: dict[str, Any]) -> None:
    name = next(k for k in sorted(header) if k != "__metadata__" and "embeddings." not in k)
    entry = header[name]
    numel = 2**33  # 32 GiB of F32 or I32, 64 GiB of I64
    lo = entry["data_offsets"][0]
    size = numel * {"F32": 4, "I32": 4, "I16": 2, "I8": 1}.get(entry["dtype"], 8)
    header[name] = {**entry, "shape": [numel], "data_offsets": [lo, lo + size]}


@pytest.mark.parametrize(
    "target", ["base/model.safetensors", "state.safetensors", "vectors/a.safetensors"]
)
def test_header_claiming_huge_tensors_is_refused_within_bounds(
    genuine: dict[str, Path], led: Path, baseline: Audit, tmp_path: Path, target: str
) -> None:
    _rewrite_header(led / target, _claim_huge)
    run = _audit_process(led, genuine["pub"], tmp_path)
    _bounded(run, baseline, target)


def test_16mib_header_is_refused_before_parsing(
    genuine: dict[str, Path], led: Path, baseline: Audit, tmp_path: Path
) -> None:
    """A ledger file's header can be no longer than its layout's tight header: a 16 MiB one of
    `[],[],…` (within the 16 MiB cap) would cost a JSON parser some 300 MB of objects."""
    body = b"[" + b"[]," * (16 * MIB // 3 - 2) + b"[]]"
    body += b" " * (-len(body) % 8)
    (led / "state.safetensors").write_bytes(struct.pack("<Q", len(body)) + body)
    run = _audit_process(led, genuine["pub"], tmp_path)
    _bounded(run, baseline, "state.safetensors: header length")


# --- 3. links, special files, second names -----------------------------------------------------


def test_symlinked_vectors_folder_is_a_fail(genuine: dict[str, Path], led: Path) -> None:
    (led / "vectors").rename(led.parent / "elsewhere")
    (led / "vectors").symlink_to(led.parent / "elsewhere")
    failed = _audit(genuine, led)
    assert "vectors is a symbolic link, not a folder" in failed["layout"]


def test_symlinked_vector_is_a_fail(genuine: dict[str, Path], led: Path) -> None:
    """The link points at the genuine bytes, so only the refusal to follow it fails."""
    vector = led / "vectors/a.safetensors"
    vector.rename(led.parent / "a.safetensors")
    vector.symlink_to(led.parent / "a.safetensors")
    failed = _audit(genuine, led)
    assert "vectors/a.safetensors is a symbolic link" in failed["layout"]
    assert "symbolic link" in failed["vectors"]


def test_hardlinked_vector_is_a_fail(genuine: dict[str, Path], led: Path) -> None:
    """A second name outside the folder keeps the vector's bytes after `unlearn` deletes it."""
    os.link(led / "vectors/a.safetensors", led.parent / "kept.safetensors")
    failed = _audit(genuine, led)
    assert "vectors/a.safetensors is a hard link (2 names)" in failed["layout"]
    assert "hard link" in failed["vectors"]


def test_subfolder_in_base_is_a_fail(genuine: dict[str, Path], led: Path) -> None:
    (led / "base/extra").mkdir()
    (led / "base/extra/kept.bin").write_bytes(b"q_b")
    failed = _audit(genuine, led)
    assert "base/extra is a folder" in failed["layout"]
    assert "base/extra is not listed" in failed["base"]


def test_symlinked_ledger_folder_is_refused(genuine: dict[str, Path], led: Path) -> None:
    link = led.parent / "link"
    link.symlink_to(led)
    with pytest.raises(UnreadableInput, match="is a link"):
        _audit(genuine, link)


def test_symlinked_database_is_refused(genuine: dict[str, Path], led: Path) -> None:
    (led / "ledger.duckdb").rename(led.parent / "db")
    (led / "ledger.duckdb").symlink_to(led.parent / "db")
    with pytest.raises(UnreadableInput, match=r"ledger\.duckdb in .* is a symbolic link"):
        _audit(genuine, led)


FIFO_AT = [
    "ledger.duckdb",
    "ledger.duckdb.wal",
    "state.safetensors",
    "vectors/a.safetensors",
    "masks/a.safetensors",
    "base/model.safetensors",
    "base/config.json",
    "certificates/3.dsse.json",
    "journal.json",
]


@pytest.mark.parametrize("where", FIFO_AT)
def test_fifo_in_folder_does_not_block(
    genuine: dict[str, Path], led: Path, baseline: Audit, tmp_path: Path, where: str
) -> None:
    """No writer ever opens the FIFO: a reader that blocked on it would hang the audit."""
    (led / where).unlink(missing_ok=True)
    os.mkfifo(led / where)
    run = _audit_process(led, genuine["pub"], tmp_path)
    _bounded(run, baseline, "error: ")
    assert "FIFO" in run.out + run.err


# --- 4. the certificate ------------------------------------------------------------------------


def _envelope(genuine: dict[str, Path]) -> dict[str, Any]:
    envelope: dict[str, Any] = json.loads(genuine["cert"].read_bytes())
    return envelope


def _statement(genuine: dict[str, Path]) -> dict[str, Any]:
    statement: dict[str, Any] = json.loads(base64.b64decode(_envelope(genuine)["payload"]))
    return statement


def _resigned(
    genuine: dict[str, Path], signer: Ed25519PrivateKey, statement: dict[str, Any]
) -> bytes:
    """The statement as `ledger unlearn` would sign it with the ledger's own key."""
    envelope, payload = _envelope(genuine), rfc8785.dumps(statement)
    sig = signer.sign(pae(envelope["payloadType"], payload))
    envelope["payload"] = base64.b64encode(payload).decode()
    envelope["signatures"][0]["sig"] = base64.b64encode(sig).decode()
    return json.dumps(envelope).encode()


def test_a_resigned_unchanged_statement_verifies(
    genuine: dict[str, Path], signer: Ed25519PrivateKey
) -> None:
    assert _check(genuine, genuine["led"], _resigned(genuine, signer, _statement(genuine))) == {}


def test_duplicate_key_in_envelope_is_refused(genuine: dict[str, Path], led: Path) -> None:
    """Python keeps the last copy, other parsers the first: the two must not disagree."""
    text = genuine["cert"].read_text()
    forged = text.replace('"payload":', '"payload": "e30=", "payload":', 1)
    with pytest.raises(UnreadableInput, match="duplicate key 'payload'"):
        _check(genuine, led, forged.encode())
    (led / "certificates/3.dsse.json").write_text(forged)
    sql(led, f"UPDATE certificates SET envelope = '{forged}'")
    failed = _audit(genuine, led)
    assert "duplicate key 'payload'" in failed["certificate[3]/envelope"]


def test_duplicate_key_in_statement_is_refused(
    genuine: dict[str, Path], signer: Ed25519PrivateKey
) -> None:
    envelope, payload = _envelope(genuine), base64.b64decode(_envelope(genuine)["payload"])
    payload = payload.replace(b'"task_id":"b"', b'"task_id":"a","task_id":"b"', 1)
    envelope["payload"] = base64.b64encode(payload).decode()
    sig = signer.sign(pae(envelope["payloadType"], payload))
    envelope["signatures"][0]["sig"] = base64.b64encode(sig).decode()
    failed = _check(genuine, genuine["led"], json.dumps(envelope).encode())
    assert "duplicate key 'task_id'" in failed["statement"]


def test_keyid_of_another_key_is_refused(genuine: dict[str, Path]) -> None:
    """The signature is the genuine one; only the keyid names another key."""
    other = Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    envelope = _envelope(genuine)
    envelope["signatures"][0]["keyid"] = hashlib.sha256(other).hexdigest()
    failed = _check(genuine, genuine["led"], json.dumps(envelope).encode())
    assert set(failed) == {"signature"}
    assert "is not the id of the key in force at event" in failed["signature"]


def test_second_signature_is_refused(genuine: dict[str, Path]) -> None:
    envelope = _envelope(genuine)
    envelope["signatures"].append({**envelope["signatures"][0]})
    failed = _check(genuine, genuine["led"], json.dumps(envelope).encode())
    assert "exactly one signature" in failed["envelope"]


def test_unknown_envelope_field_is_refused(genuine: dict[str, Path]) -> None:
    envelope = {**_envelope(genuine), "note": "q_b"}
    failed = _check(genuine, genuine["led"], json.dumps(envelope).encode())
    assert "unexpected field 'note'" in failed["envelope"]


def _at(statement: dict[str, Any], path: str) -> dict[str, Any]:
    obj: Any = statement
    for part in path.split("/") if path else []:
        obj = obj[int(part)] if isinstance(obj, list) else obj[part]
    assert isinstance(obj, dict)
    return obj


@pytest.mark.parametrize(
    "where",
    [
        *("", "subject/0", "subject/0/digest", "predicate", "predicate/event"),
        *("predicate/tree_head_after", "predicate/remaining/0"),
    ],
)
def test_unknown_statement_field_is_refused(
    genuine: dict[str, Path], signer: Ed25519PrivateKey, where: str
) -> None:
    """Re-signed with the ledger's key, so the field itself is what fails."""
    statement = _statement(genuine)
    _at(statement, where)["note"] = "q_b"
    failed = _check(genuine, genuine["led"], _resigned(genuine, signer, statement))
    assert "unexpected field 'note'" in failed["statement"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("n_records", True),
        ("n_records", 0),
        ("sign_seed", -1),
        ("scale_bits", 63),
        ("scale_bits", -1),
        ("method", "lora"),
        ("determinism", []),
        ("remaining", [{"task_id": "../a", "vector_digest": "sha256:" + "0" * 64}]),
        ("remaining", [{"task_id": "a", "vector_digest": "0" * 64}]),
    ],
    ids=str,
)
def test_statement_field_of_the_wrong_type_or_range_is_refused(
    genuine: dict[str, Path], signer: Ed25519PrivateKey, field: str, value: Any
) -> None:
    statement = _statement(genuine)
    statement["predicate"][field] = value
    failed = _check(genuine, genuine["led"], _resigned(genuine, signer, statement))
    assert "statement" in failed


def test_certificate_heads_differ_from_stored_rows(
    genuine: dict[str, Path], signer: Ed25519PrivateKey
) -> None:
    """The key holder signs a second head of the same size and root, dated later: every
    signature and proof holds, but it is not the head the ledger stored."""
    statement = _statement(genuine)
    head = statement["predicate"]["tree_head_after"]
    body = json.loads(head["body"])
    body["time"] = "2099-01-01T00:00:00Z"
    raw = rfc8785.dumps(body)
    statement["predicate"]["tree_head_after"] = {
        "body": raw.decode(),
        "signature": base64.b64encode(signer.sign(raw)).decode(),
    }
    failed = _check(genuine, genuine["led"], _resigned(genuine, signer, statement))
    assert set(failed) == {"tree-heads"}
    assert "not, byte for byte, the ledger's stored head of size 4" in failed["tree-heads"]


# --- 5. what an attack review found after the first round --------------------------------------

_SHADOW = (
    "CREATE MACRO current_database() AS CASE WHEN contains(current_query(), 'duckdb_views') "
    "THEN 'nowhere' ELSE 'ledger' END"
)


@pytest.mark.parametrize(
    "statements",
    [
        (_SHADOW, "CREATE TABLE kept AS SELECT 1 AS vector", "CREATE VIEW v AS SELECT 1"),
        ("CREATE MACRO strlen(x) AS 0",),
        (
            "CREATE MACRO pragma_storage_info(t) AS TABLE SELECT 'x' AS column_name, "
            "NULL AS stats, 'VARCHAR' AS segment_type",
        ),
    ],
    ids=["current-database-shadowed", "strlen-shadowed", "storage-info-shadowed"],
)
def test_a_macro_named_like_a_built_in_cannot_blind_the_catalog_check(
    genuine: dict[str, Path], led: Path, statements: tuple[str, ...]
) -> None:
    sql(led, *statements)
    with pytest.raises(UnreadableInput, match=r"holds (macro|table_macro)"):
        run_audit(led, genuine["pub"].read_bytes())


def test_a_link_at_the_databases_temp_folder_is_refused_before_opening(
    genuine: dict[str, Path], led: Path
) -> None:
    """DuckDB may always read below <db>.tmp/, external access off or not."""
    (led / "ledger.duckdb.tmp").symlink_to("/")
    with pytest.raises(UnreadableInput, match=r"ledger\.duckdb\.tmp"):
        run_audit(led, genuine["pub"].read_bytes())


def test_bytes_appended_to_the_database_are_refused(genuine: dict[str, Path], led: Path) -> None:
    """A deleted vector kept after DuckDB's last block would pass every SQL-level check."""
    vector = (genuine["led"] / "vectors" / "a.safetensors").read_bytes()
    with (led / "ledger.duckdb").open("ab") as handle:
        handle.write(vector)
    with pytest.raises(UnreadableInput, match="bytes past its last block"):
        run_audit(led, genuine["pub"].read_bytes())


def test_a_write_ahead_log_left_behind_is_refused_before_opening(
    genuine: dict[str, Path], led: Path
) -> None:
    """DuckDB replays a WAL into memory on opening; it could also hold dropped data."""
    (led / "ledger.duckdb.wal").write_bytes(b"\0" * 4096)
    with pytest.raises(UnreadableInput, match="the ledger was not closed"):
        run_audit(led, genuine["pub"].read_bytes())


def test_many_rows_of_compressible_text_are_refused_from_statistics(
    genuine: dict[str, Path], led: Path
) -> None:
    sql(
        led,
        "INSERT INTO events SELECT 1000 + i, 'add', 'x', repeat('A', 100000) FROM range(3000) t(i)",
    )
    with pytest.raises(UnreadableInput, match="bytes of text, over"):
        run_audit(led, genuine["pub"].read_bytes())


def test_a_certificate_with_a_byte_order_mark_is_refused(genuine: dict[str, Path]) -> None:
    """json.loads accepts a BOM: two different files would verify as the same certificate."""
    cert = b"\xef\xbb\xbf" + genuine["cert"].read_bytes()
    with pytest.raises(UnreadableInput, match="byte-order mark"):
        run_check(genuine["led"], cert, genuine["pub"].read_bytes())


def test_a_fifo_given_as_the_certificate_does_not_block(
    genuine: dict[str, Path], tmp_path: Path
) -> None:
    fifo = tmp_path / "cert.fifo"
    os.mkfifo(fifo)
    result = subprocess.run(
        [
            VERIFIER,
            "check",
            "--ledger",
            genuine["led"],
            "--certificate",
            fifo,
            "--public-key",
            genuine["pub"],
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 1 and "is not a regular file" in result.stderr
