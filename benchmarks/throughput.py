"""Merge and digest throughput on one large vector, each against its plain baseline.

The merge's overflow check and the digest's chunking are what the ledger adds
on top of numpy and hashlib; these two ratios say what that costs (or gains).
Digesting, not adding, bounds merge and verify throughput.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from benchmarks.common import Figure, Settings, Workspace, interleaved
from ledger.fixedpoint import Int64Array, checked_add, set_digest


def _vectors(entries: int) -> tuple[Int64Array, Int64Array]:
    """Q and one task vector at the ledger's magnitudes (|q| ≤ 2^40, far from overflow)."""
    rng = np.random.default_rng(0)
    q = rng.integers(-(2**40), 2**40, size=entries, dtype=np.int64)
    merged = rng.integers(-(2**40), 2**40, size=entries, dtype=np.int64)
    return merged, q


def merge_figure(settings: Settings, entries: int | None = None) -> Figure:
    n = entries or settings.entries
    merged, q = _vectors(n)
    plain, checked = interleaved(
        [lambda: np.add(merged, q), lambda: checked_add(merged, q, "x")], settings.repeats
    )
    gb = q.nbytes / 1e9
    return Figure(
        "merge_vs_numpy_add",
        plain / checked,
        ">= 0.6",
        f"ledger.fixedpoint.checked_add vs numpy a + b, {n:,} int64 entries, fresh output "
        f"each (median of {settings.repeats}, interleaved)",
        {"numpy_add_GBps": round(gb / plain, 2), "checked_add_GBps": round(gb / checked, 2)},
    )


def digest_figure(settings: Settings, entries: int | None = None) -> Figure:
    n = entries or settings.entries
    _, q = _vectors(n)
    view = q.data.cast("B")
    half = len(view) // 2

    def two_threads() -> None:
        # The ceiling set_digest could reach on this machine right now: the same bytes
        # hashed as two halves on two threads, so a busy neighbour shows as a low ceiling.
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda v: hashlib.sha256(v).digest(), [view[:half], view[half:]]))

    one, digest, ceiling = interleaved(
        [lambda: hashlib.sha256(view).digest(), lambda: set_digest({"x": q}), two_threads],
        settings.repeats,
    )
    gb = q.nbytes / 1e9
    return Figure(
        "digest_vs_sha256_1thread",
        one / digest,
        ">= 1.8",
        f"ledger.fixedpoint.set_digest (16 MiB chunks on {os.cpu_count()} threads) vs one "
        f"hashlib.sha256 call over the same {q.nbytes / 2**20:.0f} MiB",
        {
            "sha256_1thread_GBps": round(gb / one, 2),
            "set_digest_GBps": round(gb / digest, 2),
            "ceiling_2thread_sha256_vs_1thread": round(one / ceiling, 3),
        },
    )


def figures(work: Workspace) -> list[Figure]:
    return [merge_figure(work.settings), digest_figure(work.settings)]
