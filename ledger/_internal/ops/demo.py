"""``ledger demo``: the whole path on MiniLM and real MovieLens users.

A new user sees every stage once: a global model pretrained on users kept out
of the demo (cached in the work folder), per-user SIFT fine-tunes merged into
one ledger, what each user is served, one exact unlearning, and the
independent verifier's verdict.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ledger import defaults
from ledger._internal.attest.keys import generate
from ledger._internal.data.corpora import Task, movielens_tasks, write_jsonl
from ledger._internal.folder.ledgerdir import open_ledger
from ledger._internal.model.basemodel import build_minilm, build_tiny
from ledger._internal.model.loading import load_model
from ledger._internal.ops.add import add_task
from ledger._internal.ops.create import init_ledger
from ledger._internal.ops.serve import probabilities, served_model, serving_rule
from ledger._internal.ops.unlearn import unlearn_task

PRETRAIN_USERS = 150


def _accuracy(model: object, tokenizer: object, task: Task) -> float:
    predicted = probabilities(model, tokenizer, [r["text"] for r in task.test]).argmax(dim=-1)
    hits = sum(bool(int(p) == r["label"]) for p, r in zip(predicted, task.test, strict=True))
    return hits / len(task.test)


def _majority_accuracy(task: Task) -> float:
    return sum(bool(r["label"] == task.majority) for r in task.test) / len(task.test)


def _choose(tasks: list[Task], users: int) -> tuple[list[Task], list[Task]]:
    """Demo users have enough held-out rows to say something; the pool is disjoint from them."""
    demo = [t for t in tasks if 100 <= len(t.train) + len(t.test) <= 400][:users]
    chosen = {t.task_id for t in demo}
    pool = [t for t in tasks if t.task_id not in chosen][-PRETRAIN_USERS:]
    return demo, pool


def _base(workdir: Path, model: str, pool: list[Task], console: Console) -> Path:
    base = workdir / f"base-{model}"
    if (base / "model.safetensors").is_file():
        console.print(f"base model: cached {base}")
        return base
    if model == "tiny":
        build_tiny(base)
        return base
    pooled = write_jsonl(workdir / "pretrain.jsonl", [r for t in pool for r in t.train])
    staging = workdir / "base-minilm.building"
    shutil.rmtree(staging, ignore_errors=True)
    with _bar(console) as bar:
        job = bar.add_task(f"pretraining the global model on {len(pool)} other users", total=None)
        build_minilm(
            staging,
            pretrain=pooled,
            steps=defaults.PRETRAIN_STEPS,
            progress=lambda done, total: bar.update(job, completed=done, total=total),
        )
    staging.rename(base)
    return base


def _bar(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )


def run_demo(workdir: Path, users: int, model: str = "minilm") -> None:
    console = Console(stderr=False)
    started = time.perf_counter()
    workdir.mkdir(parents=True, exist_ok=True)
    demo, pool = _choose(movielens_tasks(), users)
    console.print(f"MovieLens: {len(demo)} demo users, {len(pool)} others pool the global model")
    base = _base(workdir, model, pool, console)
    key = workdir / "demo.key"
    if not key.exists():
        generate(key)
    root = workdir / "ledger"
    shutil.rmtree(root, ignore_errors=True)  # the demo's own ledger: a fresh one per run
    init_ledger(root, base, key)
    data_dir = workdir / "data"
    data_dir.mkdir(exist_ok=True)
    with _bar(console) as bar:
        job = bar.add_task("SIFT fine-tune + merge per user", total=len(demo))
        for task in demo:
            data = write_jsonl(data_dir / f"{task.task_id}.jsonl", task.train)
            add_task(root, task.task_id, data)
            bar.advance(job)
    base_model, tokenizer = load_model(base)
    table = Table(title=f"held-out accuracy ({len(demo)} users merged)")
    for column in ("user", "rows train/test", "liked", "majority", "base θ0", "served (SIFT)"):
        table.add_column(column, justify="right")
    scores = []
    with open_ledger(root) as ledger:
        for task in demo:
            model, tokenizer, _ = served_model(ledger, task.task_id, serving_rule(ledger, None))
            liked = sum(r["label"] for r in task.train) / len(task.train)
            row = (
                _majority_accuracy(task),
                _accuracy(base_model, tokenizer, task),
                _accuracy(model, tokenizer, task),
            )
            scores.append(row)
            table.add_row(
                task.task_id,
                f"{len(task.train)}/{len(task.test)}",
                f"{liked:.0%}",
                *(f"{s:.3f}" for s in row),
            )
    means = [sum(column) / len(scores) for column in zip(*scores, strict=True)]
    table.add_row("mean", "", "", *(f"{m:.3f}" for m in means), style="bold")
    console.print(table)
    gone = demo[0]
    certificate = workdir / f"certificate-{gone.task_id}.dsse.json"
    certificate.unlink(missing_ok=True)
    console.print(f"unlearning {gone.task_id}: replaying its fine-tune and checking the digest…")
    event = unlearn_task(root, gone.task_id, data_dir / f"{gone.task_id}.jsonl", certificate)
    console.print(f"  state after: {event['state_digest_after']}", soft_wrap=True)
    public = key.with_name(key.name + ".pub")
    failed = False
    for args in (
        ["audit", "--ledger", str(root), "--public-key", str(public)],
        [
            "check",
            "--ledger",
            str(root),
            "--certificate",
            str(certificate),
            "--public-key",
            str(public),
        ],
    ):
        console.print(f"$ verifier {args[0]} …")
        result = subprocess.run(
            [str(Path(sys.executable).with_name("verifier")), *args],
            capture_output=True,
            text=True,
            check=False,
        )
        console.print(result.stdout.rstrip(), markup=False, highlight=False)
        failed |= result.returncode != 0
    console.print(
        f"certificate: {certificate}\nledger: {root}\ndone in {time.perf_counter() - started:.0f} s"
    )
    if failed:
        raise SystemExit(1)
