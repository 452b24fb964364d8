"""The key chain (docs/FORMAT.md §8): which key signs each head, from the rotations the
signed events declare. Pure: the folder and the ``rotate-key`` write live elsewhere.

The ``key_rotation`` event is covered by a head the old key signs, which is
what authorises the new key; the new key in turn signs the history before
it (the rotation message), so a party holding only the old key cannot invent
a history that the new key's holders would accept. Heads after the event are
signed by the new key; the key a head of size ``s`` must carry is the one in
force after the events before its last.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass
from typing import Any

from ledger._internal.attest.keys import public_from_hex, verifies
from ledger._internal.errors import LedgerError
from ledger._internal.log.jcs import canonical
from ledger._internal.log.merkle import root_from_leaf_hashes

KIND = "key_rotation"
FIELDS = ("kind", "seq", "time", "old_public_key", "new_public_key", "new_key_signature")
_HEX = re.compile(r"[0-9a-f]{64}")


def rotation_message(log_id: str, old_hex: str, new_hex: str, leaves_before: list[bytes]) -> bytes:
    """What the new key signs: the log it takes over, up to (not including) the rotation."""
    return canonical(
        {
            "log_id": log_id,
            "new_public_key": new_hex,
            "old_public_key": old_hex,
            "root": root_from_leaf_hashes(leaves_before).hex(),
            "size": len(leaves_before),
            "type": "ulg/key-rotation/v1",
        }
    )


@dataclass(frozen=True)
class KeyChain:
    """Each key (raw hex) with the first head size it signs; the init key signs from size 1."""

    keys: list[tuple[int, str]]

    @property
    def current(self) -> str:
        return self.keys[-1][1]

    def signer(self, size: int) -> str:
        return [key for first, key in self.keys if first <= size][-1]

    def retired_at(self, key_hex: str) -> int | None:
        """The seq of the rotation that retired ``key_hex`` (None: current or unknown)."""
        for (_, old), (first, _) in zip(self.keys, self.keys[1:], strict=False):
            if old == key_hex:
                return first - 2
        return None

    def describe(self) -> str:
        """Key ids (FORMAT.md §7's keyid, as certificates and ``rotate-key`` show them)."""
        return " → ".join(
            f"{short_id(key)}" + (f" (from event {first - 2})" if first > 1 else "")
            for first, key in self.keys
        )


def short_id(key_hex: str) -> str:
    return hashlib.sha256(bytes.fromhex(key_hex)).hexdigest()[:16]


def key_chain(events: list[dict[str, Any]], leaves: list[bytes], log_id: str) -> KeyChain:
    """The chain the signed events declare, each rotation's new-key signature checked."""
    keys = [(1, str(events[0]["public_key"]))]
    for seq, event in enumerate(events):
        if event.get("kind") != KIND:
            continue
        if sorted(event) != sorted(FIELDS) or event["seq"] != seq:
            raise LedgerError(f"event {seq}: a key rotation has exactly the fields {FIELDS}")
        old, new = event["old_public_key"], event["new_public_key"]
        if not all(isinstance(k, str) and _HEX.fullmatch(k) for k in (old, new)):
            raise LedgerError(f"event {seq}: a rotation's keys are 64 lowercase hex digits")
        if old != keys[-1][1] or new in {k for _, k in keys}:
            raise LedgerError(f"event {seq}: the key rotation does not continue the key chain")
        try:
            signature = base64.b64decode(event["new_key_signature"], validate=True)
            new_key = public_from_hex(new)
        except (TypeError, ValueError):
            raise LedgerError(f"event {seq}: the key rotation is malformed") from None
        if not verifies(new_key, signature, rotation_message(log_id, old, new, leaves[:seq])):
            raise LedgerError(f"event {seq}: the new key did not sign the key rotation")
        keys.append((seq + 2, new))
    return KeyChain(keys)
