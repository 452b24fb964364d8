"""`verifier check` and `verifier audit` (CONTRACT.md): one line per check, exit 1 on any FAIL.

Unreadable inputs are an `error:` line on stderr with exit 1; click keeps exit 2
for usage errors. A last-resort handler turns any unforeseen exception into an
`error:` line too, because an auditor's tool must not answer tampering with a
traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import click

from verifier.checks import run_audit, run_check
from verifier.context import CheckResult
from verifier.ledger_reader import UnreadableInput


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise UnreadableInput(f"cannot read {what} {path}: {exc.strerror}") from None


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [""])[0]


def _report(run: Callable[[], list[CheckResult]]) -> None:
    try:
        results = run()
    except UnreadableInput as exc:
        click.echo(f"error: {_first_line(exc)}", err=True)
        sys.exit(1)
    except Exception as exc:
        click.echo(
            f"error: verification could not complete: {type(exc).__name__}: {_first_line(exc)}",
            err=True,
        )
        sys.exit(1)
    for r in results:
        click.echo(r.line())
    failed = [r for r in results if r.status == "FAIL"]
    if failed:
        first = failed[0].line().removeprefix("FAIL: ")
        click.echo(
            f"error: verification failed: {len(failed)} check(s) failed, first {first}", err=True
        )
        sys.exit(1)


@click.group()
def main() -> None:
    """Independent verifier for unlearning-ledger folders (docs/FORMAT.md)."""


_ledger = click.option(
    "--ledger",
    "ledger_dir",
    required=True,
    type=click.Path(path_type=Path),
    help="The ledger folder.",
)
_key = click.option(
    "--public-key",
    "public_key",
    required=True,
    type=click.Path(path_type=Path),
    help="The operator's Ed25519 public key (SubjectPublicKeyInfo PEM).",
)


@main.command()
@_ledger
@click.option(
    "--certificate",
    required=True,
    type=click.Path(path_type=Path),
    help="A DSSE envelope written by `ledger unlearn`.",
)
@_key
def check(ledger_dir: Path, certificate: Path, public_key: Path) -> None:
    """Verify one unlearning certificate against a ledger."""
    _report(
        lambda: run_check(
            ledger_dir, _read(certificate, "certificate"), _read(public_key, "public key")
        )
    )


@main.command()
@_ledger
@_key
def audit(ledger_dir: Path, public_key: Path) -> None:
    """Verify a whole ledger: signatures, Merkle log, state, masks and stored certificates."""
    _report(lambda: run_audit(ledger_dir, _read(public_key, "public key")))
