"""What every check shares: results, field validation, the event replay and vector access.

The replay is lenient on purpose: it records each problem and carries on, so
one tampered event yields FAIL lines for what it breaks, not a crash that
hides every other finding.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, TypeVar, cast

import numpy as np
import numpy.typing as npt
import rfc8785
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from verifier.dsse import FormatError, b64decode, fields, parse_jcs, parse_json, verify_sig
from verifier.keychain import ROTATION, Chain, build_chain
from verifier.ledger_reader import LedgerDB
from verifier.merkle import leaf_hash, prefix_roots
from verifier.tensors import (
    Arrays,
    I64Array,
    Tensor,
    checked_add,
    from_arrays,
    read_safetensors,
    set_digest,
    set_hasher,
    sign_bits,
    tensor_digest,
)
from verifier.vectors import StoredVector, read_vector

DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}")
HEX_RE = re.compile(r"[0-9a-f]{64}")
TASK_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
TIME_RE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")
HEAD_TYPE = "ulg/tree-head/v1"
JCS_INT = 2**53


def names(text: str) -> tuple[str, ...]:
    """A field list written as one string, so the format's lists read as they do in FORMAT.md."""
    return tuple(text.split())


# FORMAT.md §6 and §10: every field of each event and spec, no other.
INIT_FIELDS = names(
    "kind seq format time base_digest base_files sign_seed scale_bits threads public_key "
    "retain_vectors trainable state_digest"
)
ADD_FIELDS = names(
    "kind seq time task_id method data_hash n_records spec determinism vector_digest "
    "mask_digest state_digest_before state_digest_after active_after"
)
UNLEARN_FIELDS = names(
    "kind seq time task_id data_hash vector_digest replayed_digest state_digest_before "
    "state_digest_after active_after"
)
READDS = "readds"  # the one optional add field: which deletions the add knowingly reverses
SERVING_RULE = "serving_rule"  # the one optional init field (absent: "mean"; FORMAT.md §3)
RULES = ("mean", "count", "sum")
SPEC_FIELDS = names("method seed steps lr batch_size max_length threads sign_seed")
NOT_RETAINED = "not retained"
T = TypeVar("T")


@dataclass(frozen=True)
class CheckResult:
    name: str
    status: Literal["ok", "FAIL", "skipped"]
    detail: str = ""

    def line(self) -> str:
        """One printable line: a name from the folder may hold any code point (a lone
        surrogate, a control character) that the terminal's encoding cannot print."""
        detail = " ".join(self.detail.split())
        return printable(f"{self.status}: {self.name}" + (f": {detail}" if detail else ""))


