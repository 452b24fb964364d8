"""Helpers the tests share (fixtures are in conftest.py): the CLI in a fresh process, a
folder's digest, and the two ways tests tamper with a ledger: SQL and a flipped byte."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import duckdb

BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str


def ledger_ok(*args: str | Path) -> None:
    """`ledger` in this process, for fixtures that build a ledger: one torch import per
    test module, not one per command; a command that fails fails the fixture."""
    from ledger.cli import main

    try:
        main([str(a) for a in args])
    except SystemExit as exc:
        assert not exc.code, f"ledger {args[0]} exited with {exc.code}"


def run_cli(tool: str, *args: str | Path) -> Result:
    """The installed console script in a fresh process, exactly as a user runs it."""
    proc = subprocess.run(
        [str(BIN / tool), *map(str, args)], capture_output=True, text=True, check=False
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def tree_digest(root: Path) -> dict[str, str]:
    """Every file's hash under root but the lock file: 'nothing changed' made checkable."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "LOCK"
    }


def sql(led: Path, *statements: str) -> None:
    """Run statements on the ledger's database as an attacker with write access would."""
    con = duckdb.connect(str(led / "ledger.duckdb"))
    for statement in statements:
        con.execute(statement)
    con.close()


def flip_byte(path: Path, offset: int, mask: int = 0x01) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= mask
    path.write_bytes(bytes(data))
