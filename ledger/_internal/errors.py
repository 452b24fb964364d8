"""The one exception type the CLI turns into a single `error:` line."""

from __future__ import annotations


class LedgerError(Exception):
    """A refusal: the operation changed nothing. ``exit_code`` follows CONTRACT.md
    (1 refused / mismatch, 2 usage)."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class DeterminismMismatch(LedgerError):
    """A replay could not reproduce the recorded environment; names the field."""

    def __init__(self, field: str, recorded: object, current: object) -> None:
        super().__init__(
            f"determinism mismatch: {field}: recorded {_shown(recorded)}, current {_shown(current)}"
            " (replay in the recorded environment)"
        )
        self.field = field


def _shown(value: object) -> str:
    return "unset" if value is None else repr(value)
