"""The training spec: the per-task choices a ledger records and a replay uses verbatim.

Pure data, apart from the training loop, so the determinism record and the
ledger's events can describe a fine-tune without importing torch's side of it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal, cast

from ledger import defaults
from ledger._internal.errors import LedgerError
from ledger._internal.log.jcs import SEED_LIMIT

Method = Literal["sift", "ft"]
MAX_LR = 100.0  # far past any useful rate; keeps inf and overflowing steps out


@dataclass(frozen=True, kw_only=True)
class TrainSpec:
    """The per-task training choices, recorded in the ledger and replayed verbatim.

    Keyword-only: eight mostly-int fields are too easy to pass in the wrong order.
    """

    method: Method
    seed: int
    steps: int = defaults.STEPS
    lr: float = defaults.LR
    batch_size: int = defaults.BATCH_SIZE
    max_length: int = defaults.MAX_LENGTH
    threads: int
    sign_seed: int

    def __post_init__(self) -> None:
        if self.method not in ("sift", "ft"):
            raise LedgerError(f"unknown method {self.method!r} (sift or ft)")
        for name in ("seed", "sign_seed"):
            value = getattr(self, name)
            if not 0 <= value < SEED_LIMIT:
                raise LedgerError(f"{name} must be in [0, 2^53), got {value}")
        for name in ("steps", "batch_size", "max_length", "threads"):
            if getattr(self, name) < 1:
                raise LedgerError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 < self.lr <= MAX_LR:
            raise LedgerError(f"lr must be in (0, {MAX_LR}], got {self.lr}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainSpec:
        try:
            return cls(
                method=cast(Method, data["method"]),
                seed=int(data["seed"]),
                threads=int(data["threads"]),
                sign_seed=int(data["sign_seed"]),
                steps=int(data["steps"]),
                lr=float(data["lr"]),
                batch_size=int(data["batch_size"]),
                max_length=int(data["max_length"]),
            )
        except KeyError as exc:
            raise LedgerError(f"training spec lacks field {exc.args[0]!r}") from exc
