"""``python -m benchmarks.scale``: hundreds of tasks through the commands an operator runs.

The paper's promise is that exact unlearning by merging stays cheap at
hundreds of tasks. This builds a ledger of 500 real MovieLens users on the
tiny model with ``ledger add-many``, unlearns one with ``ledger unlearn``,
and has the verifier ``audit`` the folder and ``check`` the certificate;
then the same for 50 users fine-tuned on MiniLM (real fine-tunes, not
synthetic vectors). Each step is one fresh process, as a user runs it:
wall seconds, peak RSS (of that process alone, see ``peak_rss``) and the
folder's bytes on disk after it. The report goes to
``benchmarks/reports/scale.json`` and ``scale.md`` with the machine, date and
command at the top.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.__main__ import REPORTS, run_info
from benchmarks.common import BIN, peak_rss
from benchmarks.report import scale_table


def _disk(folder: Path) -> int:
    """Bytes the folder's files take on disk (allocated blocks, as du counts)."""
    return sum(p.lstat().st_blocks * 512 for p in folder.rglob("*") if p.is_file())


def _step(name: str, folder: Path, program: str, *args: str | Path) -> dict[str, Any]:
    start = time.perf_counter()
    code, peak = peak_rss(BIN / program, *args)
    wall = time.perf_counter() - start
    if code != 0:
        command = " ".join(str(a) for a in (program, *args))
        raise RuntimeError(f"{name}: `{command}` exited {code}")
    row = {
        "step": name,
        "wall_s": round(wall, 1),
        "peak_rss_MiB": round(peak / 2**20, 1),
        "disk_MiB": round(_disk(folder) / 2**20, 1),
    }
    print(f"  {name}: {row['wall_s']} s, {row['peak_rss_MiB']} MiB peak", file=sys.stderr)
    return row


def run_model(work: Path, model: str, tasks: int) -> dict[str, Any]:
    """init, add-many of ``tasks`` users, unlearn of one, audit, check: one row each."""
    import ledger
    from ledger.data import movielens_tasks, write_jsonl

    base, key, root = work / f"base-{model}", work / "operator.key", work / f"ledger-{model}"
    (ledger.build_tiny if model == "tiny" else ledger.build_minilm)(base)
    if not key.exists():
        ledger.generate_key(key)
    users = movielens_tasks()[:tasks]
    if len(users) < tasks:
        raise RuntimeError(f"MovieLens has {len(users)} users, not {tasks}")
    data = work / f"data-{model}"
    data.mkdir()
    lines = []
    for i, user in enumerate(users):
        path = data / f"user-{i}.jsonl"
        write_jsonl(path, user.train)
        lines.append(json.dumps({"task": f"u{i}", "data": str(path)}) + "\n")
    manifest = work / f"manifest-{model}.jsonl"
    manifest.write_text("".join(lines), encoding="utf-8")
    pub, cert = f"{key}.pub", work / f"unlearn-{model}.dsse.json"
    victim = tasks // 2
    print(f"{model}: {tasks} tasks", file=sys.stderr)
    rows = [
        _step("init", root, "ledger", "init", root, "--base", base, "--key", key),
        _step(f"add-many ({tasks} tasks)", root, "ledger", "add-many", root, "--tasks", manifest),
        _step(
            "unlearn (1 task)",
            root,
            "ledger",
            "unlearn",
            root,
            "--task",
            f"u{victim}",
            "--data",
            data / f"user-{victim}.jsonl",
            "--certificate",
            cert,
        ),
        _step("verifier audit", root, "verifier", "audit", "--ledger", root, "--public-key", pub),
        _step(
            "verifier check",
            root,
            "verifier",
            "check",
            "--ledger",
            root,
            "--certificate",
            cert,
            "--public-key",
            pub,
        ),
    ]
    return {"model": model, "tasks": tasks, "steps": rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scale", description=__doc__)
    parser.add_argument("--tiny-tasks", type=int, default=500)
    parser.add_argument("--minilm-tasks", type=int, default=50)
    parser.add_argument("--out", type=Path, default=REPORTS / "scale.json")
    args = parser.parse_args(argv)
    command = ["python -m benchmarks.scale", *(argv if argv is not None else sys.argv[1:])]
    report: dict[str, Any] = {**run_info([]), "command": " ".join(command)}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ulg-scale-") as tmp:
        runs = [
            run_model(Path(tmp), model, tasks)
            for model, tasks in (("tiny", args.tiny_tasks), ("minilm", args.minilm_tasks))
            if tasks > 0
        ]
    report["wall_s"] = round(time.perf_counter() - started, 1)
    report["runs"] = runs
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    head = (
        f"# Scale run\n\n`{report['command']}` on {report['date']}, commit "
        f"{report['git_commit']}\n\nMachine: `{json.dumps(report['machine'])}`\n\n"
        "Each step is one fresh process; disk is the ledger folder after the step.\n\n"
    )
    table = "\n".join(scale_table(runs))
    args.out.with_suffix(".md").write_text(head + table + "\n", encoding="utf-8")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
