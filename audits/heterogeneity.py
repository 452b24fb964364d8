"""Audit: merged accuracy as the merged tasks grow heterogeneous, on a controlled family.

    python -m audits.heterogeneity [--quick] [--model minilm|tiny] [--settings fresh,warm]
        [--sizes 10,25,50,100] [--shares 0,0.25,0.5,0.75,1] [--cache DIR] [--out DIR]

On the per-user audits (accuracy_vs_tasks) a method's gain is mostly the task's
label prior, so the paper's claim (FT+Merge decays as heterogeneous tasks
interfere, SIFT-Masks keeps most of Local FT) has no room to show. Here every
task is a genre detector on MovieLens movie texts ("Title (year) | genres"):
task t labels a movie 1 iff its genres hold g_t. g_t is the shared genre
(Drama) for a share 1 − h of the T tasks and, for round(h·T) of them, another
common genre taken in rotation; h sets how much the tasks disagree.

A task is named by (genre, index within that genre's tasks) and nothing else,
so Drama tasks are the same at every h and each fine-tune serves every h and T;
the T tasks at one h are the first T of that h's sequence (T = 10 is a prefix
of T = 25). Per task: 30 + 30 movies split 80/20 by the project's hash split
(train / the 12-row test), and 50 + 50 more as the "wide" held-out set whose
balanced accuracy is the reported figure. Writes audits/reports/heterogeneity.
{md,json,png} and heterogeneity_paired.png; everything expensive is cached, a
killed run resumes.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click
import numpy as np
from transformers.utils import logging as hf_logging

from audits import report
from audits.accuracy_vs_tasks import CODE_VERSIONS, SETTINGS
from audits.cache import Cache, Log, timed
from audits.methods import METHODS, Context
from audits.scoring import Labels, Scorer, accuracy, balanced_accuracy, interval, labels
from audits.setting import Setting, folder, prepare_base
from audits.training import Trainer, build_base
from ledger.data import Task, genres

# The task family is the ledger's (ledger.data.genres), shared with `ledger demo`.
SHARED, ROTATION = genres.SHARED, genres.ROTATION
PER_LABEL, WIDE_PER_LABEL = genres.PER_LABEL, genres.WIDE_PER_LABEL
GenreTask = genres.GenreTask
genre_task, movies, non_shared, plan = (
    genres.genre_task,
    genres.movies,
    genres.non_shared,
    genres.plan,
)
family = genres.genre_tasks

NAME = "heterogeneity"
FAMILY = f"movielens-genres-{PER_LABEL}+{WIDE_PER_LABEL}"
KEYS = ("fresh", "warm")
SIZES = (10, 25, 50, 100)
SHARES = (0.0, 0.25, 0.5, 0.75, 1.0)
QUICK_SIZES = (2, 4)
QUICK_SHARES = (0.0, 1.0)
RULES = ("sift-masks", "sift-masks-count")  # the two SIFT-Masks serving rules
REPORT_EVERY = 120.0  # seconds of work between report rewrites in a long run
Cell = tuple[str, int, float]  # (setting key, T, h)


def served(member: GenreTask) -> Task:
    """What the methods see: the task's training rows, and its test rows then the wide set."""
    return Task(member.task_id, member.task.train, member.task.test + member.wide)


def wide_labels(member: GenreTask) -> Labels:
    return np.array([r["label"] for r in member.wide], dtype=np.int64)


def mix(share: float, size: int) -> Counter[str]:
    return Counter(g for g, _ in plan(share, size))


class FamilyTrainer(Trainer):
    """The audits' trainer; its central models are keyed by the task set, not T alone."""

    def central_key(self, tasks: Sequence[Task]) -> str:
        digest = hashlib.sha256("\x00".join(t.task_id for t in tasks).encode()).hexdigest()
        return f"central/T{len(tasks)}-{digest[:12]}"


