"""Retained vectors in their compact encoding (FORMAT.md §3): every freedom it leaves is refused.

A vector file is decoded to the int64 tensors its digest covers, so an encoding with any
slack (a wider dtype than needed, a stored zero, a count its mask does not have, the other
method's encoding, a key beside the encoding) could carry bytes the digest never sees, or
claim a support the vector lacks. Each test is named after its attack, runs both readers
(`verifier audit` and the ledger's `read_vector`) where both read by meaning, and asserts
the reason each gives, so it fails if the check it names is taken out. Byte layout (a
metadata entry moved) is the tight-file rule of §2, which only the verifier enforces, as
it does for the state.
"""

from __future__ import annotations

import base64
import json
import shutil
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from ledger import LedgerError, open_ledger
from ledger._internal.vectors.encoding import DENSE, NONZERO, encode
from tests.helpers import ledger_ok
from verifier.checks import run_audit

Arrays = dict[str, npt.NDArray[Any]]
_DTYPES = {"int8": "I8", "int16": "I16", "int32": "I32", "float32": "F32", "int64": "I64"}


@pytest.fixture(scope="module")
def made(
    tmp_path_factory: pytest.TempPathFactory,
    tiny_base: Path,
    key: Path,
    task_data: dict[str, Path],
) -> dict[str, Path]:
    """a (ft), b and c (sift) added and retained, in the compact encoding."""

    ledger = ledger_ok

    led = tmp_path_factory.mktemp("vectors") / "led"
    ledger("init", led, "--base", tiny_base, "--key", key)
    for task, method in (("a", "ft"), ("b", "sift"), ("c", "sift")):
        ledger("add", led, "--task", task, "--data", task_data[task], "--method", method)
    (led / "LOCK").unlink(missing_ok=True)
    return {"led": led, "pub": key.with_name(key.name + ".pub")}


@pytest.fixture
def led(made: dict[str, Path], tmp_path: Path) -> Path:
    return Path(shutil.copytree(made["led"], tmp_path / "led"))


def _q(led: Path, task: str) -> Arrays:
    with open_ledger(led) as opened:
        return dict(opened.read_vector(task))


def write_vector(
    path: Path, arrays: Arrays, metadata: dict[str, str] | None, *, metadata_last: bool = False
) -> None:
    """A vector file as an attacker writes it: any tensors, any metadata, tight otherwise."""
    header: dict[str, Any] = {}
    if metadata is not None and not metadata_last:
        header["__metadata__"] = metadata
    offset, blobs = 0, []
    for name in sorted(arrays, key=str.encode):
        data = np.ascontiguousarray(arrays[name]).tobytes()
        header[name] = {
            "dtype": _DTYPES[str(arrays[name].dtype)],
            "shape": list(arrays[name].shape),
            "data_offsets": [offset, offset + len(data)],
        }
        offset += len(data)
        blobs.append(data)
    if metadata is not None and metadata_last:
        header["__metadata__"] = metadata
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"".join(blobs))


def _largest(arrays: Arrays) -> str:
    return max(sorted(arrays), key=lambda n: arrays[n].size)


def _compact(led: Path, task: str, masked: bool = True) -> tuple[Arrays, dict[str, str]]:
    stored, metadata = encode(_q(led, task), masked)
    return dict(stored), metadata


def _refusals(made: dict[str, Path], led: Path, task: str) -> tuple[str, str]:
    """What `verifier audit` says of the vectors, and what the ledger's reader raises."""
    results = run_audit(led, made["pub"].read_bytes())
    failed = {r.name: r.detail for r in results if r.status == "FAIL"}
    try:
        _q(led, task)
        said = "read"
    except LedgerError as exc:
        said = str(exc)
    return failed.get("vectors", "ok"), said


Attack = Callable[[Path], None]


def _widened(led: Path) -> None:
    stored, metadata = _compact(led, "c")
    name = _largest(stored)
    stored[name] = stored[name].astype(np.int64)
    write_vector(led / "vectors/c.safetensors", stored, metadata)


def _zero_at_a_mask_bit(led: Path) -> None:
    stored, metadata = _compact(led, "c")
    stored[_largest(stored)][0] = 0
    write_vector(led / "vectors/c.safetensors", stored, metadata)


def _one_value_dropped(led: Path) -> None:
    stored, metadata = _compact(led, "c")
    name = _largest(stored)
    stored[name] = stored[name][:-1]
    write_vector(led / "vectors/c.safetensors", stored, metadata)


def _sift_stored_dense(led: Path) -> None:
    write_vector(led / "vectors/c.safetensors", *_compact(led, "c", masked=False))


def _ft_stored_as_nonzero(led: Path) -> None:
    stored, _ = _compact(led, "a", masked=True)
    write_vector(led / "vectors/a.safetensors", stored, {"encoding": NONZERO})


def _key_beside_the_encoding(led: Path) -> None:
    """A few bytes of another vector beside the encoding: the header's bound leaves room for
    a handful (a whole vector is refused by the bound before parsing)."""
    stored, metadata = _compact(led, "c")
    kept = base64.b64encode((led / "vectors/b.safetensors").read_bytes()[-3:]).decode()
    write_vector(led / "vectors/c.safetensors", stored, {**metadata, "k": kept})


