"""``ledger proof``: the RFC 9162 proofs an auditor or a data owner may demand.

Events are proven against the signed head of a given size; a data record is
proven against the task's recorded data hash, so its owner can check that
exactly their record was in the task without seeing the others.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ledger._internal.data.records import load_dataset
from ledger._internal.errors import LedgerError
from ledger._internal.folder.ledgerdir import Ledger
from ledger._internal.log.jcs import canonical
from ledger._internal.log.merkle import consistency_proof, inclusion_proof, leaf_hash


def _size(ledger: Ledger, size: int | None) -> int:
    latest = ledger.store.size()
    if size is None:
        return latest
    if not 1 <= size <= latest:
        raise LedgerError(f"tree size {size} outside 1..{latest}", exit_code=2)
    return size


def event_inclusion(ledger: Ledger, seq: int, size: int | None) -> dict[str, Any]:
    n = _size(ledger, size)
    if not 0 <= seq < n:
        raise LedgerError(f"event {seq} is not in a tree of size {n}", exit_code=2)
    leaves = ledger.leaves[:n]
    head = ledger.store.head(n)
    return {
        "leaf_index": seq,
        "tree_size": n,
        "leaf_hash": leaves[seq].hex(),
        "inclusion_path": [h.hex() for h in inclusion_proof(leaves, seq)],
        "tree_head": head.as_json(),
    }


def log_consistency(ledger: Ledger, old: int, size: int | None) -> dict[str, Any]:
    n = _size(ledger, size)
    if not 1 <= old <= n:
        raise LedgerError(f"old size {old} outside 1..{n}", exit_code=2)
    leaves = ledger.leaves[:n]
    return {
        "old_size": old,
        "new_size": n,
        "old_tree_head": ledger.store.head(old).as_json(),
        "new_tree_head": ledger.store.head(n).as_json(),
        "consistency_path": [h.hex() for h in consistency_proof(leaves, old)],
    }


def record_inclusion(ledger: Ledger, task_id: str, data: Path, line: int) -> dict[str, Any]:
    task = ledger.store.task(task_id)
    if task is None:
        raise LedgerError(f"no task {task_id!r} in this ledger")
    dataset = load_dataset(data)
    if dataset.data_hash != task.data_hash:
        raise LedgerError(f"data hash {dataset.data_hash} differs from the recorded one")
    if not 1 <= line <= len(dataset.records):
        raise LedgerError(f"line {line} outside 1..{len(dataset.records)}", exit_code=2)
    leaves = [leaf_hash(canonical(r)) for r in dataset.records]
    return {
        "task_id": task_id,
        "line": line,
        "record": dataset.records[line - 1],
        "leaf_index": line - 1,
        "tree_size": len(leaves),
        "data_hash": task.data_hash,
        "inclusion_path": [h.hex() for h in inclusion_proof(leaves, line - 1)],
        "add_event": task.add_seq,
    }
