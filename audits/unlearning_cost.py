"""Audit: what deleting one task costs each method at T = 10, 50, 100 (the paper's Table 1).

    python -m audits.unlearning_cost [--quick] [--model minilm|tiny]

SIFT-Masks is measured end to end: a real ledger (DuckDB, Ed25519, journal)
with T MovieLens tasks added by `ledger add`'s code, copied, and one task
unlearned by `ledger unlearn`'s code (replay, digest check, subtract,
certificate). Every ledger vector is also checked bit for bit against the
accuracy audit's cached SIFT vector for the same task. For the other methods
the seconds are the measured fine-tune times of the work a deletion forces
them to redo (from the shared fine-tune cache), never an extrapolated rate.
"""

from __future__ import annotations

import functools
import json
import shutil
import time
from pathlib import Path
from typing import Any

import click
import numpy as np

from audits import figures, report
from audits.accuracy_vs_tasks import SETTINGS
from audits.cache import Log
from audits.methods import METHODS
from audits.setting import Prepared, prepare
from ledger import STATE_FILE, TaskVector, add_task, generate_key, init_ledger, status, unlearn_task
from ledger.data import Task, write_jsonl
from ledger.defaults import SCALE_BITS, SIGN_SEED, THREADS

NAME = "unlearning_cost"
SIZES = (10, 50, 100)
QUICK_SIZES = (2, 4)


def _ledger_bytes(root: Path) -> int:
    """What serving needs beyond θ0: the merged state Q and the masks (no vectors retained)."""
    masks = sum(p.stat().st_size for p in (root / "masks").glob("*.safetensors"))
    return (root / STATE_FILE).stat().st_size + masks


class LedgerRun:
    """A real ledger grown task by task; resumable because the ledger itself is durable."""

    def __init__(self, prepared: Prepared, log: Log) -> None:
        self.prepared, self.log = prepared, log
        self.work = prepared.cache.root / "unlearning"
        self.root = self.work / "ledger"
        self.data = self.work / "data"
        self.data.mkdir(parents=True, exist_ok=True)
        self.key = self.work / "operator.key"
        if not self.key.exists():
            generate_key(self.key)
        self.hyper = prepared.setting.hyper

    def at(self, tasks: list[Task]) -> Path:
        """A ledger holding exactly `tasks`: the main one grown to them, or, when a resumed
        run's main ledger has already grown past them, a separate one built for them."""
        root = self.root
        if root.exists() and len(self._active(root)) > len(tasks):
            root = self.work / f"ledger-exactly-{len(tasks)}"
        if not root.exists():
            base = self.prepared.trainer.base
            init_ledger(
                root,
                base,
                self.key,
                sign_seed=SIGN_SEED,
                scale_bits=SCALE_BITS,
                threads=THREADS,
                retain_vectors=False,
            )
        present = self._active(root)
        for task in tasks:
            if task.task_id in present:
                continue
            data = write_jsonl(self.data / f"{task.task_id}.jsonl", task.train)
            started = time.perf_counter()
            add_task(root, task.task_id, data, hyper=self.hyper)
            self.log(f"ledger add {task.task_id}: {time.perf_counter() - started:.1f} s")
        if self._active(root) != {t.task_id for t in tasks}:
            raise SystemExit(f"error: ledger {root} does not hold exactly the first {len(tasks)}")
        return root

    @staticmethod
    def _active(root: Path) -> set[str]:
        return set(status(root)["active"])

    def same_as_audit(self, tasks: list[Task]) -> dict[str, bool]:
        """Per task: is the ledger's recorded vector digest the audit's cached vector's?"""
        trainer, cache = self.prepared.trainer, self.prepared.cache
        recorded = status(self.root)["tasks"]

        def check(task: Task) -> bool:
            flat = trainer.vector(task, "sift")
            tau = {n: t.numpy() for n, t in trainer.unflatten(flat).items()}
            mine = TaskVector.from_tau(tau, SCALE_BITS, "sift", SIGN_SEED).vector_digest
            row = recorded.get(task.task_id)
            return row is not None and row["digest"] == mine

        out = {}
        for task in tasks:
            verdict = functools.partial(check, task)
            out[task.task_id] = bool(cache.json(f"unlearning/checks/{task.task_id}.json", verdict))
            if not out[task.task_id]:  # a finding to report, not a reason to stop measuring
                self.log(f"ledger vector of {task.task_id} differs from the audit's cached one")
        return out

    def unlearn_one(self, root: Path, task: Task, size: int) -> float:
        """Time `ledger unlearn` of `task` on a copy of the ledger at `root` (T = size)."""
        copy = self.work / f"ledger-T{size}"
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(root, copy)
        certificate = self.work / f"certificate-T{size}.dsse.json"
        certificate.unlink(missing_ok=True)
        data = self.data / f"{task.task_id}.jsonl"
        started = time.perf_counter()
        unlearn_task(copy, task.task_id, data, certificate, key_path=self.key)
        seconds = time.perf_counter() - started
        shutil.rmtree(copy)
        self.log(f"ledger unlearn at T={size}: {seconds:.1f} s")
        return seconds


