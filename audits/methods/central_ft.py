"""One model fine-tuned on the union of the T tasks' training rows, with their 20·T steps.

Deleting a task means training again on the other T − 1 tasks' data.
"""

from audits.methods import Context, Cost, Entry, Predictions


def run(ctx: Context) -> Predictions:
    delta, _ = ctx.trainer.central(ctx.tasks)
    return {t.task_id: ctx.predict(t, delta) for t in ctx.tasks}


ENTRY = Entry(
    "central-ft",
    run,
    Cost(lambda T: T - 1, lambda T, P: 4 * P, "train again on the other T − 1 tasks' rows"),
    "one model on the union of the T tasks (20·T steps)",
)
