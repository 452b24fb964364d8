"""Each task's most common training label: a method that does not beat it learned nothing."""

import numpy as np

from audits.methods import Context, Cost, Entry, Predictions


def run(ctx: Context) -> Predictions:
    return {t.task_id: np.full(len(t.test), t.majority, dtype=np.int64) for t in ctx.tasks}


ENTRY = Entry(
    "majority",
    run,
    Cost(lambda T: 0, lambda T, P: T, "drop the task's one stored label"),
    "the task's majority training label",
)
