"""Every tampering of a ledger or certificate makes the independent verifier fail.

Cases are named after the attack they represent (sigstore-python style).
"""

from __future__ import annotations

import base64
import json
import shutil
import string
import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest
import rfc8785
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.helpers import flip_byte, ledger_ok, run_cli, sql
from verifier.checks import run_audit, run_check
from verifier.context import CheckResult
from verifier.dsse import pae
from verifier.ledger_reader import UnreadableInput, read_ledger


@pytest.fixture(scope="module")
def clean(
    tmp_path_factory: pytest.TempPathFactory,
    tiny_base: Path,
    key: Path,
    task_data: dict[str, Path],
) -> dict[str, Path]:
    """A ledger that added a, b, c and unlearned c, and its certificate."""

    ledger = ledger_ok

    root = tmp_path_factory.mktemp("tamper")
    led, cert = root / "led", root / "c.dsse.json"
    ledger("init", led, "--base", tiny_base, "--key", key)
    for task in "abc":
        method = "ft" if task == "a" else "sift"
        ledger("add", led, "--task", task, "--data", task_data[task], "--method", method)
    ledger("unlearn", led, "--task", "c", "--data", task_data["c"], "--certificate", cert)
    return {"led": led, "cert": cert, "pub": key.with_name(key.name + ".pub")}


def _failures(led: Path, cert: Path, pub: Path) -> list[str]:
    public = pub.read_bytes()
    results = [*run_audit(led, public), *run_check(led, cert.read_bytes(), public)]
    return [r.line() for r in results if r.status == "FAIL"]


def test_the_clean_ledger_passes(clean: dict[str, Path]) -> None:
    assert _failures(clean["led"], clean["cert"], clean["pub"]) == []