def _score(ctx: Context, members: list[GenreTask], method: str) -> dict[str, Any]:
    """Per task: accuracy and balanced accuracy on the wide set and on the 12-row test
    (balanced on the test only where it holds both labels, else null)."""
    predictions, seconds = timed(lambda: METHODS[method].run(ctx))
    out: dict[str, Any] = {"balanced": {}, "accuracy": {}, "test_balanced": {}, "test_accuracy": {}}
    for member in members:
        predicted = predictions[member.task_id]
        n = len(member.task.test)
        wide, test = wide_labels(member), labels(member.task, "test")
        out["balanced"][member.task_id] = balanced_accuracy(predicted[n:], wide)
        out["accuracy"][member.task_id] = accuracy(predicted[n:], wide)
        two = len(set(test.tolist())) == 2
        out["test_balanced"][member.task_id] = (
            balanced_accuracy(predicted[:n], test) if two else None
        )
        out["test_accuracy"][member.task_id] = accuracy(predicted[:n], test)
    out["seconds"] = seconds
    return out


def _version(parts: Sequence[Callable[..., Any]], extra: str) -> str:
    source = "".join(inspect.getsource(p) for p in parts) + extra
    return hashlib.sha256(source.encode()).hexdigest()[:8]


@functools.cache
def data_version() -> str:
    """A digest of the movies and of two tasks' rows, pinned in the cache folder's settings:
    fine-tunes of other rows under the same task ids are never reused."""
    probe = [genre_task(SHARED, 0), genre_task(ROTATION[0], 1)]
    content = {
        "family": FAMILY,
        "movies": [[m.movie_id, m.text, sorted(m.genres)] for m in movies()],
        "tasks": [[p.task.train, p.task.test, p.wide] for p in probe],
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:8]


# Which tasks a cell holds and how a task is scored: scores are reused only while these
# are unchanged (and the method's and scoring.py's source, CODE_VERSIONS).
SCORE_VERSION = _version([non_shared, plan, _score], SHARED + ",".join(ROTATION))


def _scores(size: int, share: float, method: str) -> str:
    return f"scores/T{size}/h{share:g}/{method}-{CODE_VERSIONS[method]}-{SCORE_VERSION}.json"


def setting_of(key: str, model: str, quick: bool) -> Setting:
    """The cache's pinned settings; a warm setting's θ0 is accuracy_vs_tasks' movielens base."""
    source = next(s for s in SETTINGS if s.key == "movielens").for_model(model)
    source = source.quick() if quick else source
    return Setting(
        f"{NAME}-{key}",
        f"{FAMILY}-{data_version()}",
        warm=key == "warm",
        sizes=source.sizes,
        hyper=source.hyper,
        n_pool=source.n_pool,
        pretrain_steps=source.pretrain_steps,
    )


def run_setting(
    key: str,
    model: str,
    quick: bool,
    cells: Sequence[tuple[int, float]],
    cache_root: Path,
    log: Log,
    after_cell: Callable[[Cell], None] = lambda cell: None,
) -> None:
    """Fine-tune and score the cells (T, h) not yet cached, in the order given."""
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    setting = setting_of(key, model, quick)
    cache = Cache(folder(setting, model, cache_root), setting.pinned(model))
    todo = [
        (size, share)
        for size, share in cells
        if not all(cache.has(_scores(size, share, m)) for m in METHODS)
    ]
    if not todo:
        log(f"{key}: every requested cell is cached")
        return
    if setting.warm:
        log(f"{key}: θ0 is accuracy_vs_tasks' warm movielens base")
        source = next(s for s in SETTINGS if s.key == "movielens").for_model(model)
        _, _, base = prepare_base(source.quick() if quick else source, model, cache_root, log)
    else:
        base = build_base(cache, model, False, [], 0, log)
    trainer = FamilyTrainer(cache, base, setting.hyper, log)
    scorer = Scorer(base, trainer.names, setting.hyper.max_length)
    for size, share in todo:
        _run_cell(cache, trainer, scorer, (key, size, share), log)
        after_cell((key, size, share))


