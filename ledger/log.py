"""The RFC 9162 log, public: leaf hashes, roots and proofs (FORMAT.md §4), and checkpoints.

What a third party needs to recompute a ledger's roots or check a proof that
``ledger proof`` printed, without the rest of the ledger.
"""

from ledger._internal.log.checkpoint import checkpoint_note
from ledger._internal.log.merkle import (
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    root_from_leaf_hashes,
    verify_consistency,
    verify_inclusion,
)

__all__ = [
    "checkpoint_note",
    "consistency_proof",
    "inclusion_proof",
    "leaf_hash",
    "root_from_leaf_hashes",
    "verify_consistency",
    "verify_inclusion",
]
