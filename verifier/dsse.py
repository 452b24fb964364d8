"""Ed25519 keys, strict base64, canonical-JSON checks and DSSE v1 envelopes.

Signatures are always checked over the exact stored bytes (PAE of the decoded
payload, or a tree head's body), never over a re-serialisation, so a verifier
cannot be fooled by two encodings of "the same" JSON.
"""

from __future__ import annotations

import base64
import binascii
import json
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


def raw_hex(key: Ed25519PublicKey) -> str:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return raw.hex()


def verify_sig(key: Ed25519PublicKey, signature: bytes, message: bytes) -> bool:
    try:
        key.verify(signature, message)
    except InvalidSignature:
        return False
    return True


def b64decode(text: object, what: str) -> bytes:
    """RFC 4648 §4 with padding; other alphabets or stray characters are refused."""
    if not isinstance(text, str):
        raise FormatError(f"{what} is not a base64 string")
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise FormatError(f"{what} is not valid base64: {exc}") from None


def _no_constants(name: str) -> object:
    raise FormatError(f"non-JSON constant {name}")


def parse_json(data: bytes | str, what: str) -> Any:
    try:
        return json.loads(data, parse_constant=_no_constants)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise FormatError(f"{what} is not JSON: {exc}") from None


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
    signatures: list[tuple[str | None, bytes]]  # (keyid hint, raw signature)

    def signed_by(self, key: Ed25519PublicKey) -> bool:
        """True if any signature verifies; keyid is only a hint, so it is not consulted."""
        message = pae(self.payload_type, self.payload)
        return any(verify_sig(key, sig, message) for _, sig in self.signatures)


def parse_envelope(obj: object) -> Envelope:
    if not isinstance(obj, dict):
        raise FormatError("envelope is not a JSON object")
    ptype = obj.get("payloadType")
    if not isinstance(ptype, str):
        raise FormatError("envelope has no string payloadType")
    payload = b64decode(obj.get("payload"), "envelope payload")
    sigs = obj.get("signatures")
    if not isinstance(sigs, list) or not sigs:
        raise FormatError("envelope has no signatures")
    parsed: list[tuple[str | None, bytes]] = []
    for i, s in enumerate(sigs):
        if not isinstance(s, dict):
            raise FormatError(f"signatures[{i}] is not an object")
        keyid = s.get("keyid")
        if keyid is not None and not isinstance(keyid, str):
            raise FormatError(f"signatures[{i}].keyid is not a string")
        parsed.append((keyid, b64decode(s.get("sig"), f"signatures[{i}].sig")))
    return Envelope(ptype, payload, parsed)
