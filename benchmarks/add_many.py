"""``ledger add-many`` with two workers over one, for eight tiny tasks.

Fine-tunes are independent of one another (a task's vector depends on its
data, spec and θ0 alone), so they can train side by side and commit in turn;
this says how much of that a 2-core machine gets back. Fine-tunes run at
the ledger's recorded thread count, so the figures use a ledger of
``--threads 1``: two workers of two threads each would ask for four threads
on two cores (the full run measures that too).

Both runs pay the same fixed cost first: about 4 s for a worker to import
torch and transformers and load the model, which no number of workers
shortens. A tiny task of the ledger's default 20 steps trains in about
0.25 s, so eight of them are mostly that fixed cost (Amdahl: at most about
1.3 on two cores); the headline figure gives each task 300 steps (600 in the
full run; about 3 and 6 s, still small fine-tunes) so that what is measured is
the parallel training the command exists for, and the full run reports the
20-step batch beside it. Two busy cores of these shared machines give about
1.8x one (the digest figure's ``ceiling_2thread_sha256_vs_1thread``), which
bounds this figure too.

The manifest is JSON Lines, one ``{"task": ID, "data": PATH}`` per task.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import ledger
from benchmarks.common import BIN, CLI_ENV, Figure, Workspace, cli

TASKS = 8
STEPS = 300  # per task: training, not the worker's start-up, is most of the batch
FULL_STEPS = 600  # the full run's headline: the start-up a smaller share again
TARGET = ">= 1.6"  # two workers on two cores, after the fixed start-up
NAME = "add_many_speedup"


def available() -> bool:
    done = subprocess.run(
        [str(BIN / "ledger"), "add-many", "--help"], capture_output=True, env=CLI_ENV, check=False
    )
    return done.returncode == 0


def figures(work: Workspace) -> list[Figure]:
    """At --threads 1 (two workers of one thread fill two cores); the full run adds the
    ledger default, --threads 2, where two workers ask for four threads on two cores."""
    runs = [(1, STEPS)] if work.settings.quick else [(1, FULL_STEPS), (1, 20), (2, FULL_STEPS)]
    if not available():
        return [Figure(_name(*r), None, TARGET, "add-many not available") for r in runs]
    return [_figure(work, _manifest(work, steps), threads, steps) for threads, steps in runs]


def _manifest(work: Workspace, steps: int) -> Path:
    manifest = work.root / f"add-many-{steps}.jsonl"
    lines = [
        {"task": f"m{i}", "data": str(work.task_file(100 + i)), "steps": steps}
        for i in range(TASKS)
    ]
    manifest.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return manifest


def _name(threads: int, steps: int) -> str:
    return (
        NAME
        + (f"_threads{threads}" if threads != 1 else "")
        + (f"_{steps}steps" if steps != STEPS else "")
    )


def _figure(work: Workspace, manifest: Path, threads: int, steps: int) -> Figure:
    seconds: dict[int, float] = {}
    name = _name(threads, steps)
    try:
        for workers in (1, 2):
            root = work.root / f"add-many-t{threads}-s{steps}-w{workers}"
            ledger.init_ledger(root, work.base("tiny"), work.key, threads=threads)
            args = ("--tasks", manifest, "--workers", str(workers))
            seconds[workers] = cli("ledger", "add-many", root, *args)
    except RuntimeError as exc:
        return Figure(name, None, TARGET, f"add-many failed: {str(exc)[-300:]}")
    return Figure(
        name,
        seconds[1] / seconds[2],
        TARGET,
        f"`ledger add-many --workers 1` over `--workers 2` seconds, {TASKS} tiny tasks of "
        f"{steps} steps, ledger --threads {threads}",
        {"workers_1_s": round(seconds[1], 3), "workers_2_s": round(seconds[2], 3)},
    )
