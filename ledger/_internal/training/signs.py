"""The global sign vector v of SIFT-Masks.

Derived from SHAKE-256 rather than torch's RNG: torch streams change across
versions, and an outside verifier without torch must be able to recompute v
(docs/FORMAT.md, "Sign vector").
"""

from __future__ import annotations

import hashlib
import struct

import numpy as np
import numpy.typing as npt

_DOMAIN = b"ulg:sign:v1\x00"


def sign_vector(seed: int, name: str, numel: int) -> npt.NDArray[np.int8]:
    """v for one tensor, flattened in C order: +1 where the stream bit is 1, else -1."""
    xof = hashlib.shake_256(_DOMAIN + struct.pack("<Q", seed) + name.encode("utf-8"))
    bits = np.unpackbits(
        np.frombuffer(xof.digest((numel + 7) // 8), dtype=np.uint8), bitorder="little"
    )[:numel]
    return (bits.astype(np.int8) * 2 - 1).astype(np.int8)
