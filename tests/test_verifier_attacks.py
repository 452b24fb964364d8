"""Attacks an adversarial review found the verifier let through, each now a FAIL.

Keyless attacks edit files and tables; key-holder attacks (an operator who owns
the signing key and lies) rewrite the log and re-sign every head and certificate
with the `key` fixture (FORMAT.md §4 and §7 say what is signed). A no-op rewrite
must still verify, so each FAIL below is due to the lie, not to the re-signing.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pytest
import rfc8785
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger._internal.vectors.tensorfile import read_checked, read_tensors, write_tensors
from ledger.fixedpoint import set_digest
from ledger.log import leaf_hash, root_from_leaf_hashes
from tests.helpers import ledger_ok, sql
from verifier.checks import run_audit, run_check
from verifier.context import CheckResult
from verifier.ledger_reader import UnreadableInput

Event = dict[str, Any]
LATER = "2099-01-01T00:00:00Z"


@pytest.fixture(scope="module")
def made(
    tmp_path_factory: pytest.TempPathFactory,
    tiny_base: Path,
    key: Path,
    task_data: dict[str, Path],
) -> dict[str, Path]:
    """`led`: a, b, c added (sift), a then b unlearned; `pre`: led before the unlearns (it still
    holds a's vector); `lean`: a --no-retain-vectors ledger with a and b added."""
    root = tmp_path_factory.mktemp("attacks")
    led, lean = root / "led", root / "lean"

    ledger = ledger_ok

    ledger("init", led, "--base", tiny_base, "--key", key)
    ledger("init", lean, "--base", tiny_base, "--key", key, "--no-retain-vectors")
    for task in "abc":
        ledger("add", led, "--task", task, "--data", task_data[task], "--steps", "3")
    for task in "ab":
        ledger("add", lean, "--task", task, "--data", task_data[task], "--steps", "3")
    shutil.copytree(led, root / "pre")
    for task in "ab":
        cert = root / f"{task}.dsse.json"
        ledger("unlearn", led, "--task", task, "--data", task_data[task], "--certificate", cert)
    return {"led": led, "lean": lean, "pre": root / "pre", "pub": key.with_name(key.name + ".pub")}


@pytest.fixture
def signer(key: Path) -> Ed25519PrivateKey:
    private = serialization.load_pem_private_key(key.read_bytes(), None)
    assert isinstance(private, Ed25519PrivateKey)
    return private


def _copy(made: dict[str, Path], tmp_path: Path, name: str = "led") -> Path:
    return Path(shutil.copytree(made[name], tmp_path / name))


def _failed(results: list[CheckResult]) -> set[str]:
    return {r.name for r in results if r.status == "FAIL"}


def _audit(made: dict[str, Path], led: Path) -> set[str]:
    return _failed(run_audit(led, made["pub"].read_bytes()))


def _check(made: dict[str, Path], led: Path, seq: int) -> set[str]:
    cert = (led / "certificates" / f"{seq}.dsse.json").read_bytes()
    return _failed(run_check(led, cert, made["pub"].read_bytes()))


def _events(led: Path) -> list[Event]:
    con = duckdb.connect(str(led / "ledger.duckdb"), read_only=True)
    rows = con.execute("SELECT payload FROM events ORDER BY seq").fetchall()
    con.close()
    return [json.loads(p) for (p,) in rows]


# --- a key holder rewriting history -------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _statement(events: list[Event], heads: dict[int, tuple[str, str]], seq: int) -> Event:
    """The §7 statement `ledger unlearn` would have signed for unlearn event `seq`."""
    ev, init = events[seq], events[0]
    add = [e for e in events[:seq] if e["kind"] == "add" and e["task_id"] == ev["task_id"]][-1]
    digests = {e["task_id"]: e["vector_digest"] for e in events[1:seq] if e["kind"] == "add"}
    return {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [
            {"name": "state.safetensors", "digest": {"sha256": ev["state_digest_after"][7:]}}
        ],
        "predicateType": "https://unlearning-ledger.dev/certificate/unlearn/v1",
        "predicate": {
            "log_id": leaf_hash(rfc8785.dumps(init)).hex(),
            "event": {"seq": seq, "leaf_hash": leaf_hash(rfc8785.dumps(ev)).hex()},
            "tree_head_before": dict(zip(("body", "signature"), heads[seq], strict=True)),
            "tree_head_after": dict(zip(("body", "signature"), heads[seq + 1], strict=True)),
            "remaining": [{"task_id": t, "vector_digest": digests[t]} for t in ev["active_after"]],
            "determinism": add["determinism"],
            **{k: add[k] for k in ("task_id", "method", "data_hash", "n_records")},
            **{k: ev[k] for k in ("vector_digest", "replayed_digest")},
            **{k: ev[k] for k in ("state_digest_before", "state_digest_after")},
            **{k: init[k] for k in ("base_digest", "sign_seed", "scale_bits")},
        },
    }


def _envelope(key: Ed25519PrivateKey, statement: Event) -> bytes:
    payload, ptype = rfc8785.dumps(statement), b"application/vnd.in-toto+json"
    pae = b"DSSEv1 %d %s %d %s" % (len(ptype), ptype, len(payload), payload)
    keyid = hashlib.sha256(key.public_key().public_bytes_raw()).hexdigest()
    sig = {"keyid": keyid, "sig": _b64(key.sign(pae))}
    envelope = {"payload": _b64(payload), "payloadType": ptype.decode(), "signatures": [sig]}
    return json.dumps(envelope, indent=2).encode()


def _store_certificate(led: Path, seq: int, task: str, envelope: bytes) -> None:
    sql(led, f"DELETE FROM certificates WHERE seq = {seq}")
    con = duckdb.connect(str(led / "ledger.duckdb"))
    con.execute("INSERT INTO certificates VALUES (?, ?, ?)", [seq, task, envelope.decode()])
    con.close()
    (led / "certificates" / f"{seq}.dsse.json").write_bytes(envelope)


def _rewrite(
    led: Path,
    key: Ed25519PrivateKey,
    events: list[Event],
    head_times: dict[int, str] | None = None,
    head_roots: dict[int, bytes] | None = None,
) -> dict[int, tuple[str, str]]:
    """Store `events` as the signed log: payloads, every head, config, tasks, certificates."""
    leaves = [leaf_hash(rfc8785.dumps(e)) for e in events]
    log_id, heads = leaves[0].hex(), {}
    for n in range(1, len(events) + 1):
        fields: dict[str, Any] = {
            "log_id": log_id,
            "root": (head_roots or {}).get(n, root_from_leaf_hashes(leaves[:n])).hex(),
            "size": n,
            "time": (head_times or {}).get(n, events[n - 1]["time"]),
            "type": "ulg/tree-head/v1",
        }
        body = rfc8785.dumps(fields)
        heads[n] = (body.decode(), _b64(key.sign(body)))
    tasks: dict[str, list[Any]] = {}
    for e in events[1:]:
        if e["kind"] == "add":
            tasks[e["task_id"]] = [e["task_id"], e["method"], "active", e["seq"], None]
            tasks[e["task_id"]] += [e["data_hash"], e["vector_digest"], e["mask_digest"]]
        elif e["task_id"] in tasks:
            tasks[e["task_id"]][2], tasks[e["task_id"]][4] = "unlearned", e["seq"]
    con = duckdb.connect(str(led / "ledger.duckdb"))
    con.execute("DELETE FROM events; DELETE FROM tree_heads; DELETE FROM tasks")
    con.execute("DELETE FROM certificates")
    con.execute("UPDATE config SET log_id = ?", [log_id])
    for e in events:
        row = [e["seq"], e["kind"], e.get("task_id"), rfc8785.dumps(e).decode()]
        con.execute("INSERT INTO events VALUES (?, ?, ?, ?)", row)
    for n, (head_body, sig) in heads.items():
        con.execute("INSERT INTO tree_heads VALUES (?, ?, ?)", [n, head_body, sig])
    for task_row in tasks.values():
        con.execute("INSERT INTO tasks VALUES (?, ?, ?, ?, ?, ?, ?, ?)", task_row)
    con.close()
    for old in (led / "certificates").iterdir():
        old.unlink()
    for e in events:
        if e["kind"] == "unlearn":
            envelope = _envelope(key, _statement(events, heads, e["seq"]))
            _store_certificate(led, e["seq"], e["task_id"], envelope)
    return heads


def _unlearn_event(events: list[Event], task: str, state_after: str) -> Event:
    add = next(e for e in events if e["kind"] == "add" and e["task_id"] == task)
    return {
        "kind": "unlearn",
        "seq": len(events),
        "time": LATER,
        "task_id": task,
        "data_hash": add["data_hash"],
        "vector_digest": add["vector_digest"],
        "replayed_digest": add["vector_digest"],
        "state_digest_before": events[-1]["state_digest_after"],
        "state_digest_after": state_after,
        "active_after": [t for t in events[-1]["active_after"] if t != task],
    }


def test_honest_ledgers_and_a_no_op_rewrite_verify(
    made: dict[str, Path], tmp_path: Path, signer: Ed25519PrivateKey
) -> None:
    for name in ("led", "lean", "pre"):
        assert _audit(made, made[name]) == set(), name
    led = _copy(made, tmp_path)
    _rewrite(led, signer, _events(led))
    assert _audit(made, led) == set()
    # b's vector was deleted by its own later unlearn: a lawful skip for a's certificate
    results = run_check(
        led, (led / "certificates/4.dsse.json").read_bytes(), made["pub"].read_bytes()
    )
    assert {r.name: r.status for r in results}["state"] == "skipped"
    assert _check(made, led, 5) == set()


# --- 1. strict folder layout and tensor files ---------------------------------------------------


def _raw_tensors(
    path: Path,
    arrays: dict[str, Any],
    *,
    prefix: bytes = b"",
    suffix: bytes = b"",
    metadata: dict[str, str] | None = None,
) -> None:
    """A valid safetensors file with room for hidden bytes: before, after or in the header."""
    header: dict[str, Any] = {"__metadata__": metadata} if metadata else {}
    offset, blobs = len(prefix), []
    for name in sorted(arrays):
        data = np.ascontiguousarray(arrays[name]).tobytes()
        dtype = {"int64": "I64", "int32": "I32", "int16": "I16", "int8": "I8", "uint8": "U8"}[
            str(arrays[name].dtype)
        ]
        header[name] = {
            "dtype": dtype,
            "shape": list(arrays[name].shape),
            "data_offsets": [offset, offset + len(data)],
        }
        offset += len(data)
        blobs.append(data)
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + prefix + b"".join(blobs) + suffix)


