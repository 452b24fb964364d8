"""`ledger add-many`: parallel training, one committing process, the manifest's order.

The reference is always a sequential `ledger add` of the same tasks on this
machine, never a stored digest (DESIGN.md invariant 2).
"""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from ledger import open_ledger
from ledger._internal.ops import many
from tests.helpers import Result, run_cli, tree_digest

# (task id, data fixture key, extra options): a slow first task, so that with two workers
# the later ones finish before it; every per-task option at least once.
TASKS: list[tuple[str, str, dict[str, Any]]] = [
    ("slow", "a", {"steps": 30}),
    ("b", "b", {}),
    ("c", "c", {"method": "ft", "lr": 1e-4}),
    ("d", "d", {"seed": 7, "batch_size": 8, "max_length": 16}),
]
STEPS = 3  # add-many's --steps, the default for entries that do not say
BAD = ("bad", "c", {"max_length": 129})  # passes the manifest check, fails training: 128 max


def _write_manifest(path: Path, data: dict[str, Path], tasks: list[Any]) -> Path:
    lines = [
        json.dumps({"task": task, "data": str(data[key].relative_to(path.parent)), **extra})
        for task, key, extra in tasks
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def _events(led: Path) -> dict[str, dict[str, Any]]:
    """Each task's add event, by task id, with the log position as 'seq'."""
    with open_ledger(led) as ledger:
        _, events = ledger.store.log()
    return {e["task_id"]: e for e in events if e["kind"] == "add"}


def _add_order(led: Path) -> list[str]:
    return [task for task, _ in sorted(_events(led).items(), key=lambda kv: kv[1]["seq"])]


def _cli(*args: str | Path) -> int:
    from ledger.cli import main

    try:
        main([str(a) for a in args])
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory, task_data: dict[str, Path]) -> dict[str, Path]:
    """The task files next to the manifests, so entries name them relatively."""
    folder = tmp_path_factory.mktemp("batch")
    copies = {}
    for name, path in task_data.items():
        copies[name] = folder / path.name
        copies[name].write_bytes(path.read_bytes())
    return copies


@pytest.fixture(scope="module")
def sequential(
    tmp_path_factory: pytest.TempPathFactory, tiny_base: Path, key: Path, data: dict[str, Path]
) -> Path:
    """The tasks added one `ledger add` at a time: the reference."""
    led = tmp_path_factory.mktemp("sequential") / "led"
    assert _cli("init", led, "--base", tiny_base, "--key", key) == 0
    for task, name, extra in TASKS:
        options = {"steps": STEPS, **extra}
        flags = [f"--{k.replace('_', '-')}={v}" for k, v in options.items()]
        assert _cli("add", led, "--task", task, "--data", data[name], *flags) == 0
    return led


@pytest.fixture(scope="module")
def batch(
    tmp_path_factory: pytest.TempPathFactory, tiny_base: Path, key: Path, data: dict[str, Path]
) -> tuple[Path, Result]:
    """One real `ledger add-many` run, as a user starts it: two workers, one task that fails."""
    led = tmp_path_factory.mktemp("parallel") / "led"
    assert _cli("init", led, "--base", tiny_base, "--key", key) == 0
    manifest = _write_manifest(
        data["a"].parent / "tasks.jsonl", data, [*TASKS[:2], BAD, *TASKS[2:]]
    )
    args = ("add-many", led, "--tasks", manifest, "--workers", "2", "--steps", str(STEPS))
    return led, run_cli("ledger", *args)


def test_digests_and_records_equal_sequential_add(
    batch: tuple[Path, Result], sequential: Path
) -> None:
    led, _ = batch
    got, want = _events(led), _events(sequential)
    assert sorted(got) == sorted(want) == sorted(t for t, _, _ in TASKS)
    for task in want:
        for field in ("vector_digest", "mask_digest", "data_hash", "spec", "determinism"):
            assert got[task][field] == want[task][field], (task, field)
    state = [json.loads(run_cli("ledger", "status", x, "--json").out) for x in (led, sequential)]
    assert state[0]["state_digest"] == state[1]["state_digest"]


def test_the_manifest_order_is_kept(batch: tuple[Path, Result]) -> None:
    led, result = batch
    assert _add_order(led) == [t for t, _, _ in TASKS]
    landed = [line.split(":")[0] for line in result.out.splitlines() if line.startswith("added")]
    assert landed == [f"added {t}" for t, _, _ in TASKS]


