"""A crash at any point leaves the old state or the new one; a failed replay changes nothing."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from ledger import Hyper, add_task, unlearn_task
from ledger import status as ledger_status
from ledger._internal.errors import DeterminismMismatch, LedgerError
from ledger._internal.folder import journal
from ledger._internal.folder.ledgerdir import open_ledger
from tests.helpers import tree_digest
from verifier.checks import run_audit


class Crash(BaseException):
    """Stands in for a kill: not an Exception, so no handler on the way up catches it."""


@pytest.fixture(scope="module")
def one_task(
    tmp_path_factory: pytest.TempPathFactory,
    tiny_base: Path,
    key: Path,
    task_data: dict[str, Path],
) -> Path:
    from ledger._internal.ops.create import init_ledger

    led = tmp_path_factory.mktemp("atomic") / "led"
    init_ledger(led, tiny_base, key, sign_seed=3)
    add_task(led, "a", task_data["a"], method="sift", hyper=Hyper(steps=3))
    return led


@pytest.fixture
def led(one_task: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "led"
    shutil.copytree(one_task, copy)
    return copy


def _audit_ok(led: Path, key: Path) -> None:
    results = run_audit(led, key.with_name(key.name + ".pub").read_bytes())
    assert [r.line() for r in results if r.status == "FAIL"] == []


def _add_b(led: Path, data: dict[str, Path]) -> None:
    add_task(led, "b", data["b"], method="sift", hyper=Hyper(steps=3))


def test_crash_after_commit_before_moves_is_finished_on_reopen(
    led: Path, key: Path, task_data: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(root: Path, plan: journal.Plan) -> None:
        raise Crash

    monkeypatch.setattr(journal, "apply_plan", crash)
    with pytest.raises(Crash):
        _add_b(led, task_data)
    monkeypatch.undo()
    assert (led / "journal.json").exists()
    assert not (led / "vectors" / "b.safetensors").exists()
    assert ledger_status(led)["active"] == ["a", "b"]  # reopening finished the write
    assert not (led / "journal.json").exists()
    _audit_ok(led, key)


def test_crash_halfway_through_the_moves_is_finished_on_reopen(
    led: Path, key: Path, task_data: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    real_replace = os.replace
    calls = []

    def replace_then_crash(src: str, dst: str) -> None:
        calls.append(src)
        if len(calls) == 3:  # journal.json itself, then the state file, then crash
            raise Crash
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace_then_crash)
    with pytest.raises(Crash):
        _add_b(led, task_data)
    monkeypatch.undo()
    assert ledger_status(led)["active"] == ["a", "b"]
    _audit_ok(led, key)


def test_crash_before_the_database_commit_is_rolled_back(
    led: Path, key: Path, task_data: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from ledger._internal.folder.store import Store

    before = tree_digest(led)

    def crash(self: Store, write: object) -> None:
        raise Crash

    monkeypatch.setattr(Store, "apply", crash)
    monkeypatch.setattr(journal, "discard_plan", lambda root, plan: None)  # killed: no cleanup
    with pytest.raises(Crash):
        _add_b(led, task_data)
    monkeypatch.undo()
    assert json.loads((led / "journal.json").read_text())["target_size"] == 3
    assert ledger_status(led)["active"] == ["a"]
    assert tree_digest(led) == before
    _audit_ok(led, key)


def test_replay_on_another_thread_count_is_a_named_mismatch(
    led: Path, task_data: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The platform caps this process at one thread: the replay must refuse, naming it."""
    torch.set_num_threads(1)
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)
    before = tree_digest(led)
    with pytest.raises(DeterminismMismatch, match="threads: recorded 2, current 1"):
        unlearn_task(led, "a", task_data["a"], tmp_path / "cert.json")
    assert tree_digest(led) == before
    assert not (tmp_path / "cert.json").exists()


def test_replay_under_another_torch_version_is_a_named_mismatch(
    led: Path, task_data: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch, "__version__", "9.9.9")
    with pytest.raises(DeterminismMismatch, match="torch: recorded"):
        unlearn_task(led, "a", task_data["a"], tmp_path / "cert.json")


def test_a_replay_that_misses_the_digest_changes_nothing(
    led: Path, task_data: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A nondeterministic replay (simulated by zeroing one tensor) must never be subtracted."""
    from ledger._internal.training.finetune import finetune

    real = finetune

    def drifting(*args: object, **kwargs: object) -> dict[str, object]:
        tau = real(*args, **kwargs)  # type: ignore[arg-type]
        first = sorted(tau)[0]
        tau[first] = tau[first] * 0
        return tau  # type: ignore[return-value]

    monkeypatch.setattr("ledger._internal.ops.unlearn.finetune", drifting)
    before = tree_digest(led)
    with pytest.raises(LedgerError, match=r"replayed digest .* != recorded"):
        unlearn_task(led, "a", task_data["a"], tmp_path / "cert.json")
    assert tree_digest(led) == before
    with open_ledger(led) as ledger:
        assert ledger.store.active_ids() == ["a"]