def _rewritten(path: Path, **room: bytes) -> None:
    """The file's own tensors and metadata (a vector's encoding) written again, with room."""
    metadata, arrays = read_checked(path, lambda *_: None)
    _raw_tensors(path, arrays, metadata=metadata or None, **room)


def _hide(made: dict[str, Path]) -> bytes:
    """What an operator wants to keep: a's vector, deleted by `unlearn a`."""
    return (made["pre"] / "vectors/a.safetensors").read_bytes()


REFUSED = "refused"
HIDING: dict[str, tuple[Callable[[dict[str, Path], Path], object], str]] = {
    "staged-copy-without-journal": (
        lambda m, led: (led / "vectors/a.safetensors.staged-6").write_bytes(_hide(m)),
        "layout",
    ),
    "journal-tmp-without-journal": (
        lambda m, led: (led / "journal.json.tmp").write_bytes(_hide(m)),
        "layout",
    ),
    "backup-folder": (
        lambda m, led: ((led / "backup").mkdir(), (led / "backup/a").write_bytes(_hide(m))),
        "layout",
    ),
    "sub-folder-of-vectors": (
        lambda m, led: (
            (led / "vectors/old").mkdir(),
            (led / "vectors/old/a").write_bytes(_hide(m)),
        ),
        "layout",
    ),
    "bak-file-in-masks": (lambda m, led: (led / "masks/a.bak").write_bytes(_hide(m)), "layout"),
    "dot-file": (lambda m, led: (led / ".a").write_bytes(_hide(m)), "layout"),
    "symlinked-vector": (
        lambda m, led: (
            (led / "vectors/c.safetensors").rename(led.parent / "c"),
            (led / "vectors/c.safetensors").symlink_to(led.parent / "c"),
        ),
        "layout",
    ),
    "bytes-after-state-data": (
        lambda m, led: _raw_tensors(
            led / "state.safetensors", read_tensors(led / "state.safetensors"), suffix=_hide(m)
        ),
        "state-digest",
    ),
    "state-metadata": (
        lambda m, led: _raw_tensors(
            led / "state.safetensors",
            read_tensors(led / "state.safetensors"),
            metadata={"a": _b64(_hide(m))},
        ),
        "state-digest",
    ),
    "mask-metadata": (
        lambda m, led: _raw_tensors(
            led / "masks/c.safetensors",
            read_tensors(led / "masks/c.safetensors"),
            metadata={"a": _b64(_hide(m))},
        ),
        "masks",
    ),
    "gap-before-vector-data": (
        lambda m, led: _rewritten(led / "vectors/c.safetensors", prefix=_hide(m)),
        "vectors",
    ),
    "extra-table": (
        lambda m, led: sql(led, "CREATE TABLE cache (task_id VARCHAR, vector BLOB)"),
        REFUSED,
    ),
    "extra-column": (
        lambda m, led: sql(led, "ALTER TABLE tasks ADD COLUMN cache BLOB"),
        "database",
    ),
    "view": (lambda m, led: sql(led, "CREATE VIEW cache AS SELECT 'q_a' AS v"), REFUSED),
    "schema": (
        lambda m, led: sql(led, "CREATE SCHEMA old; CREATE TABLE old.t (v BLOB)"),
        REFUSED,
    ),
    "table-comment": (lambda m, led: sql(led, "COMMENT ON TABLE events IS 'q_a'"), REFUSED),
}


