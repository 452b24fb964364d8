"""θ0 as it is: the floor every merged model is measured against."""

from audits.methods import Context, Cost, Entry, Predictions


def run(ctx: Context) -> Predictions:
    return {t.task_id: ctx.predict(t, None) for t in ctx.tasks}


ENTRY = Entry(
    "zero-shot",
    run,
    Cost(lambda T: 0, lambda T, P: 0, "nothing of the task is in θ0"),
    "the base θ0 for every task",
)
