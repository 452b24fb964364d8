"""SIFT-Masks under the paper's rule (the ledger's `mean`): θ0 + dequant(Q ⊙ m_t) / T.

Q is the int64 sum of the T sign-fixed vectors, exactly the ledger's merged
state; deleting a task replays only that task (the unlearning_cost audit times
the real `ledger unlearn`).
"""

import numpy as np
import numpy.typing as npt

from audits.methods import Context, Cost, Entry, Predictions
from ledger.defaults import SCALE_BITS
from ledger.fixedpoint import Int64Array, checked_add, served_delta


def merged(ctx: Context) -> tuple[Int64Array, npt.NDArray[np.int32]]:
    """Q = Σ q_t and, per entry, how many tasks' masks cover it."""

    def make() -> tuple[Int64Array, npt.NDArray[np.int32]]:
        first = ctx.quantised(ctx.sift(ctx.tasks[0]))
        total, count = first, (first != 0).astype(np.int32)
        for task in ctx.tasks[1:]:
            q = ctx.quantised(ctx.sift(task))
            total = checked_add(total, q, "sift-masks")
            count += q != 0
        return total, count

    return ctx.shared("sift-sum", make)  # type: ignore[return-value]


def run(ctx: Context) -> Predictions:
    total, _ = merged(ctx)
    out = {}
    for task in ctx.tasks:
        mask = ctx.quantised(ctx.sift(task)) != 0
        delta = served_delta(total, mask, SCALE_BITS, len(ctx.tasks))
        out[task.task_id] = ctx.predict(task, delta)
    return out


def storage(T: int, P: int) -> int:
    return 8 * P + T * ((P + 7) // 8)


ENTRY = Entry(
    "sift-masks",
    run,
    Cost(lambda T: 1, storage, "replay the task's fine-tune, subtract it from Q"),
    "θ0 + (Q ⊙ m_t) / T (SIFT-Masks, the paper's rule; the ledger's `mean`)",
)
