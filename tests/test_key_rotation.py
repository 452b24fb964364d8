"""Key rotation: the chain the verifier follows, and the forgeries a retired key attempts."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
from pathlib import Path

import duckdb
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger import generate_key
from ledger._internal.attest.keys import load_private, raw_public
from ledger._internal.log.checkpoint import checkpoint_note
from ledger._internal.log.jcs import canonical
from ledger._internal.log.keychain import rotation_message
from ledger._internal.log.merkle import leaf_hash
from ledger._internal.log.treehead import sign_head
from tests.helpers import run_cli, tree_digest
from verifier.checks import run_audit, run_check


@pytest.fixture(scope="module")
def rotated(
    tmp_path_factory: pytest.TempPathFactory, tiny_base: Path, task_data: dict[str, Path]
) -> dict[str, Path]:
    """led: a added and unlearned (cert ``before``), k0 → k1, b added and unlearned (``after``).
    pre: led just before the rotation; each ``*.checkpoint`` the head then."""
    from ledger.cli import main

    root = tmp_path_factory.mktemp("rotation")
    paths = {name: root / name for name in ("led", "pre", "k0", "k1", "stranger")}
    for name in ("k0", "k1", "stranger"):
        generate_key(paths[name])
    led = paths["led"]

    def ledger(*args: str | Path) -> None:
        main([str(a) for a in args])

    def checkpoint(name: str) -> None:
        paths[name] = root / f"{name}.checkpoint"
        paths[name].write_text(run_cli("ledger", "checkpoint", led).out)

    ledger("init", led, "--base", tiny_base, "--key", paths["k0"])
    for task, cert in (("a", "before"), ("b", "after")):
        if task == "b":
            shutil.copytree(led, paths["pre"])
            checkpoint("pre.head")
            rotation = run_cli(
                "ledger", "rotate-key", led, "--key", paths["k0"], "--new-key", paths["k1"]
            )
            assert rotation.code == 0, rotation.err
            assert rotation.out.startswith("rotated at event 3: key ")
        ledger("add", led, "--task", task, "--data", task_data[task], "--steps", "2")
        paths[cert] = root / f"{cert}.json"
        ledger(
            "unlearn", led, "--task", task, "--data", task_data[task], "--certificate", paths[cert]
        )
    checkpoint("post.head")
    return paths


def _pub(paths: dict[str, Path], key: str) -> bytes:
    return Path(f"{paths[key]}.pub").read_bytes()


def _audit(folder: Path, pub: bytes, *kept: Path) -> list[str]:
    results = run_audit(folder, pub, [(p.name, p.read_bytes()) for p in kept])
    return [r.line() for r in results if r.status == "FAIL"]


def _key_id(paths: dict[str, Path], key: str) -> str:
    from ledger._internal.log.keychain import short_id

    return short_id(raw_public(load_private(paths[key]).public_key()).hex())


def test_later_writes_are_signed_by_the_new_key_without_naming_it(
    rotated: dict[str, Path],
) -> None:
    """add and unlearn after the rotation ran without --key: the new key became the default."""
    with duckdb.connect(str(rotated["led"] / "ledger.duckdb"), read_only=True) as con:
        kinds = [k for (k,) in con.execute("SELECT kind FROM events ORDER BY seq").fetchall()]
    assert kinds == ["init", "add", "unlearn", "key_rotation", "add", "unlearn"]
    status = run_cli("ledger", "status", rotated["led"], "--public-key", f"{rotated['k1']}.pub")
    assert status.code == 0, status.err


@pytest.mark.parametrize("key, place", [("k0", "key 1 of 2"), ("k1", "key 2 of 2")])
def test_the_verifier_follows_the_chain_from_either_key(
    rotated: dict[str, Path], key: str, place: str
) -> None:
    results = run_audit(rotated["led"], _pub(rotated, key), [])
    assert [r.line() for r in results if r.status == "FAIL"] == []
    (public_key,) = [r for r in results if r.name == "public-key"]
    assert place in public_key.detail and _key_id(rotated, "k1") in public_key.detail


def test_a_key_outside_the_chain_fails(rotated: dict[str, Path]) -> None:
    assert _audit(rotated["led"], _pub(rotated, "stranger")) == [
        f"FAIL: public-key: the given key {_key_id(rotated, 'stranger')} is not in the "
        f"ledger's key chain ({_key_id(rotated, 'k0')} → {_key_id(rotated, 'k1')} "
        "(rotated in at event 3))"
    ]


@pytest.mark.parametrize("cert, signer", [("before", "k0"), ("after", "k1")])
@pytest.mark.parametrize("key", ["k0", "k1"])
def test_each_certificate_is_signed_by_the_key_in_force_and_checks_with_any(
    rotated: dict[str, Path], cert: str, signer: str, key: str
) -> None:
    envelope = json.loads(rotated[cert].read_text())
    raw = raw_public(load_private(rotated[signer]).public_key())
    assert envelope["signatures"][0]["keyid"] == hashlib.sha256(raw).hexdigest()
    results = run_check(rotated["led"], rotated[cert].read_bytes(), _pub(rotated, key))
    assert [r.line() for r in results if r.status == "FAIL"] == []


@pytest.mark.parametrize("head", ["pre.head", "post.head", "before", "after"])
def test_heads_kept_on_both_sides_of_the_rotation_are_trusted(
    rotated: dict[str, Path], head: str
) -> None:
    assert _audit(rotated["led"], _pub(rotated, "k1"), rotated[head]) == []


def test_the_retired_key_is_refused_and_changes_nothing(
    rotated: dict[str, Path], task_data: dict[str, Path]
) -> None:
    before = tree_digest(rotated["led"])
    add = run_cli(
        "ledger",
        "add",
        rotated["led"],
        "--task",
        "c",
        "--data",
        task_data["c"],
        "--steps",
        "2",
        "--key",
        rotated["k0"],
    )
    assert add.code != 0
    assert add.err.strip() == (
        "error: the signing key was retired by the key rotation at event 3; sign with the "
        f"current key ({_key_id(rotated, 'k1')})"
    )
    assert tree_digest(rotated["led"]) == before


def test_rotating_to_a_key_the_chain_has_used_is_refused(rotated: dict[str, Path]) -> None:
    before = tree_digest(rotated["led"])
    again = run_cli(
        "ledger", "rotate-key", rotated["led"], "--key", rotated["k1"], "--new-key", rotated["k0"]
    )
    assert again.err.strip() == "error: the new key has signed this ledger before; use a fresh key"
    assert tree_digest(rotated["led"]) == before


def test_retired_key_forks_by_rotating_to_its_own_key(
    rotated: dict[str, Path], task_data: dict[str, Path], tmp_path: Path
) -> None:
    """Who holds the leaked k0 takes the folder from before the rotation, rotates to a key
    of its own and writes on: k1's holders and anyone with a later head catch it; an auditor
    holding only k0 and no later head cannot (FORMAT.md §8)."""
    from ledger.cli import main

    fork, mine = tmp_path / "fork", tmp_path / "mine"
    shutil.copytree(rotated["pre"], fork)
    generate_key(mine)
    main(["rotate-key", str(fork), "--key", str(rotated["k0"]), "--new-key", str(mine)])
    main(
        [
            "add",
            str(fork),
            "--task",
            "a2",
            "--data",
            str(task_data["a"]),
            "--steps",
            "2",
            "--readd-deleted",
        ]
    )
    assert _audit(fork, _pub(rotated, "k1")) == [
        f"FAIL: public-key: the given key {_key_id(rotated, 'k1')} is not in the ledger's key "
        f"chain ({_key_id(rotated, 'k0')} → {_key_id({'mine': mine}, 'mine')} "
        "(rotated in at event 3))"
    ]
    assert _audit(fork, _pub(rotated, "k0"), rotated["post.head"])[0].startswith(
        "FAIL: trusted-heads: "
    )
    assert _audit(fork, _pub(rotated, "k0")) == []


def _append_rotation(
    folder: Path,
    old_hex: str,
    new: Ed25519PrivateKey | str,
    head_key: Ed25519PrivateKey,
) -> None:
    """Append a rotation to ``new`` and its head, signed by ``head_key``. A private ``new``
    signs the rotation message as a real rotation does; a bare hex key gets a forged one."""
    db = str(folder / "ledger.duckdb")
    with duckdb.connect(db) as con:
        (log_id,) = con.execute("SELECT log_id FROM config").fetchone() or ("",)
        payloads = [p for (p,) in con.execute("SELECT payload FROM events ORDER BY seq").fetchall()]
        leaves = [leaf_hash(p.encode()) for p in payloads]
        seq = len(payloads)
        (time,) = con.execute(
            "SELECT json_extract_string(body, '$.time') FROM tree_heads WHERE size = ?", [seq]
        ).fetchone() or ("",)
        if isinstance(new, str):
            new_hex, signature = new, head_key.sign(b"no signature by the new key")
        else:
            new_hex = raw_public(new.public_key()).hex()
            signature = new.sign(rotation_message(log_id, old_hex, new_hex, leaves))
        event = {
            "kind": "key_rotation",
            "new_key_signature": base64.b64encode(signature).decode(),
            "new_public_key": new_hex,
            "old_public_key": old_hex,
            "seq": seq,
            "time": time,
        }
        payload = canonical(event).decode()
        head = sign_head(head_key, log_id, [*leaves, leaf_hash(payload.encode())], time)
        con.execute("INSERT INTO events VALUES (?, 'key_rotation', NULL, ?)", [seq, payload])
        con.execute("INSERT INTO tree_heads VALUES (?, ?, ?)", [seq + 1, head.body, head.signature])
        con.execute("CHECKPOINT")


def _hex(key: Ed25519PrivateKey) -> str:
    return raw_public(key.public_key()).hex()


def test_a_rotation_to_the_trusted_key_without_its_signature_is_refused(
    rotated: dict[str, Path], tmp_path: Path
) -> None:
    """The leaked k0 forks the old history and 'rotates' to k1, so that an auditor trusting
    k1 takes the fork: the head after a rotation is the old key's to sign, so only the new
    key's own signature over the history stops it."""
    fork = tmp_path / "fork"
    shutil.copytree(rotated["pre"], fork)
    k0 = load_private(rotated["k0"])
    _append_rotation(fork, _hex(k0), _hex(load_private(rotated["k1"])), k0)
    expected = "event 3 (key rotation): the new key's signature over the history before it fails"
    assert [line for line in _audit(fork, _pub(rotated, "k1")) if expected in line]
    status = run_cli("ledger", "status", fork, "--public-key", f"{rotated['k1']}.pub")
    assert status.code != 0
    assert status.err.strip() == "error: event 3: the new key did not sign the key rotation"


