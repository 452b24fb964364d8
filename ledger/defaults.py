"""Every default in one place: the CLI, the training spec, the demo and the audits read these.

A default that lived in two places would let `ledger add` and a notebook's
`add_task` train different vectors from "the same" settings.
"""

STEPS = 20  # optimizer steps per task
LR = 3e-5
BATCH_SIZE = 16
MAX_LENGTH = 32  # tokens; longer texts are cut (and `add` says how many)
SCALE_BITS = 40  # fixed point: q = round(τ · 2^40)
THREADS = 2  # torch threads every fine-tune runs with (recorded, replayed)
SIGN_SEED = 0  # the ledger's sign vector
PRETRAIN_STEPS = 300
PRETRAIN_BATCH_SIZE = 32
# How the served model divides Q ⊙ m_t (ledger._internal.vectors.rules): by |T| (the
# paper's), by each entry's contributor count, or by 1. Recorded at init. Measured
# (audits/reports/heterogeneity.md, wide balanced accuracy): ÷count beats ÷|T| by 3.2 and
# 3.4 points on heterogeneous tasks (h = 1, T = 10 and 50) and loses by 3.2 and 3.7 on
# homogeneous ones (h = 0), where both trail FT+Merge; level on per-user data (−0.2
# points over 15 cells). The default is count, for the heterogeneous tasks the method
# exists for; a ledger of near-identical tasks should choose mean.
SERVING_RULES = ("mean", "count", "sum")
SERVING_RULE = "count"
