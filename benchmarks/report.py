"""``python -m benchmarks.report [--check]``: docs/MEASUREMENTS.md's figures from the reports.

The table between ``<!-- benchmarks:begin -->`` and ``<!-- benchmarks:end -->``
is written from benchmarks/reports/{full,quick,scale}.json and nothing else, so a
number in the docs always traces to a run's JSON (its command, machine, date
and commit come along). --check exits 1 when the docs are out of date instead
of rewriting them.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

REPORTS = Path(__file__).resolve().parent / "reports"
DOC = REPORTS.parent.parent / "docs" / "MEASUREMENTS.md"
BEGIN, END = "<!-- benchmarks:begin -->", "<!-- benchmarks:end -->"


def _value(figure: Mapping[str, Any]) -> str:
    value = figure["value"]
    return "n/a" if value is None else f"{value:.3g}"


def render_run(report: Mapping[str, Any]) -> list[str]:
    machine = report["machine"]
    load = machine.get("load_average_at_start", []), machine.get("load_average_at_end", [])
    lines = [
        f"### {report['mode'].capitalize()} run",
        "",
        f"- command: `{report['command']}` ({report['wall_s']} s wall)",
        f"- date: {report['date']}; code: commit {report['git_commit']}",
        f"- machine: {machine['cores']} cores, {machine['cpu']}, {machine['memory_GiB']} GiB, "
        f"Python {machine['python']}, numpy {machine['numpy']}, torch {machine['torch']}; "
        f"load average (1, 5, 15 min) {load[0]} at start, {load[1]} at end",
        "",
        "| figure | value | target | met | measured |",
        "|---|---|---|---|---|",
    ]
    for name, figure in report["figures"].items():
        met = "yes" if figure["met"] else "**no**"
        note = str(figure["note"]).replace("|", "\\|")
        lines.append(f"| `{name}` | {_value(figure)} | {figure['target']} | {met} | {note} |")
    lines += [f"| (group `{g}` failed) | | | **no** | {e} |" for g, e in report["errors"].items()]
    return [*lines, ""]


def scale_table(runs: Sequence[Mapping[str, Any]]) -> list[str]:
    """One row per step of each model's scale run (benchmarks/scale.py)."""
    lines = [
        "| model | T | step | wall s | peak RSS MiB | disk MiB |",
        "|---|---:|---|---:|---:|---:|",
    ]
    for r in runs:
        lines += [
            f"| {r['model']} | {r['tasks']} | {s['step']} | {s['wall_s']} "
            f"| {s['peak_rss_MiB']} | {s['disk_MiB']} |"
            for s in r["steps"]
        ]
    return lines


def render_scale(report: Mapping[str, Any]) -> list[str]:
    machine = report["machine"]
    return [
        "### Scale run",
        "",
        f"- command: `{report['command']}` ({report['wall_s']} s wall)",
        f"- date: {report['date']}; code: commit {report['git_commit']}",
        f"- machine: {machine['cores']} cores, {machine['cpu']}, {machine['memory_GiB']} GiB, "
        f"Python {machine['python']}, torch {machine['torch']}",
        "- each step is one fresh process, as an operator runs it; peak RSS is that "
        "process's (add-many: its largest worker's or its own); disk is the ledger "
        "folder after the step",
        "",
        *scale_table(report["runs"]),
        "",
    ]


def render(reports: Sequence[Mapping[str, Any]]) -> str:
    lines = [
        BEGIN,
        "<!-- written by `python -m benchmarks.report` from benchmarks/reports/*.json -->",
        "",
    ]
    for report in reports:
        lines += render_scale(report) if "runs" in report else render_run(report)
    if not reports:
        lines += ["No report yet: run `make bench` or `make bench-quick`.", ""]
    return "\n".join([*lines, END])


def load_reports(folder: Path = REPORTS) -> list[dict[str, Any]]:
    """The full run first (the larger sizes), then the quick one, then the scale run."""
    paths = [folder / "full.json", folder / "quick.json", folder / "scale.json"]
    return [json.loads(p.read_text(encoding="utf-8")) for p in paths if p.is_file()]


def update(text: str, section: str) -> str:
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"the document lacks the {BEGIN} ... {END} markers")
    return text[:start] + section + text[end + len(END) :]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.report", description=__doc__)
    parser.add_argument("--doc", type=Path, default=DOC)
    parser.add_argument("--reports", type=Path, default=REPORTS)
    parser.add_argument("--check", action="store_true", help="exit 1 if the doc is out of date")
    args = parser.parse_args(argv)
    text = args.doc.read_text(encoding="utf-8")
    try:
        new = update(text, render(load_reports(args.reports)))
    except ValueError as exc:
        print(f"error: {args.doc}: {exc}", file=sys.stderr)
        return 2
    if args.check:
        if new != text:
            print(
                f"error: {args.doc} is out of date: run python -m benchmarks.report",
                file=sys.stderr,
            )
            return 1
        return 0
    args.doc.write_text(new, encoding="utf-8")
    print(f"wrote the figures of {len(load_reports(args.reports))} report(s) into {args.doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