def test_a_strangers_rotations_off_the_trusted_key_are_refused_by_readers(
    rotated: dict[str, Path], tmp_path: Path
) -> None:
    """Someone with keys of their own and only k1.pub appends k1 → k3 (k3's own rotation
    message genuine) and k3 → k4, signing both heads with k3: the latest head is k3's to
    sign, so only the first rotation's head, which k1 never signed, gives it away."""
    fork = tmp_path / "fork"
    shutil.copytree(rotated["led"], fork)
    k3, k4 = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    _append_rotation(fork, _hex(load_private(rotated["k1"])), k3, k3)
    _append_rotation(fork, _hex(k3), k4, k3)
    status = run_cli("ledger", "status", fork, "--public-key", f"{rotated['k1']}.pub")
    assert status.err.strip() == (
        "error: the tree head of size 7 is not signed by the key the chain puts in force "
        f"there ({_key_id(rotated, 'k1')})"
    )
    assert _audit(fork, _pub(rotated, "k1"))[0].startswith("FAIL: tree-heads: head 7: ")


def test_a_checkpoint_taken_right_after_the_rotation_is_trusted(
    rotated: dict[str, Path], tmp_path: Path
) -> None:
    """Its size is the rotation's own head, the old key's to sign, but the old key is
    retired by then: the new key's checkpoint of that size stands."""
    from ledger.cli import main

    led = tmp_path / "led"
    shutil.copytree(rotated["pre"], led)
    main(["rotate-key", str(led), "--key", str(rotated["k0"]), "--new-key", str(rotated["k1"])])
    checkpoint = tmp_path / "rotation.checkpoint"
    checkpoint.write_text(run_cli("ledger", "checkpoint", led).out)
    assert checkpoint.read_text().split("\n")[1] == "4"
    assert _audit(led, _pub(rotated, "k0"), checkpoint) == []


def test_a_retired_keys_checkpoint_past_the_folder_accuses_no_one(
    rotated: dict[str, Path], tmp_path: Path
) -> None:
    """The leaked k0 signs a checkpoint of size 50 for the honest folder's log: it must not
    read as a rollback of that folder, because only the current key signs past its size."""
    with duckdb.connect(str(rotated["led"] / "ledger.duckdb"), read_only=True) as con:
        (log_id,) = con.execute("SELECT log_id FROM config").fetchone() or ("",)
    fake = tmp_path / "fake.checkpoint"
    fake.write_text(checkpoint_note(log_id, 50, "00" * 32, load_private(rotated["k0"])))
    assert _audit(rotated["led"], _pub(rotated, "k1"), fake) == [
        "FAIL: trusted-heads: fake.checkpoint: no signature by the key the folder's key chain "
        "puts in force at size 50 (a forged checkpoint, or a folder rolled back or forked "
        "from before a key rotation)"
    ]
