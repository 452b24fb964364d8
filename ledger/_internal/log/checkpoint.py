"""The latest signed head as a C2SP tlog-checkpoint signed note: a small thing people keep.

Whoever keeps one can later demand a consistency proof from it to whatever
folder they are shown, which is what catches a rolled-back or forked ledger
(FORMAT.md §4). The note is the C2SP format (https://c2sp.org/tlog-checkpoint,
https://c2sp.org/signed-note): origin line, decimal size, base64 root, a blank
line, then one signature line ``— <name> base64(key hash ‖ Ed25519 signature)``.
"""

from __future__ import annotations

import base64
import hashlib

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger._internal.attest.keys import raw_public

ORIGIN_PREFIX = "unlearning-ledger/"
_ED25519 = b"\x01"  # the signed-note signature type of Ed25519


def origin(log_id: str) -> str:
    return ORIGIN_PREFIX + log_id


def key_hash(name: str, public: bytes) -> bytes:
    """signed-note key ID: the first 4 bytes of SHA-256(name ‖ LF ‖ type ‖ public key)."""
    return hashlib.sha256(name.encode() + b"\n" + _ED25519 + public).digest()[:4]


def checkpoint_note(log_id: str, size: int, root_hex: str, key: Ed25519PrivateKey) -> str:
    name = origin(log_id)
    body = f"{name}\n{size}\n{base64.b64encode(bytes.fromhex(root_hex)).decode()}\n"
    signature = key_hash(name, raw_public(key.public_key())) + key.sign(body.encode())
    return f"{body}\n\u2014 {name} {base64.b64encode(signature).decode()}\n"
