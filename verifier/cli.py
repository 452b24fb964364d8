"""`verifier check` and `verifier audit` (docs/CLI.md): one line per check and a summary, or
with ``--json`` one JSON object; exit 1 on any FAIL.

Unreadable inputs are an `error:` line on stderr with exit 1, usage errors one
with exit 2 (click runs without its own handling, which would print a usage
block). A last-resort handler turns any unforeseen exception into an `error:`
line too, because an auditor's tool must not answer tampering with a traceback.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click

from verifier.context import printable
from verifier.ledger_reader import UnreadableInput
from verifier.report import Report, verify_certificate, verify_ledger, verify_served


def _first_line(exc: Exception) -> str:
    return printable((str(exc).strip().splitlines() or [""])[0])


def _report(run: Callable[[], Report], as_json: bool) -> None:
    try:
        report = run()
        _print(report, as_json)
    except UnreadableInput as exc:
        click.echo(f"error: {_first_line(exc)}", err=True)
        sys.exit(1)
    except Exception as exc:
        click.echo(
            f"error: verification could not complete: {type(exc).__name__}: {_first_line(exc)}",
            err=True,
        )
        sys.exit(1)
    failed = report.failures
    if failed:
        first = failed[0].line().removeprefix("FAIL: ")
        click.echo(
            f"error: verification failed: {len(failed)} check(s) failed, first {first}", err=True
        )
        sys.exit(1)


def _print(report: Report, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
    else:
        for r in report.results:
            click.echo(r.line())
        click.echo(report.summary())


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


_json = click.option(
    "--json", "as_json", is_flag=True, help="One JSON object: ok, summary and every check."
)


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
@_json
def check(
    ledger_dir: Path,
    certificate: Path,
    public_key: Path,
    trusted_heads: Sequence[Path],
    as_json: bool,
) -> None:
    """Verify one unlearning certificate against a ledger, and that the deletion holds now."""
    _report(lambda: verify_certificate(ledger_dir, certificate, public_key, trusted_heads), as_json)


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
@_json
def audit(
    ledger_dir: Path,
    public_key: Path,
    trusted_heads: Sequence[Path],
    state_dir: Path | None,
    as_json: bool,
) -> None:
    """Verify a whole ledger: signatures, Merkle log, state, masks and stored certificates."""
    _report(lambda: verify_ledger(ledger_dir, public_key, trusted_heads, state_dir), as_json)


@cli.command()
@_ledger
@click.option("--task", "task_id", required=True, help="The task whose served model it is.")
@click.option(
    "--model",
    "model_dir",
    required=True,
    type=click.Path(path_type=Path),
    help="A folder written by `ledger export`.",
)
@_key
@_trusted
@_json
def served(
    ledger_dir: Path,
    task_id: str,
    model_dir: Path,
    public_key: Path,
    trusted_heads: Sequence[Path],
    as_json: bool,
) -> None:
    """Verify that an exported model is exactly the ledger's served model for TASK at the
    head its model card names: θ0 plus the serving rule applied to Q, bit for bit."""
    _report(
        lambda: verify_served(ledger_dir, task_id, model_dir, public_key, trusted_heads), as_json
    )


def main(argv: list[str] | None = None) -> Any:
    try:
        return cli.main(args=argv, prog_name="verifier", standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError:
        message = "missing command (audit, check or served; see verifier --help)"
    except click.UsageError as exc:
        message = (exc.format_message().splitlines() or [""])[0]
    except click.Abort:
        click.echo("error: aborted", err=True)
        sys.exit(1)
    click.echo(f"error: {message}", err=True)
    sys.exit(2)
