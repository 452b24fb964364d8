"""The compared methods, one module each behind this registry (as mergekit does).

A method turns the T tasks of a context into held-out predictions per task,
and states what deleting one task costs it: how many tasks' fine-tunes must
be rerun and how many bytes it keeps beyond θ0 to serve the T tasks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from audits.cache import Flat
from audits.scoring import Labels, Scorer, accuracy, labels
from audits.training import Trainer
from ledger.data import Task
from ledger.defaults import SCALE_BITS
from ledger.fixedpoint import Int64Array, quantise


@dataclass
class Context:
    tasks: list[Task]
    trainer: Trainer
    scorer: Scorer
    _shared: dict[str, object] = field(default_factory=dict)

    def ft(self, task: Task) -> Flat:
        return self.trainer.vector(task, "ft")

    def sift(self, task: Task) -> Flat:
        return self.trainer.vector(task, "sift")

    def quantised(self, flat: Flat) -> Int64Array:
        return quantise({"flat": flat}, SCALE_BITS)["flat"]

    def predict(self, task: Task, delta: Flat | None, split: str = "test") -> Labels:
        return self.scorer.predict(task, split, delta)

    def val_accuracy(self, task: Task, delta: Flat | None) -> float:
        return accuracy(self.predict(task, delta, "val"), labels(task, "val"))

    def shared(self, key: str, make: Callable[[], object]) -> object:
        """Work two methods share at one T (the SIFT sum Q, for instance), made once."""
        if key not in self._shared:
            self._shared[key] = make()
        return self._shared[key]


Predictions = dict[str, Labels]


class Method(Protocol):
    def __call__(self, ctx: Context) -> Predictions: ...


@dataclass(frozen=True)
class Cost:
    """What deleting one of T tasks costs: fine-tunes rerun, and bytes kept to serve."""

    retrained_tasks: Callable[[int], int]
    storage_bytes: Callable[[int, int], int]  # (T, trainable parameter count)
    how: str


@dataclass(frozen=True)
class Entry:
    name: str
    run: Method
    cost: Cost
    summary: str


def best(candidates: list[float], scores: list[float]) -> float:
    """The candidate with the highest score; ties go to the earlier one."""
    return candidates[int(np.argmax(scores))]


def _registry() -> dict[str, Entry]:
    from audits.methods import (
        bias_only,
        central_ft,
        emr,
        ft_merge,
        local_ft,
        majority,
        sift_masks,
        sift_masks_count,
        tall_masks,
        ties,
        zero_shot,
    )

    modules = (
        zero_shot,
        majority,
        bias_only,
        local_ft,
        ft_merge,
        sift_masks,
        sift_masks_count,
        tall_masks,
        emr,
        ties,
        central_ft,
    )
    return {m.ENTRY.name: m.ENTRY for m in modules}


METHODS = _registry()
