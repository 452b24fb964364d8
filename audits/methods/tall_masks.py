"""TALL-masks: θ0 + m_t ⊙ τ_MTL, m_t = 1{|τ_t| ≥ λ_t |τ_MTL − τ_t|}, τ_MTL = Σ τ_t.

λ_t is chosen per task from LAMBDAS on the task's training rows. Every mask
depends on every task through τ_MTL, so deleting one task changes all masks:
the T − 1 others must be fine-tuned again unless all T vectors are kept.
"""

import numpy as np

from audits.methods import Context, Cost, Entry, Predictions, best

LAMBDAS = [0.2, 0.3, 0.4, 0.5, 0.6]


def masked(tau: np.ndarray, mtl: np.ndarray, lam: float) -> np.ndarray:
    keep = np.abs(tau) >= lam * np.abs(mtl - tau)
    return np.where(keep, mtl, np.float32(0)).astype(np.float32)


def run(ctx: Context) -> Predictions:
    mtl = np.zeros(ctx.trainer.n_params, dtype=np.float64)
    for task in ctx.tasks:
        mtl += ctx.ft(task)
    mtl32 = mtl.astype(np.float32)
    out = {}
    for task in ctx.tasks:
        tau = np.asarray(ctx.ft(task))
        scores = [ctx.val_accuracy(task, masked(tau, mtl32, lam)) for lam in LAMBDAS]
        out[task.task_id] = ctx.predict(task, masked(tau, mtl32, best(LAMBDAS, scores)))
    return out


ENTRY = Entry(
    "tall-masks",
    run,
    Cost(
        lambda T: T - 1,
        lambda T, P: 4 * P + T * ((P + 7) // 8),
        "every mask depends on τ_MTL: refit all T − 1 others",
    ),
    "θ0 + m_t ⊙ Σ τ (TALL-masks, λ_t on training rows)",
)
