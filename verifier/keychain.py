"""FORMAT.md §8's key chain: which key must sign each head, and the rotations that say so.

The given key may be any key of the chain. The heads it signed cover the
rotations after it, and each new key signed the root of the history it took
over, so trust flows both ways from it; a key the chain does not hold is a
failure, never a hint.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

import rfc8785
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from verifier.dsse import FormatError, b64decode, fields, raw_hex, verify_sig

ROTATION = "key_rotation"
ROTATION_FIELDS = ("kind", "seq", "time", "old_public_key", "new_public_key", "new_key_signature")
ROTATION_TYPE = "ulg/key-rotation/v1"
_HEX = re.compile(r"[0-9a-f]{64}")


def _key_hex(obj: dict[str, Any], name: str, what: str) -> str:
    value = obj.get(name)
    if not isinstance(value, str) or not _HEX.fullmatch(value):
        raise FormatError(f"{what}: {name!r} is not 64 lowercase hex digits")
    return value


@dataclass(frozen=True)
class Chain:
    """(first head size it signs, raw key hex), oldest first: the init key signs from size 1."""

    keys: tuple[tuple[int, str], ...]

    def signer(self, size: int) -> Ed25519PublicKey:
        return Ed25519PublicKey.from_public_bytes(
            bytes.fromhex([k for first, k in self.keys if first <= size][-1])
        )

    def describe(self) -> str:
        """Key ids (FORMAT.md §7's keyid, shortened), as certificates name their signer."""
        return " → ".join(
            _short_id(k) + (f" (rotated in at event {first - 2})" if first > 1 else "")
            for first, k in self.keys
        )


def _short_id(key_hex: str) -> str:
    return hashlib.sha256(bytes.fromhex(key_hex)).hexdigest()[:16]


def rotation_message(log_id: str, old: str, new: str, roots: list[bytes], size: int) -> bytes:
    return rfc8785.dumps(
        {
            "log_id": log_id,
            "new_public_key": new,
            "old_public_key": old,
            "root": roots[size - 1].hex(),
            "size": size,
            "type": ROTATION_TYPE,
        }
    )


def build_chain(events: list[dict[str, Any]], roots: list[bytes], log_id: str) -> Chain:
    """Every rotation continues the chain with a key never used before, signed by that key."""
    if not events:
        raise FormatError("the ledger has no events")
    keys = [(1, _key_hex(events[0], "public_key", "init event"))]
    for seq, ev in enumerate(events[1:], start=1):  # event 0 is the init, never a rotation
        if ev.get("kind") != ROTATION:
            continue
        what = f"event {seq} (key rotation)"
        fields(ev, ROTATION_FIELDS, what)
        old = _key_hex(ev, "old_public_key", what)
        new = _key_hex(ev, "new_public_key", what)
        if old != keys[-1][1]:
            in_force = keys[-1][1][:16]
            raise FormatError(f"{what}: old_public_key is not the key then in force ({in_force})")
        if new in {k for _, k in keys}:
            raise FormatError(f"{what}: new_public_key has been in the chain before")
        try:
            new_key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(new))
        except ValueError:
            raise FormatError(f"{what}: new_public_key is not an Ed25519 key") from None
        sig = b64decode(ev["new_key_signature"], f"{what} new_key_signature")
        message = rotation_message(log_id, old, new, roots, seq)
        if len(sig) != 64 or not verify_sig(new_key, sig, message):
            raise FormatError(f"{what}: the new key's signature over the history before it fails")
        keys.append((seq + 2, new))
    return Chain(tuple(keys))


def place_of(chain: Chain, given: Ed25519PublicKey) -> str:
    """Where the given key sits in the chain, for the report; not in it is a failure."""
    held = [k for _, k in chain.keys]
    given_hex = raw_hex(given)
    if given_hex not in held:
        raise FormatError(
            f"the given key {_short_id(given_hex)} is not in the ledger's key chain "
            f"({chain.describe()})"
        )
    if len(held) == 1:
        return ""
    place = held.index(given_hex) + 1
    return f"key chain {chain.describe()}; the given key is key {place} of {len(held)}"
