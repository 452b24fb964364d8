"""``ledger rotate-key``: a retired key hands the ledger over to a new one (FORMAT.md §8)."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from ledger._internal.attest.keys import key_id, load_private, raw_public
from ledger._internal.errors import LedgerError
from ledger._internal.folder import journal
from ledger._internal.folder.journal import DEFAULT_WAIT
from ledger._internal.folder.layout import KEY_PATH_FILE
from ledger._internal.folder.ledgerdir import open_ledger
from ledger._internal.folder.store import Write
from ledger._internal.log.events import KeyRotationEvent
from ledger._internal.log.keychain import rotation_message
from ledger._internal.log.treehead import utc_now
from ledger._internal.vectors.tensorfile import write_bytes_durable


def rotate_key(
    root: Path, old_path: Path, new_path: Path, *, wait: float = DEFAULT_WAIT
) -> dict[str, Any]:
    """Append the rotation (its head signed by the old key) and make the new key the default."""
    old, new = load_private(old_path), load_private(new_path)
    new_path = new_path.resolve()
    with open_ledger(root, write=True, wait=wait) as ledger:
        ledger.check_key(old)
        old_hex, new_hex = raw_public(old.public_key()).hex(), raw_public(new.public_key()).hex()
        if new_hex in {k for _, k in ledger.chain.keys}:
            raise LedgerError("the new key has signed this ledger before; use a fresh key")
        seq = ledger.store.size()
        message = rotation_message(ledger.config.log_id, old_hex, new_hex, ledger.leaves)
        event = KeyRotationEvent(
            seq=seq,
            time=utc_now(),
            old_public_key=old_hex,
            new_public_key=new_hex,
            new_key_signature=base64.b64encode(new.sign(message)).decode("ascii"),
        ).to_json()
        plan = journal.Plan(seq + 1)
        plan.put(KEY_PATH_FILE, lambda p: write_bytes_durable(p, f"{new_path}\n".encode()))
        ledger.commit(Write(event, ledger.sign_next_head(old, event), None), plan)
    event["old_key_id"], event["new_key_id"] = key_id(old.public_key()), key_id(new.public_key())
    return event
