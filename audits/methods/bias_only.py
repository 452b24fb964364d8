"""θ0 with only the classifier's bias fitted per task: how much of a gain is label prior.

With two classes only the difference of the two biases matters, so the fit is
one shift b of the logit margin z1 − z0, by Newton's method on the logistic
loss over the task's training rows (float64, a small ridge keeps b finite when
every training label is the same).
"""

import numpy as np
import numpy.typing as npt

from audits.methods import Context, Cost, Entry, Predictions
from audits.scoring import labels

RIDGE = 1e-2
ITERATIONS = 50


def fit_shift(margin: npt.NDArray[np.float64], y: npt.NDArray[np.float64]) -> float:
    """argmin_b mean(log(1 + exp(-s (m + b)))) + RIDGE b²/2, s = ±1 from y."""
    b = 0.0
    for _ in range(ITERATIONS):
        p = 1.0 / (1.0 + np.exp(-(margin + b)))
        grad = float(np.mean(p - y)) + RIDGE * b
        hess = float(np.mean(p * (1.0 - p))) + RIDGE
        b -= grad / hess
    return b


def run(ctx: Context) -> Predictions:
    out = {}
    for task in ctx.tasks:
        val = ctx.scorer.logits(task, "val", None).astype(np.float64)
        shift = fit_shift(val[:, 1] - val[:, 0], labels(task, "val").astype(np.float64))
        test = ctx.scorer.logits(task, "test", None).astype(np.float64)
        out[task.task_id] = (test[:, 1] - test[:, 0] + shift > 0).astype(np.int64)
    return out


ENTRY = Entry(
    "bias-only",
    run,
    Cost(lambda T: 0, lambda T, P: 4 * T, "drop the task's one stored bias"),
    "θ0 with the classifier bias fitted per task",
)
