"""Rollback and forks: caught against a head someone kept (a checkpoint, a certificate, --state)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.helpers import run_cli
from verifier.checks import run_audit


@pytest.fixture(scope="module")
def history(
    tmp_path_factory: pytest.TempPathFactory,
    tiny_base: Path,
    key: Path,
    task_data: dict[str, Path],
) -> dict[str, Path]:
    """led: a, b added, a unlearned. before: led after adding a. fork: before + c."""
    from ledger.cli import main

    root = tmp_path_factory.mktemp("trusted")
    led = root / "led"

    def ledger(*args: str | Path) -> None:
        main([str(a) for a in args])

    ledger("init", led, "--base", tiny_base, "--key", key)
    ledger("add", led, "--task", "a", "--data", task_data["a"], "--steps", "2")
    shutil.copytree(led, root / "before")
    ledger("add", led, "--task", "b", "--data", task_data["b"], "--steps", "2")
    shutil.copytree(root / "before", root / "fork")
    ledger("add", root / "fork", "--task", "c", "--data", task_data["c"], "--steps", "2")
    ledger(
        "unlearn", led, "--task", "a", "--data", task_data["a"], "--certificate", root / "a.json"
    )
    checkpoint = run_cli("ledger", "checkpoint", led)
    assert checkpoint.code == 0, checkpoint.err
    (root / "led.checkpoint").write_text(checkpoint.out)
    return {
        "led": led,
        "before": root / "before",
        "fork": root / "fork",
        "checkpoint": root / "led.checkpoint",
        "cert": root / "a.json",
        "pub": key.with_name(key.name + ".pub"),
    }


def _fails(h: dict[str, Path], folder: str, *kept: str, state: Path | None = None) -> list[str]:
    trusted = [(k, h[k].read_bytes()) for k in kept]
    results = run_audit(h[folder], h["pub"].read_bytes(), trusted, state)
    return [r.line() for r in results if r.status == "FAIL"]


def test_the_checkpoint_is_a_c2sp_signed_note(history: dict[str, Path]) -> None:
    origin, size, root, blank, signature = history["checkpoint"].read_text().split("\n")[:5]
    assert origin.startswith("unlearning-ledger/") and size == "4" and root and blank == ""
    assert signature.startswith("\u2014 " + origin + " ")


def test_the_folder_that_grew_from_a_kept_head_passes(history: dict[str, Path]) -> None:
    assert _fails(history, "led", "checkpoint", "cert") == []


@pytest.mark.parametrize("kept", ["checkpoint", "cert"])
def test_a_rolled_back_folder_fails(history: dict[str, Path], kept: str) -> None:
    assert _fails(history, "before", kept) == [
        f"FAIL: trusted-heads: rolled back from size 4 to 2 ({kept})"
    ]


def test_a_forked_folder_fails(history: dict[str, Path]) -> None:
    assert _fails(history, "fork", "checkpoint") == [
        "FAIL: trusted-heads: rolled back from size 4 to 3 (checkpoint)"
    ]
    # a checkpoint of the fork's own size: same size, other history
    fork_head = run_cli("ledger", "checkpoint", history["fork"]).out
    shorter = history["checkpoint"].with_name("fork.checkpoint")
    shorter.write_text(fork_head)
    results = run_audit(
        history["led"], history["pub"].read_bytes(), [("fork", shorter.read_bytes())]
    )
    assert [r.line() for r in results if r.status == "FAIL"] == [
        "FAIL: trusted-heads: fork at size 3: fork is not in this history"
    ]


def test_a_checkpoint_signed_by_another_key_is_no_trusted_head(
    history: dict[str, Path], tmp_path: Path
) -> None:
    from ledger import generate_key

    other = tmp_path / "other.key"
    generate_key(other)
    note = run_cli("ledger", "checkpoint", history["led"], "--key", other)
    assert note.code == 1 and "not this ledger's key" in note.err


def test_state_remembers_the_largest_head_and_refuses_an_older_folder_later(
    history: dict[str, Path], tmp_path: Path
) -> None:
    state = tmp_path / "state"
    assert _fails(history, "led", state=state) == []
    assert len(list(state.glob("*.json"))) == 1
    assert _fails(history, "before", state=state)[0].startswith(
        "FAIL: trusted-heads: rolled back from size 4 to 2"
    )


def test_the_cli_names_the_rollback(history: dict[str, Path]) -> None:
    result = run_cli(
        "verifier",
        "audit",
        "--ledger",
        history["before"],
        "--public-key",
        history["pub"],
        "--trusted-head",
        history["checkpoint"],
    )
    assert result.code == 1 and "rolled back from size 4 to 2" in result.err
