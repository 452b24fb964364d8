"""One look per method across every audit figure, and the layout those figures share.

A method keeps its colour, marker and line style in every panel and report, so
a reader learns the legend once: the baselines a merge is judged against are
dashed (greys for the trivial ones, black for Local FT, the upper reference),
the merges solid in distinct colours, and the two SIFT-Masks rules share red.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

STYLE: dict[str, dict[str, Any]] = {
    "zero-shot": {"color": "#bbbbbb", "marker": "x", "linestyle": "--"},
    "majority": {"color": "#999999", "marker": "v", "linestyle": "--"},
    "bias-only": {"color": "#666666", "marker": "^", "linestyle": "--"},
    "local-ft": {"color": "#000000", "marker": "s", "linestyle": "--"},
    "central-ft": {"color": "#8c564b", "marker": "D", "linestyle": "--"},
    "ft-merge": {"color": "#1f77b4", "marker": "o", "linestyle": "-"},
    "sift-masks": {"color": "#d62728", "marker": "o", "linestyle": "-"},
    "sift-masks-count": {"color": "#d62728", "marker": "s", "linestyle": ":"},
    "tall-masks": {"color": "#2ca02c", "marker": "^", "linestyle": "-"},
    "emr": {"color": "#9467bd", "marker": "v", "linestyle": "-"},
    "ties": {"color": "#17becf", "marker": "P", "linestyle": "-"},
}
_OTHER = {"color": "#e377c2", "marker": "*", "linestyle": "-."}


def style(method: str) -> dict[str, Any]:
    """matplotlib keyword arguments for this method's line or points."""
    return {**STYLE.get(method, _OTHER), "markersize": 5, "linewidth": 1.4}


def ordered(methods: Iterable[str]) -> list[str]:
    """Baselines first, then merges, in STYLE's order (unknown names last)."""
    known = list(STYLE)
    return sorted(methods, key=lambda m: (known.index(m) if m in known else len(known), m))


def log_sizes(axes: Any, sizes: Sequence[int]) -> None:
    """A log T axis ticked at the sizes measured, written as plain numbers."""
    axes.set_xscale("log")
    axes.set_xticks(list(sizes))
    axes.set_xticklabels([str(t) for t in sizes])
    axes.minorticks_off()
    axes.set_xlabel("tasks merged T")


def legend_right(figure: Any) -> None:
    """One legend for the figure, outside every panel (the layout leaves it room)."""
    seen: dict[str, Any] = {}
    for axes in figure.axes:
        for handle, label in zip(*axes.get_legend_handles_labels(), strict=True):
            seen.setdefault(label, handle)
    figure.legend(list(seen.values()), list(seen), loc="center right", fontsize=8, frameon=False)
