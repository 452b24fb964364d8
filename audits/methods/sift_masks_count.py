"""SIFT-Masks divided by contributors: each entry of Q ⊙ m_t over the number of masks covering it
(the ledger's serving rule `count`, through the same served_delta).

The count is an exact integer per entry that unlearning decrements with the
deleted task's mask, so deletion costs what SIFT-Masks costs. A candidate
improvement over the paper's 1/T, reported beside it.
"""

import numpy as np

from audits.methods import Context, Cost, Entry, Predictions
from audits.methods.sift_masks import merged, storage
from ledger.defaults import SCALE_BITS
from ledger.fixedpoint import served_delta


def run(ctx: Context) -> Predictions:
    total, count = merged(ctx)
    out = {}
    for task in ctx.tasks:
        mask = ctx.quantised(ctx.sift(task)) != 0
        delta = served_delta(total, mask, SCALE_BITS, np.maximum(count, 1).astype(np.int64))
        out[task.task_id] = ctx.predict(task, delta)
    return out


ENTRY = Entry(
    "sift-masks-count",
    run,
    Cost(
        lambda T: 1,
        lambda T, P: storage(T, P) + 4 * P,
        "replay, subtract from Q, decrement the counts under its mask",
    ),
    "θ0 + (Q ⊙ m_t) / count (÷ contributors)",
)
