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

import math
import os
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from verifier.context import (
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
)
from verifier.dsse import FormatError, parse_json
from verifier.files import entry_problem, read_regular, sha256_regular
from verifier.tensors import I64Array, read_safetensors, set_digest

CARD_CAP = 1 << 16
CARD_FIELDS = names(
    "log_id tree_size root task vector_digest served serving_rule state_digest "
    "active_tasks unlearned"
)
# What `ledger export` writes (save_pretrained of the model and its tokenizer, and the card).
EXPORT_FILES = {
    "README.md",
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
}
PINNED = ("config.json", "tokenizer.json")  # must be the base's own bytes (base_files)
F32Array = npt.NDArray[np.float32]


def read_card(model_dir: Path) -> dict[str, Any]:
    """The front matter of README.md: one `key: JSON` per line between two `---` lines."""
    text = read_regular(model_dir / "README.md", CARD_CAP).decode("utf-8", errors="replace")
    lines = text.splitlines()
    if not lines or lines[0] != "---" or "---" not in lines[1:]:
        raise Fail("README.md has no front matter between two --- lines")
    card: dict[str, Any] = {}
    for line in lines[1 : lines.index("---", 1)]:
        key, sep, value = line.partition(": ")
        if not sep or key in card:
            raise Fail(f"README.md front matter line {line[:60]!r} is not one new `key: JSON`")
        card[key] = parse_json(value.encode("utf-8"), f"README.md {key}")
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
        if type(size) is not int or not isinstance(root, str):
            raise Fail("the card's tree_size and root are not an integer and a hex string")
        try:
            in_log = ctx.in_log(size, bytes.fromhex(root))
        except ValueError:
            in_log = False
        if not in_log:
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
        problems = []
        if c["log_id"] != ctx.log_id:
            problems.append("log_id is another ledger's")
        if c["task"] != self.task_id:
            problems.append(f"the card is task {c['task']!r}'s, not {self.task_id!r}'s")
        if c["base_model_digest"] != ctx.init.get("base_digest"):
            problems.append("base_model_digest is not the ledger's base_digest")
        if c["serving_rule"] not in RULES:
            problems.append(f"serving_rule {c['serving_rule']!r} is none of {', '.join(RULES)}")
        if c["state_digest"] != digest:
            problems.append(f"state_digest is not that of the head of size {size}")
        if c["active_tasks"] != sorted(active):
            problems.append(f"active_tasks are not those active at the head of size {size}")
        if c["served"] != self.how(active):
            problems.append(f"served is {c['served']!r}; at that head it is {self.how(active)!r}")
        if c["vector_digest"] != (info.vector_digest if info is not None else None):
            problems.append("vector_digest is not the task's")
        gone = [
            {"task": t, "event": seq, "certificate": f"certificates/{seq}.dsse.json"}
            for seq, t in sorted(
                (i.unlearn_seq, t) for t, i in ctx.replay.tasks.items() if i.unlearn_seq is not None
            )
            if seq < size
        ]
        if c["unlearned"] != gone:
            problems.append(f"unlearned is not the tasks unlearned by the head of size {size}")
        fail_if(problems)
        recorded = ctx.init.get(SERVING_RULE, "mean")
        other = "" if c["serving_rule"] == recorded else f", not the ledger's own ({recorded})"
        return f"head {size}, rule {c['serving_rule']}{other}"

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
        """Only an export's files, plain ones; config and tokenizer byte for byte the base's."""
        problems = []
        names = sorted(os.listdir(self.dir))
        for name in names:
            st = os.lstat(self.dir / name)
            if name not in EXPORT_FILES:
                problems.append(f"{name} is not a file `ledger export` writes")
            elif (problem := entry_problem(st)) is not None:
                problems.append(f"{name} is {problem}")
        files = self.ctx.init.get("base_files")
        pinned = files if isinstance(files, dict) else {}
        for name in PINNED:
            if name in pinned and name in names and sha256_regular(self.dir / name) != pinned[name]:
                problems.append(f"{name} is not the base's (base_files)")
            elif name in pinned and name not in names:
                problems.append(f"{name} is missing")
        fail_if(problems)

    def check_weights(self) -> str:
        """model.safetensors: θ0's tensors, each trainable one θ0 + the rule's δ, bit for bit."""
        ctx, rule = self.ctx, self.card()["serving_rule"]
        size, active, digest = self.head()
        q_of = self._state_at(active, digest)
        mask_of, counts_of = self._masks(active, rule)
        exported = read_safetensors(self.dir / "model.safetensors")
        base = ctx.base()
        if set(exported) != set(base):
            extra, missing = sorted(set(exported) - set(base)), sorted(set(base) - set(exported))
            raise Fail(f"model.safetensors: tensors missing {missing[:3]}, unexpected {extra[:3]}")
        wrong = []
        for name in sorted(base, key=str.encode):
            got, theta = exported[name], base[name]
            if (got.dtype, got.shape) != (theta.dtype, theta.shape):
                wrong.append(name)
                continue
            if name not in ctx.trainable or not active:
                want = bytes(theta.raw())
            else:
                delta = served_delta(
                    q_of(name),
                    mask_of(name),
                    get_int(ctx.init, "scale_bits", 0, 63, "init event"),
                    _divisor(rule, len(active), counts_of(name)),
                )
                want = (theta.array() + delta).astype(np.float32).tobytes()
            if bytes(got.raw()) != want:
                wrong.append(name)
        if wrong:
            raise Fail(
                f"model.safetensors differs from θ0 + the `{rule}` rule at head {size} in "
                f"{len(wrong)} tensors ({wrong[0]}…)"
            )
        return f"{len(base)} tensors, {len(ctx.trainable)} rebuilt from the head of size {size}"

    def _state_at(self, active: frozenset[str], digest: str) -> Callable[[str], I64Array]:
        """Q at the head, tensor by tensor: the state file when it is still that state, else
        the sum of the vectors active then, once their sum has the head's signed digest."""
        ctx = self.ctx
        if set_digest(ctx.state_file()) == digest:
            return lambda name: ctx.state()[name]
        if missing := ctx.unusable(active):
            raise Skip(
                "the state has changed since that head, and the vectors to rebuild it are "
                "gone: " + ", ".join(f"{t} ({why})" for t, why in missing.items())
            )
        if ctx.sum_digest(active) != digest:
            raise Fail("the vectors active at that head do not sum to its state digest")
        return lambda name: ctx.tensor_sum(name, active)

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
    served = Served(ctx, model_dir, task_id)
    checks: list[tuple[str, Callable[[], str | None]]] = [
        ("served-card", served.check_card),
        ("served-files", served.check_files),
        ("served-weights", served.check_weights),
    ]
    return [run_one(name, partial(_guarded, fn)) for name, fn in checks]


def _guarded(fn: Callable[[], str | None]) -> str | None:
    """A card that cannot be read fails every check that needs it, with its own reason."""
    try:
        return fn()
    except (OSError, UnicodeError) as exc:
        raise FormatError(f"cannot read the export: {exc}") from None
