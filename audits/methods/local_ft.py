"""Each task served by its own fine-tuned model: the upper bound merging tries to reach."""

from audits.methods import Context, Cost, Entry, Predictions


def run(ctx: Context) -> Predictions:
    return {t.task_id: ctx.predict(t, ctx.ft(t)) for t in ctx.tasks}


ENTRY = Entry(
    "local-ft",
    run,
    Cost(lambda T: 0, lambda T, P: 4 * P * T, "delete the task's own model"),
    "θ0 + τ_t, one model per task",
)
