"""What one audit row is made of: a data set, a base θ0, fine-tuning settings, sizes T.

Shared by both audits so `unlearning_cost` reuses the base and fine-tunes
that `accuracy_vs_tasks` cached (and the other way round).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformers.utils import logging as hf_logging

from audits.cache import Cache, Log
from audits.datasets import LOADERS, Selection, select
from audits.training import Trainer, build_base
from ledger import Hyper

N_POOL = 150
PRETRAIN_STEPS = 300
QUICK_POOL = 8
QUICK_SIZES = (2, 4)
TINY_LR = 1e-3
QUICK_PRETRAIN_STEPS = 20


@dataclass(frozen=True)
class Setting:
    key: str
    dataset: str
    warm: bool
    sizes: tuple[int, ...]
    hyper: Hyper = field(default_factory=Hyper)
    n_pool: int = N_POOL
    pretrain_steps: int = PRETRAIN_STEPS

    def pinned(self, model: str) -> dict[str, Any]:
        """What the cached base and fine-tunes depend on (the sizes only add work)."""
        return {
            "dataset": self.dataset,
            "warm": self.warm,
            "model": model,
            "hyper": dataclasses.asdict(self.hyper),
            "n_pool": self.n_pool,
            "pretrain_steps": self.pretrain_steps if self.warm else 0,
        }

    def for_model(self, model: str) -> Setting:
        """The tiny test model barely moves at MiniLM's rate; it gets its own."""
        if model != "tiny":
            return self
        return dataclasses.replace(self, hyper=dataclasses.replace(self.hyper, lr=TINY_LR))

    def quick(self) -> Setting:
        return dataclasses.replace(
            self,
            sizes=QUICK_SIZES,
            n_pool=QUICK_POOL,
            pretrain_steps=QUICK_PRETRAIN_STEPS,
        )


@dataclass
class Prepared:
    setting: Setting
    selection: Selection
    trainer: Trainer
    cache: Cache


def folder(setting: Setting, model: str, cache_root: Path) -> Path:
    """One folder per distinct set of pinned settings: a changed setting starts afresh."""
    pinned = json.dumps(setting.pinned(model), sort_keys=True).encode()
    return cache_root / model / f"{setting.key}-{hashlib.sha256(pinned).hexdigest()[:8]}"


def prepare(setting: Setting, model: str, cache_root: Path, log: Log) -> Prepared:
    """Load the data, build (or reuse) θ0, and open the fine-tune cache for one setting."""
    cache, selection, base = prepare_base(setting, model, cache_root, log)
    return Prepared(setting, selection, Trainer(cache, base, setting.hyper, log), cache)


def prepare_base(
    setting: Setting, model: str, cache_root: Path, log: Log
) -> tuple[Cache, Selection, Path]:
    """`prepare` without the trainer: the cache, the task selection and θ0's folder
    (an audit on other tasks reuses a setting's θ0 this way)."""
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    cache = Cache(folder(setting, model, cache_root), setting.pinned(model))
    tasks = LOADERS[setting.dataset]()
    selection = select(tasks, max(setting.sizes), setting.n_pool if setting.warm else 0)
    log(f"{setting.key}: {len(tasks)} tasks with >= 20 rows; evaluating {max(setting.sizes)}")
    base = build_base(cache, model, setting.warm, selection.pool, setting.pretrain_steps, log)
    return cache, selection, base
