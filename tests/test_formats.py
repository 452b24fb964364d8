"""Format golden files and known answers: what an outside verifier relies on, byte for byte.

Training digests never appear here (they differ between CPUs); formats do.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger._internal.attest.certificate import sign_certificate
from ledger._internal.attest.dsse import pae
from ledger._internal.data.records import load_dataset, parse_records
from ledger._internal.errors import LedgerError
from ledger._internal.log.merkle import merkle_root
from ledger._internal.log.treehead import sign_head
from ledger._internal.training.signs import sign_vector
from ledger._internal.vectors.digest import CHUNK_BYTES, set_digest
from ledger._internal.vectors.vector import pack_mask, unpack_mask

GOLDEN = Path(__file__).parent / "golden"
FIXED_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))


def test_dsse_pae_vector_from_the_spec() -> None:
    assert pae("http://example.com/HelloWorld", b"hello world") == (
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )


def _hand_tensor_digest(name: str, dtype: str, shape: list[int], data: bytes) -> bytes:
    header = json.dumps(
        {"dtype": dtype, "name": name, "shape": shape}, separators=(",", ":"), ensure_ascii=False
    )
    chunks = [data[i : i + CHUNK_BYTES] for i in range(0, len(data), CHUNK_BYTES)]
    return hashlib.sha256(
        b"ulg:tensor:v1\x00"
        + header.encode()
        + b"\x00"
        + b"".join(hashlib.sha256(c).digest() for c in chunks)
    ).digest()


def test_set_digest_matches_a_hand_computation() -> None:
    tensors: dict[str, np.ndarray[Any, Any]] = {
        "b": np.array([[1, -2], [3, 2**62]], dtype=np.int64),
        "a": np.array([0.5, -1.0], dtype=np.float32),
        "é": np.zeros(0, dtype=np.uint8),
    }
    inner = b"".join(
        _hand_tensor_digest(n, d, s, tensors[n].tobytes())
        for n, d, s in [("a", "F32", [2]), ("b", "I64", [2, 2]), ("é", "U8", [0])]
    )
    expected = hashlib.sha256(b"ulg:tensorset:v1\x00" + struct.pack("<Q", 3) + inner).hexdigest()
    assert set_digest(tensors) == "sha256:" + expected
    assert set_digest(tensors) == set_digest(dict(reversed(list(tensors.items()))))


def test_a_tensor_over_one_chunk_hashes_per_chunk() -> None:
    big = np.arange(CHUNK_BYTES // 8 + 3, dtype=np.int64)
    inner = _hand_tensor_digest("x", "I64", [big.size], big.tobytes())
    expected = hashlib.sha256(b"ulg:tensorset:v1\x00" + struct.pack("<Q", 1) + inner).hexdigest()
    assert set_digest({"x": big}) == "sha256:" + expected
    flipped = big.copy()
    flipped[-1] ^= 1
    assert set_digest({"x": flipped}) != set_digest({"x": big})


def test_sign_vector_is_shake256_bits_little_order() -> None:
    stream = hashlib.shake_256(b"ulg:sign:v1\x00" + struct.pack("<Q", 7) + b"w").digest(2)
    bits = [(stream[i // 8] >> (i % 8)) & 1 for i in range(13)]
    assert sign_vector(7, "w", 13).tolist() == [1 if b else -1 for b in bits]


def test_mask_packing_round_trips_with_zero_padding() -> None:
    q = np.array([[0, 5, -1], [0, 0, 9], [1, 0, 0]], dtype=np.int64)
    packed = pack_mask(q)
    assert packed.tolist() == [0b01100110, 0b00000000]
    assert np.array_equal(unpack_mask(packed, q.shape), q != 0)


def test_data_hash_is_a_merkle_root_of_canonical_records(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_bytes(b'{"text": "b", "label": 1}\n{"label":0,"text":"a","extra":[1,2]}\n')
    dataset = load_dataset(path)
    expected = merkle_root([b'{"label":1,"text":"b"}', b'{"extra":[1,2],"label":0,"text":"a"}'])
    assert dataset.records[1] == {"label": 0, "text": "a", "extra": [1, 2]}
    assert dataset.data_hash == expected.hex()


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "empty data file"),
        (b'{"text": "a", "label": 1}\n{"text": "b"\n', "line 2: malformed JSON"),
        (b'{"text": "a"}\n', "line 1: missing field 'label'"),
        (b'{"label": 1}\n', "line 1: missing field 'text'"),
        (b'{"text": "a", "label": true}\n', "line 1: field 'label' must be int"),
        (b'{"text": "a", "label": -1}\n', "line 1: label must be >= 0"),
        (b"[1, 2]\n", "line 1: not a JSON object"),
        (b'{"text": "a", "label": 1}\n\n', "line 2: malformed JSON"),
        (b'{"text": "a", "label": 1, "w": NaN}\n', "line 1: malformed JSON"),
        (b'{"text": "a", "label": 1, "w": 1e400}\n', "line 1: not representable"),
        (b'{"text": "a", "label": 9007199254740993}\n', "line 1: not representable"),
        (b'{"text": "\\ud800", "label": 1}\n', "line 1: not representable"),
    ],
    ids=[
        "empty",
        "malformed",
        "no-label",
        "no-text",
        "bool-label",
        "negative-label",
        "array",
        "blank-line",
        "nan",
        "infinite-float",
        "int-beyond-2^53",
        "lone-surrogate",
    ],
)
def test_bad_data_is_refused_with_its_line(raw: bytes, message: str) -> None:
    with pytest.raises(LedgerError, match=message):
        parse_records(raw.splitlines(keepends=True), "mem")


def _golden(name: str, produced: bytes) -> None:
    path = GOLDEN / name
    if os.environ.get("ULG_WRITE_GOLDEN") == "1":  # only when a format change is intended
        path.write_bytes(produced)
    assert produced == path.read_bytes(), f"{name} changed: the format changed"


def test_tree_head_golden() -> None:
    leaves = [hashlib.sha256(b"\x00" + bytes([i])).digest() for i in range(5)]
    head = sign_head(FIXED_KEY, "ab" * 32, leaves, "2026-11-30T00:00:00Z")
    _golden("tree_head.json", json.dumps(head.as_json(), indent=2).encode() + b"\n")
    FIXED_KEY.public_key().verify(base64.b64decode(head.signature), head.body.encode())


def test_certificate_envelope_golden() -> None:
    statement = {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": "state.safetensors", "digest": {"sha256": "00" * 32}}],
        "predicateType": "https://unlearning-ledger.dev/certificate/unlearn/v1",
        "predicate": {"task_id": "user-1", "remaining": [], "scale_bits": 40},
    }
    _golden("certificate.dsse.json", sign_certificate(statement, FIXED_KEY))


@pytest.mark.parametrize(
    ("kind", "verifier_fields"),
    [
        ("init", "INIT_FIELDS"),
        ("add", "ADD_FIELDS"),
        ("unlearn", "UNLEARN_FIELDS"),
        ("key_rotation", "ROTATION_FIELDS"),
    ],
)
def test_the_ledgers_event_records_have_the_fields_the_verifier_reads(
    kind: str, verifier_fields: str
) -> None:
    """Two readings of FORMAT.md §6, written apart: the ledger's typed events and the
    verifier's field lists must name the same fields (the optional ones aside: add's readds,
    init's serving_rule)."""
    from dataclasses import fields

    from ledger._internal.log.events import EVENT_TYPES
    from verifier import context, keychain

    (record,) = [t for t in EVENT_TYPES if t.kind == kind]
    expected = getattr(context, verifier_fields, None) or getattr(keychain, verifier_fields)
    ours = {"kind", *(f.name for f in fields(record))} - {context.READDS, context.SERVING_RULE}
    assert ours == set(expected)