def _legacy_file_with_one_narrow_tensor(led: Path) -> None:
    q = _q(led, "c")
    name = _largest(q)
    q[name] = q[name].astype(np.int32)
    write_vector(led / "vectors/c.safetensors", q, None)


def _compact_file_with_one_dense_tensor(led: Path) -> None:
    stored, metadata = _compact(led, "c")
    name = _largest(stored)
    stored[name] = _q(led, "c")[name]
    write_vector(led / "vectors/c.safetensors", stored, metadata)


def _more_values_than_entries(led: Path) -> None:
    stored, metadata = _compact(led, "c")
    q = _q(led, "c")
    name = min(sorted(q), key=lambda n: q[n].size)
    stored[name] = np.ones(q[name].size + 1, dtype=np.int8)
    write_vector(led / "vectors/c.safetensors", stored, metadata)


def _float32_where_int32_holds(led: Path) -> None:
    stored, metadata = _compact(led, "c")
    name = _largest(stored)
    stored[name] = stored[name].astype(np.float32)
    write_vector(led / "vectors/c.safetensors", stored, metadata)


def _int64_where_float32_holds(led: Path) -> None:
    """Values past 2^31 (as a longer training gives) with 24 significant bits: F32's."""
    stored, metadata = _compact(led, "c")
    name = _largest(stored)
    stored[name] = stored[name].astype(np.int64) << 12
    write_vector(led / "vectors/c.safetensors", stored, metadata)


def _float32_entry(value: float) -> Attack:
    """An F32 tensor (its other values past 2^31, so F32 is their dtype) with one entry that
    is no int64: a fraction, −0, NaN, 2^63, −∞."""

    def attack(led: Path) -> None:
        stored, metadata = _compact(led, "a", masked=False)
        name = _largest(stored)
        stored[name] = (stored[name].astype(np.int64) << 12).astype(np.float32)
        stored[name].reshape(-1)[0] = value
        write_vector(led / "vectors/a.safetensors", stored, metadata)

    return attack


NOT_INT64 = "stores an F32 that is not an int64 value"
# attack -> (task, a phrase of the verifier's reason, a phrase of the ledger's)
ATTACKS: dict[str, tuple[Attack, str, str, str]] = {
    "float32-where-int32-holds": (
        _float32_where_int32_holds,
        "c",
        "is stored as F32, but its values fit I32",
        "is stored as F32, but its values fit I32",
    ),
    "int64-where-float32-holds": (
        _int64_where_float32_holds,
        "c",
        "is stored as I64, but its values fit F32",
        "is stored as I64, but its values fit F32",
    ),
    "float32-fraction": (_float32_entry(0.5), "a", NOT_INT64, NOT_INT64),
    "float32-negative-zero": (_float32_entry(-0.0), "a", NOT_INT64, NOT_INT64),
    "float32-nan": (_float32_entry(float("nan")), "a", NOT_INT64, NOT_INT64),
    "float32-two-to-the-63": (_float32_entry(2.0**63), "a", NOT_INT64, NOT_INT64),
    "float32-minus-infinity": (_float32_entry(-float("inf")), "a", NOT_INT64, NOT_INT64),
    "wider-dtype-than-needed": (_widened, "c", "but its values fit I", "but its values fit I"),
    "zero-stored-at-a-mask-bit": (
        _zero_at_a_mask_bit,
        "c",
        "stores a zero where its mask says non-zero",
        "stores a zero where its mask says non-zero",
    ),
    "value-count-not-the-mask-popcount": (
        _one_value_dropped,
        "c",
        "but its mask sets",
        "but its mask sets",
    ),
    "sift-vector-stored-dense": (
        _sift_stored_dense,
        "c",
        f'{{"encoding": "{DENSE}"}} is none of',
        "is not a sift vector's",
    ),
    "ft-vector-stored-as-nonzero": (
        _ft_stored_as_nonzero,
        "a",
        f'{{"encoding": "{NONZERO}"}} is none of',
        "is not a ft vector's",
    ),
    "key-beside-the-encoding": (
        _key_beside_the_encoding,
        "c",
        "is none of",
        "is not a sift vector's",
    ),
    "legacy-file-with-one-narrow-tensor": (
        _legacy_file_with_one_narrow_tensor,
        "c",
        "is I32",
        "(legacy I64)",
    ),
    "compact-file-with-one-dense-tensor": (
        _compact_file_with_one_dense_tensor,
        "c",
        "not I8 or I16 or I32 or F32 or I64 [n ≤",
        f"not {NONZERO}",
    ),
    "more-values-than-the-tensor-has-entries": (
        _more_values_than_entries,
        "c",
        "not I8 or I16 or I32 or F32 or I64 [n ≤",
        f"not {NONZERO}",
    ),
}


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_non_canonical_vector_encoding_is_refused(
    made: dict[str, Path], led: Path, attack: str
) -> None:
    mutate, task, verifier_says, ledger_says = ATTACKS[attack]
    mutate(led)
    by_verifier, by_ledger = _refusals(made, led, task)
    assert verifier_says in by_verifier, by_verifier
    assert ledger_says in by_ledger, by_ledger


