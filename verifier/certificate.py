"""The certificate checks of FORMAT.md §7: one DSSE envelope against one ledger.

Each step records what later steps need (envelope, predicate, heads); a step
whose input failed earlier is skipped, since its FAIL is already on record.
"""

from __future__ import annotations

from typing import Any

from verifier.context import (
    DIGEST_RE,
    HEX_RE,
    JCS_INT,
    NOT_RETAINED,
    TASK_RE,
    CheckResult,
    Context,
    Fail,
    HeadBody,
    Skip,
    get,
    get_int,
    get_re,
    get_time,
    names,
    parse_head,
    run_one,
    same_json,
)
from verifier.dsse import (
    IN_TOTO_PAYLOAD_TYPE,
    Envelope,
    fields,
    key_id,
    parse_envelope,
    parse_jcs,
    parse_json,
)

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://unlearning-ledger.dev/certificate/unlearn/v1"
STATEMENT_FIELDS = names("_type subject predicateType predicate")
DIGEST_FIELDS = names(
    "vector_digest replayed_digest state_digest_before state_digest_after base_digest"
)
PREDICATE_FIELDS = (
    names(
        "log_id task_id method data_hash n_records event tree_head_before tree_head_after "
        "remaining determinism sign_seed scale_bits"
    )
    + DIGEST_FIELDS
)


