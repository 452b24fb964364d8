"""Task data: JSONL records and their hash.

The data hash is an RFC 9162 Merkle root over each record's RFC 8785 form in
file order, so one record's inclusion can later be proven to its owner
without revealing the others.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ledger._internal.errors import LedgerError
from ledger._internal.jcs import canonical
from ledger._internal.merkle import merkle_root


@dataclass(frozen=True)
class Dataset:
    records: tuple[dict[str, Any], ...]
    data_hash: str  # hex Merkle root

    @property
    def texts(self) -> list[str]:
        return [r["text"] for r in self.records]

    @property
    def labels(self) -> list[int]:
        return [r["label"] for r in self.records]


def _no_constants(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def parse_records(raw: bytes, source: str) -> tuple[tuple[dict[str, Any], ...], list[bytes]]:
    """The records and their RFC 8785 forms (what the data hash covers)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise LedgerError(f"{source}: not UTF-8 ({exc.reason} at byte {exc.start})") from exc
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if not lines:
        raise LedgerError(f"{source}: empty data file")
    records, forms = [], []
    for number, line in enumerate(lines, start=1):
        try:
            record = json.loads(line, parse_constant=_no_constants)
        except json.JSONDecodeError as exc:
            raise LedgerError(f"{source}: line {number}: malformed JSON ({exc.msg})") from exc
        except ValueError as exc:
            raise LedgerError(f"{source}: line {number}: malformed JSON ({exc})") from exc
        if not isinstance(record, dict):
            raise LedgerError(f"{source}: line {number}: not a JSON object")
        for field, kind in (("text", str), ("label", int)):
            if field not in record:
                raise LedgerError(f"{source}: line {number}: missing field {field!r}")
            value = record[field]
            if not isinstance(value, kind) or isinstance(value, bool):
                raise LedgerError(
                    f"{source}: line {number}: field {field!r} must be {kind.__name__}"
                )
        if record["label"] < 0:
            raise LedgerError(f"{source}: line {number}: label must be >= 0")
        try:
            forms.append(canonical(record))
        except LedgerError as exc:
            raise LedgerError(f"{source}: line {number}: {exc}") from None
        records.append(record)
    return tuple(records), forms


def load_dataset(path: Path) -> Dataset:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise LedgerError(f"cannot read data file {path}: {exc.strerror}") from exc
    records, forms = parse_records(raw, str(path))
    return Dataset(records, merkle_root(forms).hex())
