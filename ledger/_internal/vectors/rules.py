"""Serving rules: what the served model for task c divides Q ⊙ m_c by (FORMAT.md §3).

A ledger records its rule at init, so every export names one rule and a
verifier can rebuild the exported weights bit for bit. Each rule is integer
bookkeeping plus the one IEEE division `dequantise` does: ``mean`` divides by
the active task count |T| (the paper), ``count`` by each entry's contributor
count (how many active tasks' masks cover it; an ``ft`` task covers every
entry), ``sum`` by 1. The contributor count is a function of the active masks,
which the ledger keeps for every active task, so it needs no state of its own
and is exact after every add and unlearn.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ledger import defaults
from ledger._internal.errors import LedgerError
from ledger._internal.vectors.codec import Int64Array

Uint8Array = npt.NDArray[np.uint8]


Divisor = int | Int64Array


@dataclass(frozen=True)
class Rule:
    name: str
    formula: str  # for model cards and `--help`
    per_entry: bool  # needs the contributor counts
    # (|T|, the tensor's contributor counts when per_entry) -> what Q ⊙ m_c is divided by
    divisor: Callable[[int, Int64Array | None], Divisor]


def _by_count(_n_active: int, counts: Int64Array | None) -> Divisor:
    """An entry no active mask covers has Q = 0 there (sift vectors agree in sign with v
    and cannot cancel), so dividing it by 1 instead is exact."""
    assert counts is not None  # a per_entry rule is always given its counts
    return np.maximum(counts, 1)


RULES: dict[str, Rule] = {
    "mean": Rule("mean", "θ0 + dequant(Q ⊙ m_c) / |T|", False, lambda n, _: n),
    "count": Rule(
        "count", "θ0 + dequant(Q ⊙ m_c) / (active masks covering each entry)", True, _by_count
    ),
    "sum": Rule("sum", "θ0 + dequant(Q ⊙ m_c)", False, lambda _n, _c: 1),
}


assert tuple(RULES) == defaults.SERVING_RULES  # the CLI offers the names without numpy


def rule(name: str) -> Rule:
    if name not in RULES:
        raise LedgerError(f"unknown serving rule {name!r}; choose from {', '.join(RULES)}")
    return RULES[name]


def contributor_counts(
    name: str, numel: int, masks: Sequence[Mapping[str, Uint8Array]], n_dense: int
) -> Int64Array:
    """Per entry of tensor ``name``: the active sift masks that set it, plus the active
    ft tasks (dense, they cover every entry)."""
    counts = np.full(numel, n_dense, dtype=np.int64)
    for mask in masks:
        counts += np.unpackbits(mask[name], count=numel, bitorder="little")
    return counts