class _Cert:
    def __init__(self, ctx: Context, data: bytes, row_seq: int | None) -> None:
        self.ctx, self.data, self.row_seq = ctx, data, row_seq
        self.env: Envelope | None = None
        self.pred: dict[str, Any] | None = None
        self.seq = -1
        self.heads: tuple[HeadBody, HeadBody] | None = None

    def _pred(self) -> dict[str, Any]:
        if self.pred is None:
            raise Skip("the statement is unusable")
        return self.pred

    def _heads(self) -> tuple[HeadBody, HeadBody]:
        if self.heads is None:
            raise Skip("the certificate's tree heads are unusable")
        return self.heads

    def envelope(self) -> None:
        self.env = parse_envelope(parse_json(self.data, "certificate"))
        if self.env.payload_type != IN_TOTO_PAYLOAD_TYPE:
            raise Fail(f"payloadType is {self.env.payload_type!r}")

    def signature(self) -> None:
        """By the key in force at the unlearn (FORMAT.md §8): the chain's signer of its head."""
        if self.env is None:
            raise Skip("the envelope is unusable")
        key, which = self.ctx.key, "the given key"
        if self.seq >= 0:
            key, which = self.ctx.head_key(self.seq + 1), f"the key in force at event {self.seq}"
        if self.env.keyid != key_id(key):
            raise Fail(f"keyid {self.env.keyid!r} is not the id of {which}")
        if not self.env.signed_by(key):
            raise Fail(f"the envelope signature does not verify with {which}")

    def statement(self) -> None:  # noqa: C901, PLR0912  (one branch per field of §7's list)
        """Exactly the fields of FORMAT.md §7, each of its type: an unknown field is signed
        data no check reads, so a certificate could carry anything in it."""
        if self.env is None:
            raise Skip("the envelope is unusable")
        st = fields(parse_jcs(self.env.payload, "statement"), STATEMENT_FIELDS, "statement")
        if st["_type"] != STATEMENT_TYPE:
            raise Fail(f"_type is {st['_type']!r}")
        if st["predicateType"] != PREDICATE_TYPE:
            raise Fail(f"predicateType is {st['predicateType']!r}")
        subject = get(st, "subject", list, "statement")
        if len(subject) != 1:
            raise Fail("subject must be exactly one entry")
        if fields(subject[0], ("name", "digest"), "subject")["name"] != "state.safetensors":
            raise Fail("the subject is not named state.safetensors")
        digest = fields(subject[0]["digest"], ("sha256",), "subject digest")
        sub_hex = get_re(digest, "sha256", HEX_RE, "subject digest")
        w = "predicate"
        p = fields(st["predicate"], PREDICATE_FIELDS, w)
        get_re(p, "task_id", TASK_RE, w)
        for k in ("log_id", "data_hash"):
            get_re(p, k, HEX_RE, w)
        for k in DIGEST_FIELDS:
            get_re(p, k, DIGEST_RE, w)
        if get(p, "method", str, w) not in ("sift", "ft"):
            raise Fail(f"method is {p['method']!r}")
        get_int(p, "n_records", 1, JCS_INT, w)
        get_int(p, "sign_seed", 0, JCS_INT, w)
        get_int(p, "scale_bits", 0, 63, w)
        get(p, "determinism", dict, w)
        event = fields(p["event"], ("seq", "leaf_hash"), "predicate event")
        self.seq = get(event, "seq", int, "predicate event")
        get_re(event, "leaf_hash", HEX_RE, "predicate event")
        for k in ("tree_head_before", "tree_head_after"):
            get(fields(p[k], ("body", "signature"), k), "body", str, k)
            get(p[k], "signature", str, k)
        remaining = get(p, "remaining", list, w)
        for r in remaining:
            fields(r, ("task_id", "vector_digest"), "remaining entry")
            get_re(r, "task_id", TASK_RE, "remaining entry")
            get_re(r, "vector_digest", DIGEST_RE, "remaining entry")
        ids = [r["task_id"] for r in remaining]
        if ids != sorted(set(ids)):
            raise Fail("remaining is not sorted by task_id without repeats")
        self.pred = p
        if p["replayed_digest"] != p["vector_digest"]:
            raise Fail("replayed_digest differs from vector_digest")
        if "sha256:" + sub_hex != p["state_digest_after"]:
            raise Fail("subject digest differs from state_digest_after")

    def binding(self) -> None:
        p, init = self._pred(), self.ctx.init
        if p["log_id"] != self.ctx.log_id:
            raise Fail(f"log_id {p['log_id']} is not this ledger's ({self.ctx.log_id})")
        bad = [k for k in ("base_digest", "sign_seed", "scale_bits") if init.get(k) != p[k]]
        if bad:
            raise Fail(f"{', '.join(bad)} differ from the ledger's init event")

    def tree_heads(self) -> None:
        p = self._pred()
        before = parse_head(
            self.ctx.head_key(self.seq),
            p["tree_head_before"]["body"],
            p["tree_head_before"]["signature"],
            "tree_head_before",
        )
        after = parse_head(
            self.ctx.head_key(self.seq + 1),
            p["tree_head_after"]["body"],
            p["tree_head_after"]["signature"],
            "tree_head_after",
        )
        if (before.size, after.size) != (self.seq, self.seq + 1):
            raise Fail(
                f"head sizes are {before.size}, {after.size}; event seq {self.seq} "
                f"needs {self.seq}, {self.seq + 1}"
            )
        if {before.log_id, after.log_id} != {p["log_id"]}:
            raise Fail("a head's log_id differs from the predicate's")
        stored = {h.size: {"body": h.body, "signature": h.signature} for h in self.ctx.db.heads}
        for k, size in (("tree_head_before", self.seq), ("tree_head_after", self.seq + 1)):
            if p[k] != stored.get(size):
                raise Fail(f"{k} is not, byte for byte, the ledger's stored head of size {size}")
        for head, last in ((before, self.seq - 1), (after, self.seq)):
            if 0 <= last < len(self.ctx.events):
                when = get_time(self.ctx.events[last], f"ledger event {last}")
                if head.time < when:
                    raise Fail(
                        f"head {head.size} is dated {head.time}, before event {last} ({when})"
                    )
        self.heads = (before, after)

    def event(self) -> None:
        """The event is this task's unlearn, agrees with its add, and the task stays unlearned.

        The replay record must equal the add's determinism record: `ledger unlearn`
        replays with the add's spec and refuses any fixed or environment difference,
        so a different record means the digest did not come from a faithful replay.
        """
        p, ctx, seq = self._pred(), self.ctx, self.seq
        if self.row_seq is not None and seq != self.row_seq:
            raise Fail(f"stored as certificate {self.row_seq} but certifies event {seq}")
        if not 0 < seq < len(ctx.raw):
            raise Fail(f"the ledger has no event {seq}")
        if ctx.leaves[seq].hex() != p["event"]["leaf_hash"]:
            raise Fail(f"ledger event {seq} has a different leaf hash")
        ev = ctx.events[seq]
        if ev.get("kind") != "unlearn" or ev.get("task_id") != p["task_id"]:
            raise Fail(f"ledger event {seq} is not an unlearn of {p['task_id']}")
        keys = ("vector_digest", "replayed_digest", "state_digest_before", "state_digest_after")
        bad = [k for k in keys if ev.get(k) != p[k]]
        info = ctx.replay.tasks.get(p["task_id"])
        if info is None:
            raise Fail(f"the ledger has no add event for {p['task_id']}")
        bad += [
            k
            for k, v in (
                ("method", info.method),
                ("data_hash", info.data_hash),
                ("n_records", info.n_records),
                ("vector_digest", info.vector_digest),
            )
            if p[k] != v and k not in bad
        ]
        if not same_json(p["determinism"], ctx.events[info.add_seq].get("determinism")):
            bad.append("determinism (the replay record is not the add's)")
        if bad:
            raise Fail(f"differs from the ledger's events in {', '.join(bad)}")
        again = [
            s
            for s, ev in enumerate(ctx.events)
            if s > seq and ev.get("kind") == "add" and ev.get("task_id") == p["task_id"]
        ]
        if again:
            raise Fail(f"{p['task_id']} is added again at seq {again[0]} after this unlearning")

    def inclusion(self) -> None:
        """The event's leaf under tree_head_after: the head is a prefix of the ledger's leaves
        that holds event seq, whose leaf hash the event step compared."""
        p, (_, after), ctx = self._pred(), self._heads(), self.ctx
        if len(ctx.raw) < after.size:
            raise Fail(f"the ledger holds only {len(ctx.raw)} events")
        leaf = p["event"]["leaf_hash"]
        if not (self.seq < after.size and ctx.in_log(after.size, after.root)) or (
            ctx.leaves[self.seq].hex() != leaf
        ):
            raise Fail(f"event {self.seq} is not in tree_head_after given the ledger's leaves")

    def consistency(self) -> None:
        before, after = self._heads()
        latest, n = self.ctx.latest_head(), len(self.ctx.raw)
        if latest.size < after.size:
            raise Fail(
                f"the ledger's latest head (size {latest.size}) predates the certificate: "
                "rolled back"
            )
        for a, b, what in ((before, after, "before→after"), (after, latest, "after→latest head")):
            if b.size > n:
                raise Fail(f"{what}: the ledger holds only {n} events")
            if not (a.size <= b.size and self.ctx.in_log(a.size, a.root)) or not (
                self.ctx.in_log(b.size, b.root)
            ):
                raise Fail(f"{what}: heads {a.size}→{b.size} are not one log: history rewritten")

    def remaining(self) -> None:
        p, ctx = self._pred(), self.ctx
        hist = [h for h in ctx.replay.history if h[0] == self.seq]
        if not hist:
            raise Fail(f"replaying the ledger gives no active set after event {self.seq}")
        expected = [
            {"task_id": t, "vector_digest": ctx.replay.tasks[t].vector_digest}
            for t in sorted(hist[0][1])
        ]
        if p["remaining"] != expected:
            raise Fail("remaining differs from the active set (and add digests) after the event")

    def state(self) -> None:
        """Recompute the certified Q. Only a vector that may lawfully be absent is a skip:
        one deleted by a later unlearn, or never retained (--no-retain-vectors). A task still
        active in a ledger that retains vectors must have its vector, matching its digest."""
        p, ctx = self._pred(), self.ctx
        tids = frozenset(r["task_id"] for r in p["remaining"])
        missing = ctx.unusable(tids)
        retain = ctx.init.get("retain_vectors") is not False
        owed = [
            f"{t} ({why})"
            for t, why in missing.items()
            if t in ctx.replay.tasks
            and ctx.replay.tasks[t].status == "active"
            and (retain or why != NOT_RETAINED)
        ]
        if owed:
            raise Fail(
                "vectors of still-active remaining tasks are missing or wrong: " + ", ".join(owed)
            )
        if missing:

            def why(t: str) -> str:
                info = ctx.replay.tasks.get(t)
                if info is not None and info.unlearn_seq is not None and missing[t] == NOT_RETAINED:
                    return f"{t} (deleted by the unlearn at event {info.unlearn_seq})"
                return f"{t} ({missing[t]})"

            raise Skip(
                "cannot recompute the certified state, its vectors are gone: "
                + ", ".join(why(t) for t in missing)
                + "; the current state is checked by holds-now"
            )
        for r in p["remaining"]:
            if r.get("vector_digest") != ctx.replay.tasks[r["task_id"]].vector_digest:
                raise Fail(f"remaining names a different vector for {r['task_id']}")
        got = ctx.sum_digest(tids)
        if got != p["state_digest_after"]:
            raise Fail(
                f"sum of the remaining vectors has digest {got}, certificate says "
                f"{p['state_digest_after']}"
            )