def _edit_envelope(cert: Path, field: str) -> None:
    envelope = json.loads(cert.read_text())
    if field == "payload":
        raw = bytearray(base64.b64decode(envelope["payload"]))
        raw[len(raw) // 2] ^= 0x01
        envelope["payload"] = base64.b64encode(bytes(raw)).decode()
    else:
        sig = bytearray(base64.b64decode(envelope["signatures"][0]["sig"]))
        sig[0] ^= 0x01
        envelope["signatures"][0]["sig"] = base64.b64encode(bytes(sig)).decode()
    cert.write_text(json.dumps(envelope))


def _rewrite_event(led: Path) -> None:
    con = duckdb.connect(str(led / "ledger.duckdb"))
    (payload,) = con.execute("SELECT payload FROM events WHERE seq = 2").fetchone() or ("",)
    con.execute(
        "UPDATE events SET payload = ? WHERE seq = 2",
        [payload.replace('"n_records":24', '"n_records":25')],
    )
    con.close()


ATTACKS: dict[str, Callable[[Path, Path], object]] = {
    "certificate-payload-bit": lambda led, cert: _edit_envelope(cert, "payload"),
    "certificate-signature-bit": lambda led, cert: _edit_envelope(cert, "sig"),
    "rewritten-event-row": lambda led, cert: _rewrite_event(led),
    "task-row-resurrected": lambda led, cert: sql(
        led, "UPDATE tasks SET status = 'active', unlearn_seq = NULL WHERE task_id = 'c'"
    ),
    "config-scale-changed": lambda led, cert: sql(led, "UPDATE config SET scale_bits = 39"),
    "tree-head-signature-forged": lambda led, cert: sql(
        led, "UPDATE tree_heads SET signature = 'AAAA' || substr(signature, 5) WHERE size = 3"
    ),
    "rolled-back-log": lambda led, cert: sql(
        led, "DELETE FROM events WHERE seq = 4; DELETE FROM tree_heads WHERE size = 5"
    ),
    "retained-vector-last-byte": lambda led, cert: flip_byte(led / "vectors/b.safetensors", -1),
    "ft-vector-first-data-byte": lambda led, cert: flip_byte(led / "vectors/a.safetensors", 4096),
    "state-last-byte": lambda led, cert: flip_byte(led / "state.safetensors", -1),
    "mask-last-byte": lambda led, cert: flip_byte(led / "masks/b.safetensors", -1),
    "unlearned-vector-kept": lambda led, cert: shutil.copy(
        led / "vectors/b.safetensors", led / "vectors/c.safetensors"
    ),
    "stored-certificate-swapped": lambda led, cert: _edit_envelope(
        led / "certificates/4.dsse.json", "payload"
    ),
}


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_attack_is_detected(clean: dict[str, Path], tmp_path: Path, attack: str) -> None:
    led, cert = tmp_path / "led", tmp_path / "cert.json"
    shutil.copytree(clean["led"], led)
    shutil.copy(clean["cert"], cert)
    ATTACKS[attack](led, cert)
    assert _failures(led, cert, clean["pub"]), f"{attack} went unnoticed"


# --- structural walks: every field and every region, derived from the files themselves -------
#
# The cases come from each file's own structure (its JSON fields, its safetensors header), not
# from random offsets, so they are the same on every machine. The ledger's database does not
# change within a walk, so it is read once (`same_db`); everything else is read per case.


@pytest.fixture
def same_db(clean: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    db = read_ledger(clean["led"])
    monkeypatch.setattr("verifier.checks.read_ledger", lambda _: db)


def _refused(run: Callable[..., list[CheckResult]], *args: Any) -> bool:
    try:
        return any(r.status == "FAIL" for r in run(*args))
    except UnreadableInput:
        return True


def _other(c: str) -> str:
    """Another character of the same kind, so a hex digit stays hex and a letter a letter."""
    for alphabet in ("0123456789abcdef", string.ascii_lowercase, string.ascii_uppercase):
        if c in alphabet:
            return alphabet[(alphabet.index(c) + 1) % len(alphabet)]
    return "A"


def _changes(value: Any) -> list[tuple[str, Any]]:
    """Each change to `value` itself (its children are walked separately)."""
    if isinstance(value, bool):
        return [("negated", not value)]
    if isinstance(value, int | float):
        return [("+1", value + 1)]
    if isinstance(value, str):
        return [("last character changed", value[:-1] + _other(value[-1:]) if value else "x")]
    if value is None:
        return [("null made a string", "x")]
    if isinstance(value, list):
        dropped = [("last element dropped", value[:-1])] if value else []
        return [*dropped, ("an element repeated", [*value, value[0] if value else 1])]
    assert isinstance(value, dict)
    removed = [(f"{k!r} removed", {j: v for j, v in value.items() if j != k}) for k in value]
    return [("field 'x' added", {**value, "x": 1}), *removed]


def _walk(value: Any, where: str = "") -> Iterator[tuple[str, Any]]:
    """(where, a copy of `value` with exactly one change) for every change anywhere inside."""
    for what, changed in _changes(value):
        yield f"{where or '/'} {what}", changed
    children: list[tuple[Any, Any]] = []
    if isinstance(value, dict | list):
        children = list(value.items() if isinstance(value, dict) else enumerate(value))
    for key, child in children:
        for what, changed in _walk(child, f"{where}/{key}"):
            copy = dict(value) if isinstance(value, dict) else list(value)
            copy[key] = changed
            yield what, copy


def _signed(signer: Ed25519PrivateKey, envelope: dict[str, Any], payload: bytes) -> bytes:
    ptype = envelope["payloadType"]
    sig = signer.sign(pae(ptype, payload))
    keyid = envelope["signatures"][0]["keyid"]
    return json.dumps(
        {
            "payload": base64.b64encode(payload).decode(),
            "payloadType": ptype,
            "signatures": [{"keyid": keyid, "sig": base64.b64encode(sig).decode()}],
        }
    ).encode()


@pytest.mark.usefixtures("same_db")
def test_every_certificate_field_change_fails(clean: dict[str, Path], key: Path) -> None:
    """Each change of one envelope or statement field, unsigned and then re-signed with the
    ledger's own key: the re-signed half shows the semantic checks, not the signature, catch
    it. Then every byte of the 64-byte signature, one bit flipped."""
    signer = serialization.load_pem_private_key(key.read_bytes(), None)
    assert isinstance(signer, Ed25519PrivateKey)
    original = json.loads(clean["cert"].read_bytes())
    statement = json.loads(base64.b64decode(original["payload"]))
    public = clean["pub"].read_bytes()
    cases: dict[str, bytes] = {}
    for where, envelope in _walk(original):
        cases[f"envelope {where}"] = json.dumps(envelope).encode()
    for where, changed in _walk(statement):
        payload = rfc8785.dumps(changed)
        unsigned = {**original, "payload": base64.b64encode(payload).decode()}
        cases[f"statement {where}"] = json.dumps(unsigned).encode()
        cases[f"statement {where}, re-signed"] = _signed(signer, original, payload)
    ptype = {**original, "payloadType": original["payloadType"] + "x"}
    cases["payloadType changed, re-signed"] = _signed(signer, ptype, rfc8785.dumps(statement))
    sig = base64.b64decode(original["signatures"][0]["sig"])
    for i in range(64):
        flipped = sig[:i] + bytes([sig[i] ^ 1 << i % 8]) + sig[i + 1 :]
        envelope = {**original, "signatures": [{**original["signatures"][0], "sig": ""}]}
        envelope["signatures"][0]["sig"] = base64.b64encode(flipped).decode()
        cases[f"signature byte {i} bit {i % 8} flipped"] = json.dumps(envelope).encode()
    assert _refused(run_check, clean["led"], clean["cert"].read_bytes(), public) is False
    assert len(cases) > 300
    missed = [c for c, data in cases.items() if not _refused(run_check, clean["led"], data, public)]
    assert missed == [], f"{len(missed)} changes went unnoticed: {missed[:5]}"


def without_metadata(header: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in header.items() if k != "__metadata__"}


def _tensor_cases(blob: bytes) -> dict[str, bytes]:
    """One change per header field of each tensor entry (rewritten as a tight header, so only
    the meaning changes), a flipped byte at each end of each tensor's data, the length prefix,
    and a byte more or less."""
    (n,) = struct.unpack("<Q", blob[:8])
    header, data = json.loads(blob[8 : 8 + n]), blob[8 + n :]

    def tight(h: dict[str, Any]) -> bytes:
        raw = json.dumps(h, separators=(",", ":")).encode()
        raw += b" " * (-len(raw) % 8)
        return struct.pack("<Q", len(raw)) + raw + data

    assert tight(header) == blob, "the ledger's file is tight to begin with"
    same_size = {"I64": "F64", "U8": "I8", "F32": "I32", "I32": "U32", "I16": "U16", "I8": "U8"}
    cases = {}
    if "__metadata__" in header:  # a vector's encoding (FORMAT.md §3): changed, dropped, joined
        meta = header["__metadata__"]
        other = {
            k: v.replace("nonzero", "dense") if "nonzero" in v else v.replace("dense", "nonzero")
            for k, v in meta.items()
        }
        without = without_metadata(header)
        cases["__metadata__ the other encoding"] = tight({**header, "__metadata__": other})
        cases["__metadata__ removed"] = tight(without)
        cases["__metadata__ a key more"] = tight({**header, "__metadata__": {**meta, "k": "1"}})
        cases["__metadata__ last"] = tight({**without, "__metadata__": meta})
    for name, entry in without_metadata(header).items():
        fields: list[tuple[str, Any]] = [("dtype", same_size[entry["dtype"]])]
        fields += [
            (f"shape[{i}]", [*entry["shape"][:i], d + 1, *entry["shape"][i + 1 :]])
            for i, d in enumerate(entry["shape"])
        ]
        lo, hi = entry["data_offsets"]
        fields += [("data_offsets[0]", [lo + 1, hi]), ("data_offsets[1]", [lo, hi + 1])]
        for field, value in fields:
            key = "shape" if field.startswith("shape") else field.split("[")[0]
            cases[f"{name} {field}"] = tight({**header, name: {**entry, key: value}})
        for at in sorted({lo, hi - 1}) if hi > lo else []:
            flipped = bytearray(blob)
            flipped[8 + n + at] ^= 0x01
            cases[f"{name} data byte {at - lo} flipped"] = bytes(flipped)
    for delta in (8, -8, 2**56):
        cases[f"length prefix {delta:+}"] = struct.pack("<Q", n + delta) + blob[8:]
    cases["a byte appended"] = blob + b"\x00"
    cases["the last byte removed"] = blob[:-1]
    return cases


@pytest.mark.usefixtures("same_db")
@pytest.mark.parametrize("target", ["state.safetensors", "vectors/b.safetensors"])
def test_every_tensor_file_change_fails(
    clean: dict[str, Path], tmp_path: Path, target: str
) -> None:
    led = Path(shutil.copytree(clean["led"], tmp_path / "led"))
    public = clean["pub"].read_bytes()
    original = (led / target).read_bytes()
    missed = []
    for case, content in _tensor_cases(original).items():
        (led / target).write_bytes(content)
        if not _refused(run_audit, led, public):
            missed.append(case)
    (led / target).write_bytes(original)
    assert not _refused(run_audit, led, public)
    assert missed == [], f"{len(missed)} changes of {target} went unnoticed: {missed[:5]}"


def test_wrong_public_key_fails_through_the_cli(clean: dict[str, Path], tmp_path: Path) -> None:
    from ledger import generate_key

    other = generate_key(tmp_path / "other.key")
    result = run_cli("verifier", "audit", "--ledger", clean["led"], "--public-key", other)
    assert result.code == 1 and "FAIL" in result.out


def test_truncated_certificate_is_an_error_line(clean: dict[str, Path], tmp_path: Path) -> None:
    cert = tmp_path / "cut.json"
    cert.write_bytes(clean["cert"].read_bytes()[:100])
    result = run_cli(
        "verifier",
        "check",
        "--ledger",
        clean["led"],
        "--certificate",
        cert,
        "--public-key",
        clean["pub"],
    )
    assert result.code == 1
    assert result.err.startswith("error: ") or "FAIL" in result.out
