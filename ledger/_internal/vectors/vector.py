"""A task's quantised vector q, its mask m = (q != 0) and their digests."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from ledger._internal.errors import LedgerError
from ledger._internal.training.signs import sign_vector
from ledger._internal.vectors.codec import Float32Array, Int64Array, quantise
from ledger._internal.vectors.digest import set_digest
from ledger._internal.vectors.encoding import encode

Uint8Array = npt.NDArray[np.uint8]


def pack_mask(q: Int64Array) -> Uint8Array:
    return np.packbits(q.reshape(-1) != 0, bitorder="little")


def unpack_mask(packed: Uint8Array, shape: tuple[int, ...]) -> npt.NDArray[np.bool_]:
    numel = int(np.prod(shape))
    return np.unpackbits(packed, count=numel, bitorder="little").astype(bool).reshape(shape)


@dataclass(frozen=True)
class TaskVector:
    q: dict[str, Int64Array]
    mask: dict[str, Uint8Array] | None  # sift only
    vector_digest: str
    mask_digest: str | None

    @classmethod
    def from_tau(
        cls, tau: Mapping[str, Float32Array], scale_bits: int, method: str, sign_seed: int
    ) -> TaskVector:
        q = quantise(tau, scale_bits)
        if method != "sift":
            return cls(q, None, set_digest(q), None)
        for name, values in q.items():
            # Rounding can't flip a sign, so this only fails if training broke the projection.
            if np.any(values.reshape(-1) * sign_vector(sign_seed, name, values.size) < 0):
                raise LedgerError(f"sign invariant violated in tensor {name!r}")
        mask = {name: pack_mask(values) for name, values in q.items()}
        return cls(q, mask, set_digest(q), set_digest(mask))

    def stored(self) -> tuple[dict[str, npt.NDArray[Any]], dict[str, str]]:
        """The tensors and metadata of vectors/<id>.safetensors (FORMAT.md §3): a sift
        vector's non-zero entries, at its mask's positions; each in the narrowest dtype that
        holds it exactly."""
        return encode(self.q, masked=self.mask is not None)
