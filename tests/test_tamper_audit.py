"""The tamper audit's quick mode: the report's shape, a clean ledger that passes, and every
tampering detected.

The per-class tests fail, naming the cases, whenever the verifier lets a tampering through:
they are the to-do list the audit exists to produce, not a flaky test.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from audits.tamper import CLASSES, bump, changed, leaves, run, serialiser


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("tamper")
    returned = run(quick=True, out=out, command="pytest tests/test_tamper_audit.py")
    written: dict[str, Any] = json.loads((out / "tamper.json").read_text())
    assert written == json.loads(json.dumps(returned))
    assert (out / "tamper.md").read_text().startswith("# Tamper audit")
    assert not [p for p in out.iterdir() if p.name.startswith(".")], "a temp file was left"
    return written


@pytest.mark.slow
def test_report_shape(report: dict[str, Any]) -> None:
    assert [c["class"] for c in report["classes"]] == list(CLASSES)
    for c in report["classes"]:
        assert isinstance(c["cases"], int) and c["cases"] > 0, c["class"]
        assert isinstance(c["detected"], int) and 0 <= c["detected"] <= c["cases"]
        assert len(c["undetected"]) == c["cases"] - c["detected"]
    assert {"machine", "date", "command"} <= set(report["header"])
    assert all(set(x) == {"case", "reason"} for x in report["excluded"])
    assert {x["case"] for x in report["excluded"]} >= {"file:LOCK", "file:signing_key_path"}


@pytest.mark.slow
def test_the_clean_ledger_passed(report: dict[str, Any]) -> None:
    assert report["clean"]["status"] == "passed" and report["clean"]["checks"] > 0


@pytest.mark.slow
@pytest.mark.parametrize("klass", CLASSES)
def test_every_case_is_detected(report: dict[str, Any], klass: str) -> None:
    (entry,) = [c for c in report["classes"] if c["class"] == klass]
    crashed = {x["case"]: x["error"] for x in entry.get("crashed", [])}
    missed = [
        f"{n} (verifier crashed: {crashed[n]})" if n in crashed else n for n in entry["undetected"]
    ]
    assert entry["detected"] == entry["cases"], (
        f"{klass}: {len(missed)} of {entry['cases']} tamperings undetected:\n  "
        + "\n  ".join(missed)
    )


def test_changes_stay_plausible() -> None:
    """A change that any parser refuses would test the parser, not the verifier's checks."""
    assert bump("sha256:00af") == "sha256:00a0"
    assert bump("sift") == "sifu"
    assert bump("2026-12-31T23:59:59Z") == "2027-01-01T00:00:00Z"
    assert [changed(v) for v in (True, 41, None)] == [False, 42, 0]


def test_leaves_and_styles_are_structural() -> None:
    tree = {"a": [1, {"b": "x"}], "c": {}, "d": []}
    assert [p for p, _ in leaves(tree)] == [("a", 0), ("a", 1, "b"), ("c",), ("d",)]
    text = json.dumps({"z": 1, "a": [2]}, indent=2)
    assert serialiser(text)(json.loads(text)) == text
    assert serialiser('{"a":1,"b":2}')({"b": 3, "a": 1}) == '{"a":1,"b":3}'


def test_the_full_report_is_committed() -> None:
    committed = Path(__file__).resolve().parents[1] / "audits" / "reports" / "tamper.json"
    data = json.loads(committed.read_text())
    assert [c["class"] for c in data["classes"]] == list(CLASSES)
    assert data["header"]["quick"] is False
