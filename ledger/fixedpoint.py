"""The exact arithmetic, public: fixed point, overflow-checked int64 merges, the serving rule.

For code that merges task vectors outside a ledger (the audits' baselines, a
notebook) and must get the ledger's bits.
"""

from ledger._internal.vectors.codec import (
    Float32Array,
    Int64Array,
    checked_add,
    checked_sub,
    dequantise,
    quantise,
    served_delta,
)
from ledger._internal.vectors.digest import set_digest
from ledger._internal.vectors.state import add as merge

__all__ = [
    "Float32Array",
    "Int64Array",
    "checked_add",
    "checked_sub",
    "dequantise",
    "merge",
    "quantise",
    "served_delta",
    "set_digest",
]