@pytest.mark.parametrize("attack", sorted(HIDING))
def test_deleted_data_cannot_hide_in_the_folder(
    made: dict[str, Path], tmp_path: Path, attack: str
) -> None:
    mutate, check = HIDING[attack]
    led = _copy(made, tmp_path)
    mutate(made, led)
    if check == REFUSED:  # a catalog object beyond §5: the database is not read at all
        with pytest.raises(UnreadableInput, match=r"which FORMAT\.md §5 does not allow"):
            _audit(made, led)
    else:
        assert check in _audit(made, led)


# --- 2. the exact §5 schema, one row per key ----------------------------------------------------

_RECREATE = (
    "CREATE TABLE t2 AS SELECT {cols} FROM {t}; DROP TABLE {t}; ALTER TABLE t2 RENAME TO {t}"
)
SCHEMA: dict[str, tuple[str, ...]] = {
    "duplicate-task-row": (
        _RECREATE.format(cols="*", t="tasks"),
        "INSERT INTO tasks SELECT * FROM tasks WHERE task_id = 'c'",
    ),
    "duplicate-head-row": (
        _RECREATE.format(cols="*", t="tree_heads"),
        "INSERT INTO tree_heads SELECT * FROM tree_heads WHERE size = 3",
    ),
    "task-columns-reordered": (
        _RECREATE.format(
            cols="task_id, status, method, add_seq, unlearn_seq, data_hash, vector_digest, "
            "mask_digest",
            t="tasks",
        ),
    ),
    "payload-as-blob": ("ALTER TABLE events ALTER payload TYPE BLOB",),
    "envelope-as-blob": ("ALTER TABLE certificates ALTER envelope TYPE BLOB",),
}