def deletion_holds(ctx: Context, data: bytes) -> None:
    """The certified deletion still holds in this folder: the task is still unlearned and
    neither its data nor its vector came back under another id. (That the current state is
    the merge of the tasks active now is checked by the state checks `check` runs too.)"""
    c = _Cert(ctx, data, None)
    for step in (c.envelope, c.statement):
        step()
    p = c._pred()
    info = ctx.replay.tasks.get(p["task_id"])
    if info is None or info.status != "unlearned":
        raise Fail(f"{p['task_id']} is not unlearned in the current folder")
    for seq, ev in enumerate(ctx.events):
        if seq > c.seq and ev.get("kind") == "add":
            if ev.get("vector_digest") == p["vector_digest"]:
                raise Fail(
                    f"the deleted vector was re-added as task {ev.get('task_id')} at event {seq}"
                )
            if ev.get("data_hash") == p["data_hash"]:
                raise Fail(
                    f"the deleted data was re-added as task {ev.get('task_id')} at event {seq}"
                )


def certificate_checks(ctx: Context, data: bytes, row_seq: int | None = None) -> list[CheckResult]:
    """`row_seq`: the certificates-table row the envelope was stored under, if any."""
    c = _Cert(ctx, data, row_seq)
    steps = (
        ("envelope", c.envelope),
        ("statement", c.statement),
        ("signature", c.signature),
        ("binding", c.binding),
        ("tree-heads", c.tree_heads),
        ("event", c.event),
        ("inclusion", c.inclusion),
        ("consistency", c.consistency),
        ("remaining", c.remaining),
        ("state", c.state),
    )
    return [run_one(name, fn) for name, fn in steps]