def measure(prepared: Prepared, sizes: tuple[int, ...], log: Log) -> dict[str, Any]:
    trainer = prepared.trainer
    tasks = prepared.selection.evaluation
    ledger = LedgerRun(prepared, log)
    gone = tasks[0]  # the deleted task at every T
    # The median per-task time: the cached times come from a shared machine, and a
    # few fine-tunes that ran beside other work would otherwise weigh on every sum.
    ft_median = float(np.median([trainer.fine_tune_seconds(t, "ft") for t in tasks[: max(sizes)]]))
    rows: dict[str, dict[str, Any]] = {m: {} for m in METHODS}
    measured_storage = {}
    for size in sizes:

        def at_size(size: int = size) -> dict[str, float]:
            root = ledger.at(tasks[:size])
            seconds = ledger.unlearn_one(root, gone, size)
            return {"seconds": seconds, "storage_bytes": _ledger_bytes(root)}

        measured = prepared.cache.json(f"unlearning/T{size}.json", at_size)
        unlearn_seconds = float(measured["seconds"])
        measured_storage[str(size)] = int(measured["storage_bytes"])
        _, central_seconds = trainer.central(tasks[:size])
        for name, entry in METHODS.items():
            retrained = entry.cost.retrained_tasks(size)
            if name in ("sift-masks", "sift-masks-count"):
                seconds, how = unlearn_seconds, "measured: real `ledger unlearn`"
            elif name == "central-ft":
                seconds = central_seconds * (size - 1) / size
                how = "measured T-task central run × (T−1)/T"
            elif retrained == 1:
                seconds, how = ft_median, "median measured fine-tune"
            elif retrained:
                seconds, how = retrained * ft_median, "(T − 1) × median measured fine-tune"
            else:
                seconds, how = 0.0, "no fine-tune"
            rows[name][str(size)] = {
                "retrained_tasks": retrained,
                "steps": retrained * prepared.setting.hyper.steps,
                "seconds": seconds,
                "seconds_how": how,
                "storage_bytes": entry.cost.storage_bytes(size, trainer.n_params),
            }
    checks = ledger.same_as_audit(tasks[: max(sizes)])
    return {
        "methods": rows,
        "ledger_storage_bytes": measured_storage,
        "ledger_vectors_identical": sum(checks.values()),
        "ledger_vectors_different": len(checks) - sum(checks.values()),
        "median_ft_seconds": ft_median,
        "trainable_parameters": trainer.n_params,
    }


def write_report(out: Path, result: dict[str, Any], model: str, seconds: float) -> None:
    info = report.run_info(seconds)
    rows = result["methods"]
    sizes = list(next(iter(rows.values())))
    md = report.header("What unlearning one task costs", info)
    md += [
        f"Model: {model}, MovieLens, warm-started θ0, {result['trainable_parameters']:,} "
        "trainable parameters. Steps are fine-tuning steps a deletion forces the method to "
        "rerun; storage is what it keeps beyond θ0 to serve the T tasks (float32 vectors, "
        "1-bit masks, the int64 accumulator for exact subtraction).",
        "",
        "Of the tasks in the ledger, "
        f"{result['ledger_vectors_identical']} had a SIFT vector bit for bit equal to the "
        f"accuracy audit's cached one and {result['ledger_vectors_different']} did not.",
        "",
    ]
    for title, field, fmt in (
        ("fine-tuning steps rerun", "steps", "{:,.0f}"),
        ("seconds", "seconds", "{:,.1f}"),
        ("storage (MB)", "storage_bytes", "{:,.1f}"),
    ):
        scale = 1e6 if field == "storage_bytes" else 1
        how = {"steps": "why", "seconds": "how measured"}.get(field)
        md += [f"## {title}", ""]
        md += report.table(
            ["method", *(f"T = {t}" for t in sizes), *([how] if how else [])],
            [
                [
                    m,
                    *(fmt.format(per[t][field] / scale) for t in sizes),
                    *(
                        [METHODS[m].cost.how if field == "steps" else per[sizes[-1]]["seconds_how"]]
                        if how
                        else []
                    ),
                ]
                for m, per in rows.items()
            ],
        )
    md += [
        "Real ledger folder (state + masks, no retained vectors): "
        + ", ".join(
            f"T = {t}: {b / 1e6:,.1f} MB" for t, b in result["ledger_storage_bytes"].items()
        ),
        "",
        "![cost against T](unlearning_cost.png)",
        "",
    ]
    md += [
        "![balanced accuracy against the cost of one deletion](unlearning_cost_vs_accuracy.png)",
        "",
        "(Accuracy from the accuracy audit's `movielens` setting, cost from this one, at the",
        "largest T both measured.)",
        "",
    ]
    report.save(out, NAME, md, {NAME: {"run": info, **result}})
    _plots(out, rows)


Series = dict[tuple[tuple[int, float], ...], list[str]]  # points -> the methods that have them