def printable(text: str) -> str:
    """The text, or its ASCII escape when it holds what a terminal cannot print (a lone
    surrogate from a file name, a control character): a report line never raises."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("ascii", "backslashreplace").decode("ascii")
    if text.isprintable():
        return text
    return text.encode("ascii", "backslashreplace").decode("ascii")


class Fail(Exception):
    """Raised inside a check: the check FAILs with this reason."""


class Skip(Exception):
    """Raised inside a check: the check could not run on this ledger (e.g. vectors not retained)."""


def run_one(name: str, fn: Callable[[], str | None]) -> CheckResult:
    """Run one check; tampered data of any shape must end as a FAIL line, never a traceback.
    A check that passes may say something an auditor should know (its return value)."""
    try:
        note = fn()
    except Skip as exc:
        return CheckResult(name, "skipped", str(exc))
    except (Fail, FormatError, OverflowError) as exc:
        return CheckResult(name, "FAIL", str(exc))
    except Exception as exc:
        return CheckResult(name, "FAIL", f"unexpected data ({type(exc).__name__}: {exc})")
    return CheckResult(name, "ok", note or "")


def fail_if(problems: list[str]) -> None:
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise Fail("; ".join(problems[:3]) + more)


def get(obj: object, key: str, typ: type | tuple[type, ...], what: str) -> Any:
    """A typed field; bools are not accepted as ints (JSON true is not 1 here)."""
    if not isinstance(obj, dict) or key not in obj:
        raise Fail(f"{what} has no {key!r}")
    value = obj[key]
    if not isinstance(value, typ) or (isinstance(value, bool) and typ is int):
        raise Fail(f"{what}: {key!r} has the wrong type")
    return value


def get_int(obj: object, key: str, lo: int, hi: int, what: str) -> int:
    """An int in [lo, hi): JCS integers stop at 2^53, and every count here has a floor."""
    value: int = get(obj, key, int, what)
    if not lo <= value < hi:
        raise Fail(f"{what}: {key!r} is {value}, outside [{lo}, {hi})")
    return value


def get_re(obj: object, key: str, pattern: re.Pattern[str], what: str) -> str:
    value: str = get(obj, key, str, what)
    if not pattern.fullmatch(value):
        raise Fail(f"{what}: {key!r} is malformed ({value!r})")
    return value


def get_time(obj: object, what: str) -> str:
    """A `time` that is a real UTC second; fixed width, so string order is time order."""
    value = get_re(obj, "time", TIME_RE, what)
    try:
        datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ")
    except ValueError:
        raise Fail(f"{what}: time {value!r} is not a real date and time") from None
    return value


def same_json(a: Any, b: Any) -> bool:
    """Equal as signed JSON (JCS bytes): Python's == would call `true` equal to `1`."""
    try:
        return bool(rfc8785.dumps(a) == rfc8785.dumps(b))
    except Exception:  # rfc8785 raises its own types for values JSON cannot hold
        return False


@dataclass(frozen=True)
class HeadBody:
    size: int
    root: bytes
    log_id: str
    time: str


def parse_head(key: Ed25519PublicKey, body: object, signature: object, what: str) -> HeadBody:
    """Verify the signature over the stored body bytes first, then read size and root from them."""
    if not isinstance(body, str):
        raise Fail(f"{what}: body is not a string")
    sig = b64decode(signature, f"{what} signature")
    if len(sig) != 64 or not verify_sig(key, sig, body.encode("utf-8")):
        raise Fail(f"{what}: signature does not verify")
    obj = parse_jcs(body.encode("utf-8"), f"{what} body")
    if not isinstance(obj, dict) or set(obj) != {"log_id", "root", "size", "time", "type"}:
        raise Fail(f"{what}: body does not have exactly log_id, root, size, time, type")
    if obj["type"] != HEAD_TYPE:
        raise Fail(f"{what}: type is {obj['type']!r}")
    time = get_time(obj, what)
    size: int = get(obj, "size", int, what)
    root = bytes.fromhex(get_re(obj, "root", HEX_RE, what))
    return HeadBody(size, root, get_re(obj, "log_id", HEX_RE, what), time)


@dataclass
class TaskInfo:
    method: str
    status: str
    add_seq: int
    unlearn_seq: int | None
    data_hash: str
    vector_digest: str
    mask_digest: str | None
    n_records: int


