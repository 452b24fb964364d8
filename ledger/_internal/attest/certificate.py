"""The unlearning certificate: an in-toto Statement v1 in a DSSE envelope (FORMAT.md §7)."""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger._internal.attest.dsse import IN_TOTO_PAYLOAD_TYPE, sign_envelope
from ledger._internal.folder.store import Config, SignedHead, TaskRow
from ledger._internal.log.jcs import canonical
from ledger._internal.log.merkle import leaf_hash

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://unlearning-ledger.dev/certificate/unlearn/v1"


def build_statement(
    config: Config,
    add_event: dict[str, Any],
    event: dict[str, Any],
    head_before: SignedHead,
    head_after: SignedHead,
    remaining: list[TaskRow],
    determinism: dict[str, Any],
) -> dict[str, Any]:
    return {
        "_type": STATEMENT_TYPE,
        "subject": [
            {
                "name": "state.safetensors",
                "digest": {"sha256": event["state_digest_after"].removeprefix("sha256:")},
            }
        ],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "log_id": config.log_id,
            "task_id": event["task_id"],
            "method": add_event["method"],
            "data_hash": add_event["data_hash"],
            "n_records": add_event["n_records"],
            "vector_digest": add_event["vector_digest"],
            "replayed_digest": event["replayed_digest"],
            "event": {"seq": event["seq"], "leaf_hash": leaf_hash(canonical(event)).hex()},
            "tree_head_before": head_before.as_json(),
            "tree_head_after": head_after.as_json(),
            "state_digest_before": event["state_digest_before"],
            "state_digest_after": event["state_digest_after"],
            "remaining": [
                {"task_id": t.task_id, "vector_digest": t.vector_digest} for t in remaining
            ],
            "determinism": determinism,
            "base_digest": config.base_digest,
            "sign_seed": config.sign_seed,
            "scale_bits": config.scale_bits,
        },
    }


def sign_certificate(statement: dict[str, Any], key: Ed25519PrivateKey) -> bytes:
    return sign_envelope(canonical(statement), IN_TOTO_PAYLOAD_TYPE, key)
