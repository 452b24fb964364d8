"""The merged accumulator Q: add and subtract a task vector tensor by tensor.

Each tensor of Q is replaced as soon as its new value is ready, so the peak
is Q and one vector plus one tensor's temporaries, never T vectors.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ledger._internal.errors import LedgerError
from ledger._internal.vectors.codec import Int64Array, checked_add, checked_sub


def _combine(
    state: dict[str, Int64Array],
    q: Mapping[str, Int64Array],
    op: Callable[[Int64Array, Int64Array, str], Int64Array],
) -> dict[str, Int64Array]:
    if set(q) != set(state):
        raise LedgerError("task vector tensors do not match the merged state's tensors")
    for name in state:
        if q[name].shape != state[name].shape:
            raise LedgerError(f"tensor {name!r}: shape {q[name].shape} != {state[name].shape}")
    # In place, tensor by tensor: on a refusal the caller drops this dict and the
    # state file on disk was never touched.
    for name in state:
        state[name] = op(state[name], q[name], name)
    return state


def add(state: dict[str, Int64Array], q: Mapping[str, Int64Array]) -> dict[str, Int64Array]:
    return _combine(state, q, checked_add)


def subtract(state: dict[str, Int64Array], q: Mapping[str, Int64Array]) -> dict[str, Int64Array]:
    return _combine(state, q, checked_sub)


@dataclass(frozen=True)
class Tip:
    """The ledger as a commit finds it, whatever landed while a task trained or replayed;
    its state is handed to the plan, which merges into it."""

    seq: int
    state: dict[str, Int64Array]
    state_digest: str
    active: list[str]
