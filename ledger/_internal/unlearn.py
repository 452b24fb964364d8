"""Exact unlearning (``ledger unlearn``): replay, compare digests, subtract, certify.

The replayed vector, not a stored copy, is what gets subtracted: that is
what lets a ledger that keeps no vectors still unlearn exactly, and what makes
the digest comparison the judge of the replay.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ledger._internal import journal, state
from ledger._internal.certificate import build_statement, sign_certificate
from ledger._internal.data import load_dataset
from ledger._internal.determinism import apply_knobs, check_replay, record
from ledger._internal.digest import set_digest
from ledger._internal.errors import LedgerError
from ledger._internal.finetune import TrainSpec, finetune
from ledger._internal.keys import load_private
from ledger._internal.ledgerdir import check_task_id, open_ledger
from ledger._internal.store import TaskRow, Write
from ledger._internal.tensorfile import write_bytes_durable, write_tensors
from ledger._internal.treehead import utc_now
from ledger._internal.vector import TaskVector


def unlearn_task(
    root: Path,
    task_id: str,
    data_path: Path,
    certificate_out: Path,
    key_path: Path | None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    check_task_id(task_id)
    if certificate_out.exists():
        raise LedgerError(f"refusing to overwrite existing file {certificate_out}")
    if not certificate_out.parent.is_dir():
        raise LedgerError(f"certificate folder {certificate_out.parent} does not exist")
    with open_ledger(root) as ledger:
        task = ledger.store.task(task_id)
        if task is None:
            raise LedgerError(f"no task {task_id!r} in this ledger")
        if task.status != "active":
            raise LedgerError(f"task {task_id!r} was already unlearned")
        key = load_private(key_path or ledger.default_key_path())
        ledger.check_key(key)
        dataset = load_dataset(data_path)
        if dataset.data_hash != task.data_hash:
            raise LedgerError(
                f"data hash {dataset.data_hash} differs from the recorded {task.data_hash}: "
                "not the data task was trained on"
            )
        add_event = ledger.store.event(task.add_seq)
        spec = TrainSpec.from_dict(add_event["spec"])
        apply_knobs(spec.threads, spec.seed)
        check_replay(add_event["determinism"])
        tau = finetune(ledger.base_dir, dataset.texts, dataset.labels, spec, progress)
        config = ledger.config
        vector = TaskVector.from_tau(tau, config.scale_bits, task.method, config.sign_seed)
        if vector.vector_digest != task.vector_digest:
            raise LedgerError(
                f"replayed digest {vector.vector_digest} != recorded {task.vector_digest}; "
                "refusing to subtract, nothing changed"
            )
        merged = state.subtract(ledger.read_state(), vector.q)
        seq = ledger.store.size()
        remaining = [
            t for t in ledger.store.tasks() if t.status == "active" and t.task_id != task_id
        ]
        event: dict[str, Any] = {
            "kind": "unlearn",
            "seq": seq,
            "time": utc_now(),
            "task_id": task_id,
            "vector_digest": task.vector_digest,
            "replayed_digest": vector.vector_digest,
            "state_digest_before": ledger.state_digest(),
            "state_digest_after": set_digest(merged),
            "active_after": [t.task_id for t in remaining],
        }
        head_after = ledger.sign_next_head(key, event)
        statement = build_statement(
            config,
            add_event,
            event,
            ledger.store.head(seq),
            head_after,
            remaining,
            record(spec),
        )
        envelope = sign_certificate(statement, key)
        plan = journal.Plan(seq + 1)
        plan.put(ledger.state_path, lambda p: write_tensors(p, merged))
        plan.put(ledger.certificate_copy(seq), lambda p: write_bytes_durable(p, envelope))
        plan.put(certificate_out.resolve(), lambda p: write_bytes_durable(p, envelope))
        plan.deletes += [str(ledger.vector_path(task_id)), str(ledger.mask_path(task_id))]
        row = TaskRow(
            task_id,
            task.method,
            "unlearned",
            task.add_seq,
            seq,
            task.data_hash,
            task.vector_digest,
            task.mask_digest,
        )
        ledger.commit(Write(event, head_after, row, envelope), plan)
        return event