def _run_cell(cache: Cache, trainer: Trainer, scorer: Scorer, cell: Cell, log: Log) -> None:
    key, size, share = cell
    members = family(share, size)
    for i, member in enumerate(members, start=1):
        for method in ("ft", "sift"):
            trainer.vector(served(member), method)
        if i % 10 == 0 or i == len(members):
            log(f"{key} T={size} h={share:g}: vectors ready for {i}/{len(members)} tasks")
    ctx = Context([served(m) for m in members], trainer, scorer)
    for method in METHODS:

        def make(method: str = method) -> dict[str, Any]:
            scores = _score(ctx, members, method)
            log(f"{key} T={size:3} h={share:<4g} {method:17} {scores['seconds']:6.1f} s")
            return scores

        cache.json(_scores(size, share, method), make)


def collect(
    keys: Sequence[str],
    model: str,
    quick: bool,
    cells: Sequence[tuple[int, float]],
    cache_root: Path,
) -> dict[Cell, dict[str, dict[str, Any]]]:
    """Every cell whose every method was scored with today's code, read from the cache."""
    out: dict[Cell, dict[str, dict[str, Any]]] = {}
    for key in keys:
        root = folder(setting_of(key, model, quick), model, cache_root)
        for size, share in cells:
            paths = {m: root / _scores(size, share, m) for m in METHODS}
            if all(p.exists() for p in paths.values()):
                out[(key, size, share)] = {m: json.loads(p.read_text()) for m, p in paths.items()}
    return out


def tune_seconds(
    keys: Sequence[str], model: str, quick: bool, cache_root: Path
) -> dict[str, dict[str, float]]:
    """Per setting and task, the measured seconds of its two cached fine-tunes (ft + sift)."""
    out: dict[str, dict[str, float]] = {}
    for key in keys:
        root = folder(setting_of(key, model, quick), model, cache_root) / "vectors"
        per: dict[str, float] = {}
        for meta in sorted(root.glob("*/*.json")):
            per[meta.stem] = per.get(meta.stem, 0.0) + json.loads(meta.read_text())["seconds"]
        out[key] = per
    return out


def _mean_ci(values: Sequence[float]) -> tuple[float, list[float]]:
    if not values:
        return float("nan"), [float("nan"), float("nan")]
    low, high = interval(values)
    return float(np.mean(values)), [low, high]


