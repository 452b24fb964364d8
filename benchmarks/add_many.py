"""``ledger add-many`` with two workers over one, for eight tiny tasks.

Fine-tunes are independent of one another (a task's vector depends on its
data, spec and θ0 alone), so they can train side by side and commit in turn;
this says how much of that a 2-core machine gets back. Fine-tunes run at
the ledger's recorded thread count, so the quick figure uses a ledger of
``--threads 1``: two workers of two threads each would ask for four threads
on two cores. Written against the
contract's interface, ``ledger add-many DIR --tasks MANIFEST --workers N``;
where the command does not exist yet the figure says so instead of failing
the run.

The manifest is JSON Lines, one ``{"task": ID, "data": PATH}`` per task.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import ledger
from benchmarks.common import BIN, CLI_ENV, Figure, Workspace, cli

TASKS = 8
TARGET = ">= 1.5"  # two workers on two cores: at least half the second core's time back
NAME = "add_many_speedup"


def available() -> bool:
    done = subprocess.run(
        [str(BIN / "ledger"), "add-many", "--help"], capture_output=True, env=CLI_ENV, check=False
    )
    return done.returncode == 0


def figures(work: Workspace) -> list[Figure]:
    """At --threads 1 (two workers of one thread fill two cores); the full run adds the
    ledger default, --threads 2, where two workers ask for four threads on two cores."""
    threads = (1,) if work.settings.quick else (1, 2)
    if not available():
        return [Figure(_name(t), None, TARGET, "add-many not available") for t in threads]
    manifest = work.root / "add-many.jsonl"
    lines = [{"task": f"m{i}", "data": str(work.task_file(100 + i))} for i in range(TASKS)]
    manifest.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return [_figure(work, manifest, t) for t in threads]


def _name(threads: int) -> str:
    return NAME if threads == 1 else f"{NAME}_threads{threads}"


def _figure(work: Workspace, manifest: Path, threads: int) -> Figure:
    seconds: dict[int, float] = {}
    try:
        for workers in (1, 2):
            root = work.root / f"add-many-t{threads}-w{workers}"
            ledger.init_ledger(root, work.base("tiny"), work.key, threads=threads)
            args = ("--tasks", manifest, "--workers", str(workers))
            seconds[workers] = cli("ledger", "add-many", root, *args)
    except RuntimeError as exc:
        return Figure(_name(threads), None, TARGET, f"add-many failed: {str(exc)[-300:]}")
    return Figure(
        _name(threads),
        seconds[1] / seconds[2],
        TARGET,
        f"`ledger add-many --workers 1` over `--workers 2` seconds, {TASKS} tiny tasks, "
        f"ledger --threads {threads}",
        {"workers_1_s": round(seconds[1], 3), "workers_2_s": round(seconds[2], 3)},
    )
