"""Signed tree heads (docs/FORMAT.md §4): what pins the whole history at each write."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger._internal.folder.store import SignedHead
from ledger._internal.log.jcs import canonical
from ledger._internal.log.merkle import root_from_leaf_hashes


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def sign_head(key: Ed25519PrivateKey, log_id: str, leaves: list[bytes], time: str) -> SignedHead:
    body = canonical(
        {
            "log_id": log_id,
            "root": root_from_leaf_hashes(leaves).hex(),
            "size": len(leaves),
            "time": time,
            "type": "ulg/tree-head/v1",
        }
    )
    return SignedHead(body.decode(), base64.b64encode(key.sign(body)).decode("ascii"))


def head_fields(head: SignedHead) -> dict[str, Any]:
    fields: dict[str, Any] = json.loads(head.body)
    return fields
