"""Readers never wait for a writer, and writers wait only for each other's commits.

Real processes, as users run them: `status` during a long `add`, and two `add`s
of different tasks started together.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers import BIN, run_cli
from verifier.checks import run_audit


@pytest.fixture
def led(tmp_path: Path, tiny_base: Path, key: Path) -> Path:
    from ledger.cli import main

    led = tmp_path / "led"
    main(["init", str(led), "--base", str(tiny_base), "--key", str(key)])
    return led


def _add(led: Path, task: str, data: Path, steps: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            str(BIN / "ledger"),
            "add",
            str(led),
            "--task",
            task,
            "--data",
            str(data),
            "--steps",
            str(steps),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_status_answers_while_a_long_add_trains(led: Path, task_data: dict[str, Path]) -> None:
    writer = _add(led, "a", task_data["a"], 200)
    answered: list[float] = []
    while writer.poll() is None:
        start = time.monotonic()
        result = run_cli("ledger", "status", led, "--json")
        took = time.monotonic() - start
        assert result.code == 0, result.err
        assert json.loads(result.out)["active"] in ([], ["a"])  # before or after, never half
        if writer.poll() is None:
            answered.append(took)
    assert writer.returncode == 0, writer.communicate()
    assert answered, "the add finished before any status ran: make it longer"
    print(f"status during add: {len(answered)} calls, max {max(answered):.2f} s")
    assert max(answered) < 10
    assert json.loads(run_cli("ledger", "status", led, "--json").out)["active"] == ["a"]


def test_two_adds_started_together_both_land(
    led: Path, key: Path, task_data: dict[str, Path]
) -> None:
    writers = [_add(led, t, task_data[t], 20) for t in "ab"]
    for writer in writers:
        _, err = writer.communicate()
        assert writer.returncode == 0, err
    status = json.loads(run_cli("ledger", "status", led, "--json").out)
    assert status["active"] == ["a", "b"] and status["tree_size"] == 3
    public = key.with_name(key.name + ".pub").read_bytes()
    assert [r.line() for r in run_audit(led, public) if r.status == "FAIL"] == []
    # the same vectors as adding them one at a time in another ledger
    from ledger.cli import main

    alone = led.parent / "alone"
    main(["init", str(alone), "--base", str(led / "base"), "--key", str(key)])
    for task in "ba":
        main(["add", str(alone), "--task", task, "--data", str(task_data[task]), "--steps", "20"])
    sequential = json.loads(run_cli("ledger", "status", alone, "--json").out)
    assert sequential["state_digest"] == status["state_digest"]
    assert sequential["tasks"]["a"]["digest"] == status["tasks"]["a"]["digest"]
