"""Write the committed ledger folders under tests/assets/ledgers/ (run by hand, rarely).

    .venv/bin/python -m tests.assets.make_ledgers

``honest/`` is a whole ledger (tiny model; a and b added, a unlearned with a
certificate), signed with a fixed key so the bytes are reproducible in meaning
if not in every timestamp. Each attack folder holds only the files its
attacker changed or planted, named after the attack; the test lays them over
a copy of ``honest/``. The verifier is then tested against bytes that no code
of the commit under test produced: a format change that breaks old ledgers
fails here, where a round trip through today's writer would not. The committed
folders were written before the compact vector encoding (FORMAT.md §3): their vectors
are dense I64, and they stay so, as the proof that such folders still read; rerunning
this script would replace them with compact ones.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from safetensors.numpy import load_file, save_file

ASSETS = Path(__file__).resolve().parent / "ledgers"
SEED = b"unlearning-ledger test asset key v1"
# Files a folder may hold whose contents the format ignores (FORMAT.md §1): not committed.
IGNORED = ("LOCK", "signing_key_path")


def fixed_key(path: Path) -> Ed25519PrivateKey:
    """The assets' operator key, from a fixed seed; its public half is committed."""
    key = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(SEED).digest())
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    path.with_name(path.name + ".pub").write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return key


def _records(task: str) -> str:
    words = {"a": ("good", "great", "fun"), "b": ("bad", "dull", "boring")}[task]
    rows = [
        {"text": f"a {w} movie {i}", "label": int(task == "a"), "user": task}
        for i, w in enumerate(words * 4)
    ]
    return "".join(json.dumps(r) + "\n" for r in rows)


def _honest(work: Path) -> Path:
    """The honest ledger; a's vector and mask, as they were before the unlearn deleted
    them, are kept beside it for the attacks that bring them back."""
    from ledger import open_ledger
    from ledger.cli import main

    key = work / "operator.key"
    fixed_key(key)
    led = work / "led"
    main(["base", "tiny", str(work / "base")])
    main(["init", str(led), "--base", str(work / "base"), "--key", str(key)])
    for task in "ab":
        data = work / f"{task}.jsonl"
        data.write_text(_records(task))
        main(["add", str(led), "--task", task, "--data", str(data), "--steps", "2"])
        if task == "a":
            shutil.copy(led / "vectors" / "a.safetensors", work / "a-vector.safetensors")
            shutil.copy(led / "masks" / "a.safetensors", work / "a-mask.safetensors")
            with open_ledger(led) as opened:  # q as int64, whatever the stored encoding
                save_file(opened.read_vector("a"), str(work / "a-q.safetensors"))
    main(
        [
            "unlearn",
            str(led),
            "--task",
            "a",
            "--data",
            str(work / "a.jsonl"),
            "--certificate",
            str(work / "a.dsse.json"),
        ]
    )
    return led


def _vector_merged_back(honest: Path, out: Path, work: Path) -> None:
    """The unlearned task's vector added back into the state file, header kept."""
    kept = load_file(work / "a-q.safetensors")
    state = bytearray((honest / "state.safetensors").read_bytes())
    length = int.from_bytes(state[:8], "little")
    for name, entry in json.loads(state[8 : 8 + length]).items():
        start, end = (8 + length + offset for offset in entry["data_offsets"])
        total = np.frombuffer(state[start:end], "<i8") + kept[name].reshape(-1)
        state[start:end] = total.astype("<i8").tobytes()
    (out / "state.safetensors").write_bytes(bytes(state))


def _deleted_vector_kept(honest: Path, out: Path, work: Path) -> None:
    """The unlearned task's vector file left in place, as a backup would leave it."""
    (out / "vectors").mkdir()
    shutil.copy(work / "a-vector.safetensors", out / "vectors" / "a.safetensors")


def _mask_swapped(honest: Path, out: Path, work: Path) -> None:
    """b's mask replaced by a's, the state unchanged."""
    (out / "masks").mkdir()
    shutil.copy(work / "a-mask.safetensors", out / "masks" / "b.safetensors")


def _certificate_resigned_by_stranger(honest: Path, out: Path, work: Path) -> None:
    """The stored certificate file re-signed by another key (the database row unchanged)."""
    from verifier.dsse import pae

    (certificate,) = (honest / "certificates").iterdir()
    envelope = json.loads(certificate.read_text())
    stranger = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"stranger").digest())
    payload = base64.b64decode(envelope["payload"])
    sig = stranger.sign(pae(envelope["payloadType"], payload))
    envelope["signatures"][0]["sig"] = base64.b64encode(sig).decode()
    (out / "certificates").mkdir()
    (out / "certificates" / certificate.name).write_text(json.dumps(envelope))


ATTACKS = {
    "vector-merged-back-into-state": _vector_merged_back,
    "deleted-vector-kept": _deleted_vector_kept,
    "mask-swapped": _mask_swapped,
    "certificate-resigned-by-stranger": _certificate_resigned_by_stranger,
}


def main() -> None:
    shutil.rmtree(ASSETS, ignore_errors=True)
    ASSETS.mkdir(parents=True)
    with tempfile.TemporaryDirectory(prefix="ulg-assets-") as tmp:
        work = Path(tmp)
        honest = _honest(work)
        shutil.copytree(honest, ASSETS / "honest", ignore=shutil.ignore_patterns(*IGNORED))
        shutil.copy(work / "operator.key.pub", ASSETS / "operator.key.pub")
        for name, attack in ATTACKS.items():
            (ASSETS / name).mkdir()
            attack(ASSETS / "honest", ASSETS / name, work)
    print(f"wrote {ASSETS}")


if __name__ == "__main__":
    main()
