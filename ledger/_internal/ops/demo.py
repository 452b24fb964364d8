"""``ledger demo``: the whole path on MiniLM, on tasks where merging has something to lose.

Each task is a genre detector on real MovieLens movie texts, each a different
genre (ledger.data.genre_tasks at h = 1): a fresh classification head knows
none of them, one task's fine-tune learns its own, and a plain average of
fine-tunes (FT+Merge) blurs them all. A new user sees, per task: θ0, FT+Merge,
the ledger's served model (SIFT-Masks under the recorded serving rule) and
the task's own fine-tune served alone (Local FT), on 100 held-out movies.
Then one exact unlearning, a ledger built from scratch on the remaining
tasks with the same state digest, bit for bit, and the independent verifier's
verdict.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ledger._internal.attest.keys import generate
from ledger._internal.data.corpora import Record, write_jsonl
from ledger._internal.data.genres import GenreTask, genre_tasks
from ledger._internal.folder.ledgerdir import Ledger, open_ledger
from ledger._internal.model.basemodel import build_minilm, build_tiny
from ledger._internal.model.loading import load_model
from ledger._internal.ops.add import add_task
from ledger._internal.ops.create import init_ledger
from ledger._internal.ops.serve import probabilities, served_model, serving_rule, with_deltas
from ledger._internal.ops.unlearn import unlearn_task
from ledger._internal.vectors.codec import dequantise

SHARE = 1.0  # every task a different genre: the heterogeneity merging has to survive


def _balanced(model: Any, tokenizer: Any, rows: Sequence[Record]) -> float:
    """Mean recall of the two labels on these rows."""
    predicted = probabilities(model, tokenizer, [r["text"] for r in rows]).argmax(dim=-1).numpy()
    truth = np.array([r["label"] for r in rows])
    return float(np.mean([np.mean(predicted[truth == y] == y) for y in (0, 1)]))


def _bar(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )


def _ledger(
    root: Path, base: Path, key: Path, tasks: Sequence[GenreTask], data: Path, method: str,
    what: str, console: Console,
) -> None:  # fmt: skip
    shutil.rmtree(root, ignore_errors=True)  # the demo's own ledgers: fresh ones per run
    init_ledger(root, base, key)
    with _bar(console) as bar:
        job = bar.add_task(what, total=len(tasks))
        for task in tasks:
            add_task(root, task.task_id, data / f"{task.task_id}.jsonl", method=method)
            bar.advance(job)


def _local_ft(ledger: Ledger, task_id: str) -> dict[str, np.ndarray]:
    """The task's own ft vector, dequantised: its fine-tune served alone."""
    scale = ledger.config.scale_bits
    return {n: dequantise(q, scale) for n, q in ledger.read_vector(task_id).items()}


def _scores(root: Path, plain: Path, base: Path, tasks: Sequence[GenreTask]) -> Table:
    theta0 = load_model(base)
    table = Table(title=f"balanced accuracy on 100 held-out movies per task ({len(tasks)} merged)")
    for column in ("task", "base θ0", "FT+Merge", "served (SIFT)", "Local FT"):
        table.add_column(column, justify="right")
    scores = []
    with open_ledger(root) as ledger, open_ledger(plain) as ft:
        rule, mean = serving_rule(ledger, None), serving_rule(ft, "mean")
        for task in tasks:
            row = (
                _balanced(*theta0, task.wide),
                _balanced(*served_model(ft, task.task_id, mean)[:2], task.wide),
                _balanced(*served_model(ledger, task.task_id, rule)[:2], task.wide),
                _balanced(*with_deltas(base, _local_ft(ft, task.task_id)), task.wide),
            )
            scores.append(row)
            table.add_row(task.task_id, *(f"{s:.3f}" for s in row))
    means = [sum(column) / len(scores) for column in zip(*scores, strict=True)]
    table.add_row("mean", *(f"{m:.3f}" for m in means), style="bold")
    table.caption = (
        f"served: SIFT-Masks under the rule `{rule.name}` ({rule.formula}); FT+Merge: θ0 + the "
        "mean of the plain fine-tunes; Local FT: each task's own fine-tune alone"
    )
    return table


def _verify(root: Path, certificate: Path, public: Path, console: Console) -> bool:
    """The verifier's audit and certificate check, as an auditor runs them; True if both pass."""
    ok = True
    for args in (
        ["audit", "--ledger", str(root)],
        ["check", "--ledger", str(root), "--certificate", str(certificate)],
    ):
        console.print(f"$ verifier {args[0]} …")
        result = subprocess.run(
            [str(Path(sys.executable).with_name("verifier")), *args, "--public-key", str(public)],
            capture_output=True,
            text=True,
            check=False,
        )
        console.print(result.stdout.rstrip(), markup=False, highlight=False)
        ok &= result.returncode == 0
    return ok


def run_demo(workdir: Path, users: int, model: str = "minilm") -> None:
    """``users``: how many genre tasks (one genre each; past eight, genres come again)."""
    console = Console(stderr=False)
    started = time.perf_counter()
    workdir.mkdir(parents=True, exist_ok=True)
    tasks = genre_tasks(SHARE, users)
    console.print(
        f"{len(tasks)} tasks, one genre each ({', '.join(t.genre for t in tasks)}): "
        "label a movie 1 iff it has that genre"
    )
    base = workdir / f"base-{model}"
    if not (base / "model.safetensors").is_file():
        (build_tiny if model == "tiny" else build_minilm)(base)
    key = workdir / "demo.key"
    if not key.exists():
        generate(key)
    data = workdir / "data"
    data.mkdir(exist_ok=True)
    for task in tasks:
        write_jsonl(data / f"{task.task_id}.jsonl", task.task.train)
    root, plain = workdir / "ledger", workdir / "ledger-ft"
    _ledger(root, base, key, tasks, data, "sift", "SIFT fine-tune + merge per task", console)
    _ledger(plain, base, key, tasks, data, "ft", "plain fine-tunes, for the baselines", console)
    console.print(_scores(root, plain, base, tasks))
    gone = tasks[0]
    certificate = workdir / f"certificate-{gone.task_id}.dsse.json"
    certificate.unlink(missing_ok=True)
    console.print(f"unlearning {gone.task_id}: replaying its fine-tune and checking the digest…")
    after = unlearn_task(root, gone.task_id, data / f"{gone.task_id}.jsonl", certificate)[
        "state_digest_after"
    ]
    scratch = workdir / "ledger-rest"
    _ledger(scratch, base, key, tasks[1:], data, "sift", "the rest merged from scratch", console)
    with open_ledger(scratch) as again:
        fresh = again.state_digest()
    console.print(f"  state after unlearning {gone.task_id}: {after}", soft_wrap=True)
    same = "bit for bit the same" if fresh == after else "DIFFERENT"
    console.print(f"  state of the rest merged from scratch: {fresh} ({same})", soft_wrap=True)
    ok = _verify(root, certificate, key.with_name(key.name + ".pub"), console) and fresh == after
    console.print(
        f"certificate: {certificate}\nledger: {root}\ndone in {time.perf_counter() - started:.0f} s"
    )
    if not ok:
        raise SystemExit(1)