def test_a_task_that_fails_is_reported_and_the_rest_land(batch: tuple[Path, Result]) -> None:
    led, result = batch
    assert result.code == 1, result
    errors = [line for line in result.err.splitlines() if line.startswith("error: ")]
    assert errors == [
        "error: 1 of 5 tasks failed (bad); the others landed: fix them and rerun the manifest "
        "(tasks already added are skipped)"
    ]
    assert "failed: bad: max length 129 exceeds the model's 128" in result.err.splitlines()
    assert "bad" not in _events(led)


def test_what_add_many_added_unlearns_and_audits_as_an_add(
    batch: tuple[Path, Result], data: dict[str, Path], key: Path, tmp_path: Path
) -> None:
    """The replay in this process reproduces a worker's vector, and the folder verifies."""
    from verifier.checks import run_audit

    led = Path(shutil.copytree(batch[0], tmp_path / "led"))
    args = ("--task", "c", "--data", data["c"], "--certificate", tmp_path / "c.dsse.json")
    assert _cli("unlearn", led, *args) == 0
    public = key.with_name(key.name + ".pub").read_bytes()
    assert [r.line() for r in run_audit(led, public) if r.status == "FAIL"] == []


def test_rerunning_the_fixed_manifest_adds_only_what_is_missing(
    batch: tuple[Path, Result], data: dict[str, Path], tmp_path: Path
) -> None:
    """What partial failure leaves is retried by running the same manifest again."""
    led = Path(shutil.copytree(batch[0], tmp_path / "led"))
    fixed = (BAD[0], BAD[1], {"max_length": 32})
    manifest = _write_manifest(data["a"].parent / "fixed.jsonl", data, [*TASKS, fixed])
    results = many.add_many(
        led, manifest, executor=_in_process(1), settings=many.Settings(steps=STEPS)
    )
    assert [(r.task_id, r.status) for r in results] == [
        *[(t, "already added") for t, _, _ in TASKS],
        ("bad", "added"),
    ]
    assert _add_order(led) == [*[t for t, _, _ in TASKS], "bad"]


