"""Deleted data stays deleted: the same data or vector under a new id is refused or announced."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import duckdb
import numpy as np
import pytest

from tests.helpers import Result, tree_digest
from verifier.checks import run_audit
from verifier.context import replay


@pytest.fixture
def unlearned(
    tmp_path: Path,
    tiny_base: Path,
    key: Path,
    task_data: dict[str, Path],
    ledger_cli: Callable[..., Result],
) -> Path:
    led = tmp_path / "led"
    assert ledger_cli("init", led, "--base", tiny_base, "--key", key).code == 0
    assert ledger_cli("add", led, "--task", "a", "--data", task_data["a"], "--steps", "2").code == 0
    done = ledger_cli(
        "unlearn",
        led,
        "--task",
        "a",
        "--data",
        task_data["a"],
        "--certificate",
        tmp_path / "a.json",
    )
    assert done.code == 0, done.err
    return led


def _events(led: Path) -> list[dict[str, object]]:
    con = duckdb.connect(str(led / "ledger.duckdb"), read_only=True)
    rows = con.execute("SELECT payload FROM events ORDER BY seq").fetchall()
    con.close()
    return [json.loads(p) for (p,) in rows]


def test_re_adding_deleted_data_under_a_new_id_is_refused_naming_the_certificate(
    unlearned: Path, task_data: dict[str, Path], ledger_cli: Callable[..., Result]
) -> None:
    before = tree_digest(unlearned)
    again = ledger_cli("add", unlearned, "--task", "a2", "--data", task_data["a"], "--steps", "2")
    assert again.code == 1 and again.err.count("\n") == 1, again
    assert "this data was deleted: task 'a'" in again.err
    assert "certificates/2.dsse.json" in again.err and "--readd-deleted" in again.err
    assert tree_digest(unlearned) == before


def test_an_announced_re_add_is_recorded_and_reported_and_a_silent_one_fails(
    unlearned: Path, key: Path, task_data: dict[str, Path], ledger_cli: Callable[..., Result]
) -> None:
    added = ledger_cli(
        "add",
        unlearned,
        "--task",
        "a2",
        "--data",
        task_data["a"],
        "--steps",
        "2",
        "--readd-deleted",
    )
    assert added.code == 0, added.err
    events = _events(unlearned)
    assert events[2]["kind"] == "unlearn" and "data_hash" in events[2]
    assert events[3]["readds"] == [{"task_id": "a", "unlearn_seq": 2}]
    results = run_audit(unlearned, key.with_name(key.name + ".pub").read_bytes())
    assert [r.line() for r in results if r.status == "FAIL"] == []
    lines = [r.line() for r in results if r.name == "replay"]
    assert lines == ["ok: replay: task a2 (event 3) re-adds a, unlearned at event 2"]
    # the same event without its readds field: a resurrection nobody announced
    silent = [*events[:3], {k: v for k, v in events[3].items() if k != "readds"}]
    problems = replay(silent, None).problems
    assert any("re-adds the deleted data or vector of a as task a2" in p for p in problems)


def test_a_copy_of_the_data_under_other_bytes_is_the_same_data(
    unlearned: Path, tmp_path: Path, task_data: dict[str, Path], ledger_cli: Callable[..., Result]
) -> None:
    """Same records, other whitespace and key order: the data hash, hence the rule, is the same."""
    records = [json.loads(line) for line in task_data["a"].read_text().splitlines()]
    copy = tmp_path / "copy.jsonl"
    copy.write_text(
        "".join(json.dumps(dict(reversed(r.items())), indent=None) + "\r\n" for r in records)
    )
    again = ledger_cli("add", unlearned, "--task", "a3", "--data", copy, "--steps", "2")
    assert again.code == 1 and "this data was deleted" in again.err


def test_check_fails_once_the_deletion_no_longer_holds(
    tmp_path: Path,
    tiny_base: Path,
    key: Path,
    task_data: dict[str, Path],
    ledger_cli: Callable[..., Result],
) -> None:
    """The data subject runs `check`: it must see the folder as it is now, not as certified."""
    from ledger import open_ledger
    from ledger._internal.vectors.tensorfile import read_tensors, write_tensors
    from verifier.checks import run_check

    led, cert = tmp_path / "led", tmp_path / "a.json"
    assert ledger_cli("init", led, "--base", tiny_base, "--key", key).code == 0
    for task in "ab":
        assert (
            ledger_cli("add", led, "--task", task, "--data", task_data[task], "--steps", "2").code
            == 0
        )
    with open_ledger(led) as opened:
        kept = opened.read_vector("a")
    done = ledger_cli(
        "unlearn", led, "--task", "a", "--data", task_data["a"], "--certificate", cert
    )
    assert done.code == 0, done.err
    public = key.with_name(key.name + ".pub").read_bytes()

    def failures(folder: Path) -> list[str]:
        return [
            r.line() for r in run_check(folder, cert.read_bytes(), public) if r.status == "FAIL"
        ]

    assert failures(led) == []
    merged_back = Path(shutil.copytree(led, tmp_path / "merged-back"))
    state = read_tensors(merged_back / "state.safetensors")
    (merged_back / "state.safetensors").unlink()
    write_tensors(
        merged_back / "state.safetensors",
        {n: q.astype(np.int64) + kept[n].astype(np.int64) for n, q in state.items()},
    )
    assert any(f.startswith("FAIL: state-digest") for f in failures(merged_back))
    again = ledger_cli(
        "add", led, "--task", "a2", "--data", task_data["a"], "--steps", "2", "--readd-deleted"
    )
    assert again.code == 0, again.err
    assert failures(led) == ["FAIL: holds-now: the deleted data was re-added as task a2 at event 4"]
