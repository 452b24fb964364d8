"""The heterogeneity audit: its task family (labels, balance, held-out sets, nesting,
the share of non-shared tasks) and a quick end-to-end run on the tiny model."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from audits.heterogeneity import (
    KEYS,
    PER_LABEL,
    ROTATION,
    SHARED,
    SHARES,
    SIZES,
    WIDE_PER_LABEL,
    genre_task,
    movies,
    non_shared,
    plan,
    served,
)
from audits.methods import METHODS
from ledger.data import movielens_tasks, split


def test_movie_texts_are_the_movielens_loaders() -> None:
    texts = [m.text for m in movies()]
    assert len(texts) == len(set(texts)) == 9061
    loader = {r["text"] for t in movielens_tasks() for r in t.train + t.test}
    assert loader == set(texts)


def _genres(text: str) -> set[str]:
    return set(text.rsplit(" | ", 1)[1].split(", "))


@pytest.mark.parametrize(
    ("genre", "index"), [(SHARED, 0), (SHARED, 7), ("Comedy", 1), ("Sci-Fi", 0)]
)
def test_a_task_labels_its_genre_balanced_with_a_disjoint_wide_set(genre: str, index: int) -> None:
    member = genre_task(genre, index)
    core = member.task.train + member.task.test
    for row in core + member.wide:
        assert row["label"] == int(genre in _genres(row["text"]))
    assert sorted(r["label"] for r in core) == [0] * PER_LABEL + [1] * PER_LABEL
    assert sorted(r["label"] for r in member.wide) == [0] * WIDE_PER_LABEL + [1] * WIDE_PER_LABEL
    assert member.task.test and member.task.train
    assert not set(member.core_ids) & set(member.wide_ids)
    assert len(set(member.core_ids)) == 2 * PER_LABEL
    assert len(set(member.wide_ids)) == 2 * WIDE_PER_LABEL
    # The project's hash split, keyed by movieId, decides train and test.
    texts = {m.movie_id: m.text for m in movies()}
    keyed = [
        (str(i), {"text": texts[i], "label": int(genre in _genres(texts[i]))})
        for i in member.core_ids
    ]
    assert split(member.task_id, keyed) == member.task
    # The methods score the test rows first, then the wide ones.
    assert served(member).test == member.task.test + member.wide


def test_tasks_depend_only_on_genre_and_index() -> None:
    first = genre_task(SHARED, 3)
    genre_task.cache_clear()
    again = genre_task(SHARED, 3)
    assert again == first and again is not first
    other = genre_task(SHARED, 4)
    assert set(other.core_ids) != set(first.core_ids)  # another sample of the same genre


def test_plan_is_nested_exactly_shared_and_common_across_shares() -> None:
    for share in SHARES:
        largest = plan(share, max(SIZES))
        for size in SIZES:
            tasks = plan(share, size)
            assert tasks == largest[:size]  # T = 10's tasks are T = 25's first ten
            others = [t for t in tasks if t[0] != SHARED]
            assert len(others) == non_shared(share, size)
            # Every share draws its Drama tasks and its other tasks from one sequence each,
            # so fine-tunes are shared between shares.
            assert [t for t in tasks if t[0] == SHARED] == [
                (SHARED, i) for i in range(size - len(others))
            ]
            assert others == plan(1.0, len(others))
    assert non_shared(0.25, 10) == 3 and non_shared(0.75, 10) == 8  # halves up
    assert non_shared(0.5, 25) == 13 and non_shared(0.0, 100) == 0
    assert [g for g, _ in plan(1.0, 9)] == [*ROTATION, ROTATION[0]]


def _run(tmp: Path, cache: str, out: str, *extra: str) -> subprocess.CompletedProcess[str]:
    args = ["--quick", "--cache", str(tmp / cache), "--out", str(tmp / out), *extra]
    return subprocess.run(
        [sys.executable, "-m", "audits.heterogeneity", *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).resolve().parent.parent,
        # Idle torch threads sleep instead of spinning: on a shared 2-core machine a
        # spinning pair slows every other process's fine-tunes many times over.
        env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"},
    )


def _rows(out: Path) -> dict[tuple[Any, ...], dict[str, Any]]:
    data = json.loads((out / "heterogeneity.json").read_text())
    rows = {(r["setting"], r["tasks"], r["share"], r["method"]): r for r in data["rows"]}
    assert len(rows) == len(data["rows"])  # one row per (setting, T, h, method)
    for row in rows.values():
        row.pop("seconds")  # measured, so not reproducible
    return rows


@pytest.mark.slow
def test_quick_run_writes_every_cell_resumes_and_reproduces(tmp_path: Path) -> None:
    first = _run(tmp_path, "cache", "out")
    assert first.returncode == 0, first.stderr
    assert "fine-tune" in first.stderr  # progress is shown
    out = tmp_path / "out"
    rows = _rows(out)
    assert set(rows) == set(itertools.product(KEYS, (2, 4), (0.0, 1.0), METHODS))
    for row in rows.values():
        assert 0 <= row["balanced_accuracy_ci95"][0] <= row["balanced_accuracy"] <= 1
        assert 0 <= row["accuracy_ci95"][0] <= row["accuracy"] <= row["accuracy_ci95"][1] <= 1
    assert rows[("fresh", 4, 1.0, "majority")]["balanced_accuracy"] == 0.5  # 50/50 wide set
    text = (out / "heterogeneity.md").read_text()
    assert "- machine:" in text and "--quick" in text and "### T = 4" in text
    assert (out / "heterogeneity.png").stat().st_size > 10_000
    assert (out / "heterogeneity_paired.png").stat().st_size > 10_000

    again = _run(tmp_path, "cache", "again")  # everything cached: nothing is trained
    assert again.returncode == 0, again.stderr
    assert "fine-tune" not in again.stderr and "central FT" not in again.stderr
    assert _rows(tmp_path / "again") == rows

    fresh = _run(
        tmp_path, "cache2", "fresh", "--settings", "fresh", "--sizes", "2", "--shares", "1"
    )
    assert fresh.returncode == 0, fresh.stderr
    assert _rows(tmp_path / "fresh") == {
        k: v for k, v in rows.items() if k[:3] == ("fresh", 2, 1.0)
    }
