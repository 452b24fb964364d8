"""Held-out scoring: load θ0 + δ into one model, run a task's rows, compare labels.

Tokenised batches are kept per task, and θ0's logits per task are kept too
(zero-shot and bias-only need nothing else). "val" is the first rows of a
task's *training* split: hyperparameters (TALL's λ, TIES's λ, bias-only's
bias) are chosen there, never on the held-out "test" split.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from audits.cache import Flat
from ledger.data import Record, Task
from ledger.training import load_model

VAL_ROWS = 128
BATCH = 64
Labels = npt.NDArray[np.int64]


def rows(task: Task, split: str) -> list[Record]:
    if split == "test":
        return task.test
    if split == "val":
        return task.train[:VAL_ROWS]
    raise ValueError(f"unknown split {split!r}")


def labels(task: Task, split: str) -> Labels:
    return np.array([r["label"] for r in rows(task, split)], dtype=np.int64)


class Scorer:
    def __init__(self, base: Path, names: Sequence[str], max_length: int) -> None:
        self.model, self.tokenizer = load_model(base)
        named = dict(self.model.named_parameters())
        self.params = [named[n] for n in names]
        self.theta0 = [p.detach().clone() for p in self.params]
        self.max_length = max_length
        self._batches: dict[tuple[str, str], list[Any]] = {}
        self._base_logits: dict[tuple[str, str], npt.NDArray[np.float32]] = {}
        self._loaded: Flat | None = None

    def load(self, delta: Flat | None) -> None:
        """Put θ0 + δ (float32, as `ledger export` serves it) into the model."""
        if delta is self._loaded:
            return
        start = 0
        with torch.no_grad():
            for param, base in zip(self.params, self.theta0, strict=True):
                if delta is None:
                    param.copy_(base)
                    continue
                part = torch.from_numpy(np.array(delta[start : start + base.numel()]))
                torch.add(base, part.view(base.shape), out=param)
                start += base.numel()
        self._loaded = delta

    def logits(self, task: Task, split: str, delta: Flat | None) -> npt.NDArray[np.float32]:
        key = (task.task_id, split)
        if delta is None and key in self._base_logits:
            return self._base_logits[key]
        self.load(delta)
        out = []
        with torch.no_grad():
            for batch in self._encoded(task, split):
                out.append(self.model(**batch).logits.numpy())
        result = np.concatenate(out) if out else np.zeros((0, 2), dtype=np.float32)
        if delta is None:
            self._base_logits[key] = result
        return result

    def predict(self, task: Task, split: str, delta: Flat | None) -> Labels:
        predicted: Labels = self.logits(task, split, delta).argmax(axis=1).astype(np.int64)
        return predicted

    def _encoded(self, task: Task, split: str) -> list[Any]:
        key = (task.task_id, split)
        if key not in self._batches:
            texts = [r["text"] for r in rows(task, split)]
            self._batches[key] = [
                self.tokenizer(
                    texts[i : i + BATCH],
                    padding="longest",
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                )
                for i in range(0, len(texts), BATCH)
            ]
        return self._batches[key]


def accuracy(predicted: Labels, truth: Labels) -> float:
    return float(np.mean(predicted == truth))


def balanced_accuracy(predicted: Labels, truth: Labels) -> float:
    """Mean recall over the classes present: a constant predictor scores 1/#classes."""
    recalls = [float(np.mean(predicted[truth == c] == c)) for c in np.unique(truth)]
    return float(np.mean(recalls))


def interval(values: Sequence[float], resamples: int = 2000) -> tuple[float, float]:
    """95% percentile-bootstrap interval of the mean over tasks (seeded: reports reproduce)."""
    data = np.asarray(values, dtype=np.float64)
    if data.size < 2:
        return float(data.mean()), float(data.mean())
    rng = np.random.default_rng(0)
    means = data[rng.integers(0, data.size, (resamples, data.size))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)
