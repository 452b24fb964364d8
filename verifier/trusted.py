"""Heads the auditor already trusts: checkpoints, certificates, and a remembered state.

A self-consistent history re-signed by the key holder passes every other check;
only a head someone kept can show that the folder was rolled back (it is
smaller than the kept head) or forked (its first N leaves have another root).
FORMAT.md §4 gives the checkpoint's signed-note form; a certificate's
`tree_head_after` is a signed head too. `--state DIR` keeps, per log, the
largest head this verifier has accepted, as a TUF client keeps its metadata.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from verifier.context import Context, Fail, fail_if, parse_head
from verifier.dsse import FormatError, parse_envelope, parse_json, raw_hex, verify_sig

ORIGIN_PREFIX = "unlearning-ledger/"


@dataclass(frozen=True)
class TrustedHead:
    size: int
    root: bytes
    log_id: str
    source: str  # what it came from, for messages


def _signers(ctx: Context, size: int) -> list[Ed25519PublicKey]:
    """Who may have signed a kept head of ``size`` (FORMAT.md §4): the key in force at that
    size, and at a rotation's own head also the key it brings in (a checkpoint taken right
    after the rotation: its old key is retired). For a head larger than the folder's (a
    rollback), only the folder's current key: a retired key's checkpoint of a size it never
    signed would otherwise accuse an honest folder of a rollback."""
    if size > len(ctx.raw):
        return [ctx.head_key(ctx.chain.keys[-1][0])]
    return [ctx.head_key(size)] + [
        ctx.head_key(first) for first, _ in ctx.chain.keys if first == size + 1
    ]


def _checkpoint(text: str, ctx: Context, source: str) -> TrustedHead:
    body, sep, sigs = text.partition("\n\n")
    lines = body.split("\n")
    if not sep or len(lines) < 3 or not lines[0].startswith(ORIGIN_PREFIX):
        raise Fail(f"{source}: not a checkpoint signed note")
    origin, size_text, root_b64 = lines[:3]
    if not size_text.isdigit() or (size_text != "0" and size_text.startswith("0")):
        raise Fail(f"{source}: size {size_text!r} is not a decimal number")
    message = (body + "\n").encode()
    for key in _signers(ctx, int(size_text)):
        public = bytes.fromhex(raw_hex(key))
        key_hash = hashlib.sha256(origin.encode() + b"\n\x01" + public).digest()[:4]
        for line in sigs.splitlines():
            name, _, blob = line.removeprefix("\u2014 ").partition(" ")
            try:
                sig = base64.b64decode(blob, validate=True)
            except ValueError:
                continue
            if name == origin and sig[:4] == key_hash and verify_sig(key, sig[4:], message):
                break
        else:
            continue
        break
    else:
        raise Fail(
            f"{source}: no signature by the key the folder's key chain puts in force at size "
            f"{size_text} (a forged checkpoint, or a folder rolled back or forked from before "
            "a key rotation)"
        )
    try:
        root = base64.b64decode(root_b64, validate=True)
    except ValueError:
        raise Fail(f"{source}: root is not base64") from None
    return TrustedHead(int(size_text), root, origin.removeprefix(ORIGIN_PREFIX), source)


def read_trusted(data: bytes, ctx: Context, source: str) -> TrustedHead:
    """A checkpoint note, or a certificate (its tree_head_after), signed by a chain key."""
    text = data.decode("utf-8", errors="replace")
    if text.startswith(ORIGIN_PREFIX):
        return _checkpoint(text, ctx, source)
    try:
        envelope = parse_envelope(parse_json(data, source))
        statement = parse_json(envelope.payload, f"{source} statement")
        head = statement["predicate"]["tree_head_after"]
        claimed = parse_json(head["body"], f"{source} tree_head_after")["size"]
        if type(claimed) is not int or claimed < 1:
            raise FormatError("the head's size is not a positive integer")
    except (FormatError, KeyError, TypeError) as exc:
        raise Fail(f"{source}: neither a checkpoint nor a certificate ({exc})") from None
    what, problems = f"{source} tree_head_after", []
    for key in _signers(ctx, claimed):
        try:
            parsed = parse_head(key, head["body"], head["signature"], what)
        except (Fail, FormatError) as exc:
            problems.append(str(exc))
            continue
        return TrustedHead(parsed.size, parsed.root, parsed.log_id, source)
    raise Fail(problems[0])


def check_trusted(ctx: Context, trusted: list[TrustedHead]) -> None:
    """Each kept head must be a prefix of the folder's log, as its latest head is."""
    latest, problems = ctx.latest_head(), []
    for t in trusted:
        if t.log_id != ctx.log_id:
            problems.append(f"{t.source} is a head of another log ({t.log_id[:16]}…)")
        elif t.size > latest.size:
            problems.append(f"rolled back from size {t.size} to {latest.size} ({t.source})")
        elif not (ctx.in_log(t.size, t.root) and ctx.in_log(latest.size, latest.root)):
            problems.append(f"fork at size {t.size}: {t.source} is not in this history")
    fail_if(problems)


def _state_file(state_dir: Path, log_id: str) -> Path:
    return state_dir / f"{log_id}.json"


def remembered(state_dir: Path, log_id: str) -> list[TrustedHead]:
    path = _state_file(state_dir, log_id)
    if not path.is_file():
        return []
    try:
        kept = json.loads(path.read_text())
        return [TrustedHead(int(kept["size"]), bytes.fromhex(kept["root"]), log_id, str(path))]
    except (OSError, ValueError, KeyError, TypeError):
        raise Fail(f"{path} is not a state this verifier wrote") from None


def remember(state_dir: Path, ctx: Context) -> None:
    """After a passing audit only, and only forward: the largest verified head per log."""
    latest = ctx.latest_head()
    kept = remembered(state_dir, ctx.log_id)
    if kept and kept[0].size >= latest.size:
        return
    state_dir.mkdir(parents=True, exist_ok=True)
    data = json.dumps({"size": latest.size, "root": latest.root.hex()}).encode()
    fd, tmp = tempfile.mkstemp(dir=state_dir, prefix=".state-")
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, _state_file(state_dir, ctx.log_id))
