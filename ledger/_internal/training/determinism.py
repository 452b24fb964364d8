"""Every setting that changes fine-tuning's bits on CPU: set it, record it, check it.

Measured here (DESIGN.md): 1 vs 2 threads, fused vs plain AdamW, sdpa vs eager
attention and the dtype each change the result, so a task vector is only
reproducible where all of them match. A replay that cannot reproduce them is
refused with the first differing field named, before any digest is compared;
the digest comparison stays the final judge for what is not listed here.
"""

from __future__ import annotations

import os
import platform
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import tokenizers
import torch
import transformers

from ledger._internal.errors import DeterminismMismatch, LedgerError
from ledger._internal.training.environ import BIT_CHANGING_ENV
from ledger._internal.training.spec import TrainSpec

DTYPE = torch.float32
ATTN_IMPLEMENTATION = "eager"
ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8
# Weight decay pulls θ towards 0, not towards θ0: it would give every trainable
# entry a data-independent share of τ and so blur the mask m = (q ≠ 0).
WEIGHT_DECAY = 0.0
DROPOUT = 0.0
DATA_ORDER = "ulg:order:v1"
FROZEN_PATTERN = "embeddings."
MATMUL_PRECISION = "highest"

ENV_PREFIX = "env."

_ISA = re.compile(r"^(sse|ssse3|avx|fma|f16c|amx|bmi|popcnt|asimd|neon|sve|fp16|bf16|i8mm)")


def apply_knobs(threads: int, seed: int) -> None:
    """Put this process in the state a recorded fine-tune ran in.

    Training itself draws no random numbers (portable data order, no dropout,
    head initialised at build time); seeding is defence in depth for code that
    might. numpy's global RNG is left alone because nothing on the path uses it.
    """
    if threads < 1:
        raise LedgerError(f"threads must be >= 1, got {threads}")
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    random.seed(seed)
    torch.set_default_dtype(DTYPE)
    # "high"/"medium" let oneDNN use bf16/tf32 kernels for fp32 matmuls.
    torch.set_float32_matmul_precision(MATMUL_PRECISION)
    torch.set_flush_denormal(False)
    # Made no difference on this CPU, but costs nothing and guards other builds.
    torch.use_deterministic_algorithms(True)


def _config_line(pattern: str) -> str:
    match = re.search(pattern, torch.__config__.show())
    return match.group(1).strip() if match else "absent"


def _cpuinfo() -> tuple[str, list[str]]:
    """CPU model and ISA flags; x86 says "model name"/"flags", arm64 "Features"."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return platform.processor() or "unknown", []
    model = "unknown"
    flags: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key in ("model name", "Model", "cpu model") and model == "unknown":
            model = value.strip()
        elif key in ("flags", "Features") and not flags:
            flags = {f for f in value.split() if _ISA.match(f)}
    return model, sorted(flags)


def environment() -> dict[str, Any]:
    """What this process would train under, as plain JSON values."""
    cpu_model, isa = _cpuinfo()
    return {
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "mkl": _config_line(r"Math Kernel Library Version ([^\n]*?) for"),
        "onednn": _config_line(r"MKL-DNN v([^\n]*)"),
        "cpu_model": cpu_model,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "isa": isa,
        "matmul_precision": torch.get_float32_matmul_precision(),
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        # only the variables that are set: an unset one and an older record agree
        **{ENV_PREFIX + v: os.environ[v] for v in BIT_CHANGING_ENV if v in os.environ},
    }


def fixed_settings() -> dict[str, Any]:
    """Choices the code makes rather than the caller; recorded so a changed
    default in a later version is a named mismatch, not a silent digest change."""
    return {
        "dtype": str(DTYPE).removeprefix("torch."),
        "attn_implementation": ATTN_IMPLEMENTATION,
        "optimizer": "AdamW(foreach=False, fused=False)",
        "adam_betas": list(ADAM_BETAS),
        "adam_eps": ADAM_EPS,
        "weight_decay": WEIGHT_DECAY,
        "dropout": DROPOUT,
        "data_order": DATA_ORDER,
        "frozen_pattern": FROZEN_PATTERN,
        "loss": "cross_entropy(mean)",
        "sift_projection": "after every optimizer step",
    }


def record(spec: TrainSpec) -> dict[str, Any]:
    """The determinism record of a fine-tune this process just ran.

    Call it after `apply_knobs` (finetune does so); a thread count that differs
    from the spec would make the record describe a run that never happened.
    """
    env = environment()
    if env["threads"] != spec.threads:
        raise LedgerError(
            f"determinism record: process runs {env['threads']} threads but the spec says "
            f"{spec.threads}; call apply_knobs first"
        )
    return {"spec": spec.to_dict(), "fixed": fixed_settings(), "environment": env}


def check_replay(recorded: dict[str, Any]) -> None:
    """Refuse a replay whose settings differ from the record, naming the field.

    Fixed settings and environment share one namespace; the first differing
    key in sorted order is reported so the message is stable run to run (an
    environment variable's key is ``env.NAME``; absent means unset).
    """
    try:
        then = {**recorded["fixed"], **recorded["environment"]}
    except (KeyError, TypeError) as exc:
        raise LedgerError("determinism record lacks 'fixed' or 'environment'") from exc
    now = {**fixed_settings(), **environment()}
    for field in sorted(then.keys() | now.keys()):
        if then.get(field) != now.get(field):
            raise DeterminismMismatch(field, then.get(field), now.get(field))