@dataclass
class Replay:
    tasks: dict[str, TaskInfo] = field(default_factory=dict)
    active: set[str] = field(default_factory=set)
    history: list[tuple[int, frozenset[str], str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    readds: list[str] = field(default_factory=list)  # announced re-adds of deleted data


def replay(events: list[dict[str, Any]], zero_digest: str | None) -> Replay:
    """Re-derive tasks, active sets and the state-digest chain from the signed events alone.

    `zero_digest` is the digest of an all-zero vector set (the trainable shapes):
    adding or subtracting any other vector must change Q, so an event whose state
    digest stays put while its task's vector is not zero claims arithmetic that
    never happened (e.g. an unlearn that left the task merged).
    """
    r = Replay()
    try:
        _check_init(events[0] if events else {})
    except (Fail, FormatError) as exc:
        r.problems.append(f"event 0: {exc}")
    prev = events[0].get("state_digest") if events else None
    for seq, ev in enumerate(events[1:], start=1):
        if ev.get("kind") == ROTATION:
            continue  # no task, no state: the key chain (verifier/keychain.py) checks it
        try:
            _apply(r, seq, ev, prev, events[0])
            info = r.tasks[ev["task_id"]]
            if ev["state_digest_after"] == prev and info.vector_digest != zero_digest:
                raise Fail("the state digest did not change, but the task's vector is not zero")
        except Exception as exc:
            r.problems.append(f"event {seq}: {exc}")
        prev = ev.get("state_digest_after")
    return r


def _check_init(init: dict[str, Any]) -> None:
    w = "init event"
    fields(init, INIT_FIELDS + ((SERVING_RULE,) if SERVING_RULE in init else ()), w)
    if init.get(SERVING_RULE, "mean") not in RULES:
        raise Fail(f"serving_rule is none of {', '.join(RULES)}")
    if init["kind"] != "init":
        raise Fail("event 0 is not an init event")
    get_int(init, "sign_seed", 0, JCS_INT, w)
    get_int(init, "scale_bits", 0, 63, w)
    get_int(init, "threads", 1, 2**31, w)
    get_re(init, "base_digest", DIGEST_RE, w)
    get_re(init, "state_digest", DIGEST_RE, w)
    get(init, "retain_vectors", bool, w)
    get(init, "base_files", dict, w)


# One branch per rule of FORMAT.md §6, in its order, so a reader checks them side by side.
def _apply(  # noqa: C901, PLR0912, PLR0915
    r: Replay, seq: int, ev: dict[str, Any], prev: object, init: dict[str, Any]
) -> None:
    if not ev:
        raise Fail("payload is not a JSON object")
    what = f"{ev.get('kind')} event"
    try:
        # recorded, not raised: the event still replays, so later events are judged on their own
        expected = ADD_FIELDS if ev.get("kind") == "add" else UNLEARN_FIELDS
        fields(ev, expected + ((READDS,) if ev.get("kind") == "add" and READDS in ev else ()), what)
    except FormatError as exc:
        r.problems.append(f"event {seq}: {exc}")
    tid = get_re(ev, "task_id", TASK_RE, what)
    if ev.get("kind") == "add":
        if tid in r.tasks:
            raise Fail(f"task {tid} was already added at seq {r.tasks[tid].add_seq}")
        method = get(ev, "method", str, what)
        if method not in ("sift", "ft"):
            raise Fail(f"unknown method {method!r}")
        mask = get_re(ev, "mask_digest", DIGEST_RE, what) if method == "sift" else None
        if method == "ft" and ev.get("mask_digest", 0) is not None:
            raise Fail("an ft task must have mask_digest null")
        spec = fields(ev["spec"], SPEC_FIELDS, f"{what} spec")
        get_int(spec, "seed", 0, JCS_INT, f"{what} spec")
        bad = [k for k in ("sign_seed", "threads") if spec.get(k) != init.get(k)]
        if spec.get("method") != method or bad:
            raise Fail(f"spec disagrees with the event or ledger on {bad or ['method']}")
        record = fields(ev["determinism"], ("spec", "fixed", "environment"), f"{what} determinism")
        get(record, "fixed", dict, f"{what} determinism")
        get(record, "environment", dict, f"{what} determinism")
        if not same_json(get(record, "spec", dict, what), spec):
            # recorded, not raised: the task itself is well-formed, so later events still replay
            r.problems.append(f"event {seq}: determinism.spec differs from the event's spec")
        r.tasks[tid] = TaskInfo(
            method,
            "active",
            seq,
            None,
            get_re(ev, "data_hash", HEX_RE, what),
            get_re(ev, "vector_digest", DIGEST_RE, what),
            mask,
            get_int(ev, "n_records", 1, JCS_INT, what),
        )
        _check_readds(r, seq, tid, ev)
        r.active.add(tid)
    elif ev.get("kind") == "unlearn":
        info = r.tasks.get(tid)
        if info is None or info.status != "active":
            raise Fail(f"unlearns {tid}, which is not active")
        if get(ev, "vector_digest", str, what) != info.vector_digest:
            raise Fail(f"vector_digest differs from the one recorded at add (seq {info.add_seq})")
        if get(ev, "replayed_digest", str, what) != info.vector_digest:
            raise Fail("replayed_digest differs from vector_digest")
        if get(ev, "data_hash", str, what) != info.data_hash:
            raise Fail(f"data_hash differs from the one recorded at add (seq {info.add_seq})")
        info.status, info.unlearn_seq = "unlearned", seq
        r.active.discard(tid)
    else:
        raise Fail(f"kind {ev.get('kind')!r} where add, unlearn or key_rotation is expected")
    after = get(ev, "active_after", list, what)
    if after != sorted(r.active):
        raise Fail(f"active_after is {after}, replay gives {sorted(r.active)}")
    if get(ev, "state_digest_before", str, what) != prev:
        raise Fail("state_digest_before is not the previous event's state digest")
    r.history.append((seq, frozenset(r.active), get_re(ev, "state_digest_after", DIGEST_RE, what)))


def _check_readds(r: Replay, seq: int, tid: str, ev: dict[str, Any]) -> None:
    """Deleted data stays deleted: an add of an unlearned task's data or vector must say so.

    Silent, it would restore bit for bit what a certificate says is gone; announced
    (`ledger add --readd-deleted`), it is reported so an auditor can ask for consent.
    """
    new = r.tasks[tid]
    matches = sorted(
        (info.unlearn_seq or 0, t)
        for t, info in r.tasks.items()
        if info.status == "unlearned"
        and (info.data_hash == new.data_hash or info.vector_digest == new.vector_digest)
    )
    claimed = get(ev, READDS, list, "add event") if READDS in ev else []
    named = []
    for entry in claimed:
        entry = fields(entry, ("task_id", "unlearn_seq"), "readds entry")
        named.append((get(entry, "unlearn_seq", int, "readds entry"), entry["task_id"]))
    if sorted(named) != matches or (READDS in ev and not matches):
        said = ", ".join(t for _, t in matches) or "nothing deleted"
        raise Fail(
            f"re-adds the deleted data or vector of {said} as task {tid}, but readds says "
            f"{[t for _, t in named]}"
        )
    r.readds += [
        f"task {tid} (event {seq}) re-adds {t}, unlearned at event {u}" for u, t in matches
    ]


class Context:
    """One ledger as read from disk, plus memos so each file is read and hashed once per run."""

    def __init__(self, ledger_dir: Path, key: Ed25519PublicKey, db: LedgerDB) -> None:
        self.dir, self.key, self.db = ledger_dir, key, db
        self.raw = [(e.payload or "").encode("utf-8") for e in db.events]
        self.leaves = [leaf_hash(r) for r in self.raw]
        self.roots = prefix_roots(self.leaves)  # roots[n - 1] = MTH of the first n events
        self.log_id = self.leaves[0].hex() if self.raw else ""
        self.events = [self._lenient(r) for r in self.raw]
        self.init = self.events[0] if self.events else {}
        self.sum_digests: dict[frozenset[str], str] = {}
        self._vector_problem: dict[str, str | None] = {}
        self._memo: dict[str, object] = {}
        self._signs: dict[str, npt.NDArray[np.bool_]] = {}
        try:
            zero: str | None = self.sum_digest(frozenset())
        except Fail:  # no usable trainable map: the base check reports it
            zero = None
        self.replay = replay(self.events, zero)

    @staticmethod
    def _lenient(raw: bytes) -> dict[str, Any]:
        try:
            obj = parse_json(raw, "event")
        except FormatError:
            return {}
        return obj if isinstance(obj, dict) else {}

    def _once(self, key: str, make: Callable[[], T]) -> T:
        """make() once per run; its failure too is kept and raised again, so a hostile file
        costs its (bounded) parse once, however many checks ask for it."""
        if key not in self._memo:
            try:
                self._memo[key] = make()
            except (Fail, FormatError, ValueError) as exc:
                self._memo[key] = Fail(str(exc))
        found = self._memo[key]
        if isinstance(found, Fail):
            raise Fail(str(found))
        return cast(T, found)

    def base(self) -> dict[str, Tensor]:
        """base/model.safetensors, all F32 (FORMAT.md §3), its data mapped, not read."""

        def make() -> dict[str, Tensor]:
            tensors = read_safetensors(self.dir / "base" / "model.safetensors")
            if bad := [n for n, t in tensors.items() if t.dtype != "F32"]:
                raise Fail(f"base/model.safetensors: {bad[0]} is not F32")
            return tensors

        return self._once("base", make)

    @property
    def trainable(self) -> dict[str, tuple[int, ...]]:
        """The init event's map, once it equals the base's non-embedding tensors: checked on
        the base header alone, so a forged map never sizes an allocation."""

        def make() -> dict[str, tuple[int, ...]]:
            t = self.init.get("trainable")
            if not isinstance(t, dict) or not all(
                isinstance(s, list) and all(type(d) is int and d >= 0 for d in s)
                for s in t.values()
            ):
                raise Fail("init event has no valid 'trainable' map")
            shapes = {name: tuple(shape) for name, shape in t.items()}
            base = {n: b.shape for n, b in self.base().items() if "embeddings." not in n}
            if shapes != base:
                raise Fail("trainable is not the non-embedding tensors of base/model.safetensors")
            return shapes

        return self._once("trainable", make)

    def _read(self, rel: str, dtype: str, packed: bool = False) -> dict[str, Tensor]:
        """A ledger tensor file of the trainable names, each `dtype` of the (packed) shape."""
        layout = {
            n: (dtype, ((math.prod(s) + 7) // 8,) if packed else s)
            for n, s in self.trainable.items()
        }
        return read_safetensors(self.dir / rel, layout)

    def signs(self, name: str) -> npt.NDArray[np.bool_]:
        if name not in self._signs:
            seed = get(self.init, "sign_seed", int, "init event")
            self._signs[name] = sign_bits(seed, name, math.prod(self.trainable[name]))
        return self._signs[name]

    def vector_problem(self, tid: str) -> str | None:
        """None when vectors/<tid> exists, decodes (FORMAT.md §3) and has its add's digest."""
        if tid not in self._vector_problem:
            info, rel = self.replay.tasks.get(tid), f"vectors/{tid}.safetensors"
            problem: str | None = None
            if info is None:
                problem = f"task {tid} has no add event"
            elif not os.path.lexists(self.dir / rel):
                problem = NOT_RETAINED
            else:
                try:
                    if self._stored(tid).digest() != info.vector_digest:
                        problem = f"{rel} does not match the digest recorded at add"
                except (Fail, FormatError) as exc:
                    problem = str(exc)
            self._vector_problem[tid] = problem
        return self._vector_problem[tid]

    def masks(self, tid: str) -> Mapping[str, npt.NDArray[np.uint8]]:
        """masks/<tid> as packed arrays read when asked for, once the file has the packed
        layout, zero padding bits and the mask_digest signed at add; otherwise Fail."""

        def make() -> Arrays:
            rel, info = f"masks/{tid}.safetensors", self.replay.tasks.get(tid)
            if info is None or not os.path.lexists(self.dir / rel):
                raise Fail(f"{rel} is missing")
            masks = self._read(rel, "U8", packed=True)
            if set_digest(masks) != info.mask_digest:
                raise Fail(f"{rel} does not match mask_digest")
            arrays = Arrays(masks)
            for n, m in arrays.items():
                tail = math.prod(self.trainable[n]) % 8
                if tail and m[-1] >> tail:
                    raise Fail(f"{rel}: {n} has non-zero padding bits")
            return arrays

        return self._once(f"masks/{tid}", make)

    def state_file(self) -> dict[str, Tensor]:
        """state.safetensors with the trainable layout, its tensors read when used."""
        return self._once("state", lambda: self._read("state.safetensors", "I64"))

    def state(self) -> Mapping[str, I64Array]:
        return Arrays(self.state_file())

    def _stored(self, tid: str) -> StoredVector:
        """vectors/<tid> with its header checked, its tensors still on disk. A sift vector in
        the compact encoding lies at its mask's positions, so it needs that mask, valid."""
        rel, info = f"vectors/{tid}.safetensors", self.replay.tasks[tid]

        def mask() -> Mapping[str, npt.NDArray[np.uint8]]:
            try:
                return self.masks(tid)
            except Fail as exc:
                raise Fail(f"{rel} lies at its mask's positions, but {exc}") from None

        return self._once(
            rel, lambda: read_vector(self.dir / rel, self.trainable, info.method, mask)
        )

    def vector(self, tid: str) -> Mapping[str, I64Array]:
        """The int64 tensors of a usable vector (vector_problem None), decoded one at a time."""
        return self._stored(tid)

    def tensor_sum(self, name: str, tids: Iterable[str], acc: I64Array | None = None) -> I64Array:
        """acc (or zeros) plus tensor `name` of each of these (usable) vectors, exactly."""
        total = np.zeros(self.trainable[name], dtype=np.int64) if acc is None else acc
        for tid in sorted(tids):
            total = checked_add(total, self.vector(tid)[name], f"{name} (adding task {tid})")
        return total

    def sum_digest(self, tids: frozenset[str]) -> str:
        """set_digest of the int64 sum of these (usable) vectors, memoised per task set."""
        return self.sum_digests_of([tids])[0]

    def sum_digests_of(self, sets: list[frozenset[str]]) -> list[str]:
        """sum_digest of each set, computed tensor by tensor (set_digest hashes one tensor's
        digest after another), so the peak is one accumulator tensor and one decoded tensor
        whatever T. A set that contains the one before it adds only what is new (a ledger's
        history of adds)."""
        todo = [s for s in dict.fromkeys(sets) if s not in self.sum_digests]
        hashes = {s: set_hasher(len(self.trainable)) for s in todo}
        for name in sorted(self.trainable, key=str.encode):
            acc, have = None, frozenset[str]()
            for s in todo:
                if acc is None or not have <= s:
                    acc, have = None, frozenset()
                acc, have = self.tensor_sum(name, s - have, acc), s
                t = from_arrays({name: acc})[name]
                hashes[s].update(tensor_digest(name, t.dtype, t.shape, t.raw()))
        self.sum_digests.update({s: "sha256:" + h.hexdigest() for s, h in hashes.items()})
        return [self.sum_digests[s] for s in sets]

    def unusable(self, tids: Iterable[str]) -> dict[str, str]:
        return {t: p for t in sorted(tids) if (p := self.vector_problem(t)) is not None}

    @property
    def chain(self) -> Chain:
        return self._once("chain", lambda: build_chain(self.events, self.roots, self.log_id))

    def in_log(self, size: int, root: bytes) -> bool:
        """A head of ``size`` with ``root`` is a prefix of this log (FORMAT.md §4)."""
        return 1 <= size <= len(self.roots) and self.roots[size - 1] == root

    def head_key(self, size: int) -> Ed25519PublicKey:
        """The key the chain says signs the head of ``size`` (FORMAT.md §8)."""
        return self.chain.signer(size)

    def state_events(self) -> list[dict[str, Any]]:
        """The events that set the state: all but key rotations."""
        return [ev for ev in self.events if ev.get("kind") != ROTATION]

    def latest_head(self) -> HeadBody:
        if not self.db.heads:
            raise Fail("the ledger has no tree heads")
        h = self.db.heads[-1]
        what = f"ledger's latest head (size {h.size})"
        return parse_head(self.head_key(h.size), h.body, h.signature, what)
