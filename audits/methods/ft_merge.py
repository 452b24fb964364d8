"""Plain fine-tunes averaged without masks: θ0 + Σ τ_t / T for every task.

Summed in the ledger's int64 fixed point, so deleting a task is one replayed
fine-tune and an exact subtraction, as for SIFT-Masks.
"""

from audits.methods import Context, Cost, Entry, Predictions
from ledger.defaults import SCALE_BITS
from ledger.fixedpoint import checked_add, dequantise


def run(ctx: Context) -> Predictions:
    total = ctx.quantised(ctx.ft(ctx.tasks[0]))
    for task in ctx.tasks[1:]:
        total = checked_add(total, ctx.quantised(ctx.ft(task)), "ft-merge")
    merged = dequantise(total, SCALE_BITS, len(ctx.tasks))
    return {t.task_id: ctx.predict(t, merged) for t in ctx.tasks}


ENTRY = Entry(
    "ft-merge",
    run,
    Cost(lambda T: 1, lambda T, P: 8 * P, "replay the task's fine-tune, subtract it from Σq"),
    "θ0 + Σ τ_t / T (FT+Merge)",
)
