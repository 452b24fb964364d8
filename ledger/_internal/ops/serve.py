"""The served model for a task: θ0 + dequant(Q ⊙ m_c) / d under the ledger's serving rule
(FORMAT.md §3, "Serving"; d is |T|, each entry's contributor count, or 1).

Built from Q and the active masks alone, never from other tasks' vectors, so it
is the same whether or not the ledger retains vectors.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ledger import defaults
from ledger._internal.errors import LedgerError
from ledger._internal.folder.ledgerdir import Ledger
from ledger._internal.log.treehead import head_fields
from ledger._internal.model.loading import load_model
from ledger._internal.vectors.codec import Float32Array, served_delta
from ledger._internal.vectors.rules import Rule, contributor_counts
from ledger._internal.vectors.rules import rule as rule_named
from ledger._internal.vectors.tensorfile import refuse_nonempty
from ledger._internal.vectors.vector import unpack_mask

UNKNOWN_TASK = "unmasked: unknown task"  # never in this ledger: a typo, or a forged id
WEIGHTS = "model.safetensors"


def _active_masks(ledger: Ledger) -> tuple[list[dict[str, np.ndarray]], int]:
    """The active sift tasks' masks (each checked against its signed digest) and how many
    active tasks are ft: what the contributor counts are made of."""
    masks, dense = [], 0
    for task_id in sorted(ledger.store.active_ids()):
        row = ledger.store.task(task_id)
        assert row is not None  # active ids are rows
        if row.mask_digest is None:
            dense += 1
        else:
            masks.append(ledger.read_mask(task_id, row.mask_digest))
    return masks, dense


def served_deltas(ledger: Ledger, task_id: str, rule: Rule) -> tuple[dict[str, Float32Array], str]:
    """Per-tensor float32 deltas and how they were served: "masked", "unmasked" (an
    unlearned task), "base" (nothing active) or UNKNOWN_TASK."""
    active, task = ledger.store.active_ids(), ledger.store.task(task_id)
    if not active:
        return {}, "base" if task is not None else UNKNOWN_TASK
    merged = ledger.read_state()
    masks = None
    if task is not None and task.status == "active" and task.mask_digest is not None:
        masks = ledger.read_mask(task_id, task.mask_digest)
    how = UNKNOWN_TASK if task is None else "masked" if masks is not None else "unmasked"
    covering, dense = _active_masks(ledger) if rule.per_entry else ([], 0)
    deltas = {}
    for name, q in merged.items():
        mask = None if masks is None else unpack_mask(masks[name].astype(np.uint8), q.shape)
        counts = (
            contributor_counts(name, q.size, covering, dense).reshape(q.shape)
            if rule.per_entry
            else None
        )
        divisor = rule.divisor(len(active), counts)
        deltas[name] = served_delta(q, mask, ledger.config.scale_bits, divisor)
    return deltas, how


def serving_rule(ledger: Ledger, name: str | None) -> Rule:
    """The rule asked for, or the one the ledger recorded at init."""
    return rule_named(ledger.serving_rule if name is None else name)


def with_deltas(base_dir: Path, deltas: Mapping[str, Float32Array]) -> tuple[Any, Any]:
    """θ0 from ``base_dir`` with each delta added to its tensor, and the tokenizer."""
    model, tokenizer = load_model(base_dir)
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, delta in deltas.items():
            params[name].add_(torch.from_numpy(delta))
    return model, tokenizer


def served_model(ledger: Ledger, task_id: str, rule: Rule) -> tuple[Any, Any, str]:
    ledger.check_base()
    deltas, how = served_deltas(ledger, task_id, rule)
    return (*with_deltas(ledger.base_dir, deltas), how)


def probabilities(
    model: Any, tokenizer: Any, texts: Sequence[str], max_length: int = defaults.MAX_LENGTH
) -> torch.Tensor:
    """Class probabilities, batched; truncate inputs as the task was trained."""
    out = []
    with torch.no_grad():
        for start in range(0, len(texts), 64):
            batch = tokenizer(
                list(texts[start : start + 64]),
                padding=True,
                truncation=True,
                max_length=max_length,
                return_tensors="pt",
            )
            out.append(torch.softmax(model(**batch).logits, dim=-1))
    return torch.cat(out) if out else torch.empty(0, model.config.num_labels)


def predict(ledger: Ledger, task_id: str, text: str, rule: str | None = None) -> dict[str, Any]:
    """``rule``: a serving rule's name (ledger.serving.RULES); None, the ledger's own."""
    chosen = serving_rule(ledger, rule)
    model, tokenizer, how = served_model(ledger, task_id, chosen)
    task = ledger.store.task(task_id)
    length = ledger.store.event(task.add_seq)["spec"]["max_length"] if task else defaults.MAX_LENGTH
    probs = probabilities(model, tokenizer, [text], length)[0]
    label = int(torch.argmax(probs))
    return {
        "task": task_id,
        "label": label,
        "label_name": model.config.id2label[label],
        "probabilities": [round(float(p), 6) for p in probs],
        "served": how,
        "rule": chosen.name,
    }


def export(ledger: Ledger, task_id: str, out: Path, rule: str | None = None) -> str:
    """Into a new or empty folder outside the ledger: files there would break its layout.
    ``rule`` as for ``predict``; the model card records it, with the head it serves."""
    chosen = serving_rule(ledger, rule)
    if out.is_symlink():
        raise LedgerError(f"{out} is a symbolic link; export into a real folder")
    target = out.parent.resolve() / out.name
    if target.is_relative_to(ledger.root) or ledger.root.is_relative_to(target):
        raise LedgerError(f"{out} is inside the ledger folder {ledger.root}; export elsewhere")
    refuse_nonempty(out)
    model, _, how = served_model(ledger, task_id, chosen)
    model.save_pretrained(out)
    # Every other file is the base's own, byte for byte (config.json included): what the
    # verifier pins, since a tokenizer file changes the answers as a weight does.
    for name in sorted(ledger.init["base_files"]):
        if name != WEIGHTS:
            shutil.copyfile(ledger.base_dir / name, out / name)
    if sorted(p.name for p in out.iterdir()) != sorted(ledger.init["base_files"]):
        raise LedgerError(f"save_pretrained wrote other files than the base's into {out}")
    (out / "README.md").write_text(model_card(ledger, task_id, how, chosen), encoding="utf-8")
    return how


def model_card(ledger: Ledger, task_id: str, how: str, rule: Rule) -> str:
    """A Hugging Face model card whose front matter says which ledger state this model is:
    whoever receives the folder can check it against that head and those certificates."""
    store = ledger.store
    size = store.size()
    task = store.task(task_id)
    tasks = store.tasks()
    unlearned = [  # in event order (FORMAT.md §12)
        {"task": t.task_id, "event": t.unlearn_seq, "certificate": f"certificates/{seq}.dsse.json"}
        for seq, t in sorted((t.unlearn_seq, t) for t in tasks if t.unlearn_seq is not None)
    ]
    ledger_fields = {
        "log_id": ledger.config.log_id,
        "tree_size": size,
        "root": head_fields(store.head(size))["root"],
        "task": task_id,
        "vector_digest": task.vector_digest if task is not None else None,
        "served": how,
        "serving_rule": rule.name,
        "state_digest": ledger.state_digest(),
        "active_tasks": sorted(t.task_id for t in tasks if t.status == "active"),
        "unlearned": unlearned,
    }
    front = {
        "library_name": "transformers",
        "pipeline_tag": "text-classification",
        "tags": ["unlearning-ledger", "sift-masks"],
        "base_model_digest": ledger.config.base_digest,
        "ledger": ledger_fields,
    }
    # JSON values are YAML: the front matter needs no YAML writer and cannot be mis-quoted.
    lines = [f"{key}: {json.dumps(value, ensure_ascii=False)}" for key, value in front.items()]
    return "\n".join(
        [
            "---",
            *lines,
            "---",
            "",
            f"# The served model for task `{task_id}` ({how})",
            "",
            f"Exported from the unlearning ledger `{ledger.config.log_id}` at its signed head "
            f"of size {size}. The weights are {rule.formula} (serving rule `{rule.name}`, "
            "FORMAT.md §3; unmasked: m_c all ones). The tasks listed under `unlearned` were "
            "removed exactly; each certificate proves it (`verifier check`), and "
            "`verifier served` checks these weights against the ledger bit for bit.",
            "",
        ]
    )
