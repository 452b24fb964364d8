"""The verifier against committed ledger bytes (tests/assets/ledgers/, written once by
tests/assets/make_ledgers.py with a fixed key): an honest folder, and one folder per
attack holding only the files its attacker changed, laid over a copy of the honest one.

No code of the commit under test wrote these bytes, so a verifier change that stops
accepting an old honest ledger, or starts accepting an old attack, fails here."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import verifier

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
