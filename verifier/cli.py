"""`verifier check` and `verifier audit` (CONTRACT.md): one line per check, exit 1 on any FAIL.

Unreadable inputs are an `error:` line on stderr with exit 1, usage errors one
with exit 2 (click runs without its own handling, which would print a usage
block). A last-resort handler turns any unforeseen exception into an `error:`
line too, because an auditor's tool must not answer tampering with a traceback.
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from verifier.checks import run_audit, run_check
from verifier.context import CheckResult
from verifier.ledger_reader import TEXT_CAP, UnreadableInput


def _read(path: Path, what: str) -> bytes:
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


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
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


_trusted = click.option(
    "--trusted-head",
    "trusted_heads",
    multiple=True,
    type=click.Path(path_type=Path),
    help="A checkpoint (ledger checkpoint) or certificate you kept; repeatable. The folder must "
    "extend it: a smaller one was rolled back, a different one forked.",
)


def _kept(paths: tuple[Path, ...]) -> list[tuple[str, bytes]]:
    return [(str(p), _read(p, "trusted head")) for p in paths]


@cli.command()
@_ledger
@click.option(
    "--certificate",
    required=True,
    type=click.Path(path_type=Path),
    help="A DSSE envelope written by `ledger unlearn`.",
)
@_key
@_trusted
def check(
    ledger_dir: Path, certificate: Path, public_key: Path, trusted_heads: tuple[Path, ...]
) -> None:
    """Verify one unlearning certificate against a ledger, and that the deletion holds now."""
    _report(
        lambda: run_check(
            ledger_dir,
            _read(certificate, "certificate"),
            _read(public_key, "public key"),
            _kept(trusted_heads),
        )
    )


@cli.command()
@_ledger
@_key
@_trusted
@click.option(
    "--state",
    "state_dir",
    type=click.Path(path_type=Path),
    help="A folder remembering the largest head verified per log; an older or forked one "
    "is refused later.",
)
def audit(
    ledger_dir: Path, public_key: Path, trusted_heads: tuple[Path, ...], state_dir: Path | None
) -> None:
    """Verify a whole ledger: signatures, Merkle log, state, masks and stored certificates."""
    _report(
        lambda: run_audit(
            ledger_dir, _read(public_key, "public key"), _kept(trusted_heads), state_dir
        )
    )


def main(argv: list[str] | None = None) -> Any:
    try:
        return cli.main(args=argv, prog_name="verifier", standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError:
        message = "missing command (audit or check; see verifier --help)"
    except click.UsageError as exc:
        message = (exc.format_message().splitlines() or [""])[0]
    except click.Abort:
        click.echo("error: aborted", err=True)
        sys.exit(1)
    click.echo(f"error: {message}", err=True)
    sys.exit(2)
