"""Seconds per ``ledger add`` and ``ledger unlearn`` (median of N), tiny model and MiniLM.

Each timing is the real CLI in a fresh process, as an operator runs it, so it
includes interpreter, torch and model start-up; the replay/add ratio is the
cost of exact unlearning relative to learning. Usage:
python -m benchmarks.add_unlearn [--repeats 3] [--models tiny,minilm]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ledger.data import movielens_tasks, write_jsonl

BIN = Path(sys.executable).parent


def _ledger(*args: str | Path) -> float:
    start = time.perf_counter()
    subprocess.run([str(BIN / "ledger"), *map(str, args)], check=True, capture_output=True)
    return time.perf_counter() - start


def measure(model: str, repeats: int, work: Path) -> dict[str, float]:
    base, key = work / f"base-{model}", work / f"{model}.key"
    _ledger("base", model, base)
    _ledger("keygen", key)
    tasks = [t for t in movielens_tasks() if 100 <= len(t.train) + len(t.test) <= 400]
    adds, unlearns = [], []
    for i in range(repeats):
        led = work / f"{model}-{i}"
        _ledger("init", led, "--base", base, "--key", key)
        data = write_jsonl(work / f"{model}-{i}.jsonl", tasks[i].train)
        adds.append(_ledger("add", led, "--task", "u", "--data", data))
        cert = work / f"{model}-{i}.dsse.json"
        unlearns.append(
            _ledger("unlearn", led, "--task", "u", "--data", data, "--certificate", cert)
        )
    add, unlearn = statistics.median(adds), statistics.median(unlearns)
    return {"add_s": add, "unlearn_s": unlearn, "unlearn_over_add": unlearn / add}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--models", default="tiny,minilm")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        report = {m: measure(m, args.repeats, Path(tmp)) for m in args.models.split(",")}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