@pytest.mark.parametrize("attack", sorted(SCHEMA))
def test_schema_is_exactly_format_section_5(
    made: dict[str, Path], tmp_path: Path, attack: str
) -> None:
    led = _copy(made, tmp_path)
    cert = (led / "certificates/5.dsse.json").read_bytes()
    sql(led, *SCHEMA[attack])
    assert "database" in _audit(made, led)
    assert "database" in _failed(run_check(led, cert, made["pub"].read_bytes()))


# --- 3. a stored certificate is bound to its row ------------------------------------------------


def test_stored_certificate_swapped_for_another_task(made: dict[str, Path], tmp_path: Path) -> None:
    led = _copy(made, tmp_path)
    _store_certificate(led, 5, "b", (led / "certificates/4.dsse.json").read_bytes())
    assert "certificate[5]/event" in _audit(made, led)


# --- 4. check: an active task's vector may not go missing ---------------------------------------


@pytest.mark.parametrize("damage", ["deleted", "one-bit"])
def test_check_fails_when_an_active_remaining_vector_is_unusable(
    made: dict[str, Path], tmp_path: Path, damage: str
) -> None:
    led = _copy(made, tmp_path)
    vector = led / "vectors/c.safetensors"  # c remains active after b's unlearning (seq 5)
    if damage == "deleted":
        vector.unlink()
    else:
        data = bytearray(vector.read_bytes())
        data[-1] ^= 1
        vector.write_bytes(bytes(data))
    assert "state" in _check(made, led, 5)


# --- 5. check: the log replays, and the task stays unlearned ------------------------------------


