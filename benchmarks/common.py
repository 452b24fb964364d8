"""What every figure group shares: the figure record, timing, the CLIs in fresh processes,
and a workspace of tiny and MiniLM ledgers built once per run.

Every figure is a ratio against a baseline measured in the same run, because
the machines are shared and noisy: an absolute number from one run says
little about the next, a ratio of two numbers measured side by side does.
"""

from __future__ import annotations

import json
import operator
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Before anything imports transformers: no download attempts, no progress bars in the table.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

BIN = Path(sys.executable).parent
STEPS = 20  # optimizer steps per task: the ledger's default
# The CLIs' own progress lines would only fill captured stderr.
CLI_ENV = {**os.environ, "ULG_PROGRESS_SECONDS": "1e9"}
_OPS: dict[str, Callable[[float, float], bool]] = {">=": operator.ge, "<=": operator.le}


@dataclass
class Figure:
    """One measured ratio with its target; ``met`` is computed, never typed in by hand."""

    name: str
    value: float | None
    target: str  # "OP NUMBER", OP one of >= <=
    note: str  # what was measured against what: the table and the docs show it
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def met(self) -> bool:
        op, threshold = self.target.split()
        return self.value is not None and _OPS[op](self.value, float(threshold))

    def to_json(self) -> dict[str, Any]:
        value = None if self.value is None else round(self.value, 4)
        return {
            "value": value,
            "target": self.target,
            "met": self.met,
            "note": self.note,
            **self.details,
        }


@dataclass(frozen=True)
class Settings:
    """Sizes and repeats: --quick trades statistical weight for a run under 3 minutes."""

    quick: bool
    entries: int  # int64 entries in the throughput vectors
    repeats: int  # timed repeats of the cheap measurements
    pairs: int  # add/unlearn pairs through the CLI, per model
    step_count: int  # optimizer steps per sift/ft run
    step_rounds: int  # interleaved sift/ft runs of each
    status_runs: int
    unlearn_models: tuple[tuple[str, int], ...]  # (model, T) for unlearn vs retrain
    # (model, T, 10 x T, optimizer steps per task) for the verifier's peak: it reads vectors,
    # not training, so a quick run trains MiniLM's tasks for 2 steps instead of 20
    rss_runs: tuple[tuple[str, int, int, int], ...]

    @classmethod
    def make(cls, quick: bool) -> Settings:
        if quick:
            rss = (("tiny", 2, 20, 20), ("minilm", 1, 10, 2))
            return cls(True, 32 * 2**20, 5, 3, 8, 2, 7, (("tiny", 20),), rss)
        tiny_minilm = (("tiny", 20), ("minilm", 10))
        rss = (("tiny", 2, 20, 20), ("minilm", 1, 10, 20))
        return cls(False, 100_000_000, 7, 3, 16, 3, 11, tiny_minilm, rss)


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    return statistics.median(timed(fn) for _ in range(repeats))


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleaved(fns: Sequence[Callable[[], object]], repeats: int) -> list[float]:
    """Median seconds of each of ``fns``, run in turn: a burst of load on the shared machine
    then hits every candidate of a round, not one candidate's whole series."""
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for series, fn in zip(times, fns, strict=True):
            series.append(timed(fn))
    return [statistics.median(series) for series in times]


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """A command in a fresh process, as an operator runs it; a failure stops the benchmark
    with the command's own error line rather than a figure computed from nothing."""
    done = subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, env=CLI_ENV, check=False
    )
    if done.returncode != 0:
        command = " ".join(str(a) for a in args)
        raise RuntimeError(f"{command} exited {done.returncode}: {done.stderr.strip()[-500:]}")
    return done


def cli(program: str, *args: str | Path) -> float:
    """Seconds for ``ledger ...`` or ``verifier ...`` in a fresh process, start-up included."""
    return timed(lambda: run(BIN / program, *args))


# Forks the command from a small interpreter and reports its exit code and ru_maxrss.
_LAUNCHER = """
import os, sys
pid = os.fork()
if pid == 0:
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    os.dup2(null, 2)
    os.execv(sys.argv[1], sys.argv[1:])
_, status, usage = os.wait4(pid, 0)
print(os.waitstatus_to_exitcode(status), usage.ru_maxrss)
"""


