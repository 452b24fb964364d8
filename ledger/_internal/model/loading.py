"""θ0 as every fine-tune sees it: fp32, eager attention, no dropout, eval mode.

Apart from building bases (``basemodel``) so that training, serving and
building can all load a model without importing one another.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
)

from ledger._internal.errors import LedgerError
from ledger._internal.training.determinism import (
    ATTN_IMPLEMENTATION,
    DROPOUT,
    DTYPE,
    FROZEN_PATTERN,
)


def zero_dropout(config: Any) -> None:
    """Dropout would draw from torch's RNG mid-training: the one knob that makes
    a replay depend on RNG state rather than on recorded settings."""
    config.hidden_dropout_prob = DROPOUT
    config.attention_probs_dropout_prob = DROPOUT
    config.classifier_dropout = DROPOUT


def load_model(base_dir: Path) -> tuple[PreTrainedModel, Any]:
    """A base as fine-tuning needs it: fp32, eager attention, no dropout, eval mode.

    Refuses a checkpoint with missing weights: from_pretrained would fill them
    with fresh random values, and θ0 would silently differ between runs.
    """
    if not (base_dir / "config.json").is_file():
        raise LedgerError(f"{base_dir} is not a model directory (no config.json)")
    try:
        config = AutoConfig.from_pretrained(base_dir)
        zero_dropout(config)
        model, info = AutoModelForSequenceClassification.from_pretrained(
            base_dir,
            config=config,
            dtype=DTYPE,
            attn_implementation=ATTN_IMPLEMENTATION,
            output_loading_info=True,
            use_safetensors=True,  # never unpickle a checkpoint: that runs its code
        )
        tokenizer = AutoTokenizer.from_pretrained(base_dir)
    except (OSError, ValueError, KeyError) as exc:
        raise LedgerError(f"{base_dir} is not a loadable model: {exc}") from exc
    if info["missing_keys"]:
        missing = ", ".join(sorted(info["missing_keys"]))
        raise LedgerError(f"{base_dir}: checkpoint lacks weights ({missing}); build it with base")
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = DROPOUT
    model.eval()
    return model, tokenizer


def trainable_names(model: torch.nn.Module) -> list[str]:
    """Parameters fine-tuning may change: all but the embeddings, as in the paper."""
    return [name for name, _ in model.named_parameters() if FROZEN_PATTERN not in name]


def texts_cut(base_dir: Path, texts: Sequence[str], max_length: int) -> int:
    """How many texts are longer than ``max_length`` tokens: training cuts them, and a
    user who does not know that reads the wrong thing into the vector."""
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    lengths = tokenizer(list(texts), truncation=False)["input_ids"]
    return sum(len(ids) > max_length for ids in lengths)
