"""EMR-merging: one elected vector τ_uni, then a per-task mask and rescaler, no tuning.

τ_uni has the sign of Σ τ_t and, per entry, the largest |τ_t| among tasks of
that sign; m_t = 1{τ_t ⊙ τ_uni > 0}; λ_t = Σ|τ_t| / Σ|m_t ⊙ τ_uni|;
θ_t = θ0 + λ_t m_t ⊙ τ_uni. τ_uni depends on every task, so deletion refits all.
"""

import numpy as np

from audits.methods import Context, Cost, Entry, Predictions


def unified(vectors: list[np.ndarray]) -> np.ndarray:
    """Streamed over the tasks: a [T, P] stack would not fit in memory at T = 100."""
    mass = np.zeros(vectors[0].size, dtype=np.float64)
    for tau in vectors:
        mass += tau
    sign = np.sign(mass).astype(np.float32)
    magnitude = np.zeros_like(sign)
    for tau in vectors:
        agree = tau * sign > 0
        np.maximum(magnitude, np.where(agree, np.abs(tau), 0), out=magnitude)
    return sign * magnitude


def task_delta(tau: np.ndarray, uni: np.ndarray) -> np.ndarray:
    mask = tau * uni > 0
    kept = float(np.sum(np.abs(uni[mask]), dtype=np.float64))
    scale = float(np.sum(np.abs(tau), dtype=np.float64)) / kept if kept > 0 else 0.0
    return np.where(mask, np.float32(scale) * uni, np.float32(0)).astype(np.float32)


def run(ctx: Context) -> Predictions:
    uni = unified([np.asarray(ctx.ft(t)) for t in ctx.tasks])
    return {t.task_id: ctx.predict(t, task_delta(np.asarray(ctx.ft(t)), uni)) for t in ctx.tasks}


ENTRY = Entry(
    "emr",
    run,
    Cost(
        lambda T: T - 1,
        lambda T, P: 4 * P + T * ((P + 7) // 8) + 4 * T,
        "τ_uni depends on every task: refit all T − 1 others",
    ),
    "θ0 + λ_t m_t ⊙ τ_uni (EMR-merging)",
)
