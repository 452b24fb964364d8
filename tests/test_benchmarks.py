"""The benchmark harness end to end at toy sizes: the JSON's shape, not the targets.

Timing targets on a shared machine would make a flaky test; what must hold is
that ``python -m benchmarks --json`` ends with one JSON object of ratios, that
the report's figures carry value, target and met, that a failing group is
reported rather than fatal, and that the docs' table is regenerated from the
report.
"""

from __future__ import annotations

import json
import re
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path

import pytest

import benchmarks.__main__ as bench
from benchmarks import report, status, storage, throughput
from benchmarks.common import STEPS, Built, Figure, Settings, Workspace
from ledger.testing import LedgerFactory

RECORDS = [{"text": "good fun movie", "label": 1}, {"text": "dull boring plot", "label": 0}]


def _boom(_work: Workspace) -> list[Figure]:
    raise RuntimeError("no such machine")


def test_quick_harness_writes_one_json_line_and_the_docs_table(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    ledger_factory: LedgerFactory,
    ledger_base: Path,
    ledger_key: Path,
) -> None:
    settings = replace(Settings.make(quick=True), entries=4096, repeats=1, status_runs=1)
    work = Workspace(tmp_path, settings)
    work.key = ledger_key
    work.bases["tiny"] = ledger_base
    led = ledger_factory(dict.fromkeys(("a", "b", "c"), RECORDS), None)
    work.ledgers["tiny", 3, STEPS] = Built(led, "tiny", {}, {})
    monkeypatch.setattr(bench, "workspace", lambda _settings: nullcontext(work))
    monkeypatch.setattr(
        bench,
        "GROUPS",
        {
            "throughput": throughput.figures,
            "storage": lambda w: storage.figures(w, "tiny", 3),
            "status": status.figures,
            "broken": _boom,
        },
    )
    out = tmp_path / "reports" / "quick.json"

    code = bench.main(["--quick", "--json", "--out", str(out)])

    lines = capsys.readouterr().out.strip().splitlines()
    saved = json.loads(out.read_text(encoding="utf-8"))
    assert code == 1  # the broken group
    assert json.loads(lines[-1]) == {n: f["value"] for n, f in saved["figures"].items()}
    assert {"command", "date", "git_commit", "machine", "mode", "wall_s"} <= saved.keys()
    assert saved["errors"] == {"broken": "RuntimeError: no such machine"}
    assert {
        "merge_vs_numpy_add",
        "digest_vs_sha256_1thread",
        "retained_bytes_over_dense_tiny",
        "mask_payload_bits_per_param_tiny",
        "status_vs_import_duckdb",
    } <= saved["figures"].keys()
    for name, figure in saved["figures"].items():
        assert re.fullmatch(r"(>=|<=) [0-9.]+", figure["target"]), name
        assert isinstance(figure["met"], bool) and isinstance(figure["note"], str)
        assert figure["value"] is None or figure["value"] > 0
        assert any(line.startswith(name) for line in lines[:-1])  # and a table row

    doc = tmp_path / "MEASUREMENTS.md"
    doc.write_text(f"before\n{report.BEGIN}\nstale\n{report.END}\nafter\n", encoding="utf-8")
    args = ["--doc", str(doc), "--reports", str(out.parent)]
    assert report.main([*args, "--check"]) == 1
    assert report.main(args) == 0 and report.main([*args, "--check"]) == 0
    text = doc.read_text(encoding="utf-8")
    assert text.startswith("before\n") and text.endswith("after\n") and "stale" not in text
    assert "| `merge_vs_numpy_add` |" in text and "group `broken` failed" in text


def test_a_figure_is_met_only_on_the_right_side_of_its_target() -> None:
    assert Figure("x", 0.6, ">= 0.6", "").met and not Figure("x", 0.59, ">= 0.6", "").met
    assert Figure("x", 3.0, "<= 3", "").met and not Figure("x", 3.1, "<= 3", "").met
    assert not Figure("x", None, "<= 3", "not measured").to_json()["met"]
