"""Deterministic fine-tuning: the task vector τ = θ − θ0 of one task's data.

A replay on the same machine and settings must give τ bit for bit, because
unlearning subtracts the replayed vector only when its digest equals the
recorded one. So nothing here draws from an RNG: the data order is a hash
function of (seed, epoch, index), dropout is 0, and every bit-changing knob
is fixed in `determinism`.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from ledger._internal.errors import LedgerError
from ledger._internal.model.loading import load_model, trainable_names
from ledger._internal.training.determinism import (
    ADAM_BETAS,
    ADAM_EPS,
    DATA_ORDER,
    WEIGHT_DECAY,
    apply_knobs,
)
from ledger._internal.training.signs import sign_vector
from ledger._internal.training.spec import TrainSpec

_U64 = 1 << 64


def batch_order(seed: int, n: int, steps: int, batch_size: int) -> list[list[int]]:
    """Which records each step trains on, without torch's RNG (portable, versioned).

    Scheme ``ulg:order:v1``. For epoch e = 0, 1, 2, ... the permutation of
    record indices 0..n-1 is the indices sorted ascending by the 32-byte key
        SHA-256(b"ulg:order:v1\\x00" || u64le(seed) || u64le(e) || u64le(i))
    compared as unsigned byte strings (ties, which SHA-256 makes practically
    impossible, keep the smaller i first). The epochs' permutations are
    concatenated into one stream, and batch j (0-based, j < steps) is stream
    entries [j*batch_size, (j+1)*batch_size). Only as many epochs as the
    steps need are generated; a batch may straddle two epochs, and when
    n < batch_size a batch holds some records twice.
    """
    if n < 1:
        raise LedgerError("no training records")
    if not 0 <= seed < _U64:
        raise LedgerError(f"seed must be in [0, 2^64), got {seed}")
    needed = steps * batch_size
    stream: list[int] = []
    epoch = 0
    prefix = DATA_ORDER.encode("ascii") + b"\x00" + struct.pack("<Q", seed)
    while len(stream) < needed:
        head = prefix + struct.pack("<Q", epoch)
        keys = [hashlib.sha256(head + struct.pack("<Q", i)).digest() for i in range(n)]
        stream.extend(sorted(range(n), key=lambda i: (keys[i], i)))
        epoch += 1
    return [stream[j * batch_size : (j + 1) * batch_size] for j in range(steps)]


def _sign_bounds(
    spec: TrainSpec, name: str, theta0: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-entry bounds that keep τ on v's side: [θ0, +inf) where v = +1, else (-inf, θ0].

    Clamping θ into them is exactly "reset to θ0 where τ·v < 0" (max/min return
    θ0 itself), in one in-place pass with no temporaries per step.
    """
    v = sign_vector(spec.sign_seed, name, theta0.numel())
    positive = torch.from_numpy(v > 0).reshape(theta0.shape)
    inf = torch.tensor(float("inf"), dtype=theta0.dtype)
    return torch.where(positive, theta0, -inf), torch.where(positive, inf, theta0)


def tune(
    model: torch.nn.Module,
    tokenizer: Any,
    texts: Sequence[str],
    labels: Sequence[int],
    spec: TrainSpec,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, np.ndarray]:
    """The one training loop (fine-tunes and MiniLM pre-training alike).

    Trains `model` in place and returns τ per trainable parameter. The caller
    has applied the knobs and loaded the model through `load_model`. For
    "sift", after every optimizer step each entry with τ·v < 0 is reset to θ0,
    so τ ⊙ v ≥ 0 holds exactly (the float subtraction θ − θ0 never flips sign).
    """
    if len(texts) != len(labels):
        raise LedgerError(f"{len(texts)} texts but {len(labels)} labels")
    config = cast(Any, model).config
    num_labels = int(config.num_labels)
    if spec.max_length > int(config.max_position_embeddings):
        raise LedgerError(
            f"max length {spec.max_length} exceeds the model's {config.max_position_embeddings}"
        )
    for label in labels:
        if not 0 <= label < num_labels:
            raise LedgerError(f"label {label} outside the model's labels 0..{num_labels - 1}")
    names = set(trainable_names(model))
    params: dict[str, torch.nn.Parameter] = {}
    for name, param in model.named_parameters():
        param.requires_grad_(name in names)
        if name in names:
            params[name] = param
    theta0 = {name: p.detach().clone() for name, p in params.items()}
    bounds = (
        {name: _sign_bounds(spec, name, theta0[name]) for name in params}
        if spec.method == "sift"
        else {}
    )
    optimizer = torch.optim.AdamW(
        list(params.values()),
        lr=spec.lr,
        betas=ADAM_BETAS,
        eps=ADAM_EPS,
        weight_decay=WEIGHT_DECAY,
        foreach=False,
        fused=False,
    )
    label_tensor = torch.tensor(list(labels), dtype=torch.long)
    order = batch_order(spec.seed, len(texts), spec.steps, spec.batch_size)
    for step, batch in enumerate(order, start=1):
        encoded = tokenizer(
            [texts[i] for i in batch],
            padding="longest",
            truncation=True,
            max_length=spec.max_length,
            return_tensors="pt",
        )
        logits = model(**encoded).logits
        loss = torch.nn.functional.cross_entropy(logits, label_tensor[batch])
        torch.autograd.backward(loss)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if bounds:
            with torch.no_grad():
                for name, p in params.items():
                    low, high = bounds[name]
                    p.clamp_(min=low, max=high)
        if progress is not None:
            progress(step, spec.steps)
    with torch.no_grad():
        return {
            name: np.ascontiguousarray((p - theta0[name]).numpy(), dtype=np.float32)
            for name, p in params.items()
        }


def finetune(
    base_dir: Path,
    texts: Sequence[str],
    labels: Sequence[int],
    spec: TrainSpec,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, np.ndarray]:
    """τ for one task's data on the base in `base_dir`, reproducible at fixed threads."""
    apply_knobs(spec.threads, spec.seed)
    model, tokenizer = load_model(base_dir)
    return tune(model, tokenizer, texts, labels, spec, progress)
