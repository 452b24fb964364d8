"""Every fine-tune an audit needs, run once through the ledger's own training loop.

Per task there are two vectors, a plain fine-tune ("ft": Local FT, FT+Merge,
TALL-masks, EMR, TIES) and a sign-fixed one ("sift": SIFT-Masks). Both use the
seed `ledger add` would derive for the task, so a SIFT vector here is bit for
bit the one a ledger with sign seed 0 records. Vectors are cached flat (the
trainable tensors concatenated in model order) with their measured seconds.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from audits.cache import Cache, Flat, Log, timed
from ledger import Hyper, build_minilm, build_tiny
from ledger.data import Task, write_jsonl
from ledger.defaults import SIGN_SEED, THREADS
from ledger.training import (
    TrainSpec,
    apply_knobs,
    derive_task_seed,
    fine_tune,
    load_model,
    trainable_names,
)


def build_base(
    cache: Cache, model: str, warm: bool, pool: Sequence[Task], steps: int, log: Log
) -> Path:
    """θ0: the base with a seeded head, pretrained on the pool's training rows when warm."""
    out = cache.root / "base"
    if (out / "model.safetensors").is_file():
        return out
    staging = cache.root / "base.building"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    pretrain = None
    if warm:
        rows = [r for t in pool for r in t.train]
        pretrain = write_jsonl(cache.root / "pretrain.jsonl", rows)
        log(f"pretraining θ0: {steps} steps on {len(rows)} rows of {len(pool)} held-out tasks")
    build = build_minilm if model == "minilm" else build_tiny
    _, seconds = timed(lambda: build(staging, 0, pretrain=pretrain, steps=steps, threads=THREADS))
    log(f"base ready in {seconds:.0f} s")
    staging.rename(out)
    return out


class Trainer:
    """One loaded base, reset to θ0 before each fine-tune (loading it costs more than tuning)."""

    def __init__(self, cache: Cache, base: Path, hyper: Hyper, log: Log) -> None:
        self.cache, self.base, self.hyper, self.log = cache, base, hyper, log
        self.model, self.tokenizer = load_model(base)
        self.names = trainable_names(self.model)
        self.theta0 = {k: v.clone() for k, v in self.model.state_dict().items()}
        params = dict(self.model.named_parameters())
        self.sizes = [params[n].numel() for n in self.names]
        self.seconds: dict[str, float] = {}

    @property
    def n_params(self) -> int:
        return sum(self.sizes)

    def vector(self, task: Task, method: str) -> Flat:
        key = f"vectors/{method}/{task.task_id}"
        if not self.cache.has(f"{key}.npy"):
            seed = derive_task_seed(SIGN_SEED, task.task_id)
            flat, seconds = timed(lambda: self._tune(task.train, method, seed, self.hyper.steps))
            self.log(f"{method:4} fine-tune {task.task_id}: {seconds:.1f} s")
            self.cache.array(f"{key}.npy", lambda: flat)
            self.cache.json(f"{key}.json", lambda: {"seconds": seconds, "steps": self.hyper.steps})
        return self.cache.array(f"{key}.npy", _never)

    def fine_tune_seconds(self, task: Task, method: str) -> float:
        self.vector(task, method)
        meta = self.cache.json(f"vectors/{method}/{task.task_id}.json", _never)
        return float(meta["seconds"])

    def central(self, tasks: Sequence[Task]) -> tuple[Flat, float]:
        """One model on the union of the tasks' training rows, with their total step budget."""
        key = self.central_key(tasks)
        if not self.cache.has(f"{key}.npy"):
            rows = [r for t in tasks for r in t.train]
            steps = self.hyper.steps * len(tasks)
            self.log(f"central FT on {len(rows)} rows of {len(tasks)} tasks: {steps} steps")
            seed = derive_task_seed(SIGN_SEED, f"central-{len(tasks)}")
            flat, seconds = timed(lambda: self._tune(rows, "ft", seed, steps))
            self.log(f"central FT T={len(tasks)}: {seconds:.0f} s")
            self.cache.array(f"{key}.npy", lambda: flat)
            self.cache.json(f"{key}.json", lambda: {"seconds": seconds, "steps": steps})
        meta = self.cache.json(f"{key}.json", _never)
        return self.cache.array(f"{key}.npy", _never), float(meta["seconds"])

    def central_key(self, tasks: Sequence[Task]) -> str:
        """Where the central model of `tasks` is cached: by T alone, since an audit's T
        tasks are the first T of one order (an audit with other task sets overrides this)."""
        return f"central/T{len(tasks)}"

    def _tune(self, rows: Sequence[dict[str, Any]], method: str, seed: int, steps: int) -> Flat:
        self.model.load_state_dict(self.theta0)
        apply_knobs(THREADS, seed)
        spec = TrainSpec(
            method=method,  # type: ignore[arg-type]
            seed=seed,
            steps=steps,
            lr=self.hyper.lr,
            batch_size=self.hyper.batch_size,
            max_length=self.hyper.max_length,
            threads=THREADS,
            sign_seed=SIGN_SEED,
        )
        tau = fine_tune(
            self.model, self.tokenizer, [r["text"] for r in rows], [r["label"] for r in rows], spec
        )
        self.model.load_state_dict(self.theta0)
        return np.concatenate([tau[n].reshape(-1) for n in self.names])

    def unflatten(self, flat: Flat) -> dict[str, torch.Tensor]:
        out, start = {}, 0
        params = dict(self.model.named_parameters())
        for name, size in zip(self.names, self.sizes, strict=True):
            out[name] = torch.from_numpy(np.array(flat[start : start + size])).view(
                params[name].shape
            )
            start += size
        return out


def _never() -> Any:
    raise AssertionError("cached value missing")
