"""Every tampering of a ledger or certificate makes the independent verifier fail.

Cases are named after the attack they represent (sigstore-python style).
"""

from __future__ import annotations

import base64
import json
import random
import shutil
from collections.abc import Callable
from pathlib import Path

import duckdb
import pytest

from tests.conftest import run_cli
from verifier.checks import run_audit, run_check


@pytest.fixture(scope="module")
def clean(
    tmp_path_factory: pytest.TempPathFactory,
    tiny_base: Path,
    key: Path,
    task_data: dict[str, Path],
) -> dict[str, Path]:
    """A ledger that added a, b, c and unlearned c, and its certificate."""
    root = tmp_path_factory.mktemp("tamper")
    led = root / "led"
    assert run_cli("ledger", "init", led, "--base", tiny_base, "--key", key).code == 0
    for task in "abc":
        method = "ft" if task == "a" else "sift"
        added = run_cli(
            "ledger", "add", led, "--task", task, "--data", task_data[task], "--method", method
        )
        assert added.code == 0, added.err
    cert = root / "c.dsse.json"
    done = run_cli(
        "ledger", "unlearn", led, "--task", "c", "--data", task_data["c"], "--certificate", cert
    )
    assert done.code == 0, done.err
    return {"led": led, "cert": cert, "pub": key.with_name(key.name + ".pub")}


def _failures(led: Path, cert: Path, pub: Path) -> list[str]:
    public = pub.read_bytes()
    results = [*run_audit(led, public), *run_check(led, cert.read_bytes(), public)]
    return [r.line() for r in results if r.status == "FAIL"]


def test_the_clean_ledger_passes(clean: dict[str, Path]) -> None:
    assert _failures(clean["led"], clean["cert"], clean["pub"]) == []


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def _sql(led: Path, statement: str) -> None:
    con = duckdb.connect(str(led / "ledger.duckdb"))
    con.execute(statement)
    con.close()


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
    (payload,) = con.execute("SELECT payload FROM events WHERE seq = 2").fetchone()
    con.execute(
        "UPDATE events SET payload = ? WHERE seq = 2",
        [payload.replace('"n_records":24', '"n_records":25')],
    )
    con.close()


ATTACKS: dict[str, Callable[[Path, Path], None]] = {
    "certificate-payload-bit": lambda led, cert: _edit_envelope(cert, "payload"),
    "certificate-signature-bit": lambda led, cert: _edit_envelope(cert, "sig"),
    "rewritten-event-row": lambda led, cert: _rewrite_event(led),
    "task-row-resurrected": lambda led, cert: _sql(
        led, "UPDATE tasks SET status = 'active', unlearn_seq = NULL WHERE task_id = 'c'"
    ),
    "config-scale-changed": lambda led, cert: _sql(led, "UPDATE config SET scale_bits = 39"),
    "tree-head-signature-forged": lambda led, cert: _sql(
        led, "UPDATE tree_heads SET signature = 'AAAA' || substr(signature, 5) WHERE size = 3"
    ),
    "rolled-back-log": lambda led, cert: _sql(
        led, "DELETE FROM events WHERE seq = 4; DELETE FROM tree_heads WHERE size = 5"
    ),
    "retained-vector-last-byte": lambda led, cert: _flip(led / "vectors/b.safetensors", -1),
    "ft-vector-first-data-byte": lambda led, cert: _flip(led / "vectors/a.safetensors", 4096),
    "state-last-byte": lambda led, cert: _flip(led / "state.safetensors", -1),
    "mask-last-byte": lambda led, cert: _flip(led / "masks/b.safetensors", -1),
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


@pytest.mark.parametrize("target", ["state.safetensors", "vectors/b.safetensors", "cert"])
def test_any_single_byte_change_fails(clean: dict[str, Path], tmp_path: Path, target: str) -> None:
    """Random offsets, header included: a parse failure must be a FAIL, never a pass."""
    source = clean["cert"] if target == "cert" else clean["led"] / target
    size = source.stat().st_size
    for offset in random.Random(target).sample(range(size), 6):
        led, cert = tmp_path / f"led{offset}", tmp_path / f"cert{offset}.json"
        shutil.copytree(clean["led"], led)
        shutil.copy(clean["cert"], cert)
        _flip(cert if target == "cert" else led / target, offset)
        try:
            failures = _failures(led, cert, clean["pub"])
        except Exception as exc:  # an unreadable file is acceptable as a refusal too
            failures = [repr(exc)]
        assert failures, f"byte {offset} of {target} flipped unnoticed"


def test_wrong_public_key_fails_through_the_cli(clean: dict[str, Path], tmp_path: Path) -> None:
    from ledger._internal.keys import generate

    other = generate(tmp_path / "other.key")
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
