"""The deterministic fine-tune, public, for training without a ledger (the audits' baselines).

``apply_knobs`` before ``load_model`` and ``fine_tune`` is what ``ledger add``
does; a vector trained this way quantises to the digest the ledger records.
"""

from ledger._internal.model.loading import load_model, trainable_names
from ledger._internal.ops.add import derive_task_seed
from ledger._internal.training.determinism import apply_knobs
from ledger._internal.training.finetune import tune as fine_tune
from ledger._internal.training.spec import TrainSpec

__all__ = [
    "TrainSpec",
    "apply_knobs",
    "derive_task_seed",
    "fine_tune",
    "load_model",
    "trainable_names",
]
