"""Exact unlearning (``ledger unlearn``): replay, compare digests, subtract, certify.

The replayed vector, not a stored copy, is what gets subtracted: that is
what lets a ledger that keeps no vectors still unlearn exactly, and what makes
the digest comparison the judge of the replay.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ledger._internal.attest.certificate import build_statement, sign_certificate
from ledger._internal.attest.keys import load_private
from ledger._internal.data.records import load_dataset
from ledger._internal.errors import LedgerError
from ledger._internal.folder import journal
from ledger._internal.folder.journal import DEFAULT_WAIT
from ledger._internal.folder.layout import (
    STATE,
    certificate_file,
    check_task_id,
    mask_file,
    vector_file,
)
from ledger._internal.folder.ledgerdir import Ledger, open_ledger
from ledger._internal.folder.safefs import create_exclusive
from ledger._internal.folder.store import TaskRow, Write
from ledger._internal.log.events import UnlearnEvent
from ledger._internal.log.treehead import utc_now
from ledger._internal.training.determinism import apply_knobs, check_replay, record
from ledger._internal.training.finetune import finetune
from ledger._internal.training.spec import TrainSpec
from ledger._internal.vectors import state
from ledger._internal.vectors.codec import Int64Array
from ledger._internal.vectors.digest import set_digest
from ledger._internal.vectors.tensorfile import write_bytes_durable, write_tensors
from ledger._internal.vectors.vector import TaskVector


def _check_out(out: Path, root: Path) -> Path:
    """The certificate's destination, checked before a replay that may take minutes.

    Never resolved through a link at its own name: a dangling link would send
    the certificate wherever it points.
    """
    if os.path.lexists(out):
        raise LedgerError(f"refusing to overwrite existing {out} (a file or a link)")
    out = out.parent.resolve() / out.name
    if not out.parent.is_dir() or not os.access(out.parent, os.W_OK):
        raise LedgerError(f"cannot write a certificate into {out.parent}")
    if out.is_relative_to(root.resolve()):
        raise LedgerError("write the certificate outside the ledger folder (a copy is kept in it)")
    return out


def _deliver(envelope: bytes, out: Path, kept: str) -> None:
    """Outside the journal: a vanished OUT folder must never block the ledger's recovery."""
    try:
        with create_exclusive(out) as handle:
            handle.write(envelope)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        raise LedgerError(
            f"unlearned, but could not write the certificate to {out} ({exc.strerror}); "
            f"the ledger keeps a copy at {kept}"
        ) from exc


def _active_task(ledger: Ledger, task_id: str) -> TaskRow:
    task = ledger.store.task(task_id)
    if task is None:
        raise LedgerError(f"no task {task_id!r} in this ledger")
    if task.status != "active":
        raise LedgerError(f"task {task_id!r} was already unlearned")
    return task


def unlearn_task(
    root: Path,
    task_id: str,
    data_path: Path,
    certificate_out: Path,
    *,
    key_path: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
    wait: float = DEFAULT_WAIT,
) -> dict[str, Any]:
    """Check, replay without the lock, then subtract from the state as it is at commit."""
    check_task_id(task_id)
    out = _check_out(certificate_out, root)
    with open_ledger(root, wait=wait) as ledger:
        task = _active_task(ledger, task_id)
        key = load_private(key_path or ledger.default_key_path())
        ledger.check_key(key)
        ledger.check_base()
        dataset = load_dataset(data_path, ledger.num_labels)
        if dataset.data_hash != task.data_hash:
            raise LedgerError(
                f"data hash {dataset.data_hash} differs from the recorded {task.data_hash}: "
                "not the data task was trained on"
            )
        ledger.read_state()  # a damaged folder is refused before the replay
        add_event = ledger.store.event(task.add_seq)
        config, base_dir = ledger.config, ledger.base_dir
    spec = TrainSpec.from_dict(add_event["spec"])
    apply_knobs(spec.threads, spec.seed)
    check_replay(add_event["determinism"])
    tau = finetune(base_dir, dataset.texts, dataset.labels, spec, progress)
    vector = TaskVector.from_tau(tau, config.scale_bits, task.method, config.sign_seed)
    if vector.vector_digest != task.vector_digest:
        raise LedgerError(
            f"replayed digest {vector.vector_digest} != recorded {task.vector_digest}; "
            "refusing to subtract, nothing changed"
        )
    determinism = record(spec)
    with open_ledger(root, write=True, wait=wait) as ledger:
        if ledger.config != config or _active_task(ledger, task_id) != task:
            raise LedgerError("the ledger changed this task during the replay; nothing changed")
        ledger.check_key(key)  # a rotation may have retired it meanwhile
        ledger.check_base()
        tip = state.Tip(
            ledger.store.size(),
            ledger.read_state(),
            ledger.state_digest(),
            ledger.store.active_ids(),
        )
        planned = plan_unlearn(task, vector, tip, ledger.store.tasks(), utc_now())
        seq, event = tip.seq, planned.event.to_json()
        head_after = ledger.sign_next_head(key, event)
        statement = build_statement(
            config,
            add_event,
            event,
            ledger.store.head(seq),
            head_after,
            planned.remaining,
            determinism,
        )
        envelope = sign_certificate(statement, key)
        files = journal.Plan(seq + 1)
        files.put(STATE, lambda p: write_tensors(p, planned.merged))
        files.put(certificate_file(seq), lambda p: write_bytes_durable(p, envelope))
        files.deletes += [vector_file(task_id), mask_file(task_id)]
        ledger.commit(Write(event, head_after, planned.row, envelope), files)
    _deliver(envelope, out, str(ledger.root / certificate_file(seq)))
    return event


@dataclass(frozen=True)
class UnlearnPlan:
    """Everything an unlearn appends but the signatures, computed without I/O."""

    event: UnlearnEvent
    row: TaskRow
    merged: dict[str, Int64Array]
    remaining: list[TaskRow]  # sorted by id: the certificate's "remaining"


def plan_unlearn(
    task: TaskRow, replayed: TaskVector, tip: state.Tip, tasks: list[TaskRow], time: str
) -> UnlearnPlan:
    """The unlearn as a function of the recorded task, its replayed vector (its digest
    already checked against the record) and the ledger's tip; takes ``tip.state`` over,
    as plan_add does."""
    merged = state.subtract(tip.state, replayed.q)
    remaining = sorted(
        (t for t in tasks if t.status == "active" and t.task_id != task.task_id),
        key=lambda t: t.task_id,
    )
    event = UnlearnEvent(
        seq=tip.seq,
        time=time,
        task_id=task.task_id,
        data_hash=task.data_hash,
        vector_digest=task.vector_digest,
        replayed_digest=replayed.vector_digest,
        state_digest_before=tip.state_digest,
        state_digest_after=set_digest(merged),
        active_after=[t.task_id for t in remaining],
    )
    row = replace(task, status="unlearned", unlearn_seq=tip.seq)
    return UnlearnPlan(event, row, merged, remaining)
