"""Unit tests of the independent verifier's own primitives: Merkle, DSSE, digests, sign vector.

Known answers come from outside this project (RFC 6962/9162 test vectors as used by
transparency-dev/merkle, the DSSE spec) or from hand computations with hashlib, so a
bug shared by `ledger/` and `verifier/` would still be caught here.
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from safetensors.numpy import save_file

from verifier.cli import main
from verifier.dsse import FormatError, b64decode, pae, parse_envelope, parse_jcs, parse_json
from verifier.tensors import (
    Tensor,
    checked_add,
    from_arrays,
    pack_mask,
    read_safetensors,
    set_digest,
    sign_bits,
    sign_violations,
)


def test_dsse_pae_vector_and_envelope() -> None:
    assert pae("http://example.com/HelloWorld", b"hello world") == (
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )
    key = Ed25519PrivateKey.generate()
    payload = b'{"a":1}'
    sig = key.sign(pae("application/vnd.in-toto+json", payload))
    env = {
        "payload": base64.b64encode(payload).decode(),
        "payloadType": "application/vnd.in-toto+json",
        "signatures": [{"keyid": "hint", "sig": base64.b64encode(sig).decode()}],
    }
    assert parse_envelope(env).signed_by(key.public_key())
    env["payloadType"] = "application/json"
    assert not parse_envelope(env).signed_by(key.public_key())
    with pytest.raises(FormatError):
        b64decode("aGVsbG8", "unpadded")
    with pytest.raises(FormatError):
        parse_jcs(b'{"b":1,"a":2}', "unsorted")
    assert parse_jcs(b'{"a":2,"b":[1,"x"]}', "canonical") == {"a": 2, "b": [1, "x"]}


def test_strict_json_refuses_repeated_keys() -> None:
    """Readers disagree on which copy of a repeated key wins, so none is accepted, at any depth."""
    assert parse_json(b'{"a":{"b":1},"c":[{"b":2}]}', "x") == {"a": {"b": 1}, "c": [{"b": 2}]}
    for text in (b'{"a":1,"a":1}', b'{"a":{"b":1,"b":2}}', b'[{"x":0},{"y":1,"y":1}]'):
        with pytest.raises(FormatError, match="duplicate key"):
            parse_json(text, "x")
    with pytest.raises(FormatError, match="duplicate key"):
        parse_jcs(b'{"a":1,"a":1}', "x")


def test_base64_must_be_canonical() -> None:
    """'QQ==' and 'QR==' both decode to b'A' in lenient decoders: only the first is accepted."""
    assert b64decode("QQ==", "x") == b"A"
    for text in ("QR==", "QQ", "QQ==\n", "Q Q==", "QQ=="[::-1]):
        with pytest.raises(FormatError):
            b64decode(text, "x")


def test_envelope_has_exactly_its_fields_and_one_signature() -> None:
    sig = {"keyid": "k", "sig": base64.b64encode(bytes(64)).decode()}
    env = {"payload": "e30=", "payloadType": "t", "signatures": [sig]}
    assert parse_envelope(env).sig == bytes(64)
    short = {**sig, "sig": base64.b64encode(bytes(63)).decode()}
    for bad in (
        {**env, "x": 1},
        {k: v for k, v in env.items() if k != "payloadType"},
        {**env, "signatures": []},
        {**env, "signatures": [sig, sig]},
        {**env, "signatures": [{**sig, "x": 1}]},
        {**env, "signatures": [{"sig": sig["sig"]}]},
        {**env, "signatures": [short]},
    ):
        with pytest.raises(FormatError):
            parse_envelope(bad)


def _hand_tensor_digest(name: str, dtype: str, shape: list[int], data: bytes) -> bytes:
    meta = json.dumps(
        {"dtype": dtype, "name": name, "shape": shape}, separators=(",", ":"), sort_keys=True
    ).encode()
    chunks = b"".join(
        hashlib.sha256(data[i : i + 2**24]).digest() for i in range(0, len(data), 2**24)
    )
    return hashlib.sha256(b"ulg:tensor:v1\x00" + meta + b"\x00" + chunks).digest()


def test_set_digest_by_hand(tmp_path: Path) -> None:
    a = np.array([[1, -2, 3]], dtype=np.int64)
    b = np.array([255, 0], dtype=np.uint8)
    e = np.zeros((0, 4), dtype=np.int64)
    # "Z" sorts first by UTF-8 bytes
    arrays: dict[str, npt.NDArray[Any]] = {"b.w": b, "a.w": a, "Z": e}
    want = hashlib.sha256(
        b"ulg:tensorset:v1\x00"
        + struct.pack("<Q", 3)
        + _hand_tensor_digest("Z", "I64", [0, 4], b"")
        + _hand_tensor_digest("a.w", "I64", [1, 3], struct.pack("<3q", 1, -2, 3))
        + _hand_tensor_digest("b.w", "U8", [2], b"\xff\x00")
    ).hexdigest()
    assert set_digest(from_arrays(arrays)) == "sha256:" + want
    save_file(arrays, str(tmp_path / "t.safetensors"), metadata={"ignored": "yes"})
    loose = read_safetensors(tmp_path / "t.safetensors")
    assert set_digest(loose) == "sha256:" + want
    save_file(arrays, str(tmp_path / "t.safetensors"))  # no metadata: the ledger's own files
    layout = {"Z": ("I64", (0, 4)), "a.w": ("I64", (1, 3)), "b.w": ("U8", (2,))}
    assert set_digest(read_safetensors(tmp_path / "t.safetensors", layout)) == "sha256:" + want


def test_set_digest_chunks_large_tensor() -> None:
    data = bytes(range(256)) * (2**16) + b"tail!"  # 16 MiB + 5 bytes: two chunks
    t = {"big": Tensor("U8", (len(data),), memoryview(data))}
    chunks = hashlib.sha256(data[: 2**24]).digest() + hashlib.sha256(b"tail!").digest()
    meta = b'{"dtype":"U8","name":"big","shape":[16777221]}'
    td = hashlib.sha256(b"ulg:tensor:v1\x00" + meta + b"\x00" + chunks).digest()
    want = hashlib.sha256(b"ulg:tensorset:v1\x00" + struct.pack("<Q", 1) + td).hexdigest()
    assert set_digest(t) == "sha256:" + want
    one_chunk = hashlib.sha256(
        b"ulg:tensor:v1\x00" + meta + b"\x00" + hashlib.sha256(data).digest()
    ).digest()
    assert td != one_chunk


def test_read_safetensors_rejects_tampered_headers(tmp_path: Path) -> None:
    path = tmp_path / "v.safetensors"
    save_file({"w": np.arange(6, dtype=np.int64)}, str(path))
    blob = path.read_bytes()
    for bad in (
        blob[:5],
        blob[:-8],
        b"\xff" * 8 + blob[8:],
        blob.replace(b'"I64"', b'"I32"'),
        blob.replace(b"[6]", b"[7]"),
    ):
        path.write_bytes(bad)
        with pytest.raises(FormatError):
            read_safetensors(path, {"w": ("I64", (6,))})


def _file(text: bytes, data: bytes, extra_pad: int = 0) -> bytes:
    """A safetensors file of this header text, padded so 8 + N is a multiple of 8 (+ extra)."""
    raw = text + b" " * (-len(text) % 8 + extra_pad)
    return struct.pack("<Q", len(raw)) + raw + data


def _safetensors(header: dict[str, Any], data: bytes, extra_pad: int = 0) -> bytes:
    return _file(json.dumps(header, separators=(",", ":")).encode(), data, extra_pad)


def test_strict_read_accounts_for_every_byte(tmp_path: Path) -> None:
    """Ledger files may hold nothing the digest does not cover (FORMAT.md §2)."""
    path = tmp_path / "s.safetensors"
    entry = {"dtype": "I64", "shape": [2], "data_offsets": [0, 16]}
    data = struct.pack("<2q", 5, -5)
    one, two = {"w": ("I64", (2,))}, {"a": ("I64", (2,)), "b": ("I64", (2,))}
    pair = {"a": entry, "b": {**entry, "data_offsets": [16, 32]}}
    good = {
        "plain": (_safetensors({"w": entry}, data), one),
        "two tensors": (_safetensors(pair, data * 2), two),
    }
    for what, (content, layout) in good.items():
        path.write_bytes(content)
        assert set(read_safetensors(path, layout)) == set(layout), what
    compact = json.dumps({"w": entry}, separators=(",", ":")).encode()
    short_pad = struct.pack("<Q", len(compact)) + compact + data
    assert len(compact) % 8, "the case needs a header that is not a multiple of 8 unpadded"
    bad = {
        "metadata": (_safetensors({"__metadata__": {"x": ""}, "w": entry}, data), one),
        "empty metadata": (_safetensors({"__metadata__": {}, "w": entry}, data), one),
        "entry keys reordered": (
            _safetensors({"w": {"shape": [2], "dtype": "I64", "data_offsets": [0, 16]}}, data),
            one,
        ),
        "extra entry key": (_safetensors({"w": {**entry, "x": "hidden"}}, data), one),
        "gap": (_safetensors({"w": {**entry, "data_offsets": [8, 24]}}, b"hidden.." + data), one),
        "overlap": (
            _safetensors({**pair, "b": {**entry, "data_offsets": [8, 24]}}, data + data[:8]),
            two,
        ),
        "names out of order": (_safetensors({"b": pair["a"], "a": pair["b"]}, data * 2), two),
        "data out of name order": (_safetensors({"a": pair["b"], "b": pair["a"]}, data * 2), two),
        "header whitespace": (_file(compact.replace(b'{"w":', b'{ "w":'), data), one),
        "long padding": (_safetensors({"w": entry}, data, extra_pad=8), one),
        "padding short of a multiple of 8": (short_pad, one),
        "dtype of the same size": (_safetensors({"w": {**entry, "dtype": "F64"}}, data), one),
    }
    for what, (content, layout) in bad.items():
        path.write_bytes(content)
        assert read_safetensors(path), what  # valid safetensors all the same
        with pytest.raises(FormatError):
            read_safetensors(path, layout)
    refused_by_both = {
        "trailing bytes": _safetensors({"w": entry}, data + b"hidden"),
        "duplicate key": _file(compact[:-1] + b',"w":' + compact[5:], data),
        "huge tensor, small file": _safetensors(
            {"w": {"dtype": "F32", "shape": [2**30], "data_offsets": [0, 2**32]}}, data
        ),
        "header past the file": struct.pack("<Q", 2**40) + compact,
        "empty tensor of huge dimensions": _safetensors(
            {"w": {"dtype": "I64", "shape": [0, 2**62], "data_offsets": [0, 0]}}, b""
        ),
    }
    for what, content in refused_by_both.items():
        path.write_bytes(content)
        for strict in (False, True):
            with pytest.raises(FormatError):
                read_safetensors(path, one if strict else None)
            assert what


def test_file_rewritten_after_its_header_was_checked_is_refused(tmp_path: Path) -> None:
    """Tensors are read when used, not when the header is checked: a file replaced in
    between (same size, other bytes) must not be read as the file that was checked."""
    path = tmp_path / "v.safetensors"
    save_file({"w": np.arange(6, dtype=np.int64)}, str(path))
    tensor = read_safetensors(path, {"w": ("I64", (6,))})["w"]
    assert tensor.array().tolist() == list(range(6))
    save_file({"w": np.arange(6, dtype=np.int64)[::-1].copy()}, str(path.with_suffix(".new")))
    path.with_suffix(".new").replace(path)
    with pytest.raises(FormatError, match="changed while it was being verified"):
        tensor.array()


def test_sign_vector_by_hand() -> None:
    seed, name, numel = 12345, "bert.encoder.layer.0.output.dense.weight", 21
    stream = hashlib.shake_256(b"ulg:sign:v1\x00" + struct.pack("<Q", seed) + name.encode()).digest(
        3
    )
    want = [bool(stream[i // 8] >> (i % 8) & 1) for i in range(numel)]
    assert sign_bits(seed, name, numel).tolist() == want
    plus = np.array(want)
    q = np.where(plus, 5, -5).astype(np.int64)
    assert sign_violations(q, plus) == 0
    q[0] = -q[0]
    q[1] = np.iinfo(np.int64).min if plus[1] else np.iinfo(np.int64).max
    assert sign_violations(q, plus) == 2


def test_pack_mask_little_bit_order() -> None:
    q = np.array([[0, 7, 0], [0, 0, 0], [0, 0, -1], [0, 0, 0]], dtype=np.int64)  # 12 entries
    assert pack_mask(q).tolist() == [0b0000_0010, 0b0000_0001]  # bits 1 and 8; padding zero


def test_checked_add_detects_overflow() -> None:
    top = np.array([np.iinfo(np.int64).max, 0], dtype=np.int64)
    bottom = np.array([np.iinfo(np.int64).min, 0], dtype=np.int64)
    one = np.array([1, 1], dtype=np.int64)
    with pytest.raises(OverflowError):
        checked_add(top, one, "w")
    with pytest.raises(OverflowError):
        checked_add(bottom, -one, "w")
    assert checked_add(top, -one, "w").tolist() == [np.iinfo(np.int64).max - 1, -1]
    assert checked_add(top, bottom, "w").tolist() == [-1, 0]


def _verifier(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    """`verifier` in this process: its exit code, stdout and stderr."""
    capsys.readouterr()
    try:
        code = main([str(a) for a in args]) or 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_unreadable_inputs_are_error_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = Ed25519PrivateKey.generate().public_key()
    pub = tmp_path / "k.pub"
    pub.write_bytes(
        key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    code, out, err = _verifier(capsys, "audit", "--ledger", tmp_path / "nope", "--public-key", pub)
    assert code == 1 and err.startswith("error: ") and "Traceback" not in out + err
    (tmp_path / "led").mkdir()
    code, _, err = _verifier(capsys, "audit", "--ledger", tmp_path / "led", "--public-key", pub)
    assert code == 1 and "no ledger.duckdb" in err
    (tmp_path / "bad.pub").write_text("not a key")
    code, _, err = _verifier(
        capsys, "audit", "--ledger", tmp_path / "led", "--public-key", tmp_path / "bad.pub"
    )
    assert code == 1 and err.startswith("error: ")
    cert = tmp_path / "c.json"
    for content, message in ((b'{"payload": ', "not JSON"), (b" " * (2**20 + 1), "larger than")):
        cert.write_bytes(content)
        code, _, err = _verifier(
            capsys,
            "check",
            "--ledger",
            tmp_path / "led",
            "--certificate",
            cert,
            "--public-key",
            pub,
        )
        assert code == 1 and message in err and len(err.splitlines()) == 1


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["--bogus"],
        ["bogus"],
        ["audit"],
        ["audit", "--ledger", "x"],
        ["audit", "--ledger"],
        ["audit", "--ledger", "x", "--public-key", "y", "--extra"],
        ["check", "--ledger", "x", "--public-key", "y"],
    ],
    ids=" ".join,
)
def test_cli_usage_errors_are_one_error_line(
    capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    code, out, err = _verifier(capsys, *args)
    assert (code, out) == (2, "")
    assert err.startswith("error: ") and len(err.splitlines()) == 1, err


@pytest.mark.parametrize("args", [["-h"], ["--help"], ["audit", "-h"], ["check", "--help"]])
def test_cli_help_is_printed_with_exit_0(
    capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    code, out, err = _verifier(capsys, *args)
    assert (code, err) == (0, "") and out.startswith("Usage: verifier")
