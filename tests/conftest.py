"""Shared fixtures: one tiny base model, one key and four small tasks per session.

Helpers that are not fixtures live in tests/helpers.py."""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import Result

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
# No progress lines: what a test sees on stderr must not depend on how fast the machine is.
os.environ["ULG_PROGRESS_SECONDS"] = "1e9"

_WORDS = {
    1: ["good", "great", "fun", "lovely", "superb", "moving", "clever", "charming"],
    0: ["bad", "awful", "dull", "boring", "weak", "messy", "tedious", "bland"],
}


# The users' testing kit provides the tiny base and the operator key (ledger_base,
# ledger_key); these tests know them by shorter names.
pytest_plugins = ("ledger.testing",)


@pytest.fixture(scope="session")
def tiny_base(ledger_base: Path) -> Path:
    return ledger_base


@pytest.fixture(scope="session")
def key(ledger_key: Path) -> Path:
    return ledger_key


def _task_records(task: str, n: int) -> list[dict[str, object]]:
    rng = random.Random(task)
    records = []
    for _ in range(n):
        label = rng.randint(0, 1)
        words = [rng.choice(_WORDS[label]), rng.choice(_WORDS[rng.randint(0, 1)]), "movie"]
        records.append({"text": " ".join(words), "label": label, "user": task})
    return records


@pytest.fixture(scope="session")
def task_data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("data")
    paths = {}
    for task in "abcd":
        path = folder / f"{task}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in _task_records(task, 24)))
        paths[task] = path
    return paths


@pytest.fixture
def ledger_cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., Result]:
    """``ledger`` in this process: the same entry point, without a torch import per call."""
    from ledger.cli import main

    def run(*args: str | Path) -> Result:
        capsys.readouterr()
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run