def test_check_fails_when_the_task_is_added_again(
    made: dict[str, Path], tmp_path: Path, signer: Ed25519PrivateKey
) -> None:
    led = _copy(made, tmp_path)
    events = _events(led)
    again = {
        **events[1],
        "seq": 6,
        "time": LATER,
        "active_after": ["a", "c"],
        "state_digest_before": events[-1]["state_digest_after"],
    }
    _rewrite(led, signer, [*events, again])
    assert {"replay", "event"} <= _check(made, led, 4)


def test_check_fails_on_a_replay_problem_before_the_event(
    made: dict[str, Path], tmp_path: Path, signer: Ed25519PrivateKey
) -> None:
    led = _copy(made, tmp_path)
    events = _events(led)
    events[2]["active_after"] = ["a", "b", "c"]  # b's add says c was already active
    _rewrite(led, signer, events)
    assert "replay" in _check(made, led, 5)


# --- 6. state invariants that need no retained vectors ------------------------------------------


def test_unlearn_that_leaves_the_state_unchanged(
    made: dict[str, Path], tmp_path: Path, signer: Ed25519PrivateKey
) -> None:
    lean = _copy(made, tmp_path, "lean")
    events = _events(lean)
    events.append(_unlearn_event(events, "a", events[-1]["state_digest_after"]))
    _rewrite(lean, signer, events)
    (lean / "masks/a.safetensors").unlink()
    assert {"replay", "state-support"} <= _audit(made, lean)
    assert "replay" in _check(made, lean, 3)


def test_unlearn_to_a_state_outside_the_remaining_masks(
    made: dict[str, Path], tmp_path: Path, signer: Ed25519PrivateKey
) -> None:
    """Q' = 2·Q keeps every sign, so only the mask union shows a is still in it."""
    lean = _copy(made, tmp_path, "lean")
    doubled = {n: 2 * q for n, q in read_tensors(lean / "state.safetensors").items()}
    (lean / "state.safetensors").unlink()
    write_tensors(lean / "state.safetensors", doubled)
    events = _events(lean)
    events.append(_unlearn_event(events, "a", set_digest(doubled)))
    _rewrite(lean, signer, events)
    (lean / "masks/a.safetensors").unlink()
    failed = _audit(made, lean)
    assert "state-support" in failed and "state-signs" not in failed


def test_add_that_leaves_the_state_unchanged(
    made: dict[str, Path], tmp_path: Path, signer: Ed25519PrivateKey
) -> None:
    lean = _copy(made, tmp_path, "lean")
    events = _events(lean)
    same = events[-1]["state_digest_after"]
    events.append(
        {
            **events[2],
            "seq": 3,
            "time": LATER,
            "task_id": "d",
            "active_after": ["a", "b", "d"],
            "state_digest_before": same,
            "state_digest_after": same,
        }
    )
    _rewrite(lean, signer, events)
    shutil.copy(lean / "masks/b.safetensors", lean / "masks/d.safetensors")
    assert "replay" in _audit(made, lean)


# --- 7. determinism records ---------------------------------------------------------------------


def test_add_determinism_spec_differs_from_the_spec(
    made: dict[str, Path], tmp_path: Path, signer: Ed25519PrivateKey
) -> None:
    led = _copy(made, tmp_path)
    events = _events(led)
    events[3]["determinism"]["spec"]["steps"] += 1
    _rewrite(led, signer, events)
    assert "replay" in _audit(made, led)
    assert "replay" in _check(made, led, 5)


@pytest.mark.parametrize("part", ["spec", "fixed", "environment"])
def test_certificate_replay_record_differs_from_the_add(
    made: dict[str, Path], tmp_path: Path, signer: Ed25519PrivateKey, part: str
) -> None:
    led = _copy(made, tmp_path)
    events = _events(led)
    heads = _rewrite(led, signer, events)
    statement = _statement(events, heads, 5)
    statement["predicate"]["determinism"][part]["replayed-elsewhere"] = True
    _store_certificate(led, 5, "b", _envelope(signer, statement))
    assert _check(made, led, 5) == {"event"}


# --- 8. times -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seq", "time"), [(2, "2000-01-01T00:00:00Z"), (5, "2099-02-30T12:00:00Z")], ids=str
)
def test_event_times_are_real_and_never_go_back(
    made: dict[str, Path], tmp_path: Path, signer: Ed25519PrivateKey, seq: int, time: str
) -> None:
    """Event 2 dated before event 1, or the last event on a day that does not exist."""
    led = _copy(made, tmp_path)
    events = _events(led)
    events[seq]["time"] = time
    _rewrite(led, signer, events)
    assert "events" in _audit(made, led)


