"""``ledger status``: the contract's JSON view of a ledger."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ledger._internal.folder.ledgerdir import Ledger, open_ledger
from ledger._internal.log.treehead import head_fields


def _checked_state_digest(ledger: Ledger) -> str:
    ledger.read_state()  # refuses a state file that differs from the signed log
    return ledger.state_digest()


def ledger_status(root: Path, trusted: Ed25519PublicKey | None = None) -> dict[str, Any]:
    """The contract's keys, plus ``key_checked`` and the ``leftovers`` no journal names."""
    with open_ledger(root, trusted=trusted) as ledger:
        store = ledger.store
        size = store.size()
        tasks = store.tasks()
        return {
            "active": [t.task_id for t in tasks if t.status == "active"],
            "unlearned": [t.task_id for t in tasks if t.status == "unlearned"],
            "state_digest": _checked_state_digest(ledger),
            "tree_size": size,
            "root": head_fields(store.head(size))["root"],
            "tasks": {
                t.task_id: {"digest": t.vector_digest, "data_hash": t.data_hash, "status": t.status}
                for t in tasks
            },
            "key_checked": ledger.key_trusted,
            "leftovers": ledger.leftovers,
        }
