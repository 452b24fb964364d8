"""RFC 8785 canonical JSON: the one serialisation every hash and signature is over."""

from __future__ import annotations

from typing import Any

import rfc8785

from ledger._internal.errors import LedgerError

# JCS numbers are IEEE doubles: integers are exact below 2^53, so every seed is.
SEED_LIMIT = 1 << 53


def canonical(value: Any) -> bytes:
    """JCS bytes; values JCS cannot represent exactly (ints >= 2^53, NaN, lone
    surrogates) are refused rather than hashed in some non-standard form."""
    try:
        return bytes(rfc8785.dumps(value))
    except (rfc8785.CanonicalizationError, ValueError, TypeError) as exc:
        raise LedgerError(f"not representable as RFC 8785 JSON: {exc}") from exc