def test_the_genuine_compact_folder_verifies_and_reads(made: dict[str, Path]) -> None:
    assert _refusals(made, made["led"], "c") == ("ok", "read")
    with open_ledger(made["led"]) as opened:
        for task in "abc":
            assert opened.read_vector(task)  # digest-checked against the add


def test_metadata_moved_after_the_tensors_is_refused(made: dict[str, Path], led: Path) -> None:
    """The same tensors and encoding, the entry moved: a header whose layout has a free
    choice carries bits no digest covers (§2: the metadata comes first)."""
    write_vector(led / "vectors/c.safetensors", *_compact(led, "c"), metadata_last=True)
    by_verifier, _ = _refusals(made, led, "c")
    assert "__metadata__ is not the header's first entry" in by_verifier


def _reorder_entry_keys(path: Path) -> None:
    """The same header text with each tensor entry's keys reversed: same length, same data."""
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    turned = {k: dict(reversed(v.items())) if k != "__metadata__" else v for k, v in header.items()}
    text = json.dumps(turned, separators=(",", ":")).encode()
    assert len(text) <= n and text != raw[8 : 8 + n].rstrip(b" ")
    path.write_bytes(raw[:8] + text.ljust(n) + raw[8 + n :])


@pytest.mark.parametrize(
    "rel", ["vectors/a.safetensors", "vectors/b.safetensors", "masks/b.safetensors"]
)
def test_tensor_entry_keys_reordered_is_refused(made: dict[str, Path], led: Path, rel: str) -> None:
    """Six orders of dtype/shape/data_offsets per tensor: bits no digest covers (in the state
    file they would outlive a deletion); the header has one canonical text (§2)."""
    _reorder_entry_keys(led / rel)
    failed = {r.name: r.detail for r in run_audit(led, made["pub"].read_bytes())}
    assert any("header is not compact JSON" in d for d in failed.values()), failed


def test_state_entry_keys_reordered_is_refused(made: dict[str, Path], led: Path) -> None:
    _reorder_entry_keys(led / "state.safetensors")
    failed = {r.name: r.detail for r in run_audit(led, made["pub"].read_bytes())}
    assert "header is not compact JSON" in failed["state-digest"], failed


def test_dtype_given_as_a_list_is_refused_by_both_readers(made: dict[str, Path], led: Path) -> None:
    """`"dtype": ["I32"]`: a JSON value no dtype name is must end as a refusal, not a crash."""
    path = led / "vectors/c.safetensors"
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    first = next(k for k in header if k != "__metadata__")
    header[first]["dtype"] = [header[first]["dtype"]]
    text = json.dumps(header, separators=(",", ":")).encode()
    text = text.ljust(-(-len(text) // 8) * 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + raw[8 + n :])
    by_verifier, by_ledger = _refusals(made, led, "c")
    assert by_verifier != "ok" and "inconsistent header entry" in by_ledger


def test_a_swapped_mask_misplaces_a_compact_vector(made: dict[str, Path], led: Path) -> None:
    """b's and c's masks swapped: each mask fails its digest, and the compact vectors, whose
    positions are their masks, cannot be decoded from them."""
    b, c = led / "masks/b.safetensors", led / "masks/c.safetensors"
    kept = b.read_bytes()
    b.write_bytes(c.read_bytes())
    c.write_bytes(kept)
    failed = {r.name: r.detail for r in run_audit(led, made["pub"].read_bytes())}
    assert "masks/b.safetensors does not match mask_digest" in failed["masks"]
    assert "vectors/b.safetensors lies at its mask's positions, but" in failed["vectors"]
    with pytest.raises(LedgerError, match="mask of 'b' was altered"):
        _q(led, "b")


def test_a_vector_rewritten_in_the_legacy_encoding_still_verifies(
    made: dict[str, Path], led: Path
) -> None:
    """Folders written before the compact encoding hold dense I64 vectors with no metadata:
    still a valid file, read by both, alone or beside compact ones."""
    for task in "ac":
        write_vector(led / f"vectors/{task}.safetensors", _q(led, task), None)
    assert _refusals(made, led, "c") == ("ok", "read")
    assert _refusals(made, led, "a") == ("ok", "read")


def test_a_sift_vector_is_stored_in_under_half_its_dense_size(made: dict[str, Path]) -> None:
    """Issue 11: ≤ 0.5 of dense int64 for a retained sift vector, masks ≤ 1 bit per entry."""
    led = made["led"]
    with open_ledger(led) as opened:
        numel = sum(int(np.prod(s)) for s in opened.trainable.values())
        names = len(opened.trainable)
    for task in "bc":
        assert (led / f"vectors/{task}.safetensors").stat().st_size <= 0.5 * 8 * numel
        # the packed bits, plus each tensor's padding and a header of under 128 bytes a name
        mask = (led / f"masks/{task}.safetensors").stat().st_size
        assert mask <= numel / 8 + names * (1 + 128)
