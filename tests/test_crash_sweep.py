"""SIGKILL a real `ledger add` / `unlearn` / `rotate-key` at each point of its write.

After each kill the next command and `verifier audit` pass, and the ledger is
exactly the old one or the new one (its log size, active set, state digest
and default key), never a mixture. The points are named in tests/crash_at.py.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import run_cli
from verifier.checks import run_audit

CRASH_AT = Path(__file__).with_name("crash_at.py")
ADD_POINTS = [
    "journal-half-written",
    "journal-in-place",
    "state-staged-half-written",
    "second-file-staged-half-written",
    "before-database-commit",
    "after-database-commit",
    "after-first-move",
    "journal-removed-before-fsync",
]
UNLEARN_POINTS = [
    "state-staged",
    "second-file-staged-half-written",
    "after-database-commit",
    "after-first-move",
    "after-vector-deleted",
    "after-moves-and-deletes",
]
ROTATE_POINTS = [
    "journal-half-written",
    "key-path-staged-half-written",
    "before-database-commit",
    "after-database-commit",
    "after-key-path-moved",
]


def _view(led: Path) -> tuple[int, list[str], str, str]:
    result = run_cli("ledger", "status", led, "--json")
    assert result.code == 0, result.err
    status = json.loads(result.out)
    signer = (led / "signing_key_path").read_text()
    return status["tree_size"], status["active"], status["state_digest"], signer


def _command(kind: str, led: Path, data: dict[str, Path], out: Path) -> list[str]:
    if kind == "add":
        return ["add", str(led), "--task", "b", "--data", str(data["b"]), "--steps", "2"]
    if kind == "rotate-key":
        return ["rotate-key", str(led), "--key", str(data["key"]), "--new-key", str(data["new"])]
    return ["unlearn", str(led), "--task", "a", "--data", str(data["a"]), "--certificate", str(out)]


@pytest.fixture(scope="module")
def inputs(
    tmp_path_factory: pytest.TempPathFactory, key: Path, task_data: dict[str, Path]
) -> dict[str, Path]:
    """The task data, the ledger's key and the key a rotation hands over to."""
    from ledger import generate_key

    new = tmp_path_factory.mktemp("new-key") / "new.key"
    generate_key(new)
    return {**task_data, "key": key, "new": new}


@pytest.fixture(scope="module")
def before_after(
    tmp_path_factory: pytest.TempPathFactory,
    tiny_base: Path,
    key: Path,
    inputs: dict[str, Path],
) -> dict[str, object]:
    """The ledger with a added, and what add b / unlearn a / a rotation make of it."""
    from ledger.cli import main

    root = tmp_path_factory.mktemp("sweep")
    led = root / "led"
    main(["init", str(led), "--base", str(tiny_base), "--key", str(key)])
    main(["add", str(led), "--task", "a", "--data", str(inputs["a"]), "--steps", "2"])
    views: dict[str, object] = {"led": led, "old": _view(led)}
    for kind in ("add", "unlearn", "rotate-key"):
        copy = Path(shutil.copytree(led, root / kind))
        main(_command(kind, copy, inputs, root / f"{kind}.json"))
        views[kind] = _view(copy)
    return views


@pytest.mark.parametrize(
    ("kind", "point"),
    [("add", p) for p in ADD_POINTS]
    + [("unlearn", p) for p in UNLEARN_POINTS]
    + [("rotate-key", p) for p in ROTATE_POINTS],
)
def test_a_kill_leaves_the_old_ledger_or_the_new(
    before_after: dict[str, object],
    tmp_path: Path,
    key: Path,
    inputs: dict[str, Path],
    kind: str,
    point: str,
) -> None:
    led = Path(shutil.copytree(before_after["led"], tmp_path / "led"))  # type: ignore[arg-type]
    args = _command(kind, led, inputs, tmp_path / "cert.json")
    killed = subprocess.run(
        [sys.executable, str(CRASH_AT), point, *args], capture_output=True, text=True, check=False
    )
    assert killed.returncode == -signal.SIGKILL, (killed.returncode, killed.stderr)
    view = _view(led)  # the next command: recovers, then reports
    assert view in (before_after["old"], before_after[kind]), view
    public = key.with_name(key.name + ".pub").read_bytes()
    assert [r.line() for r in run_audit(led, public) if r.status == "FAIL"] == []
    print(f"{kind} killed at {point}: {'new' if view == before_after[kind] else 'old'}")