class _LastFirst:
    """An executor that trains in this process and finishes the jobs last-submitted first."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.finished: list[str] = []
        self.jobs: list[tuple[many.Job, Future[many.Outcome]]] = []

    def submit(self, job: many.Job) -> Future[many.Outcome]:
        future: Future[many.Outcome] = Future()
        self.jobs.append((job, future))
        if len(self.jobs) == self.total:
            threading.Thread(target=self._run, daemon=True).start()
        return future

    def _run(self) -> None:
        for job, future in reversed(self.jobs):
            future.set_result(many.train_job(job))
            self.finished.append(job.task_id)

    def reported(self) -> list[tuple[int, int]]:
        return []


def _in_process(total: int) -> many.ExecutorFactory:
    @contextmanager
    def start(workers: int, threads: int) -> Iterator[many.Executor]:
        yield _LastFirst(total)

    return start


def test_workers_finishing_out_of_order_still_commit_in_manifest_order(
    tiny_base: Path, key: Path, data: dict[str, Path], sequential: Path, tmp_path: Path
) -> None:
    led = tmp_path / "led"
    assert _cli("init", led, "--base", tiny_base, "--key", key) == 0
    manifest = _write_manifest(data["a"].parent / "order.jsonl", data, TASKS)
    executor = _LastFirst(len(TASKS))
    reported: list[str] = []

    @contextmanager
    def start(workers: int, threads: int) -> Iterator[many.Executor]:
        yield executor

    many.add_many(
        led,
        manifest,
        executor=start,
        settings=many.Settings(steps=STEPS),
        workers=len(TASKS),  # every job in flight at once
        report=lambda r: reported.append(r.task_id),
    )
    order = [t for t, _, _ in TASKS]
    assert executor.finished == order[::-1]
    assert reported == order and _add_order(led) == order
    want = _events(sequential)
    assert {t: e["vector_digest"] for t, e in _events(led).items()} == {
        t: e["vector_digest"] for t, e in want.items()
    }


GOOD = '{"task": "first", "data": "a.jsonl"}\n'  # valid: shows nothing trains before the check
BAD_MANIFESTS: dict[str, tuple[str, str]] = {
    "not-json": (GOOD + '{"task": \n', "tasks.jsonl: line 2: malformed JSON"),
    "repeated-key": (GOOD + '{"task": "x", "task": "y"}\n', "line 2: malformed JSON (duplicate"),
    "unknown-field": (GOOD + '{"task": "x", "data": "a.jsonl", "step": 3}\n', "field 'step'"),
    "missing-data": (GOOD + '{"task": "x"}\n', "line 2: missing field 'data'"),
    "wrong-type": (GOOD + '{"task": "x", "data": "a.jsonl", "steps": "3"}\n', "an integer"),
    "bool-steps": (GOOD + '{"task": "x", "data": "a.jsonl", "steps": true}\n', "an integer"),
    "repeated-task": (GOOD + GOOD, "line 2: task 'first' already appears at line 1"),
    "bad-id": (GOOD + '{"task": "no spaces", "data": "a.jsonl"}\n', "invalid task id"),
    "no-file": (GOOD + '{"task": "x", "data": "nowhere.jsonl"}\n', "cannot read data file"),
    "bad-record": (GOOD + '{"task": "x", "data": "broken.jsonl"}\n', "broken.jsonl: line 2: "),
    "seed-range": (GOOD + '{"task": "x", "data": "a.jsonl", "seed": -1}\n', "seed must be in"),
    "lr-zero": (GOOD + '{"task": "x", "data": "a.jsonl", "lr": 0}\n', "lr must be positive"),
    "id-taken": (GOOD + '{"task": "b", "data": "a.jsonl"}\n', "'b' is active in this ledger with"),
    "empty": ("\n\n", "tasks.jsonl: no tasks"),
    "array-of-numbers": ("[1]", "tasks.jsonl: entry 1: not a JSON object"),
    "unclosed-array": ('[{"task": "x", "data": "a.jsonl"}', "tasks.jsonl: malformed JSON"),
}


@pytest.mark.parametrize("case", sorted(BAD_MANIFESTS))
def test_a_bad_manifest_changes_nothing(
    case: str,
    sequential: Path,
    data: dict[str, Path],
    tmp_path: Path,
    ledger_cli: Callable[..., Result],
) -> None:
    """Refused whole, with one error line, before anything trains."""
    text, expected = BAD_MANIFESTS[case]
    for path in data.values():
        (tmp_path / path.name).write_bytes(path.read_bytes())
    (tmp_path / "broken.jsonl").write_text('{"text": "fine", "label": 1}\n{"text": 3}\n')
    (tmp_path / "tasks.jsonl").write_text(text)
    before = tree_digest(sequential)
    result = ledger_cli("add-many", sequential, "--tasks", tmp_path / "tasks.jsonl")
    assert result.code in (1, 2) and result.out == "", result
    assert result.err.count("\n") == 1 and result.err.startswith("error: "), result.err
    assert expected in result.err, result.err
    assert tree_digest(sequential) == before


def test_ray_absent_is_one_error_line(
    monkeypatch: pytest.MonkeyPatch, sequential: Path, ledger_cli: Callable[..., Result]
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n == "ray" else real(n, *a)
    )
    result = ledger_cli("add-many", sequential, "--tasks", "x.jsonl", "--executor", "ray")
    assert result.code == 1 and result.err.count("\n") == 1
    assert "pip install '.[ray]'" in result.err


def test_ray_executor_gives_the_local_executors_vectors(
    batch: tuple[Path, Result], tiny_base: Path, key: Path, data: dict[str, Path], tmp_path: Path
) -> None:
    ray = pytest.importorskip("ray", reason="Ray is optional: pip install '.[ray]'")
    led = tmp_path / "led"
    assert _cli("init", led, "--base", tiny_base, "--key", key) == 0
    manifest = _write_manifest(data["a"].parent / "ray.jsonl", data, TASKS)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        results = many.add_many(
            led,
            manifest,
            executor=many.ray_executor(None),
            settings=many.Settings(steps=STEPS),
            workers=2,
        )
    finally:
        ray.shutdown()
    assert [r.status for r in results] == ["added"] * len(TASKS), results
    got, want = _events(led), _events(batch[0])
    for task in want:
        for field in ("vector_digest", "mask_digest", "determinism"):
            assert got[task][field] == want[task][field], (task, field)
