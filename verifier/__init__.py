"""An independent verifier for unlearning-ledger folders: it reads only what docs/FORMAT.md
specifies and imports nothing from ``ledger``.

``verify_ledger`` is ``verifier audit``, ``verify_certificate`` is ``verifier check``;
both return a ``Report`` and raise ``UnreadableInput`` when an input cannot be read at all.
"""

from verifier.context import CheckResult
from verifier.ledger_reader import UnreadableInput
from verifier.report import Report, verify_certificate, verify_ledger

__all__ = ["CheckResult", "Report", "UnreadableInput", "verify_certificate", "verify_ledger"]