def summarise(cell: Cell, scores: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    key, size, share = cell
    rows = []
    for method, per in scores.items():
        row: dict[str, Any] = {
            "setting": key,
            "tasks": size,
            "share": share,
            "non_shared_tasks": non_shared(share, size),
            "method": method,
        }
        for metric, field in (
            ("balanced", "balanced_accuracy"),
            ("accuracy", "accuracy"),
            ("test_balanced", "test_balanced_accuracy"),
            ("test_accuracy", "test_accuracy"),
        ):
            values = [v for v in per[metric].values() if v is not None]
            row[field], row[f"{field}_ci95"] = _mean_ci(values)
        row["test_balanced_tasks"] = sum(v is not None for v in per["test_balanced"].values())
        row["seconds"] = per["seconds"]
        rows.append(row)
    return rows


def paired(cell: Cell, scores: dict[str, dict[str, Any]], a: str, b: str) -> dict[str, Any]:
    """Mean over tasks of a's wide balanced accuracy minus b's, with a bootstrap interval."""
    key, size, share = cell
    diffs = [scores[a]["balanced"][t] - scores[b]["balanced"][t] for t in scores[a]["balanced"]]
    mean, ci = _mean_ci(diffs)
    return {
        "setting": key,
        "tasks": size,
        "share": share,
        "a": a,
        "b": b,
        "difference": mean,
        "difference_ci95": ci,
    }


PAIRS = [(rule, "ft-merge") for rule in RULES] + [("local-ft", rule) for rule in RULES]


def _mix_text(share: float, size: int) -> str:
    counts = mix(share, size)
    parts = [f"{g} {counts[g]}" for g in (SHARED, *ROTATION) if counts[g]]
    return ", ".join(parts)


def write_report(
    out: Path,
    results: dict[Cell, dict[str, dict[str, Any]]],
    model: str,
    computed: list[Cell],
    seconds: float,
    tuned: dict[str, dict[str, float]] | None = None,
) -> None:
    info = report.run_info(seconds)
    cells = sorted(results)
    rows = [r for c in cells for r in summarise(c, results[c])]
    pairs = [paired(c, results[c], a, b) for c in cells for a, b in PAIRS]
    by_row = {(r["setting"], r["tasks"], r["share"], r["method"]): r for r in rows}
    by_pair = {(p["setting"], p["tasks"], p["share"], p["a"], p["b"]): p for p in pairs}
    keys = [k for k in KEYS if any(c[0] == k for c in cells)]
    md = report.header("Merging under controlled task heterogeneity", info)
    md += [
        f'Model: {model}. Task t labels a MovieLens movie (text "Title (year) | genres", '
        f"{len(movies())} distinct movies) 1 iff its genres hold g_t: g_t is {SHARED} for the "
        f"shared tasks and, for round(h·T) of the T tasks (halves up), one of "
        f"{', '.join(ROTATION)} in that rotation, so once more than {len(ROTATION)} tasks "
        "are non-shared, genres repeat (a genre's tasks differ only in their sampled movies). "
        "Per task: "
        f"{PER_LABEL} + {PER_LABEL} movies, hash split 80/20 into training rows and a test "
        f"split, and {WIDE_PER_LABEL} + {WIDE_PER_LABEL} further movies as the wide held-out "
        "set. Cells are the mean over the T tasks of balanced accuracy on the wide set; 95% "
        "bootstrap intervals over tasks, accuracy and the test split's scores are in "
        "heterogeneity.json. Per task 20 steps, as in the other audits; hyperparameters "
        "(TALL's and TIES's λ, bias-only's bias) are chosen on training rows only.",
        "",
        "Cells in this report: "
        + "; ".join(
            f"{k} T = {t}: h = {', '.join(f'{h:g}' for kk, tt, h in cells if (kk, tt) == (k, t))}"
            for k in keys
            for t in sorted({c[1] for c in cells if c[0] == k})
        )
        + ".",
        "",
    ]
    reused = [c for c in cells if c not in computed]
    if reused:
        md += [
            f"{len(reused)} of the {len(cells)} cells were scored by earlier runs of this same "
            "code (same task family, method and scoring sources) and read from the cache; "
            "the wall time above is this command's alone.",
            "",
        ]
    sizes_all = sorted({c[1] for c in cells})
    shares_all = sorted({c[2] for c in cells})
    md += ["## The task mix", ""]
    md += report.table(
        ["h", *(f"T = {t}" for t in sizes_all)],
        [[f"{h:g}", *(_mix_text(h, t) for t in sizes_all)] for h in shares_all],
    )
    for key in keys:
        title = "fresh classification head on θ0" if key == "fresh" else "warm base θ0"
        md += [f"## {key}: {title}", ""]
        if key == "warm":
            md += [
                "θ0 is accuracy_vs_tasks' movielens base (MiniLM pretrained on 150 users' "
                "liked/not-liked ratings), not trained on genres.",
                "",
            ]
        for size in sorted({c[1] for c in cells if c[0] == key}):
            shares = [c[2] for c in cells if c[0] == key and c[1] == size]
            md += [f"### T = {size}: wide balanced accuracy", ""]
            md += report.table(
                ["h", *METHODS],
                [
                    [
                        f"{h:g}",
                        *(f"{by_row[(key, size, h, m)]['balanced_accuracy']:.3f}" for m in METHODS),
                    ]
                    for h in shares
                ],
            )
        md += [
            f"### {key}: paired differences over tasks (points of wide balanced accuracy)",
            "",
        ]
        md += report.table(
            ["T", "h", *(f"{a} − {b}" for a, b in PAIRS)],
            [
                [str(t), f"{h:g}", *(_points(by_pair[(k, t, h, a, b)]) for a, b in PAIRS)]
                for k, t, h in cells
                if k == key
            ],
        )
    md += _work(results, cells, tuned or {})
    md += [
        "![balanced accuracy against h](heterogeneity.png)",
        "",
        "![paired SIFT-Masks − FT+Merge against h](heterogeneity_paired.png)",
        "",
    ]
    per_task = {
        f"{k}/T{t}/h{h:g}": {
            "task_ids": list(results[(k, t, h)]["majority"]["balanced"]),
            "balanced": {m: list(s["balanced"].values()) for m, s in results[(k, t, h)].items()},
        }
        for k, t, h in cells
    }
    data = {
        "run": info,
        "model": model,
        "family": {
            "shared": SHARED,
            "rotation": list(ROTATION),
            "per_label": PER_LABEL,
            "wide_per_label": WIDE_PER_LABEL,
            "movies": len(movies()),
            "data_version": data_version(),
            "score_version": SCORE_VERSION,
        },
        "cells": [{"setting": k, "tasks": t, "share": h} for k, t, h in cells],
        "rows": rows,
        "paired": pairs,
        "per_task": per_task,
    }
    report.save(out, NAME, md, {NAME: data})
    if not cells:
        return
    columns = max(len({c[1] for c in cells if c[0] == k}) for k in keys)
    report.plot(
        out / f"{NAME}.png",
        lambda fig: _draw_methods(fig, by_row, cells, keys),
        (3.6 * columns + 0.5, 3.4 * len(keys) + 1.2),
    )
    report.plot(
        out / f"{NAME}_paired.png",
        lambda fig: _draw_paired(fig, by_pair, cells, keys),
        (4.4 * len(RULES), 3.6 * len(keys) + 0.6),
    )


def _work(
    results: dict[Cell, dict[str, dict[str, Any]]],
    cells: list[Cell],
    tuned: dict[str, dict[str, float]],
) -> list[str]:
    """The measured work behind the cells, whichever runs did it (all read from the cache)."""
    md = ["## The work behind these cells", ""]
    for key in sorted({c[0] for c in cells}, key=KEYS.index):
        tasks = {t for c in cells if c[0] == key for t in results[c]["majority"]["balanced"]}
        seconds = sum(tuned.get(key, {}).get(t, 0.0) for t in tasks)
        md += [
            f"- {key}: {len(tasks)} distinct tasks, {2 * len(tasks)} fine-tunes (ft and sift, "
            f"each serving every cell that holds its task): {seconds:.0f} s measured in all.",
        ]
    md += [""]
    md += report.table(
        ["setting", "T", "h", "scoring, all methods (s)", "of which Central FT (s)"],
        [
            [
                k,
                str(t),
                f"{h:g}",
                f"{sum(s['seconds'] for s in results[(k, t, h)].values()):.0f}",
                f"{results[(k, t, h)]['central-ft']['seconds']:.0f}",
            ]
            for k, t, h in cells
        ],
    )
    return md


def _points(pair: dict[str, Any]) -> str:
    low, high = pair["difference_ci95"]
    return f"{100 * pair['difference']:+.1f} [{100 * low:+.1f}, {100 * high:+.1f}]"


GREY = ("zero-shot", "majority", "bias-only")  # label-prior baselines, drawn faint
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
STYLES = ("-", "--", "-", "-.", "-", "--", ":", "-.")
TITLES = {"fresh": "fresh head on θ0", "warm": "warm base θ0"}


def _colour(index: int) -> Any:
    """tab10 without its grey, which the faint baselines use."""
    import matplotlib

    return matplotlib.colormaps["tab10"]((0, 1, 2, 3, 4, 5, 6, 8, 9)[index % 9])


def _draw_methods(figure: Any, rows: dict[Any, Any], cells: list[Cell], keys: list[str]) -> None:
    """Balanced accuracy against h: one panel per (setting, T), one line per method."""
    columns = max(len({c[1] for c in cells if c[0] == k}) for k in keys)
    values = [r["balanced_accuracy"] for r in rows.values()]
    limits = (min(0.45, min(values) - 0.02), min(1.0, max(values) + 0.03))
    for r, key in enumerate(keys):
        for c, size in enumerate(sorted({c[1] for c in cells if c[0] == key})):
            axes = figure.add_subplot(len(keys), columns, r * columns + c + 1)
            shares = [h for k, t, h in cells if (k, t) == (key, size)]
            coloured = 0
            for method in METHODS:
                ys = [rows[(key, size, h, method)]["balanced_accuracy"] for h in shares]
                style: dict[str, Any] = {"color": "0.72", "linewidth": 0.9, "linestyle": ":"}
                style["marker"] = "."
                if method not in GREY:
                    style = {
                        "color": _colour(coloured),
                        "marker": MARKERS[coloured % len(MARKERS)],
                        "linestyle": STYLES[coloured % len(STYLES)],
                        "linewidth": 1.5,
                        "markersize": 5,
                    }
                    coloured += 1
                axes.plot(shares, ys, label=method, **style)
            axes.axhline(0.5, color="0.85", linewidth=0.8, zorder=0)
            axes.set_ylim(*limits)
            axes.set_xlim(-0.06, 1.06)
            axes.set_xticks(shares)
            axes.set_title(f"{TITLES[key]}, T = {size} merged tasks", fontsize=9)
            axes.set_xlabel("h = share of non-Drama tasks")
            axes.set_ylabel("balanced accuracy (wide set)")
    handles, names = figure.axes[0].get_legend_handles_labels()
    figure.legend(handles, names, loc="lower center", ncol=6, fontsize=8)


def _draw_paired(figure: Any, pairs: dict[Any, Any], cells: list[Cell], keys: list[str]) -> None:
    """SIFT-Masks − FT+Merge against h, paired over tasks, one line per T; a row per setting,
    a panel per serving rule."""
    drawn = [p for p in pairs.values() if p["a"] in RULES and p["b"] == "ft-merge"]
    ends = [100 * p["difference_ci95"][e] for p in drawn for e in (0, 1)]
    limits = (min(-2.0, min(ends) - 2), max(2.0, max(ends) + 2))
    for r, key in enumerate(keys):
        sizes = sorted({c[1] for c in cells if c[0] == key})
        for c, rule in enumerate(RULES):
            axes = figure.add_subplot(len(keys), len(RULES), r * len(RULES) + c + 1)
            for j, size in enumerate(sizes):
                shares = [h for k, t, h in cells if (k, t) == (key, size)]
                got = [pairs[(key, size, h, rule, "ft-merge")] for h in shares]
                mean = np.array([100 * p["difference"] for p in got])
                low = np.array([100 * p["difference_ci95"][0] for p in got])
                high = np.array([100 * p["difference_ci95"][1] for p in got])
                offset = 0.012 * (j - (len(sizes) - 1) / 2)  # bars side by side, not stacked
                axes.errorbar(
                    [h + offset for h in shares],
                    mean,
                    yerr=[mean - low, high - mean],
                    color=_colour(j),
                    marker=MARKERS[j % len(MARKERS)],
                    linestyle=STYLES[j % len(STYLES)],
                    capsize=3,
                    label=f"T = {size}",
                )
            axes.axhline(0, color="0.6", linewidth=0.8, zorder=0)
            axes.set_ylim(*limits)
            axes.set_xlim(-0.06, 1.06)
            axes.set_xticks(sorted({c[2] for c in cells if c[0] == key}))
            axes.set_title(f"{TITLES[key]}: {rule} − ft-merge, 95% CI", fontsize=9)
            axes.set_xlabel("h = share of non-Drama tasks")
            axes.set_ylabel("paired difference (points)")
            axes.legend(fontsize=8, loc="best")


def _ints(text: str) -> tuple[int, ...]:
    values = tuple(int(v) for v in text.split(",") if v.strip())
    if not values or min(values) < 1:
        raise click.BadParameter(f"{text!r}: give task counts >= 1, comma-separated")
    return values


def _shares(text: str) -> tuple[float, ...]:
    values = tuple(float(v) for v in text.split(",") if v.strip())
    if not values or not all(0 <= v <= 1 for v in values):
        raise click.BadParameter(f"{text!r}: give shares in [0, 1], comma-separated")
    return values


@click.command()
@click.option("--quick", is_flag=True, help="Tiny grid (T in {2, 4}, h in {0, 1}).")
@click.option(
    "--model",
    type=click.Choice(["minilm", "tiny"]),
    default=None,
    help="default: minilm, tiny with --quick",
)
@click.option("--settings", "settings_text", default=",".join(KEYS), show_default=True)
@click.option("--sizes", "sizes_text", default=None, help="T values, in the order to run them.")
@click.option("--shares", "shares_text", default=None, help="h values, in the order to run them.")
@click.option("--report-only", is_flag=True, help="Rebuild the report from the cache; run nothing.")
@click.option("--cache", type=click.Path(path_type=Path), default=Path("audits/.cache"))
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Report folder.")
def main(
    quick: bool,
    model: str | None,
    settings_text: str,
    sizes_text: str | None,
    shares_text: str | None,
    report_only: bool,
    cache: Path,
    out: Path | None,
) -> None:
    model = model or ("tiny" if quick else "minilm")
    keys = [k for k in settings_text.split(",") if k.strip()]
    if not keys or set(keys) - set(KEYS):
        raise click.UsageError(f"--settings: choose from {', '.join(KEYS)}")
    sizes = _ints(sizes_text) if sizes_text else QUICK_SIZES if quick else SIZES
    shares = _shares(shares_text) if shares_text else QUICK_SHARES if quick else SHARES
    # The report holds every cached cell of the default grid and of this command's.
    grid_sizes = sorted({*(QUICK_SIZES if quick else SIZES), *sizes})
    grid_shares = sorted({*(QUICK_SHARES if quick else SHARES), *shares})
    grid = [(t, h) for t in grid_sizes for h in grid_shares]
    order = [(t, h) for h in shares for t in sizes]  # h outer: a share's cells finish together
    # The tiny model's reports never land beside MiniLM's committed ones.
    out = out or report.default_folder(quick or model == "tiny")
    log = Log(NAME)
    started = time.perf_counter()
    computed: list[Cell] = []
    last = [time.perf_counter()]

    def rewrite(force: bool = False) -> None:
        # Rebuilt from every cell cached so far (this run or an earlier one), every few
        # minutes of a long run: its finished cells are never lost.
        if force or time.perf_counter() - last[0] > REPORT_EVERY:
            results = collect(KEYS, model, quick, grid, cache)
            tuned = tune_seconds(KEYS, model, quick, cache)
            write_report(out, results, model, computed, time.perf_counter() - started, tuned)
            last[0] = time.perf_counter()
            log(f"report in {out} ({len(results)} cells)")

    def done(cell: Cell) -> None:
        computed.append(cell)
        rewrite()

    for key in [] if report_only else keys:
        run_setting(key, model, quick, order, cache, log, done)
    rewrite(force=True)


if __name__ == "__main__":
    main()
