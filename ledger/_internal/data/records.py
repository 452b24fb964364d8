"""Task data: JSONL records and their hash.

The data hash is an RFC 9162 Merkle root over each record's RFC 8785 form in
file order, so one record's inclusion can later be proven to its owner
without revealing the others.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from ledger._internal.errors import LedgerError
from ledger._internal.log.jcs import canonical, loads_strict
from ledger._internal.log.merkle import merkle_root


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


MAX_LINE_BYTES = 1 << 20  # FORMAT.md §9: a record's line, newline excluded


def _parse_line(line: bytes, number: int, source: str, num_labels: int | None) -> dict[str, Any]:
    where = f"{source}: line {number}"
    if number == 1 and line.startswith(b"\xef\xbb\xbf"):
        raise LedgerError(f"{where}: starts with a UTF-8 byte-order mark; save without BOM")
    try:
        record = loads_strict(line.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise LedgerError(f"{where}: not UTF-8 ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise LedgerError(f"{where}: malformed JSON ({exc.msg})") from None
    except ValueError as exc:
        raise LedgerError(f"{where}: malformed JSON ({exc})") from None
    if not isinstance(record, dict):
        raise LedgerError(f"{where}: not a JSON object")
    for field, kind in (("text", str), ("label", int)):
        if field not in record:
            raise LedgerError(f"{where}: missing field {field!r}")
        value = record[field]
        if not isinstance(value, kind) or isinstance(value, bool):
            raise LedgerError(f"{where}: field {field!r} must be {kind.__name__}")
    label = record["label"]
    if label < 0 or (num_labels is not None and label >= num_labels):
        top = "" if num_labels is None else f" and < {num_labels} (the model's labels)"
        raise LedgerError(f"{where}: label must be >= 0{top}, not {label}")
    return record


def parse_records(
    lines: Iterable[bytes], source: str, num_labels: int | None = None
) -> tuple[tuple[dict[str, Any], ...], list[bytes]]:
    """The records and their RFC 8785 forms (what the data hash covers).

    Lines end at LF; a CR before it is JSON whitespace, so CRLF files give the
    same records, hence the same data hash, as LF files.
    """
    records, forms = [], []
    for number, line in enumerate(lines, start=1):
        if len(line.rstrip(b"\n")) > MAX_LINE_BYTES:
            raise LedgerError(f"{source}: line {number}: longer than {MAX_LINE_BYTES} bytes")
        record = _parse_line(line, number, source, num_labels)
        try:
            forms.append(canonical(record))
        except LedgerError as exc:
            raise LedgerError(f"{source}: line {number}: {exc}") from None
        records.append(record)
    if not records:
        raise LedgerError(f"{source}: empty data file")
    return tuple(records), forms


def _lines(handle: BinaryIO) -> Iterator[bytes]:
    """Lines of at most MAX_LINE_BYTES (+ newline), read so that a longer one costs no memory."""
    while line := handle.readline(MAX_LINE_BYTES + 2):
        yield line


def load_dataset(path: Path, num_labels: int | None = None) -> Dataset:
    try:
        with open(path, "rb") as handle:
            records, forms = parse_records(_lines(handle), str(path), num_labels)
    except OSError as exc:
        raise LedgerError(f"cannot read data file {path}: {exc.strerror}") from exc
    return Dataset(records, merkle_root(forms).hex())
