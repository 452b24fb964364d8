"""Digest and merge throughput on one large vector, side by side with their baselines.

Baselines: hashlib SHA-256 over the same bytes (one core) and a plain numpy
int64 add. Reported as ratios, medians of several runs, because these
machines are shared and noisy. Usage: python -m benchmarks.throughput [--entries N]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import time
from collections.abc import Callable

import numpy as np

from ledger.fixedpoint import checked_add, merge, set_digest


def _median_seconds(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entries", type=int, default=100_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    n, r = args.entries, args.repeats
    rng = np.random.default_rng(0)
    q = rng.integers(-(2**40), 2**40, size=n, dtype=np.int64)
    merged = rng.integers(-(2**40), 2**40, size=n, dtype=np.int64)
    gb = q.nbytes / 1e9
    sha = _median_seconds(lambda: hashlib.sha256(memoryview(q)).digest(), r)
    digest = _median_seconds(lambda: set_digest({"x": q}), r)
    add = _median_seconds(lambda: np.add(merged, q), r)
    checked = _median_seconds(lambda: checked_add(merged, q, "x"), r)
    merging = _median_seconds(lambda: merge({"x": merged}, {"x": q}), r)
    rows = {
        "entries": n,
        "cores": os.cpu_count(),
        "hashlib_sha256_GBps": gb / sha,
        "set_digest_GBps": gb / digest,
        "set_digest_vs_hashlib": sha / digest,
        "numpy_add_GBps": gb / add,
        "checked_add_GBps": gb / checked,
        "checked_add_vs_numpy_add": add / checked,
        "merge_add_plus_digest_s": merging + digest,
    }
    print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
