"""The audits: each merge method against a hand computation, the data loaders, and a
quick end-to-end run of both audits on the tiny model (shape, resume, real ledger)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from audits.accuracy_vs_tasks import EXPLORATIONS, SETTINGS
from audits.datasets import rotten_tomatoes_tasks, select
from audits.methods import METHODS, best
from audits.methods.bias_only import fit_shift
from audits.methods.emr import task_delta, unified
from audits.methods.tall_masks import masked
from audits.methods.ties import merge, trimmed
from audits.scoring import balanced_accuracy, interval
from ledger.data import movielens_tasks, write_jsonl

f32 = np.float32
NAMES = [
    "zero-shot",
    "majority",
    "bias-only",
    "local-ft",
    "ft-merge",
    "sift-masks",
    "sift-masks-count",
    "tall-masks",
    "emr",
    "ties",
    "central-ft",
]


def test_registry_holds_the_eleven_methods_in_order() -> None:
    assert list(METHODS) == NAMES


def test_ties_trims_elects_and_averages_disjointly() -> None:
    a = np.array([0.9, -0.1, 0.5, 0.0, -0.8], dtype=f32)
    b = np.array([-0.2, 0.7, 0.6, 0.05, 0.3], dtype=f32)
    assert trimmed(a, keep=0.4)[0].tolist() == [0, 4]  # |0.9|, |-0.8|
    merged = merge([trimmed(a, keep=0.4), trimmed(b, keep=0.4)], 5)
    # a keeps 0.9 at 0 and -0.8 at 4; b keeps 0.7 at 1 and 0.6 at 2.
    assert merged.tolist() == pytest.approx([0.9, 0.7, 0.6, 0.0, -0.8])
    c = np.array([-1.0, 0, 0, 0, 0.4], dtype=f32)
    # entry 0: mass 0.9 - 1.0 < 0 elects "-": only c's -1.0 counts;
    # entry 4: mass -0.8 + 0.4 < 0: only a's -0.8 counts.
    merged = merge([trimmed(a, keep=0.4), trimmed(c, keep=0.4)], 5)
    assert merged.tolist() == pytest.approx([-1.0, 0.0, 0.0, 0.0, -0.8])


def test_emr_elects_sign_by_sum_and_magnitude_by_max() -> None:
    a = np.array([0.5, -0.2, 0.1], dtype=f32)
    b = np.array([0.3, 0.6, -0.4], dtype=f32)
    uni = unified([a, b])
    assert uni.tolist() == pytest.approx([0.5, 0.6, -0.4])
    # a agrees with uni at entries 0 only: λ = (0.5 + 0.2 + 0.1) / 0.5.
    assert task_delta(a, uni).tolist() == pytest.approx([0.8, 0.0, 0.0])


def test_tall_mask_keeps_entries_where_the_task_dominates() -> None:
    tau = np.array([1.0, 0.1, -0.5], dtype=f32)
    mtl = np.array([1.5, 2.0, -0.6], dtype=f32)
    # |τ| >= λ|mtl - τ| with λ = 0.5: 1 >= .25 yes, .1 >= .95 no, .5 >= .05 yes.
    assert masked(tau, mtl, 0.5).tolist() == pytest.approx([1.5, 0.0, -0.6])
    assert masked(tau, mtl, 0.2).tolist() == pytest.approx([1.5, 0.0, -0.6])
    assert masked(tau, mtl, 4.0).tolist() == pytest.approx([0.0, 0.0, -0.6])  # .5 >= .4 only


def test_bias_shift_recovers_the_label_prior() -> None:
    y = np.array([1.0] * 75 + [0.0] * 25)
    shift = fit_shift(np.zeros(100), y)
    assert shift == pytest.approx(np.log(3), rel=0.05)
    assert fit_shift(np.zeros(4), np.ones(4)) > 3  # one class: finite, pushed to it


def test_balanced_accuracy_and_interval() -> None:
    truth = np.array([1, 1, 1, 0])
    assert balanced_accuracy(np.array([1, 1, 1, 1]), truth) == 0.5
    assert balanced_accuracy(np.array([1, 1, 0, 0]), truth) == pytest.approx((2 / 3 + 1) / 2)
    low, high = interval([0.5, 0.6, 0.7, 0.8])
    assert 0.5 <= low < 0.65 < high <= 0.8
    assert best([0.2, 0.3, 0.4], [0.7, 0.9, 0.9]) == 0.3


def test_rotten_tomatoes_tasks_and_selection() -> None:
    tasks = rotten_tomatoes_tasks()
    assert len(tasks) == 338  # movies with >= 20 fresh/rotten snippets
    assert all(len(t.train) + len(t.test) >= 20 and t.test for t in tasks)
    assert {r["label"] for t in tasks for r in t.train} == {0, 1}
    assert tasks == rotten_tomatoes_tasks()
    small, large = select(tasks, 10, 150), select(tasks, 100, 150)
    assert large.evaluation[:10] == small.evaluation
    assert not {t.task_id for t in large.evaluation} & {t.task_id for t in large.pool}
    with pytest.raises(ValueError):
        select(tasks, 200, 150)


def _run(module: str, tmp: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    args = ["--quick", "--model", "tiny", "--cache", str(tmp / "cache"), "--out", str(tmp / "out")]
    return subprocess.run(
        [sys.executable, "-m", f"audits.{module}", *args, *extra],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).resolve().parent.parent,
    )


@pytest.mark.slow
def test_quick_audits_end_to_end(tmp_path: Path) -> None:
    first = _run("accuracy_vs_tasks", tmp_path)
    assert first.returncode == 0, first.stderr
    assert "fine-tune" in first.stderr  # progress is shown
    out = tmp_path / "out"
    accuracy = json.loads((out / "accuracy_vs_tasks.json").read_text())
    balanced = json.loads((out / "accuracy_vs_tasks_balanced.json").read_text())
    assert set(accuracy) == {s.key for s in SETTINGS} - EXPLORATIONS
    for table in (accuracy, balanced):
        for by_method in table.values():
            assert sorted(by_method) == sorted(NAMES)
            for by_size in by_method.values():
                assert set(by_size) == {"2", "4"}
                assert all(0 <= v <= 1 for v in by_size.values())
    details = json.loads((out / "accuracy_vs_tasks_details.json").read_text())
    assert "cores" in details["run"]["machine"] and "--quick" in details["run"]["command"]
    # The majority baseline, recomputed here from the data itself.
    tasks = select(rotten_tomatoes_tasks(), 4, 8).evaluation
    expected = np.mean([np.mean([r["label"] == t.majority for r in t.test]) for t in tasks])
    assert accuracy["rotten-tomatoes"]["majority"]["4"] == pytest.approx(expected)
    assert (out / "accuracy_vs_tasks.png").stat().st_size > 10_000
    assert "## movielens" in (out / "accuracy_vs_tasks.md").read_text()

    again = _run("accuracy_vs_tasks", tmp_path, "--only", "rotten-tomatoes")
    assert again.returncode == 0, again.stderr
    assert "fine-tune" not in again.stderr and "pretraining" not in again.stderr  # all cached
    # The report is rebuilt from every setting's cached scores, so nothing is lost.
    assert json.loads((out / "accuracy_vs_tasks.json").read_text()) == accuracy

    cost = _run("unlearning_cost", tmp_path)
    assert cost.returncode == 0, cost.stderr
    assert "sift fine-tune" not in cost.stderr  # reuses the accuracy audit's vectors
    result = json.loads((out / "unlearning_cost.json").read_text())
    assert result["ledger_vectors_identical"] == 4 and result["ledger_vectors_different"] == 0
    rows = result["methods"]
    assert sorted(rows) == sorted(NAMES)
    assert rows["sift-masks"]["4"]["steps"] == 20 and rows["tall-masks"]["4"]["steps"] == 60
    assert rows["sift-masks"]["4"]["seconds"] > 0
    assert rows["sift-masks"]["4"]["seconds_how"].startswith("measured: real")
    assert result["ledger_storage_bytes"]["4"] > 0


def test_unknown_setting_is_a_usage_error(tmp_path: Path) -> None:
    result = _run("accuracy_vs_tasks", tmp_path, "--only", "imagenet")
    assert result.returncode == 2
    assert "unknown setting" in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_tasks_dir_runs_every_method_on_outside_tasks(tmp_path: Path) -> None:
    """Two task files nobody here tuned on: every method scored at T = 2."""
    tasks_dir = tmp_path / "outside"
    tasks_dir.mkdir()
    for task in movielens_tasks()[:2]:
        write_jsonl(tasks_dir / f"{task.task_id}.jsonl", task.train + task.test)
    result = _run("accuracy_vs_tasks", tmp_path, "--tasks-dir", str(tasks_dir))
    assert result.returncode == 0, result.stderr
    balanced = json.loads((tmp_path / "out" / "accuracy_vs_tasks_balanced.json").read_text())
    assert list(balanced) == ["outside"]
    assert sorted(balanced["outside"]) == sorted(NAMES)
    assert all(set(by_size) == {"2"} for by_size in balanced["outside"].values())
    empty = tmp_path / "empty"
    empty.mkdir()
    refused = _run("accuracy_vs_tasks", tmp_path, "--tasks-dir", str(empty))
    assert refused.returncode == 2 and "holds no *.jsonl task files" in refused.stderr
