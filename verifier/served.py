"""`verifier served`: an exported model is exactly θ0 plus the serving rule applied to the
state at the head its model card names (FORMAT.md §3 "Serving", §12).

The ledger's audit covers the folder; what production serves is another
folder the operator hands over. Its card names a signed head (size and root)
and a serving rule; from the ledger alone this rebuilds every trainable tensor
of that served model, float32 bit for bit, and requires every other tensor to
be θ0's. Q at that head is the state file when the state has not changed since,
else the sum of the retained vectors of the tasks active then (checked against
that head's signed state digest).
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from verifier.context import (
    HEX_RE,
    RULES,
    SERVING_RULE,
    CheckResult,
    Context,
    Fail,
    Skip,
    fail_if,
    get_int,
    names,
    run_one,
    same_json,
)
from verifier.dsse import FormatError, parse_json
from verifier.files import entry_problem, read_regular, sha256_regular
from verifier.tensors import (
    I64Array,
    Tight,
    from_arrays,
    read_tight,
    set_hasher,
    tensor_digest,
)

CARD_CAP = 1 << 16
CARD_FIELDS = names(
    "log_id tree_size root task vector_digest served serving_rule state_digest "
    "active_tasks unlearned"
)
# What `ledger export` writes besides the base's own files (FORMAT.md §12).
CARD = "README.md"
WEIGHTS = "model.safetensors"
CARD_KEYS = ("library_name", "pipeline_tag", "tags", "base_model_digest", "ledger")
KEY_RE = re.compile(r"[a-z_]+")
EXPORT_METADATA = {"format": "pt"}  # the one __metadata__ save_pretrained writes
F32Array = npt.NDArray[np.float32]


def read_card(model_dir: Path) -> dict[str, Any]:
    """The front matter of README.md: between a first line `---` and the next, exactly
    the lines `key: JSON` of CARD_KEYS, once each (a duplicate or a quoted key is what a
    YAML reader would take instead of the line this one checks)."""
    try:
        text = read_regular(model_dir / CARD, CARD_CAP).decode("utf-8")
    except UnicodeDecodeError:
        raise Fail("README.md is not UTF-8") from None
    lines = text.splitlines()
    if not lines or lines[0] != "---" or "---" not in lines[1:]:
        raise Fail("README.md has no front matter between two --- lines")
    card: dict[str, Any] = {}
    for line in lines[1 : lines.index("---", 1)]:
        key, sep, value = line.partition(": ")
        if not sep or not KEY_RE.fullmatch(key) or key in card:
            raise Fail(f"README.md front matter line {line[:60]!r} is not one new `key: JSON`")
        card[key] = parse_json(value.encode("utf-8"), f"README.md {key}")
    if sorted(card) != sorted(CARD_KEYS):
        raise Fail(f"README.md front matter must have exactly the keys {list(CARD_KEYS)}")
    return card


class Served:
    """One export checked against one ledger; each check is a method run_one can call."""

    def __init__(self, ctx: Context, model_dir: Path, task_id: str) -> None:
        self.ctx, self.dir, self.task_id = ctx, model_dir, task_id
        self._card: dict[str, Any] | None = None

    def card(self) -> dict[str, Any]:
        if self._card is None:
            card = read_card(self.dir)
            fields = card.get("ledger")
            if not isinstance(fields, dict) or sorted(fields) != sorted(CARD_FIELDS):
                raise Fail(f"README.md's `ledger` must have exactly the fields {list(CARD_FIELDS)}")
            self._card = {**fields, "base_model_digest": card.get("base_model_digest")}
        return self._card

    def head(self) -> tuple[int, frozenset[str], str]:
        """(size, tasks active at that head, its state digest) of the head the card names."""
        c, ctx = self.card(), self.ctx
        size, root = c["tree_size"], c["root"]
        if type(size) is not int or not isinstance(root, str) or not HEX_RE.fullmatch(root):
            raise Fail("the card's tree_size and root are not an integer and 64 hex digits")
        if not ctx.in_log(size, bytes.fromhex(root)):
            raise Fail(f"the card's head (size {size}, root {root[:16]}…) is not in this log")
        active, digest = frozenset[str](), str(ctx.init.get("state_digest"))
        for seq, now, want in ctx.replay.history:
            if seq < size:
                active, digest = now, want
        return size, active, digest

    def check_card(self) -> str:
        """The card's claims are the ledger's at that head: log, task, rule, state, tasks."""
        c, ctx = self.card(), self.ctx
        size, active, digest = self.head()
        info = ctx.replay.tasks.get(self.task_id)
        problems: list[str] = []
        expect = {
            "log_id": ctx.log_id,
            "task": self.task_id,
            "serving_rule": c["serving_rule"] if c["serving_rule"] in RULES else None,
            "state_digest": digest,
            "active_tasks": sorted(active),
            "served": self.how(active),
            "vector_digest": info.vector_digest if info is not None else None,
            "unlearned": self.unlearned(size),
        }
        for name, want in expect.items():
            if not same_json(c[name], want):
                problems.append(f"{name} is {_short(c[name])}, at that head {_short(want)}")
        if not same_json(c["base_model_digest"], ctx.init.get("base_digest")):
            problems.append("base_model_digest is not the ledger's base_digest")
        fail_if(problems)
        recorded = ctx.init.get(SERVING_RULE, "mean")
        notes = [f"head {size}", f"rule {c['serving_rule']}"]
        if c["serving_rule"] != recorded:
            notes.append(f"not the ledger's own ({recorded})")
        if size < len(ctx.roots):
            since = [u["task"] for u in self.unlearned(len(ctx.roots)) if u["event"] >= size]
            notes.append(f"the log is now at {len(ctx.roots)}")
            if since:
                notes.append(f"unlearned since: {', '.join(since)}")
        if info is None:
            notes.append("a task id this log never added")
        return "; ".join(notes)

    def unlearned(self, size: int) -> list[dict[str, Any]]:
        """The card's `unlearned` entries at a head of this size, in event order."""
        tasks = self.ctx.replay.tasks
        gone = sorted((i.unlearn_seq, t) for t, i in tasks.items() if i.unlearn_seq is not None)
        return [
            {"task": t, "event": seq, "certificate": f"certificates/{seq}.dsse.json"}
            for seq, t in gone
            if seq < size
        ]

    def how(self, active: frozenset[str]) -> str:
        """What the ledger calls this task's served model at a head with these tasks."""
        info = self.ctx.replay.tasks.get(self.task_id)
        if not active:
            return "base" if info is not None else "unmasked: unknown task"
        if info is None:
            return "unmasked: unknown task"
        masked = self.task_id in active and info.method == "sift"
        return "masked" if masked else "unmasked"

    def check_files(self) -> None:
        """Exactly the base's files (its weights rebuilt) and the card, plain files; every
        base file but the weights byte for byte the base's (base_files): a tokenizer or
        config file changes what the model answers as surely as a weight does."""
        ctx, problems = self.ctx, []
        files = ctx.init.get("base_files")
        pinned: dict[str, object] = files if isinstance(files, dict) else {}
        names = sorted(os.listdir(self.dir))
        for name in names:
            if name != CARD and name not in pinned:
                problems.append(f"{name!r} is not a file `ledger export` writes")
            elif (problem := entry_problem(os.lstat(self.dir / name))) is not None:
                problems.append(f"{name!r} is {problem}")
        for name, digest in sorted(pinned.items()):
            if name == WEIGHTS:
                continue
            if name not in names:
                problems.append(f"{name!r} is missing")
            elif os.lstat(self.dir / name).st_size != os.lstat(ctx.dir / "base" / name).st_size:
                problems.append(f"{name!r} is not the base's (its size differs)")  # before hashing
            elif sha256_regular(self.dir / name) != digest:
                problems.append(f"{name!r} is not the base's (base_files)")
        fail_if(problems)

    def check_weights(self) -> str:
        """model.safetensors: θ0's tensors, each trainable one θ0 + the rule's δ, bit for bit.
        θ0 and Q are digested from the very bytes used and compared with the signed digests
        at the end, so a file that changes between two reads cannot pass."""
        ctx, rule = self.ctx, self.card()["serving_rule"]
        size, active, digest = self.head()
        q_of = self._state_at(active)
        mask_of, counts_of = self._masks(active, rule)
        base = ctx.base()
        layout = {n: ("F32", t.shape) for n, t in base.items()}
        _, exported = read_tight(self.dir / WEIGHTS, [Tight.exact(layout, EXPORT_METADATA)])
        scale = get_int(ctx.init, "scale_bits", 0, 63, "init event")
        theta_hash, q_hash = set_hasher(len(base)), set_hasher(len(ctx.trainable))
        wrong = []
        for name in sorted(base, key=str.encode):
            theta_raw = bytes(base[name].raw())
            theta_hash.update(tensor_digest(name, "F32", base[name].shape, theta_raw))
            want = theta_raw
            if name in ctx.trainable:
                q = q_of(name)
                t = from_arrays({name: q})[name]
                q_hash.update(tensor_digest(name, t.dtype, t.shape, t.raw()))
                if active:
                    theta = np.frombuffer(theta_raw, dtype="<f4").reshape(base[name].shape)
                    delta = served_delta(
                        q, mask_of(name), scale, _divisor(rule, len(active), counts_of(name))
                    )
                    want = (theta + delta).astype(np.float32).tobytes()
            if bytes(exported[name].raw()) != want:
                wrong.append(name)
        if "sha256:" + theta_hash.hexdigest() != ctx.init.get("base_digest"):
            raise Fail("θ0 as read here is not the base_digest signed at init (a file changed)")
        if "sha256:" + q_hash.hexdigest() != digest:
            raise Fail(f"Q as read here is not the signed state of the head of size {size}")
        if wrong:
            raise Fail(
                f"model.safetensors differs from θ0 + the `{rule}` rule at head {size} in "
                f"{len(wrong)} tensors ({wrong[0]}…)"
            )
        return f"{len(base)} tensors, {len(ctx.trainable)} rebuilt from the head of size {size}"

    def _state_at(self, active: frozenset[str]) -> Callable[[str], I64Array]:
        """Q at the head, tensor by tensor: the state file while the state is still that
        head's, else the sum of the vectors active then (check_weights compares the digest
        of what either gives with the head's)."""
        ctx = self.ctx
        if (ctx.replay.history and ctx.replay.history[-1][1] != active) or (
            not ctx.replay.history and active
        ):
            if missing := ctx.unusable(active):
                raise Skip(
                    "the state has changed since that head, and the vectors to rebuild it "
                    "are gone: " + ", ".join(f"{t} ({why})" for t, why in missing.items())
                )
            return lambda name: ctx.tensor_sum(name, active)
        return lambda name: ctx.state()[name]

    def _masks(
        self, active: frozenset[str], rule: str
    ) -> tuple[Callable[[str], npt.NDArray[np.bool_] | None], Callable[[str], I64Array | None]]:
        """The task's mask (None: served unmasked) and, for `count`, the contributor counts."""
        ctx = self.ctx
        sift = sorted(t for t in active if ctx.replay.tasks[t].method == "sift")
        try:
            own = ctx.masks(self.task_id) if self.task_id in sift else None
            every = [ctx.masks(t) for t in sift] if rule == "count" else []
        except Fail as exc:
            raise Skip(f"a mask of a task active at that head is unusable ({exc})") from None
        dense = len(active) - len(sift)

        def mask(name: str) -> npt.NDArray[np.bool_] | None:
            return None if own is None else _unpack(own, name, ctx.trainable[name])

        def counts(name: str) -> I64Array | None:
            if rule != "count":
                return None
            shape = ctx.trainable[name]
            total = np.full(shape, dense, dtype=np.int64)
            for m in every:
                total += _unpack(m, name, shape)
            return total

        return mask, counts


