"""RFC 8785 canonical JSON: the one serialisation every hash and signature is over."""

from __future__ import annotations

import json
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


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise ValueError(f"duplicate key {key!r}")
        obj[key] = value
    return obj


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def loads_strict(text: str | bytes) -> Any:
    """JSON as signed and hashed: a repeated key would let two readers see two values
    (Python keeps the last), and NaN/Infinity are not JSON at all. Raises ValueError."""
    return json.loads(text, object_pairs_hook=_unique, parse_constant=_no_constant)