def _series(rows: dict[str, dict[str, dict[str, Any]]], field: str, scale: float) -> Series:
    """Methods by their cost series; methods with the same series share one line and one
    legend entry (sift-masks and its ÷count rule cost the same, as do TIES and EMR)."""
    same: Series = {}
    for method in figures.ordered(rows):
        per = rows[method]
        points = tuple((int(t), per[t][field] / scale) for t in sorted(per, key=int))
        if min(v for _, v in points) > 0:  # log scales: a zero cost has no place
            same.setdefault(points, []).append(method)
    return same


def _draw(figure: Any, rows: dict[str, dict[str, dict[str, Any]]]) -> None:
    """Cost against T on log scales; methods with no cost (nothing to refit) are left out."""
    panels = (
        ("seconds", "seconds to unlearn one task", 1.0),
        ("storage_bytes", "storage kept to serve T tasks (MB)", 1e6),
    )
    sizes = sorted({int(t) for per in rows.values() for t in per})
    for col, (field, label, scale) in enumerate(panels):
        axes = figure.add_subplot(1, 2, col + 1)
        for points, methods in _series(rows, field, scale).items():
            axes.plot(
                [t for t, _ in points],
                [v for _, v in points],
                label=" = ".join(methods),
                **figures.style(methods[0]),
            )
        figures.log_sizes(axes, sizes)
        axes.set_yscale("log")
        axes.set_ylabel(label)
        axes.set_title(label.split(" (")[0], fontsize=10)
        axes.legend(fontsize=7, loc="best")
    figure.suptitle("What deleting one task costs each method (MiniLM, MovieLens)", fontsize=11)


ZERO_COST = 0.01  # seconds: where methods with nothing to redo sit on the log axis


def draw_tradeoff(
    figure: Any, cost: dict[str, dict[str, dict[str, Any]]], balanced: dict[str, float], size: str
) -> None:
    """Accuracy against what one deletion costs, one point per method at one T."""
    axes = figure.add_subplot(1, 1, 1)
    placed: list[tuple[float, float]] = []
    for method in figures.ordered(set(cost) & set(balanced)):
        seconds, score = max(cost[method][size]["seconds"], ZERO_COST), balanced[method]
        look = {k: v for k, v in figures.style(method).items() if k != "linestyle"}
        axes.plot([seconds], [score], linestyle="none", label=method, **look)
        # a label whose point is near one already labelled goes below it instead
        near = any(abs(np.log10(seconds / x)) < 0.3 and abs(score - y) < 0.01 for x, y in placed)
        axes.annotate(
            method, (seconds, score), textcoords="offset points",
            xytext=(6, -10 if near else 3), fontsize=7,
        )  # fmt: skip
        placed.append((seconds, score))
    axes.set_xscale("log")
    axes.axvline(ZERO_COST, color="#dddddd", linewidth=0.8, zorder=0)
    axes.set_xlabel(
        f"seconds to unlearn one task at T = {size} (log; {ZERO_COST} s: nothing to redo)"
    )
    axes.set_ylabel("balanced accuracy")
    axes.set_title(
        f"Balanced accuracy against the cost of one deletion, MovieLens, T = {size}", fontsize=10
    )


def redraw(out: Path) -> None:
    """Both figures again from the committed JSON of this audit and the accuracy audit."""
    result = json.loads((out / f"{NAME}.json").read_text(encoding="utf-8"))
    _plots(out, result["methods"])


def _plots(out: Path, rows: dict[str, dict[str, dict[str, Any]]]) -> None:
    report.plot(out / f"{NAME}.png", lambda fig: _draw(fig, rows), (11, 4.5), (0, 0, 1, 0.93))
    accuracy = out / "accuracy_vs_tasks_balanced.json"
    if not accuracy.is_file():
        return
    balanced = json.loads(accuracy.read_text(encoding="utf-8")).get("movielens", {})
    shared = sorted(
        {t for per in rows.values() for t in per} & {t for per in balanced.values() for t in per},
        key=int,
    )
    if shared:
        at = shared[-1]
        report.plot(
            out / f"{NAME}_vs_accuracy.png",
            lambda fig: draw_tradeoff(fig, rows, {m: v[at] for m, v in balanced.items()}, at),
            (7.5, 5),
            (0, 0, 1, 1),
        )


@click.command()
@click.option("--quick", is_flag=True, help="T in {2, 4}: minutes, not an hour.")
@click.option("--model", type=click.Choice(["minilm", "tiny"]), default="minilm", show_default=True)
@click.option("--cache", type=click.Path(path_type=Path), default=Path("audits/.cache"))
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Report folder.")
@click.option("--figure-only", is_flag=True, help="Redraw the figures from the reports' JSON.")
def main(quick: bool, model: str, cache: Path, out: Path | None, figure_only: bool) -> None:
    if figure_only:
        redraw(out or report.default_folder(quick))
        return
    setting = SETTINGS[0].for_model(model)
    setting = setting.quick() if quick else setting
    sizes = QUICK_SIZES if quick else SIZES
    log = Log(NAME)
    started = time.perf_counter()
    prepared = prepare(setting, model, cache, log)
    result = measure(prepared, sizes, log)
    write_report(out or report.default_folder(quick), result, model, time.perf_counter() - started)
    log("done")


if __name__ == "__main__":
    main()
