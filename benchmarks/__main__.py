"""``python -m benchmarks [--quick] [--json] [--only GROUP,...]``: every figure, one run.

Human-readable table lines as each group finishes; with --json the last line
of stdout is one JSON object of ratios, figure name -> value (null where a
figure could not be measured). The report, run info and then ``figures``
(name -> value, target, met, what was measured), goes to --out or, for a
whole run, benchmarks/reports/{quick,full}.json, which ``python -m benchmarks.report``
turns into docs/MEASUREMENTS.md's table. --quick (under 3 minutes on 2 cores)
uses smaller vectors, fewer repeats and the tiny model except for the MiniLM
training step.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

from audits.report import cpu_model
from benchmarks import add_many, add_unlearn, sift_step, status, storage, throughput, verify
from benchmarks.common import Figure, Settings, Workspace, dumps, workspace

REPORTS = Path(__file__).resolve().parent / "reports"
ROOT = REPORTS.parent.parent


def _storage(work: Workspace) -> list[Figure]:
    return [f for m, t in work.settings.unlearn_models for f in storage.figures(work, m, t)]


# In this order: throughput before torch is loaded; storage and verify read the T=20 ledger
# that add_unlearn then changes; add_many last, as it may not exist yet.
GROUPS: dict[str, Callable[[Workspace], list[Figure]]] = {
    "throughput": throughput.figures,
    "sift_step": sift_step.figures,
    "storage": _storage,
    "verify": verify.figures,
    "status": status.figures,
    "add_unlearn": add_unlearn.figures,
    "add_many": add_many.figures,
}


def _git(*args: str) -> str:
    try:
        done = subprocess.run(["git", *args], capture_output=True, text=True, cwd=ROOT, check=True)
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return done.stdout.strip()


def _memory_gib() -> float | None:
    try:
        total = Path("/proc/meminfo").read_text().splitlines()[0].split()[1]
    except (OSError, IndexError):
        return None
    return round(int(total) / 2**20, 1)


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "absent"


def run_info(argv: list[str]) -> dict[str, Any]:
    """Where and from what code the figures come: a ratio means little without its machine."""
    dirty = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "command": " ".join(["python -m benchmarks", *argv]),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "git_commit": _git("rev-parse", "HEAD") + (" (with uncommitted changes)" if dirty else ""),
        "machine": {
            "cores": os.cpu_count(),
            "cpu": cpu_model(),
            "memory_GiB": _memory_gib(),
            "system": f"{platform.system()} {platform.machine()}",
            "python": platform.python_version(),
            "numpy": _version("numpy"),
            "torch": _version("torch"),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        },
    }


def row(figure: Figure) -> str:
    value = "n/a" if figure.value is None else f"{figure.value:.3g}"
    mark = "met" if figure.met else "NOT MET"
    return f"{figure.name:<52} {value:>8}  {figure.target:<8} {mark:<8} {figure.note}"


def collect(
    work: Workspace, groups: list[str], emit: Callable[[str], None]
) -> tuple[dict[str, Any], dict[str, str]]:
    """Run the groups in order; a group that fails is reported, not fatal to the others."""
    figures: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for group in groups:
        start = time.perf_counter()
        try:
            found = GROUPS[group](work)
        except Exception as exc:  # a broken group must not hide the other figures
            errors[group] = f"{type(exc).__name__}: {exc}"
            emit(f"{group}: FAILED ({errors[group]})")
            traceback.print_exc(file=sys.stderr)
            continue
        for figure in found:
            figures[figure.name] = figure.to_json()
            emit(row(figure))
        emit(f"  ({group}: {time.perf_counter() - start:.1f} s)")
    return figures, errors


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="under 3 minutes on 2 cores")
    parser.add_argument("--json", action="store_true", help="last stdout line: one JSON object")
    parser.add_argument("--only", help=f"comma-separated groups of {', '.join(GROUPS)}")
    parser.add_argument("--out", type=Path, help="report file (default: reports/MODE.json)")
    args = parser.parse_args(argv)
    groups = args.only.split(",") if args.only else list(GROUPS)
    unknown = [g for g in groups if g not in GROUPS]
    if unknown:
        parser.error(f"unknown group(s) {', '.join(unknown)}; choose from {', '.join(GROUPS)}")
    settings = Settings.make(args.quick)
    report = {**run_info(argv), "mode": "quick" if args.quick else "full"}
    print(f"benchmarks ({report['mode']}): {report['git_commit']}, {report['date']}", flush=True)
    print(f"{'figure':<52} {'value':>8}  {'target':<8} {'':<8} measured", flush=True)
    start = time.perf_counter()
    with workspace(settings) as work:
        figures, errors = collect(work, groups, lambda line: print(line, flush=True))
    report["wall_s"] = round(time.perf_counter() - start, 1)
    report["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    report["errors"] = errors
    report["figures"] = figures
    out = args.out or (None if args.only else REPORTS / f"{report['mode']}.json")
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(dumps(report, indent=2) + "\n", encoding="utf-8")
    met = sum(1 for f in figures.values() if f["met"])
    failed = f"; {len(errors)} group(s) failed" if errors else ""
    print(f"{met} of {len(figures)} targets met in {report['wall_s']} s{failed}", flush=True)
    if args.json:
        print(dumps({name: f["value"] for name, f in figures.items()}), flush=True)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
