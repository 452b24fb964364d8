"""One sign-fixed optimizer step (the projection included) against a plain one, on MiniLM.

The hook is ``ledger.training.fine_tune``'s public ``progress`` callback: it
fires after each step's optimizer update and, for sift, after the projection
(the clamp that resets τ·v < 0 entries to θ0). Intervals between two calls are
whole steps; the first call also pays for the sign-vector bounds, so it is left
out. Both methods train on the same seed, so step j sees the same batch in both,
and the figure is the median over (round, j) of sift's step j over ft's step j:
padding lengths differ between batches, not between methods.
"""

from __future__ import annotations

import itertools
import json
import statistics
import time
from typing import Any

from benchmarks.common import Figure, Workspace
from ledger.training import TrainSpec, apply_knobs, fine_tune, load_model

THREADS = 2  # ledger defaults: every fine-tune runs at 2 threads
SEED = 1


def _step_seconds(
    work: Workspace, model: str, method: str, texts: list[str], labels: list[int]
) -> list[float]:
    spec = TrainSpec(
        method=method,  # type: ignore[arg-type]
        seed=SEED,
        steps=work.settings.step_count,
        threads=THREADS,
        sign_seed=0,
    )
    apply_knobs(spec.threads, spec.seed)
    network, tokenizer = load_model(work.base(model))
    stamps: list[float] = []

    def stamp(_done: int, _total: int) -> None:
        stamps.append(time.perf_counter())

    fine_tune(network, tokenizer, texts, labels, spec, stamp)
    return [b - a for a, b in itertools.pairwise(stamps)]


def figures(work: Workspace, model: str = "minilm") -> list[Figure]:
    records = _records(work)
    texts = [str(r["text"]) for r in records]
    labels = [int(r["label"]) for r in records]
    ratios: list[float] = []
    ft_all: list[float] = []
    sift_all: list[float] = []
    for _ in range(work.settings.step_rounds):
        ft = _step_seconds(work, model, "ft", texts, labels)
        sift = _step_seconds(work, model, "sift", texts, labels)
        ratios += [s / f for s, f in zip(sift, ft, strict=True)]
        ft_all += ft
        sift_all += sift
    return [
        Figure(
            f"sift_step_vs_ft_step_{model}",
            statistics.median(ratios),
            "<= 1.1",
            f"fine_tune step j with method sift (projection included) over step j with ft, "
            f"same batch; median of {len(ratios)} steps ({work.settings.step_rounds} "
            f"interleaved runs of {work.settings.step_count} steps, batch 16, length 32)",
            {
                "ft_step_median_s": round(statistics.median(ft_all), 4),
                "sift_step_median_s": round(statistics.median(sift_all), 4),
            },
        )
    ]


def _records(work: Workspace) -> list[dict[str, Any]]:
    lines = work.task_file(0).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]
