"""Audit: held-out accuracy of every method against the number of merged tasks T.

    python -m audits.accuracy_vs_tasks [--quick] [--model minilm|tiny] [--only KEY]

Writes audits/reports/accuracy_vs_tasks.{md,json,png} and
accuracy_vs_tasks_balanced.json (same shape, balanced accuracy), plus
accuracy_vs_tasks_details.json (intervals, per-task scores, settings).
Fine-tunes, bases and central models are cached under --cache and reused by
every method, every T and the next run; a killed run resumes.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from audits import figures, report
from audits.cache import Log, timed
from audits.datasets import LOADERS, directory_tasks, register_directory
from audits.methods import METHODS, Context
from audits.scoring import Scorer, accuracy, balanced_accuracy, interval, labels
from audits.setting import Prepared, Setting, folder, prepare
from ledger import Hyper, LedgerError

NAME = "accuracy_vs_tasks"
SETTINGS = [
    Setting("movielens", "movielens", warm=True, sizes=(5, 10, 25, 50, 100)),
    Setting("rotten-tomatoes", "rotten-tomatoes", warm=True, sizes=(10, 50, 100)),
    Setting("movielens-fresh-head", "movielens", warm=False, sizes=(10, 50)),
    Setting("rotten-tomatoes-fresh-head", "rotten-tomatoes", warm=False, sizes=(10, 50)),
    # The search for task-specific signal: 5x the steps, so each task's model sees more data.
    Setting("movielens-100-steps", "movielens", warm=True, sizes=(10,), hyper=Hyper(steps=100)),
    # ... and labels with little per-user prior: liked = above the user's own mean rating.
    Setting("movielens-relative", "movielens-relative", warm=True, sizes=(10, 25)),
]
EXPLORATIONS = {"movielens-100-steps", "movielens-relative"}  # not in --quick: it stays < 10 min


@dataclass
class Row:
    """One (setting, method, T): per-task scores and their summaries.

    Balanced accuracy is averaged over the tasks whose held-out rows hold both
    labels: on a one-label test set it is plain accuracy, and a constant
    predictor that happens to match scores 1.0 there, which would flatter
    `majority` and `bias-only`.
    """

    accuracy: dict[str, float]
    balanced: dict[str, float]
    two_label: frozenset[str]

    def summary(self) -> dict[str, Any]:
        acc = list(self.accuracy.values())
        bal = [v for t, v in self.balanced.items() if t in self.two_label]
        return {
            "accuracy": sum(acc) / len(acc),
            "accuracy_ci95": interval(acc),
            "balanced": sum(bal) / len(bal) if bal else float("nan"),
            "balanced_ci95": interval(bal) if bal else (float("nan"), float("nan")),
            "tasks": len(acc),
            "balanced_tasks": len(bal),
        }


@functools.cache
def two_label_tasks(dataset: str) -> frozenset[str]:
    tasks = LOADERS[dataset]()
    return frozenset(t.task_id for t in tasks if len({r["label"] for r in t.test}) == 2)


def _code_version(method: str) -> str:
    """Cached scores are reused only while the method's and scoring's code is unchanged.

    Hashed from the source as imported, so editing a file during a run cannot
    relabel scores that the old code made.
    """
    from audits import scoring

    module = sys.modules[METHODS[method].run.__module__]
    source = inspect.getsource(module) + inspect.getsource(scoring)
    return hashlib.sha256(source.encode()).hexdigest()[:16]


CODE_VERSIONS = {name: _code_version(name) for name in METHODS}


def evaluate(prepared: Prepared, scorer: Scorer, size: int, log: Log) -> None:
    tasks = prepared.selection.evaluation[:size]
    ctx = Context(tasks, prepared.trainer, scorer)
    for name in METHODS:

        def score(name: str = name) -> dict[str, Any]:
            predictions, seconds = timed(lambda: METHODS[name].run(ctx))
            log(f"T={size:3} {name:17} scored in {seconds:.1f} s")
            truth = {t.task_id: labels(t, "test") for t in tasks}
            return {
                "accuracy": {t: accuracy(p, truth[t]) for t, p in predictions.items()},
                "balanced": {t: balanced_accuracy(p, truth[t]) for t, p in predictions.items()},
            }

        prepared.cache.json(_scores(size, name), score)


def _scores(size: int, method: str) -> str:
    return f"scores/T{size}/{method}-{CODE_VERSIONS[method]}.json"


def cached(setting: Setting, model: str, cache: Path) -> dict[int, dict[str, Row]] | None:
    """A setting's rows if an earlier run scored them all with today's code, else None."""
    root = folder(setting, model, cache)
    paths = {(t, m): root / _scores(t, m) for t in setting.sizes for m in METHODS}
    if not all(p.exists() for p in paths.values()):
        return None
    out: dict[int, dict[str, Row]] = {t: {} for t in setting.sizes}
    for (size, method), path in paths.items():
        scores = json.loads(path.read_text())
        out[size][method] = Row(
            scores["accuracy"], scores["balanced"], two_label_tasks(setting.dataset)
        )
    return out


def run_setting(setting: Setting, model: str, cache: Path, log: Log) -> None:
    prepared = prepare(setting, model, cache, log)
    trainer = prepared.trainer
    evaluation = prepared.selection.evaluation
    for i, task in enumerate(evaluation, start=1):
        for method in ("ft", "sift"):
            trainer.vector(task, method)
        if i % 10 == 0 or i == len(evaluation):
            log(f"{setting.key}: vectors ready for {i}/{len(evaluation)} tasks")
    scorer = Scorer(trainer.base, trainer.names, setting.hyper.max_length)
    for size in setting.sizes:
        evaluate(prepared, scorer, size, log)


def _cell(summary: dict[str, Any], metric: str) -> str:
    low, high = summary[f"{metric}_ci95"]
    return f"{summary[metric]:.3f} [{low:.3f}, {high:.3f}]"


def write_report(
    out: Path,
    results: dict[str, dict[int, dict[str, Row]]],
    settings: list[Setting],
    model: str,
    computed: list[str],
    seconds: float,
) -> None:
    info = report.run_info(seconds)
    reused = [key for key in results if key not in computed]
    summaries = {
        key: {m: {str(size): rows[m].summary() for size, rows in by_size.items()} for m in METHODS}
        for key, by_size in results.items()
    }
    means = {
        metric: {
            key: {m: {t: s[metric] for t, s in per.items()} for m, per in by_method.items()}
            for key, by_method in summaries.items()
        }
        for metric in ("accuracy", "balanced")
    }
    md = report.header("Accuracy against the number of merged tasks", info)
    md += [
        f"Model: {model}. Every method is scored on each task's held-out 20% (hash split); "
        "cells are the mean over tasks with a 95% bootstrap interval. Balanced accuracy "
        "(mean recall of the two labels) is averaged over the tasks whose held-out rows hold "
        "both labels. Hyperparameters "
        "(TALL's and TIES's λ, bias-only's bias) are chosen on training rows only.",
        "",
    ]
    if reused:
        md += [
            f"Settings {', '.join(reused)} were scored by earlier runs of this same code "
            "(same method and scoring sources) and read from the cache; the wall time above "
            "is this command's alone.",
            "",
        ]
    for key, by_size in results.items():
        setting = next(s for s in settings if s.key == key)
        sizes = sorted(by_size)
        h = setting.hyper
        md += [
            f"## {key}",
            "",
            f"{setting.dataset}, base θ0: "
            + (
                f"pretrained {setting.pretrain_steps} steps on {setting.n_pool} held-out tasks"
                if setting.warm
                else "fresh classification head"
            )
            + f"; per task {h.steps} steps, batch {h.batch_size}, lr {h.lr:g}, "
            f"length {h.max_length}.",
            "",
        ]
        for metric, title in (("accuracy", "accuracy"), ("balanced", "balanced accuracy")):
            md += [f"### {title}", ""]
            count = "balanced_tasks" if metric == "balanced" else "tasks"
            md += report.table(
                ["method", *(f"T = {t}" for t in sizes)],
                [[m, *(_cell(summaries[key][m][str(t)], metric) for t in sizes)] for m in METHODS]
                + [
                    [
                        "tasks averaged",
                        *(str(summaries[key]["majority"][str(t)][count]) for t in sizes),
                    ]
                ],
            )
        gaps = [
            ("Local FT − majority (accuracy)", "local-ft", "majority", "accuracy"),
            ("Local FT − bias-only (balanced)", "local-ft", "bias-only", "balanced"),
            ("SIFT-Masks − FT+Merge (accuracy)", "sift-masks", "ft-merge", "accuracy"),
            ("SIFT-Masks − FT+Merge (balanced)", "sift-masks", "ft-merge", "balanced"),
            ("÷contributors − ÷T (accuracy)", "sift-masks-count", "sift-masks", "accuracy"),
        ]
        md += ["### differences of means (points of accuracy)", ""]
        md += report.table(
            ["", *(f"T = {t}" for t in sizes)],
            [
                [
                    label,
                    *(_points(means[metric][key], a, b, str(t)) for t in sizes),
                ]
                for label, a, b, metric in gaps
            ],
        )
    md += ["![accuracy against T](accuracy_vs_tasks.png)", ""]
    report.save(
        out,
        NAME,
        md,
        {
            NAME: means["accuracy"],
            f"{NAME}_balanced": means["balanced"],
            f"{NAME}_details": {
                "run": info,
                "results": summaries,
                "per_task": {
                    key: {
                        m: {str(t): rows[m].accuracy for t, rows in by_size.items()}
                        for m in METHODS
                    }
                    for key, by_size in results.items()
                },
            },
        },
    )
    _plot(out, means["balanced"])


def _points(means: dict[str, dict[str, float]], a: str, b: str, size: str) -> str:
    return f"{100 * (means[a][size] - means[b][size]):+.1f}"


def _draw(figure: Any, balanced: dict[str, dict[str, dict[str, float]]]) -> None:
    """Balanced accuracy (the question: better than each user's prior?), one panel per
    setting; a setting run at one T shows its methods side by side instead of a line."""
    keys = list(balanced)
    cols = min(3, len(keys))
    rows = -(-len(keys) // cols)
    for i, key in enumerate(keys):
        axes = figure.add_subplot(rows, cols, i + 1)
        methods = figures.ordered(balanced[key])
        sizes = sorted({int(t) for m in methods for t in balanced[key][m]})
        if len(sizes) > 1:
            for method in methods:
                per = balanced[key][method]
                ts = sorted(per, key=int)
                axes.plot(
                    [int(t) for t in ts],
                    [per[t] for t in ts],
                    label=method,
                    **figures.style(method),
                )
            figures.log_sizes(axes, sizes)
        else:
            for x, method in enumerate(methods):
                look = {k: v for k, v in figures.style(method).items() if k != "linestyle"}
                axes.plot([x], [balanced[key][method][str(sizes[0])]], label=method, **look)
            axes.set_xticks(range(len(methods)))
            axes.set_xticklabels(methods, rotation=60, ha="right", fontsize=7)
            axes.set_xlabel(f"method (one size: T = {sizes[0]})")
        axes.axhline(0.5, color="#dddddd", linewidth=0.8, zorder=0)
        axes.set_ylabel("balanced accuracy")
        axes.set_title(key, fontsize=10)
    figures.legend_right(figure)
    figure.suptitle(
        "Balanced accuracy on each task's held-out rows (mean over tasks) against tasks merged",
        fontsize=11,
    )


def redraw(out: Path) -> None:
    """The figure again from the committed JSON (no cache, no training)."""
    balanced = json.loads((out / f"{NAME}_balanced.json").read_text(encoding="utf-8"))
    _plot(out, balanced)


def _plot(out: Path, balanced: dict[str, dict[str, dict[str, float]]]) -> None:
    rows = -(-len(balanced) // min(3, len(balanced)))
    report.plot(
        out / f"{NAME}.png", lambda fig: _draw(fig, balanced), (14, 4.2 * rows), (0, 0, 0.85, 0.95)
    )


@click.command()
@click.option("--quick", is_flag=True, help="T in {2, 4}, a small pool: minutes, not hours.")
@click.option("--model", type=click.Choice(["minilm", "tiny"]), default="minilm", show_default=True)
@click.option("--only", multiple=True, help="Run only these settings (repeatable).")
@click.option("--report-only", is_flag=True, help="Rebuild the report from the cache; run nothing.")
@click.option("--figure-only", is_flag=True, help="Redraw the figure from the report's JSON.")
@click.option(
    "--tasks-dir",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    default=None,
    help="Run every method on these tasks instead: one JSONL file per task (fresh head).",
)
@click.option("--cache", type=click.Path(path_type=Path), default=Path("audits/.cache"))
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Report folder.")
def main(
    quick: bool,
    model: str,
    only: tuple[str, ...],
    report_only: bool,
    figure_only: bool,
    tasks_dir: Path | None,
    cache: Path,
    out: Path | None,
) -> None:
    if figure_only:
        redraw(out or report.default_folder(quick))
        return
    unknown = set(only) - {s.key for s in SETTINGS}
    if unknown:
        raise click.UsageError(f"unknown setting(s) {', '.join(sorted(unknown))}")
    if tasks_dir is not None:
        settings = [directory_setting(tasks_dir, quick).for_model(model)]
        out = out or Path("audits/reports/tasks-dir") / tasks_dir.resolve().name
    else:
        chosen = [s.for_model(model) for s in SETTINGS if not (quick and s.key in EXPLORATIONS)]
        settings = [s.quick() if quick else s for s in chosen]
        out = out or report.default_folder(quick)
    log = Log(NAME)
    started = time.perf_counter()
    computed: list[str] = []
    for setting in [] if report_only else settings:
        if only and setting.key not in only:
            continue
        run_setting(setting, model, cache, log)
        computed.append(setting.key)
        # Rewritten after every setting, from every setting scored so far (this run or
        # an earlier one): a long run's finished rows are never lost.
        _report(out, settings, model, cache, computed, time.perf_counter() - started)
        log(f"{setting.key} done; report in {out}")
    if report_only:
        _report(out, settings, model, cache, computed, time.perf_counter() - started)


def directory_setting(folder: Path, quick: bool) -> Setting:
    """Every method on someone else's tasks: a fresh head (no pretraining pool to hold
    out), T at the audit's sizes below the task count and at the task count itself."""
    try:
        usable = [t for t in directory_tasks(folder) if t.train and t.test]
    except (ValueError, LedgerError) as exc:  # no task files, or one `ledger add` would refuse
        raise click.UsageError(str(exc)) from None
    if len(usable) < 2:
        raise click.UsageError(f"{folder} has {len(usable)} usable tasks; a merge needs 2")
    top = min(len(usable), 4) if quick else len(usable)
    sizes = tuple(sorted({t for t in (2, 4) if quick and t <= top} | {
        t for t in (5, 10, 25, 50, 100) if not quick and t < top
    } | {top}))  # fmt: skip
    hyper = Hyper(steps=2) if quick else Hyper()
    return Setting(folder.resolve().name, register_directory(folder), False, sizes, hyper)


def _report(
    out: Path,
    settings: list[Setting],
    model: str,
    cache: Path,
    computed: list[str],
    seconds: float,
) -> None:
    results = {s.key: r for s in settings if (r := cached(s, model, cache)) is not None}
    write_report(out, results, settings, model, computed, seconds)


if __name__ == "__main__":
    main()
