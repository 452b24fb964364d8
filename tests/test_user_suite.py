"""A user's own property tests, written against the installed package only (``ledger``,
``ledger.testing``, ``verifier``), as the README shows: nothing from this repository's
tests or internals."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

import ledger
import verifier
from ledger.data import Record
from ledger.testing import LedgerFactory, Tampering, histories, records, tamperings

# The kit's fixtures (ledger_base, ledger_key, ledger_factory): a user's conftest.py loads them
# with `pytest_plugins = ("ledger.testing",)`, as tests/conftest.py does here.

_slow = settings(max_examples=2, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_slow
@given(records(min_size=2, max_size=6))
def test_the_same_records_give_the_same_vector_in_two_ledgers(
    ledger_factory: LedgerFactory, data: list[Record]
) -> None:
    one, two = (ledger.status(ledger_factory({"t": data}, [("add", "t")])) for _ in range(2))
    assert one["tasks"]["t"]["digest"] == two["tasks"]["t"]["digest"]
    assert one["state_digest"] == two["state_digest"]


@_slow
@given(histories(max_tasks=2, max_operations=3), records(min_size=2, max_size=4))
def test_any_history_verifies_and_its_state_is_the_merge_of_the_active_tasks(
    ledger_factory: LedgerFactory,
    ledger_key: Path,
    operations: list[tuple[str, str]],
    data: list[Record],
) -> None:
    tasks = {task: [{**r, "user": task} for r in data] for _, task in operations}
    led = ledger_factory(tasks, operations)
    report = verifier.verify_ledger(led, Path(f"{ledger_key}.pub"))
    assert report.ok, [r.line() for r in report.failures]
    active = sorted(t for t in tasks if ("unlearn", t) not in operations)
    replayed = ledger_factory(tasks, [("add", t) for t in active])
    assert ledger.status(led)["state_digest"] == ledger.status(replayed)["state_digest"]


@pytest.fixture(scope="module")
def honest(ledger_factory: LedgerFactory) -> Path:
    data = {
        t: [{"text": f"a {w} film", "label": i % 2} for i, w in enumerate(("good", "bad", "dull"))]
        for t in ("a", "b")
    }
    return ledger_factory(data, [("add", "a"), ("add", "b"), ("unlearn", "a")])


@settings(max_examples=12, deadline=None)
@given(tamperings())
def test_every_flipped_bit_is_caught(
    honest: Path, ledger_key: Path, tmp_path_factory: pytest.TempPathFactory, tampering: Tampering
) -> None:
    folder = Path(shutil.copytree(honest, tmp_path_factory.mktemp("tampered") / "led"))
    changed = tampering.apply(folder)
    try:
        report = verifier.verify_ledger(folder, Path(f"{ledger_key}.pub"))
    except verifier.UnreadableInput:
        return  # refused outright: caught
    assert not report.ok, f"a flipped bit in {changed.relative_to(folder)} went unseen"
