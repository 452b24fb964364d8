"""What every check shares: results, field validation, the event replay and vector access.

The replay is lenient on purpose: it records each problem and carries on, so
one tampered event yields FAIL lines for what it breaks, not a crash that
hides every other finding.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import rfc8785
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from verifier.dsse import FormatError, b64decode, parse_jcs, parse_json, verify_sig
from verifier.ledger_reader import LedgerDB
from verifier.merkle import MerkleTree
from verifier.tensors import (
    I64Array,
    Tensor,
    checked_add,
    from_arrays,
    read_safetensors,
    set_digest,
    sign_bits,
)

DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}")
HEX_RE = re.compile(r"[0-9a-f]{64}")
TASK_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
TIME_RE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")
HEAD_TYPE = "ulg/tree-head/v1"
NOT_RETAINED = "not retained"


@dataclass(frozen=True)
class CheckResult:
    name: str
    status: Literal["ok", "FAIL", "skipped"]
    detail: str = ""

    def line(self) -> str:
        if self.status == "ok":
            return f"ok: {self.name}"
        return f"{self.status}: {self.name}: {' '.join(self.detail.split())}"  # one line


class Fail(Exception):
    """Raised inside a check: the check FAILs with this reason."""


class Skip(Exception):
    """Raised inside a check: the check could not run on this ledger (e.g. vectors not retained)."""


def run_one(name: str, fn: Callable[[], None]) -> CheckResult:
    """Run one check; tampered data of any shape must end as a FAIL line, never a traceback."""
    try:
        fn()
    except Skip as exc:
        return CheckResult(name, "skipped", str(exc))
    except (Fail, FormatError, OverflowError) as exc:
        return CheckResult(name, "FAIL", str(exc))
    except Exception as exc:
        return CheckResult(name, "FAIL", f"unexpected data ({type(exc).__name__}: {exc})")
    return CheckResult(name, "ok")


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


def replay(events: list[dict[str, Any]], zero_digest: str | None) -> Replay:
    """Re-derive tasks, active sets and the state-digest chain from the signed events alone.

    `zero_digest` is the digest of an all-zero vector set (the trainable shapes):
    adding or subtracting any other vector must change Q, so an event whose state
    digest stays put while its task's vector is not zero claims arithmetic that
    never happened (e.g. an unlearn that left the task merged).
    """
    r = Replay()
    if not events or events[0].get("kind") != "init":
        r.problems.append("event 0 is not a readable init event")
    prev = events[0].get("state_digest") if events else None
    for seq, ev in enumerate(events[1:], start=1):
        try:
            _apply(r, seq, ev, prev, events[0])
            info = r.tasks[ev["task_id"]]
            if ev["state_digest_after"] == prev and info.vector_digest != zero_digest:
                raise Fail("the state digest did not change, but the task's vector is not zero")
        except Exception as exc:
            r.problems.append(f"event {seq}: {exc}")
        prev = ev.get("state_digest_after")
    return r


def _apply(r: Replay, seq: int, ev: dict[str, Any], prev: object, init: dict[str, Any]) -> None:
    if not ev:
        raise Fail("payload is not a JSON object")
    what = f"{ev.get('kind')} event"
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
        spec = get(ev, "spec", dict, what)
        bad = [k for k in ("sign_seed", "threads") if spec.get(k) != init.get(k)]
        if spec.get("method") != method or bad:
            raise Fail(f"spec disagrees with the event or ledger on {bad or ['method']}")
        if not same_json(get(get(ev, "determinism", dict, what), "spec", dict, what), spec):
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
            get(ev, "n_records", int, what),
        )
        r.active.add(tid)
    elif ev.get("kind") == "unlearn":
        info = r.tasks.get(tid)
        if info is None or info.status != "active":
            raise Fail(f"unlearns {tid}, which is not active")
        if get(ev, "vector_digest", str, what) != info.vector_digest:
            raise Fail(f"vector_digest differs from the one recorded at add (seq {info.add_seq})")
        if get(ev, "replayed_digest", str, what) != info.vector_digest:
            raise Fail("replayed_digest differs from vector_digest")
        info.status, info.unlearn_seq = "unlearned", seq
        r.active.discard(tid)
    else:
        raise Fail(f"kind {ev.get('kind')!r} where add or unlearn is expected")
    after = get(ev, "active_after", list, what)
    if after != sorted(r.active):
        raise Fail(f"active_after is {after}, replay gives {sorted(r.active)}")
    if get(ev, "state_digest_before", str, what) != prev:
        raise Fail("state_digest_before is not the previous event's state digest")
    r.history.append((seq, frozenset(r.active), get_re(ev, "state_digest_after", DIGEST_RE, what)))


class Context:
    """One ledger as read from disk, plus memos so each vector is hashed once per run."""

    def __init__(self, ledger_dir: Path, key: Ed25519PublicKey, db: LedgerDB) -> None:
        self.dir, self.key, self.db = ledger_dir, key, db
        self.raw = [(e.payload or "").encode("utf-8") for e in db.events]
        self.tree = MerkleTree.from_data(self.raw)
        self.log_id = self.tree.leaves[0].hex() if self.raw else ""
        self.events = [self._lenient(r) for r in self.raw]
        self.init = self.events[0] if self.events else {}
        self.sum_digests: dict[frozenset[str], str] = {}
        self._vector_problem: dict[str, str | None] = {}
        self._masks: dict[str, dict[str, npt.NDArray[np.uint8]] | str] = {}
        self._state: dict[str, I64Array] | str | None = None
        self._signs: dict[str, npt.NDArray[np.bool_]] = {}
        try:
            zero: str | None = self.sum_digest(frozenset())
        except Fail:  # no usable trainable map: the config check reports it
            zero = None
        self.replay = replay(self.events, zero)

    @staticmethod
    def _lenient(raw: bytes) -> dict[str, Any]:
        try:
            obj = parse_json(raw, "event")
        except FormatError:
            return {}
        return obj if isinstance(obj, dict) else {}

    @cached_property
    def trainable(self) -> dict[str, tuple[int, ...]]:
        t = self.init.get("trainable")
        if not isinstance(t, dict) or not all(
            isinstance(s, list) and all(type(d) is int and d >= 0 for d in s) for s in t.values()
        ):
            raise Fail("init event has no valid 'trainable' map")
        shapes = {name: tuple(shape) for name, shape in t.items()}
        # Each trainable entry is an F32 of the base, so the base's size bounds what
        # zeros() may allocate for a forged map.
        base = self.dir / "base" / "model.safetensors"
        if not base.is_file():
            raise Fail("base/model.safetensors is missing, so 'trainable' cannot be checked")
        if sum(4 * math.prod(s) for s in shapes.values()) > base.stat().st_size:
            raise Fail("init event's trainable holds more entries than base/model.safetensors")
        return shapes

    def check_layout(
        self, tensors: dict[str, Tensor], dtype: str, what: str, packed: bool = False
    ) -> None:
        """Exactly the trainable names, each of `dtype` and the trainable (or packed) shape."""
        want = {n: ((math.prod(s) + 7) // 8,) if packed else s for n, s in self.trainable.items()}
        if set(tensors) != set(want):
            missing, extra = sorted(set(want) - set(tensors)), sorted(set(tensors) - set(want))
            raise Fail(f"{what}: tensors missing {missing[:3]}, unexpected {extra[:3]}")
        for n, t in tensors.items():
            if t.dtype != dtype or t.shape != want[n]:
                raise Fail(f"{what}: {n} is {t.dtype} {list(t.shape)}, not {dtype} {list(want[n])}")

    def signs(self, name: str) -> npt.NDArray[np.bool_]:
        if name not in self._signs:
            seed = get(self.init, "sign_seed", int, "init event")
            self._signs[name] = sign_bits(seed, name, math.prod(self.trainable[name]))
        return self._signs[name]

    def vector_problem(self, tid: str) -> str | None:
        """None when vectors/<tid> exists with the trainable layout and the digest signed at add."""
        if tid not in self._vector_problem:
            info, path = self.replay.tasks.get(tid), self.dir / "vectors" / f"{tid}.safetensors"
            problem: str | None = None
            if info is None:
                problem = f"task {tid} has no add event"
            elif not path.is_file():
                problem = NOT_RETAINED
            else:
                try:
                    tensors = read_safetensors(path)
                    self.check_layout(tensors, "I64", f"vectors/{path.name}")
                    digest = set_digest(tensors)
                    if digest != info.vector_digest:
                        problem = f"vectors/{path.name} does not match the digest recorded at add"
                except (Fail, FormatError) as exc:
                    problem = str(exc)
            self._vector_problem[tid] = problem
        return self._vector_problem[tid]

    def masks(self, tid: str) -> dict[str, npt.NDArray[np.uint8]]:
        """masks/<tid> as packed arrays, once it has the packed layout, zero padding bits and
        the mask_digest signed at add; otherwise Fail (memoised, so each file is read once)."""
        if tid not in self._masks:
            path = self.dir / "masks" / f"{tid}.safetensors"
            info = self.replay.tasks.get(tid)
            try:
                if info is None or not path.is_file():
                    raise Fail(f"masks/{path.name} is missing")
                masks = read_safetensors(path)
                self.check_layout(masks, "U8", f"masks/{path.name}", packed=True)
                if set_digest(masks) != info.mask_digest:
                    raise Fail(f"masks/{path.name} does not match mask_digest")
                arrays = {n: m.array() for n, m in masks.items()}
                for n, m in arrays.items():
                    tail = math.prod(self.trainable[n]) % 8
                    if tail and m[-1] >> tail:
                        raise Fail(f"masks/{path.name}: {n} has non-zero padding bits")
                self._masks[tid] = arrays
            except (Fail, FormatError) as exc:
                self._masks[tid] = str(exc)
        found = self._masks[tid]
        if isinstance(found, str):
            raise Fail(found)
        return found

    def state(self) -> dict[str, I64Array]:
        """state.safetensors as int64 arrays of the trainable layout, read once per run."""
        if self._state is None:
            try:
                tensors = read_safetensors(self.dir / "state.safetensors")
                self.check_layout(tensors, "I64", "state.safetensors")
                self._state = {
                    n: t.array().astype(np.int64, copy=False) for n, t in tensors.items()
                }
            except (Fail, FormatError) as exc:
                self._state = str(exc)
        if isinstance(self._state, str):
            raise Fail(self._state)
        return self._state

    def vector(self, tid: str) -> dict[str, I64Array]:
        tensors = read_safetensors(self.dir / "vectors" / f"{tid}.safetensors")
        return {n: tensors[n].array().astype(np.int64, copy=False) for n in self.trainable}

    def add_into(self, q: dict[str, I64Array], tids: Iterable[str]) -> dict[str, I64Array]:
        for tid in sorted(tids):
            v = self.vector(tid)
            q = {n: checked_add(q[n], v[n], f"{n} (adding task {tid})") for n in q}
        return q

    def zeros(self) -> dict[str, I64Array]:
        return {n: np.zeros(s, dtype=np.int64) for n, s in self.trainable.items()}

    def sum_digest(self, tids: frozenset[str]) -> str:
        """set_digest of the int64 sum of these (usable) vectors, memoised per task set."""
        if tids not in self.sum_digests:
            self.sum_digests[tids] = set_digest(from_arrays(self.add_into(self.zeros(), tids)))
        return self.sum_digests[tids]

    def unusable(self, tids: Iterable[str]) -> dict[str, str]:
        return {t: p for t in sorted(tids) if (p := self.vector_problem(t)) is not None}

    def latest_head(self) -> HeadBody:
        if not self.db.heads:
            raise Fail("the ledger has no tree heads")
        h = self.db.heads[-1]
        return parse_head(self.key, h.body, h.signature, f"ledger's latest head (size {h.size})")
