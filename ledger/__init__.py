"""unlearning-ledger: exact, auditable unlearning for merged fine-tuned models.

The public API, in the order of the data's path: build a base and a key,
create a ledger, add tasks (deterministic fine-tune → task vector → signed
event → exact int64 merge), serve and export, unlearn (replay → digest check →
subtract → signed certificate), rotate the key. Everything under
``ledger._internal`` may change without notice; ``ledger.data`` (task data),
``ledger.fixedpoint`` (the exact arithmetic) and ``ledger.training`` (the
fine-tune without a ledger) are public too.

Names resolve on first use, so ``import ledger`` stays cheap for the
command-line readers that never touch torch. The README has a worked example.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ledger._internal.attest.keys import generate as generate_key
    from ledger._internal.errors import LedgerError
    from ledger._internal.folder.layout import STATE as STATE_FILE
    from ledger._internal.folder.ledgerdir import open_ledger
    from ledger._internal.model.basemodel import build_minilm, build_tiny
    from ledger._internal.ops.add import Hyper, add_task
    from ledger._internal.ops.create import init_ledger
    from ledger._internal.ops.rotation import rotate_key
    from ledger._internal.ops.serve import export, predict
    from ledger._internal.ops.status import ledger_status as status
    from ledger._internal.ops.unlearn import unlearn_task
    from ledger._internal.vectors.vector import TaskVector

# public name -> (module, name there)
_WHERE = {
    "generate_key": ("ledger._internal.attest.keys", "generate"),
    "build_tiny": ("ledger._internal.model.basemodel", "build_tiny"),
    "build_minilm": ("ledger._internal.model.basemodel", "build_minilm"),
    "init_ledger": ("ledger._internal.ops.create", "init_ledger"),
    "open_ledger": ("ledger._internal.folder.ledgerdir", "open_ledger"),
    "Hyper": ("ledger._internal.ops.add", "Hyper"),
    "add_task": ("ledger._internal.ops.add", "add_task"),
    "TaskVector": ("ledger._internal.vectors.vector", "TaskVector"),
    "status": ("ledger._internal.ops.status", "ledger_status"),
    "predict": ("ledger._internal.ops.serve", "predict"),
    "export": ("ledger._internal.ops.serve", "export"),
    "unlearn_task": ("ledger._internal.ops.unlearn", "unlearn_task"),
    "rotate_key": ("ledger._internal.ops.rotation", "rotate_key"),
    "LedgerError": ("ledger._internal.errors", "LedgerError"),
    "STATE_FILE": ("ledger._internal.folder.layout", "STATE"),
}
__all__ = [
    "STATE_FILE",
    "Hyper",
    "LedgerError",
    "TaskVector",
    "add_task",
    "build_minilm",
    "build_tiny",
    "export",
    "generate_key",
    "init_ledger",
    "open_ledger",
    "predict",
    "rotate_key",
    "status",
    "unlearn_task",
]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'ledger' has no attribute {name!r}")
    module, attribute = _WHERE[name]
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
