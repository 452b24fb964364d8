"""``ledger status --json`` against the floor any DuckDB reader pays: ``import duckdb``.

A reader that answers in a few hundred milliseconds is one an operator runs
in a loop; one that imports torch is not. The import profile of the same
command (``-X importtime``) names what the remaining time goes to.
"""

from __future__ import annotations

import sys

from benchmarks.common import BIN, Figure, Workspace, interleaved, run

TASKS = 3


def top_imports(args: list[str], count: int = 8) -> list[list[object]]:
    """[package, ms] for the packages whose import costs the command most (-X importtime,
    the largest cumulative time per top-level package name, wherever it was first imported)."""
    code = "import sys; from ledger.cli import main; sys.argv[0] = 'ledger'; main()"
    done = run(sys.executable, "-X", "importtime", "-c", code, *args)
    cost: dict[str, int] = {}
    for line in done.stderr.splitlines():
        parts = line.split("|")
        if not line.startswith("import time:") or len(parts) != 3 or not parts[1].strip().isdigit():
            continue
        package = parts[2].strip().split(".")[0]
        cost[package] = max(cost.get(package, 0), int(parts[1]))
    ranked = sorted(cost.items(), key=lambda item: -item[1])[:count]
    return [[package, round(us / 1000)] for package, us in ranked]


def figures(work: Workspace) -> list[Figure]:
    built = work.ledger("tiny", TASKS)
    status = [str(BIN / "ledger"), "status", str(built.root), "--json"]
    ledger_s, duckdb_s = interleaved(
        [lambda: run(*status), lambda: run(sys.executable, "-c", "import duckdb")],
        work.settings.status_runs,
    )
    return [
        Figure(
            "status_vs_import_duckdb",
            ledger_s / duckdb_s,
            "<= 3",
            f"`ledger status DIR --json` on a {TASKS}-task tiny ledger over "
            f"`python -c 'import duckdb'`, fresh processes, median of "
            f"{work.settings.status_runs} interleaved",
            {
                "status_s": round(ledger_s, 3),
                "import_duckdb_s": round(duckdb_s, 3),
                "top_imports_ms": top_imports(status[1:]),
            },
        )
    ]
