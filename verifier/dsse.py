"""Ed25519 keys, strict base64, canonical-JSON checks and DSSE v1 envelopes.

Signatures are always checked over the exact stored bytes (PAE of the decoded
payload, or a tree head's body), never over a re-serialisation, so a verifier
cannot be fooled by two encodings of "the same" JSON.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

IN_TOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"


class FormatError(ValueError):
    """Data that does not follow docs/FORMAT.md; reported as a FAIL, never a traceback."""


def load_public_key(pem: bytes) -> Ed25519PublicKey:
    """SubjectPublicKeyInfo PEM → Ed25519 key; anything else is an unusable input."""
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError) as exc:
        raise FormatError(f"not a PEM public key: {exc}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise FormatError(f"not an Ed25519 public key ({type(key).__name__})")
    return key


def _raw(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def raw_hex(key: Ed25519PublicKey) -> str:
    return _raw(key).hex()


def key_id(key: Ed25519PublicKey) -> str:
    """FORMAT.md §7's keyid: hex(SHA-256(raw public key))."""
    return hashlib.sha256(_raw(key)).hexdigest()


def verify_sig(key: Ed25519PublicKey, signature: bytes, message: bytes) -> bool:
    try:
        key.verify(signature, message)
    except InvalidSignature:
        return False
    return True


def b64decode(text: object, what: str) -> bytes:
    """RFC 4648 §4 with padding, in its one canonical form: other alphabets, stray characters
    and non-zero padding bits are refused, so two strings never stand for the same bytes."""
    if not isinstance(text, str):
        raise FormatError(f"{what} is not a base64 string")
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise FormatError(f"{what} is not valid base64: {exc}") from None
    if base64.b64encode(raw).decode("ascii") != text:
        raise FormatError(f"{what} is not canonical base64")
    return raw


def _no_constants(name: str) -> object:
    raise FormatError(f"non-JSON constant {name}")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for k, v in pairs:
        if k in obj:
            raise FormatError(f"duplicate key {k!r}")
        obj[k] = v
    return obj


def parse_json(data: bytes | str, what: str) -> Any:
    """Strict JSON: a duplicated key is refused, since readers disagree on which copy wins;
    bytes must be UTF-8 without a byte-order mark (json.loads would accept UTF-16 or a BOM,
    so two different files would verify as one)."""
    try:
        if isinstance(data, bytes):
            if data.startswith(b"\xef\xbb\xbf"):
                raise FormatError("starts with a byte-order mark")
            data = data.decode("utf-8")
        return json.loads(data, parse_constant=_no_constants, object_pairs_hook=_unique_keys)
    except FormatError as exc:
        raise FormatError(f"{what}: {exc}") from None
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise FormatError(f"{what} is not JSON: {exc}") from None


def fields(obj: object, keys: Collection[str], what: str) -> dict[str, Any]:
    """`obj` as an object with exactly these keys: an unknown field is room for hidden data."""
    if not isinstance(obj, dict):
        raise FormatError(f"{what} is not a JSON object")
    extra, missing = sorted(set(obj) - set(keys)), sorted(set(keys) - set(obj))
    if extra or missing:
        name, kind = (extra[0], "unexpected") if extra else (missing[0], "missing")
        raise FormatError(f"{what}: {kind} field {name!r}")
    return obj


def parse_jcs(data: bytes, what: str) -> Any:
    """Parse JSON that must already be in RFC 8785 form (re-serialise and compare bytes)."""
    value = parse_json(data, what)
    try:
        canonical = rfc8785.dumps(value)
    except Exception as exc:  # rfc8785 raises its own error types for unrepresentable values
        raise FormatError(f"{what} cannot be canonicalised: {exc}") from None
    if canonical != data:
        raise FormatError(f"{what} is not canonical JSON (RFC 8785)")
    return value


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding: what the signature actually covers."""
    t = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)


@dataclass(frozen=True)
class Envelope:
    payload_type: str
    payload: bytes
    keyid: str
    sig: bytes

    def signed_by(self, key: Ed25519PublicKey) -> bool:
        return verify_sig(key, self.sig, pae(self.payload_type, self.payload))


def parse_envelope(obj: object) -> Envelope:
    """Exactly one signature: a second one would be bytes no check looks at."""
    env = fields(obj, ("payload", "payloadType", "signatures"), "envelope")
    ptype = env["payloadType"]
    if not isinstance(ptype, str):
        raise FormatError("envelope payloadType is not a string")
    payload = b64decode(env["payload"], "envelope payload")
    sigs = env["signatures"]
    if not isinstance(sigs, list) or len(sigs) != 1:
        raise FormatError("envelope signatures is not a list of exactly one signature")
    s = fields(sigs[0], ("keyid", "sig"), "envelope signature")
    if not isinstance(s["keyid"], str):
        raise FormatError("envelope signature keyid is not a string")
    sig = b64decode(s["sig"], "envelope signature sig")
    if len(sig) != 64:
        raise FormatError(f"envelope signature is {len(sig)} bytes, not 64")
    return Envelope(ptype, payload, s["keyid"], sig)