def test_head_dated_before_its_last_event(
    made: dict[str, Path], tmp_path: Path, signer: Ed25519PrivateKey
) -> None:
    led = _copy(made, tmp_path)
    _rewrite(led, signer, _events(led), head_times={5: "1970-01-01T00:00:00Z"})
    assert "tree-heads" in _audit(made, led)
    assert "tree-heads" in _check(made, led, 4)


@pytest.mark.parametrize(
    ("size", "cert_fails"),
    [(4, {"consistency"}), (5, {"inclusion", "consistency"}), (6, {"consistency"})],
    ids=["tree-head-before-of-a-fork", "tree-head-after-of-a-fork", "latest-head-of-a-fork"],
)
def test_head_signed_over_another_history(
    made: dict[str, Path],
    tmp_path: Path,
    signer: Ed25519PrivateKey,
    size: int,
    cert_fails: set[str],
) -> None:
    """The key holder signs head 4, 5 or 6 (unlearn a's tree_head_before, _after, the latest)
    over the root of a fork whose last event says something else: each head is checked as a
    prefix of these leaves, so the head, the head pairs it is in, and the certificate's steps
    fail."""
    led = _copy(made, tmp_path)
    events = _events(led)
    fork = [*events[: size - 1], {**events[size - 1], "time": LATER}]
    root = root_from_leaf_hashes([leaf_hash(rfc8785.dumps(e)) for e in fork])
    _rewrite(led, signer, events, head_roots={size: root})
    failed = _audit(made, led)
    assert {"tree-heads", "consistency"} <= failed
    assert {f"certificate[4]/{step}" for step in cert_fails} <= failed


# --- 9. no unknown fields, and ranges (FORMAT.md §6, §10) ---------------------------------------


def _set(path: str, value: Any) -> Callable[[list[Event]], None]:
    """Set events[seq]/key/… = value, for a path written `seq/key/…`."""
    seq, *keys = path.split("/")

    def change(events: list[Event]) -> None:
        obj = events[int(seq)]
        for k in keys[:-1]:
            obj = obj[k]
        obj[keys[-1]] = value

    return change


def _both_seeds(value: int) -> Callable[[list[Event]], None]:
    """The seed of event 3's spec and of its determinism.spec, which must stay equal."""

    def change(events: list[Event]) -> None:
        for path in ("3/spec/seed", "3/determinism/spec/seed"):
            _set(path, value)(events)

    return change


EVENT_FIELDS: dict[str, tuple[Callable[[list[Event]], None], str]] = {
    "init-extra": (_set("0/note", "q_a"), "unexpected field 'note'"),
    "add-extra": (_set("1/note", "q_a"), "unexpected field 'note'"),
    "unlearn-extra": (_set("4/note", "q_a"), "unexpected field 'note'"),
    "spec-extra": (_set("3/spec/note", "q_a"), "unexpected field 'note'"),
    "determinism-extra": (_set("3/determinism/note", "q_a"), "unexpected field 'note'"),
    "fixed-not-an-object": (_set("3/determinism/fixed", []), "'fixed' has the wrong type"),
    "n_records-zero": (_set("3/n_records", 0), "'n_records' is 0"),
    "n_records-true": (_set("3/n_records", True), "'n_records' has the wrong type"),
    "scale_bits-63": (_set("0/scale_bits", 63), "'scale_bits' is 63"),
    "threads-zero": (_set("0/threads", 0), "'threads' is 0"),
    "seed-negative": (_both_seeds(-1), "'seed' is -1"),
}


@pytest.mark.parametrize("attack", sorted(EVENT_FIELDS))
def test_unknown_field_or_range_in_an_event_is_a_fail(
    made: dict[str, Path], tmp_path: Path, signer: Ed25519PrivateKey, attack: str
) -> None:
    """Re-signed by the key holder, so only the field rules fail; `check` replays them too."""
    change, detail = EVENT_FIELDS[attack]
    led = _copy(made, tmp_path)
    events = _events(led)
    change(events)
    _rewrite(led, signer, events)
    for results in (
        run_audit(led, made["pub"].read_bytes()),
        run_check(led, (led / "certificates/5.dsse.json").read_bytes(), made["pub"].read_bytes()),
    ):
        replay = {r.name: r for r in results}["replay"]
        assert replay.status == "FAIL" and detail in replay.detail, replay
