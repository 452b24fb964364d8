"""Ed25519 keys: PKCS#8 PEM private keys (0600), SubjectPublicKeyInfo PEM public keys."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from ledger._internal.errors import LedgerError
from ledger._internal.folder.safefs import read_user_file


def generate(path: Path) -> Path:
    if not path.name or path.is_dir():
        raise LedgerError(f"key path {str(path)!r} must name a file", exit_code=2)
    public_path = path.with_name(path.name + ".pub")
    for existing in (path, public_path):
        if existing.exists():
            raise LedgerError(f"refusing to overwrite existing file {existing}")
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    written = []
    try:
        for target, data, mode in ((path, private_pem, 0o600), (public_path, public_pem, 0o644)):
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
            written.append(target)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
    except OSError as exc:
        for target in written:  # no half key pair left behind
            target.unlink(missing_ok=True)
        raise LedgerError(f"cannot write key {exc.filename}: {exc.strerror}") from exc
    return public_path


def load_private(path: Path) -> Ed25519PrivateKey:
    try:
        if path.stat().st_mode & 0o077:
            raise LedgerError(f"private key {path} is readable by others; chmod 600 it")
        key = serialization.load_pem_private_key(read_user_file(path, 1 << 16), password=None)
    except OSError as exc:
        raise LedgerError(f"cannot read key {path}: {exc.strerror}") from exc
    except (ValueError, TypeError) as exc:
        raise LedgerError(f"{path} is not an unencrypted PEM private key") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise LedgerError(f"{path} is not an Ed25519 private key")
    return key


def load_public(path: Path) -> Ed25519PublicKey:
    """A public key the caller trusts (SubjectPublicKeyInfo PEM), to check a folder against."""
    try:
        key = serialization.load_pem_public_key(read_user_file(path, 1 << 16))
    except OSError as exc:
        raise LedgerError(f"cannot read public key {path}: {exc.strerror}") from exc
    except (ValueError, TypeError) as exc:
        raise LedgerError(f"{path} is not a PEM public key") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise LedgerError(f"{path} is not an Ed25519 public key")
    return key


def raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(key: Ed25519PublicKey) -> str:
    return hashlib.sha256(raw_public(key)).hexdigest()


def public_from_hex(hex_key: str) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(bytes.fromhex(hex_key))


def verifies(key: Ed25519PublicKey, signature: bytes, message: bytes) -> bool:
    try:
        key.verify(signature, message)
    except InvalidSignature:
        return False
    return True