def _unpack(
    masks: Mapping[str, npt.NDArray[np.uint8]], name: str, shape: tuple[int, ...]
) -> npt.NDArray[np.bool_]:
    bits = np.unpackbits(masks[name], count=math.prod(shape), bitorder="little")
    return bits.astype(bool).reshape(shape)


def _divisor(rule: str, n_active: int, counts: I64Array | None) -> int | I64Array:
    """FORMAT.md §3: |T| (mean), each entry's contributor count, at least 1 (count), 1 (sum)."""
    if rule == "mean":
        return n_active
    if rule == "count":
        assert counts is not None
        return np.maximum(counts, 1)
    return 1


def served_delta(
    q: I64Array, mask: npt.NDArray[np.bool_] | None, scale_bits: int, divisor: int | I64Array
) -> F32Array:
    """float32(float64(Q ⊙ m) · 2^−k / float64(d)), the IEEE operations in FORMAT.md's order."""
    masked = q if mask is None else np.where(mask, q, 0)
    scaled = np.ldexp(masked.astype(np.float64), -scale_bits)
    out: F32Array = (scaled / np.asarray(divisor, dtype=np.float64)).astype(np.float32)
    return out


def served_checks(ctx: Context, model_dir: Path, task_id: str) -> list[CheckResult]:
    """The card, the files and the weights. An export is verified only when its weights
    were rebuilt: a weights check that cannot run (its vectors or masks gone) is a FAIL
    here, not a skip, or any bytes at all would pass beside an old head."""
    served = Served(ctx, model_dir, task_id)
    checks: list[tuple[str, Callable[[], str | None]]] = [
        ("served-card", served.check_card),
        ("served-files", served.check_files),
        ("served-weights", served.check_weights),
    ]
    results = [run_one(name, partial(_guarded, fn)) for name, fn in checks]
    return [
        CheckResult(r.name, "FAIL", f"cannot be verified: {r.detail}")
        if r.status == "skipped"
        else r
        for r in results
    ]


def _guarded(fn: Callable[[], str | None]) -> str | None:
    """A card that cannot be read fails every check that needs it, with its own reason."""
    try:
        return fn()
    except (OSError, UnicodeError) as exc:
        raise FormatError(f"cannot read the export: {exc}") from None


def _short(value: object) -> str:
    text = json.dumps(value, ensure_ascii=True)
    return text if len(text) <= 80 else text[:77] + "…"