def peak_rss(*args: str | Path) -> tuple[int, int]:
    """(exit code, peak resident bytes) of one command.

    Linux carries a process's RSS high-water mark across fork and exec, so a
    command forked from this process (torch and the throughput vectors
    loaded, a gigabyte) would report this process's peak, not its own. A small
    launcher forks it instead: the floor is the launcher's ~10 MiB.
    """
    done = run(sys.executable, "-c", _LAUNCHER, *args)
    code, kib = done.stdout.split()
    return int(code), int(kib) * 1024  # Linux reports KiB


@dataclass
class Built:
    """A ledger folder and the in-process ``add_task`` seconds of each task it holds."""

    root: Path
    model: str
    add_seconds: dict[str, float]
    data: dict[str, Path]


class Workspace:
    """Bases, key, task files and ledgers for one run, in a temporary folder.

    Ledgers are cached by (model, T) so that groups measuring the same ledger
    (storage, the verifier's memory) build it once; a group that changes one
    ``take``s it, and the next group to ask gets a fresh build.
    """

    def __init__(self, root: Path, settings: Settings) -> None:
        self.root, self.settings = root, settings
        self.bases: dict[str, Path] = {}
        self.ledgers: dict[tuple[str, int, int], Built] = {}
        self._tasks: list[Any] | None = None
        self._made = 0
        self.key = root / "operator.key"

    def base(self, model: str) -> Path:
        """The model's base, built on first use (with the operator key every ledger shares)."""
        import ledger

        if model not in self.bases:
            out = self.root / f"base-{model}"
            (ledger.build_tiny if model == "tiny" else ledger.build_minilm)(out)
            self.bases[model] = out
        if not self.key.exists():
            ledger.generate_key(self.key)
        return self.bases[model]

    def task_file(self, index: int) -> Path:
        """Real MovieLens users (100–400 ratings), one per index, as the demo uses them."""
        from ledger.data import movielens_tasks, write_jsonl

        if self._tasks is None:
            self._tasks = [t for t in movielens_tasks() if 100 <= len(t.train) + len(t.test) <= 400]
        path = self.root / "data" / f"user-{index}.jsonl"
        if not path.exists():
            path.parent.mkdir(exist_ok=True)
            write_jsonl(path, self._tasks[index % len(self._tasks)].train)
        return path

    def fresh(self, model: str, tasks: int, steps: int = STEPS) -> Built:
        """A new ledger with ``tasks`` tasks added in this process (torch loaded once)."""
        import ledger

        self._made += 1
        root = self.root / f"ledger-{model}-{tasks}-{self._made}"
        ledger.init_ledger(root, self.base(model), self.key)
        built = Built(root, model, {}, {})
        for i in range(tasks):
            self.add_in_process(built, f"t{i}", i, steps)
        return built

    def add_in_process(self, built: Built, task: str, index: int, steps: int = STEPS) -> float:
        import ledger

        data, hyper = self.task_file(index), ledger.Hyper(steps=steps)
        seconds = timed(lambda: ledger.add_task(built.root, task, data, hyper=hyper))
        built.add_seconds[task], built.data[task] = seconds, data
        return seconds

    def ledger(self, model: str, tasks: int, steps: int = STEPS) -> Built:
        """A cached ledger of T tasks; read it, don't change it (see ``take``)."""
        if (model, tasks, steps) not in self.ledgers:
            self.ledgers[model, tasks, steps] = self.fresh(model, tasks, steps)
        return self.ledgers[model, tasks, steps]

    def take(self, model: str, tasks: int) -> Built:
        """The cached ledger, handed over to a group that will change it."""
        return self.ledgers.pop((model, tasks, STEPS), None) or self.fresh(model, tasks)


@contextmanager
def workspace(settings: Settings) -> Iterator[Workspace]:
    with tempfile.TemporaryDirectory(prefix="ulg-bench-") as tmp:
        yield Workspace(Path(tmp), settings)


def trainable_parameters(base: Path) -> int:
    """Entries of one task vector: the model's int64 size is this times 8."""
    from ledger.training import load_model, trainable_names

    model, _ = load_model(base)
    names = set(trainable_names(model))
    return sum(p.numel() for name, p in model.named_parameters() if name in names)


def dumps(obj: Any, indent: int | None = None) -> str:
    """One line unless indented: the contract reads the report as stdout's last line."""
    return json.dumps(obj, indent=indent, separators=None if indent else (",", ":"))
