"""Audit reports: Markdown for people, JSON for machines, PNG for the figure.

Every report names the date, the machine (cores, CPU) and the exact command,
so a number can be traced to the run that made it.
"""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from audits.cache import write_json

REPORTS = Path(__file__).resolve().parent / "reports"


def default_folder(quick: bool) -> Path:
    return REPORTS / "quick" if quick else REPORTS


def cpu_model() -> str:
    """The CPU's name: training bits differ between CPUs, so every report names its own."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _commit() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + (" (with uncommitted changes)" if dirty else "")


def run_info(seconds: float) -> dict[str, Any]:
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{os.cpu_count()} cores, {cpu_model()}, "
        f"{platform.system()} {platform.machine()}",
        "command": " ".join(["python -m", f"audits.{Path(sys.argv[0]).stem}", *sys.argv[1:]]),
        "commit": _commit(),
        "wall_seconds": round(seconds),
    }


def header(title: str, info: Mapping[str, Any]) -> list[str]:
    return [
        f"# {title}",
        "",
        f"- date: {info['date']}",
        f"- machine: {info['machine']}",
        f"- command: `{info['command']}`",
        f"- code: commit {info['commit']}",
        f"- wall time of this command: {info['wall_seconds']} s",
        "",
    ]


def table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return [*lines, ""]


def save(out: Path, name: str, markdown: list[str], data: Mapping[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for stem, value in data.items():
        write_json(out / f"{stem}.json", value)
    (out / f"{name}.md").write_text("\n".join(markdown).rstrip() + "\n")


class Plotter(Protocol):
    def __call__(self, figure: Any) -> None: ...


def plot(
    path: Path,
    draw: Plotter,
    size: tuple[float, float],
    rect: tuple[float, float, float, float] = (0, 0.08, 1, 1),
) -> None:
    """``rect``: the part of the figure the panels fill (the rest is for a legend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure = plt.figure(figsize=size)
    figure.set_layout_engine("tight", rect=rect)
    draw(figure)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def colour(index: int) -> Any:
    """The index-th of eleven distinguishable line colours (the darker half of tab20 first)."""
    import matplotlib

    return matplotlib.colormaps["tab20"]((2 * index if index < 10 else 1) / 20)
