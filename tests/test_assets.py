"""The verifier against committed ledger bytes (tests/assets/ledgers/, written once by
tests/assets/make_ledgers.py with a fixed key): an honest folder, and one folder per
attack holding only the files its attacker changed, laid over a copy of the honest one.

No code of the commit under test wrote these bytes, so a verifier change that stops
accepting an old honest ledger, or starts accepting an old attack, fails here."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import verifier
from tests.assets.make_ledgers import fixed_key
from tests.helpers import Result

ASSETS = Path(__file__).parent / "assets" / "ledgers"
KEY = ASSETS / "operator.key.pub"

# attack folder -> the checks it must fail, each with a phrase of its reason
ATTACKS = {
    "vector-merged-back-into-state": {
        "state-digest": "state.safetensors has digest",
        "state-sum": "Q differs from the sum of active vectors",
        "state-support": "is not the union of the active masks",
    },
    "deleted-vector-kept": {"deleted-files": "vectors/a.safetensors still exists"},
    "mask-swapped": {"masks": "masks/b.safetensors does not match mask_digest"},
    "certificate-resigned-by-stranger": {
        "certificate-files": "certificates/3.dsse.json is missing or differs from its row"
    },
}


def _folder(tmp_path: Path, attack: str | None) -> Path:
    led = Path(shutil.copytree(ASSETS / "honest", tmp_path / "led"))
    if attack is not None:
        shutil.copytree(ASSETS / attack, led, dirs_exist_ok=True)
    return led


def test_every_attack_folder_is_tested() -> None:
    folders = {p.name for p in ASSETS.iterdir() if p.is_dir()}
    assert folders == {"honest", *ATTACKS}


def test_the_honest_folder_and_its_certificate_verify(tmp_path: Path) -> None:
    led = _folder(tmp_path, None)
    report = verifier.verify_ledger(led, KEY)
    assert report.ok, [r.line() for r in report.failures]
    (certificate,) = (led / "certificates").iterdir()
    checked = verifier.verify_certificate(led, certificate, KEY)
    assert checked.ok, [r.line() for r in checked.failures]


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_each_attack_fails_exactly_its_checks(tmp_path: Path, attack: str) -> None:
    report = verifier.verify_ledger(_folder(tmp_path, attack), KEY)
    failed = {r.name: r.detail for r in report.failures}
    assert set(failed) == set(ATTACKS[attack]), failed
    for name, phrase in ATTACKS[attack].items():
        assert phrase in failed[name]


def test_an_old_folder_still_works_with_the_ledger_commands(
    tmp_path: Path, task_data: dict[str, Path], ledger_cli: Callable[..., Result]
) -> None:
    """honest/ predates the compact vector encoding (FORMAT.md §3): its b is dense I64 with no
    metadata. The commands go on with it: a new task is stored compact beside it, both read
    back as the vectors signed at their adds, the folder verifies, and the new task unlearns.
    (b itself cannot be replayed here: the assets were trained on another CPU.)"""
    from ledger import open_ledger

    led = _folder(tmp_path, None)
    key = tmp_path / "operator.key"
    fixed_key(key)
    args = ("--key", key)
    added = ledger_cli("add", led, "--task", "c", "--data", task_data["c"], "--steps", "2", *args)
    assert added.code == 0, added.err
    assert b'"encoding":"ulg:nonzero:v1"' in (led / "vectors/c.safetensors").read_bytes()[:200]
    assert b"__metadata__" not in (led / "vectors/b.safetensors").read_bytes()[:200]
    assert ledger_cli("status", led, "--public-key", KEY).code == 0
    assert ledger_cli("export", led, tmp_path / "b", "--task", "b", "--public-key", KEY).code == 0
    with open_ledger(led) as opened:
        vectors = {t: opened.read_vector(t) for t in "bc"}
        state = opened.read_state()
    assert all(np.array_equal(state[n], vectors["b"][n] + vectors["c"][n]) for n in state)
    assert verifier.verify_ledger(led, KEY).ok
    cert = tmp_path / "c.dsse.json"
    done = ledger_cli(
        "unlearn", led, "--task", "c", "--data", task_data["c"], "--certificate", cert, *args
    )
    assert done.code == 0, done.err
    assert verifier.verify_ledger(led, KEY).ok
    assert verifier.verify_certificate(led, cert, KEY).ok
