"""TIES-merging: trim each τ_t to its top 20% magnitudes, elect signs by mass, disjoint mean.

One merged model θ0 + λ τ_ties for all tasks; λ from LAMBDAS by mean accuracy
on the tasks' training rows. The elected signs depend on every task, so
deletion refits all.
"""

import numpy as np

from audits.methods import Context, Cost, Entry, Predictions, best

KEEP = 0.2
LAMBDAS = [0.5, 1.0, 1.5, 2.0]


def trimmed(tau: np.ndarray, keep: float = KEEP) -> tuple[np.ndarray, np.ndarray]:
    """Indices and values of the top `keep` share of |τ| (ties at the threshold kept)."""
    k = max(1, round(keep * tau.size))
    threshold = np.partition(np.abs(tau), tau.size - k)[tau.size - k]
    index = np.flatnonzero(np.abs(tau) >= threshold).astype(np.int32)
    return index, tau[index]


def merge(vectors: list[tuple[np.ndarray, np.ndarray]], size: int) -> np.ndarray:
    mass = np.zeros(size, dtype=np.float64)
    for index, values in vectors:
        mass[index] += values
    sign = np.sign(mass)
    total = np.zeros(size, dtype=np.float64)
    count = np.zeros(size, dtype=np.int64)
    for index, values in vectors:
        agree = (np.sign(values) == sign[index]) & (values != 0)
        total[index[agree]] += values[agree]
        count[index[agree]] += 1
    return (total / np.maximum(count, 1)).astype(np.float32)


def run(ctx: Context) -> Predictions:
    merged = merge([trimmed(np.asarray(ctx.ft(t))) for t in ctx.tasks], ctx.trainer.n_params)
    candidates = [np.float32(lam) * merged for lam in LAMBDAS]
    scores = [float(np.mean([ctx.val_accuracy(t, c) for t in ctx.tasks])) for c in candidates]
    chosen = candidates[LAMBDAS.index(best(LAMBDAS, scores))]
    return {t.task_id: ctx.predict(t, chosen) for t in ctx.tasks}


ENTRY = Entry(
    "ties",
    run,
    Cost(lambda T: T - 1, lambda T, P: 4 * P, "elected signs depend on every task: refit all"),
    "θ0 + λ τ_TIES (trim 20%, elect, disjoint mean)",
)
