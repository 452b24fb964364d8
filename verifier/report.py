"""The verifier's public entry points and their typed report (what `verifier` prints).

An auditor's own tooling calls these instead of parsing the command's lines;
the command is a thin printer over them.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from verifier.checks import run_audit, run_check, run_served
from verifier.context import CheckResult
from verifier.ledger_reader import TEXT_CAP, UnreadableInput


def read_capped(path: Path, what: str) -> bytes:
    """At most TEXT_CAP bytes of a regular file (a FIFO would block): the file may be hostile."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as handle:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise UnreadableInput(f"{what} {path} is not a regular file")
            data = handle.read(TEXT_CAP + 1)
    except OSError as exc:
        raise UnreadableInput(f"cannot read {what} {path}: {exc.strerror}") from None
    if len(data) > TEXT_CAP:
        raise UnreadableInput(f"{what} {path} is larger than {TEXT_CAP} bytes")
    return data


@dataclass(frozen=True)
class Report:
    """Every check's result, in the order run; ``ok`` only when none FAILed."""

    results: tuple[CheckResult, ...]

    @property
    def ok(self) -> bool:
        """Verified: no check failed (skipped ones say what could not be checked)."""
        return not self.failures

    @property
    def failures(self) -> list[CheckResult]:
        """The failed checks, in the order run: the first is usually the cause."""
        return [r for r in self.results if r.status == "FAIL"]

    def summary(self) -> str:
        """The one line `verifier` prints last."""
        counts = {s: sum(r.status == s for r in self.results) for s in ("ok", "skipped", "FAIL")}
        verdict = "verified" if self.ok else "FAILED"
        return (
            f"{verdict}: {len(self.results)} checks, {counts['ok']} ok, "
            f"{counts['skipped']} skipped, {counts['FAIL']} failed"
        )

    def to_json(self) -> dict[str, Any]:
        """What `verifier --json` prints: for tools that must not parse lines."""
        return {
            "ok": self.ok,
            "summary": self.summary(),
            "checks": [
                {"name": r.name, "status": r.status, "detail": r.detail} for r in self.results
            ],
        }


def _kept(trusted_heads: Sequence[Path]) -> list[tuple[str, bytes]]:
    return [(str(p), read_capped(p, "trusted head")) for p in trusted_heads]


def verify_ledger(
    ledger_dir: Path,
    public_key: Path,
    trusted_heads: Sequence[Path] = (),
    state: Path | None = None,
) -> Report:
    """`verifier audit`: the whole folder against the operator's key (any key of its chain).

    Raises UnreadableInput when an input cannot be read at all."""
    key = read_capped(public_key, "public key")
    return Report(tuple(run_audit(ledger_dir, key, _kept(trusted_heads), state)))


def verify_certificate(
    ledger_dir: Path,
    certificate: Path,
    public_key: Path,
    trusted_heads: Sequence[Path] = (),
) -> Report:
    """`verifier check`: the certificate's claims, and that the deletion holds in the folder now."""
    data = read_capped(certificate, "certificate")
    key = read_capped(public_key, "public key")
    return Report(tuple(run_check(ledger_dir, data, key, _kept(trusted_heads))))


def verify_served(
    ledger_dir: Path,
    task_id: str,
    model_dir: Path,
    public_key: Path,
    trusted_heads: Sequence[Path] = (),
) -> Report:
    """`verifier served`: the ledger's audit, then that ``model_dir`` (a `ledger export`) is
    bit for bit the served model for ``task_id`` at the head its card names."""
    key = read_capped(public_key, "public key")
    if not model_dir.is_dir() or model_dir.is_symlink():
        raise UnreadableInput(f"exported model {model_dir} is not a folder")
    return Report(tuple(run_served(ledger_dir, task_id, model_dir, key, _kept(trusted_heads))))
