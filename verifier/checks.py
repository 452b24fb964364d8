"""`run_audit` and `run_check`: every check of a ledger folder, each reported as one line.

Checks are grouped per property (all heads, all vectors, …), not per tensor or
row, so the output stays readable; a FAIL names the first few offenders.
"""

from __future__ import annotations

import math
import os
import re
import stat
from collections import Counter
from collections.abc import Callable
from functools import partial
from itertools import pairwise
from pathlib import Path

import numpy as np

from verifier.certificate import certificate_checks, deletion_holds
from verifier.context import (
    NOT_RETAINED,
    TASK_RE,
    CheckResult,
    Context,
    Fail,
    HeadBody,
    Skip,
    fail_if,
    get,
    get_time,
    parse_head,
    run_one,
)
from verifier.dsse import FormatError, load_public_key, parse_jcs, parse_json
from verifier.files import entry_problem, read_regular, sha256_regular
from verifier.keychain import ROTATION, place_of
from verifier.ledger_reader import TEXT_CAP, UnreadableInput, read_ledger
from verifier.tensors import pack_mask, set_digest
from verifier.tensors import sign_violations as violations
from verifier.trusted import check_trusted, read_trusted, remember, remembered
from verifier.vectors import U8Array

FORMAT = "ulg/ledger/v1"
BASE_FILE_CAP = 1 << 26  # a base file other than the weights (whose header bounds them)
CONFIG_FIELDS = (
    "base_digest",
    "sign_seed",
    "scale_bits",
    "threads",
    "public_key",
    "retain_vectors",
)


# FORMAT.md §1: what may exist in a ledger folder besides base/ (which base_files governs).
TOP_FILES = {
    "ledger.duckdb",
    "ledger.duckdb.wal",
    "state.safetensors",
    "journal.json",
    "LOCK",
    "signing_key_path",
}
SUB_FILES = {
    "vectors": re.compile(rf"{TASK_RE.pattern}\.safetensors"),
    "masks": re.compile(rf"{TASK_RE.pattern}\.safetensors"),
    "certificates": re.compile(r"(0|[1-9][0-9]*)\.dsse\.json"),
}
STAGED_RE = re.compile(r"(.+)\.staged-[0-9]+|journal\.json\.tmp")


def listing(folder: Path) -> dict[str, os.stat_result]:
    """Each entry's own lstat, in a folder that is one (not a link to one); else nothing.

    Never is_file()/is_dir()/glob, which follow links: what a link points at is not in
    the folder, and a FIFO or device must never be opened to find out what it is.
    """
    try:
        if not stat.S_ISDIR(os.lstat(folder).st_mode):
            return {}
        return {p.name: os.lstat(p) for p in sorted(folder.iterdir())}
    except OSError:
        return {}


def check_journal(ctx: Context) -> None:
    if os.path.lexists(ctx.dir / "journal.json"):
        raise Fail("journal.json present: an interrupted write was never finished or rolled back")


def check_layout(ctx: Context) -> None:
    """Only the files §1 lists, as plain files: anything else (a backup folder, a .bak, a
    staged copy with no journal to finish it, a second name for a vector) could keep an
    unlearned task's data; a link or special file could lead a reader elsewhere or block it."""
    journal, problems = os.path.lexists(ctx.dir / "journal.json"), []

    def allowed(rel: str, st: os.stat_result, pattern: re.Pattern[str] | set[str]) -> None:
        name = rel.rsplit("/", 1)[-1]
        if staged := STAGED_RE.fullmatch(name):
            if not journal:
                problems.append(f"{rel}: a staged file of an unfinished write but no journal.json")
            name = staged.group(1) or "journal.json"
        if not (name in pattern if isinstance(pattern, set) else pattern.fullmatch(name)):
            problems.append(f"{rel}: not a file FORMAT.md §1 allows here")
        elif (why := entry_problem(st)) is not None:
            problems.append(f"{rel} is {why}")

    for name, st in listing(ctx.dir).items():
        if name == "base" or name in SUB_FILES:
            if not stat.S_ISDIR(st.st_mode):
                problems.append(f"{name} is {entry_problem(st) or 'a file'}, not a folder")
            for inner, inner_st in listing(ctx.dir / name).items():
                if name != "base":
                    allowed(f"{name}/{inner}", inner_st, SUB_FILES[name])
                elif (why := entry_problem(inner_st)) is not None:
                    problems.append(f"base/{inner} is {why}; base/ holds plain files only")
        else:
            allowed(name, st, TOP_FILES)
    fail_if(problems)


def check_database(ctx: Context) -> None:
    """Exactly the §5 tables and columns, and one row per key: a duplicated row is invisible to
    a reader that keys rows by id, but not to one that counts them (or picks the first)."""
    db, problems = ctx.db, list(ctx.db.schema_problems)
    keys: dict[str, list[object]] = {
        "events": [e.seq for e in db.events],
        "tree_heads": [h.size for h in db.heads],
        "tasks": [r["task_id"] for r in db.tasks],
        "certificates": [c[0] for c in db.certificates],
    }
    for table, values in keys.items():
        dups = sorted(str(k) for k, n in Counter(values).items() if n > 1 or k is None)
        if dups:
            problems.append(f"{table}: repeated or NULL keys {', '.join(dups[:3])}")
    fail_if(problems)


def check_public_key(ctx: Context) -> str:
    """The given key is one of the chain's (config.public_key is init's: check_config)."""
    try:
        return place_of(ctx.chain, ctx.key)
    except FormatError as exc:
        raise Fail(str(exc)) from None


def event_times(ctx: Context) -> list[str | None]:
    """Each event's time, or None where it is not a valid §4 time (check_events says so)."""
    out: list[str | None] = []
    for i, ev in enumerate(ctx.events):
        try:
            out.append(get_time(ev, f"event {i}"))
        except Fail:
            out.append(None)
    return out


def check_events(ctx: Context) -> None:
    """Canonical payloads matching their rows, and times that are real and never go back:
    an event dated before its predecessor misstates when a deletion happened."""
    problems = []
    if not ctx.db.events:
        raise Fail("the ledger has no events")
    for i, (row, raw) in enumerate(zip(ctx.db.events, ctx.raw, strict=True)):
        what = f"event {row.seq}"
        try:
            if row.seq != i:
                raise Fail(f"seqs are not 0..{len(ctx.raw) - 1} (row {i} has seq {row.seq})")
            ev = parse_jcs(raw, f"{what} payload")
            if get(ev, "seq", int, what) != i:
                raise Fail(f"{what}: payload seq is {ev['seq']}")
            kind = get(ev, "kind", str, what)
            if (kind == "init") != (i == 0) or kind not in ("init", "add", "unlearn", ROTATION):
                raise Fail(f"{what}: kind {kind!r} at this position")
            task = None if kind in ("init", ROTATION) else ev.get("task_id")
            if row.kind != kind or row.task_id != task:
                raise Fail(f"{what}: kind/task_id columns disagree with the payload")
            get_time(ev, what)
        except (Fail, FormatError) as exc:
            problems.append(str(exc))
    times = [t for t in event_times(ctx) if t is not None]
    problems += [
        f"event time {b} is before the previous event's {a}" for a, b in pairwise(times) if b < a
    ]
    fail_if(problems)


def check_config(ctx: Context) -> None:
    if len(ctx.db.config) != 1:
        raise Fail(f"config has {len(ctx.db.config)} rows, expected 1")
    row, init = ctx.db.config[0], ctx.init
    problems = [f"format is {v!r}" for v in (row["format"], init.get("format")) if v != FORMAT]
    if row["log_id"] != ctx.log_id:
        problems.append(f"config log_id is not the leaf hash of event 0 ({ctx.log_id})")
    problems += [
        f"config {k} is {row[k]!r}, init event has {init.get(k)!r}"
        for k in CONFIG_FIELDS
        if row[k] != init.get(k) or type(row[k]) is not type(init.get(k))
    ]
    fail_if(problems)


def parsed_heads(ctx: Context) -> list[HeadBody | str]:
    out: list[HeadBody | str] = []
    for h in ctx.db.heads:
        try:
            out.append(parse_head(ctx.head_key(h.size), h.body, h.signature, f"head {h.size}"))
        except (Fail, FormatError) as exc:
            out.append(str(exc))
    return out


def check_tree_heads(ctx: Context) -> None:
    n = len(ctx.raw)
    sizes, want = {h.size for h in ctx.db.heads}, set(range(1, n + 1))
    problems = [f"no signed head of size {s}" for s in sorted(want - sizes)]
    problems += [f"a head of size {s} but {n} events" for s in sorted(sizes - want)]
    times = event_times(ctx)
    for row, hb in zip(ctx.db.heads, parsed_heads(ctx), strict=True):
        if isinstance(hb, str):
            problems.append(hb)
        elif hb.size != row.size or hb.log_id != ctx.log_id:
            problems.append(f"head {row.size}: body size {hb.size} or log_id does not match")
        elif not ctx.in_log(hb.size, hb.root):
            problems.append(f"head {row.size}: root is not the MTH of the first {hb.size} events")
        elif (last := times[hb.size - 1]) is not None and hb.time < last:
            problems.append(f"head {row.size}: time {hb.time} is before its last event's {last}")
    fail_if(problems)


def check_consistency(ctx: Context) -> None:
    """Each signed head extends the one before: both roots are prefix roots of these leaves
    (what a consistency proof shows, checked on the leaves themselves)."""
    heads = [h for h in parsed_heads(ctx) if isinstance(h, HeadBody)]
    fail_if(
        [
            f"heads {a.size}→{b.size}: not two prefixes of one log"
            for a, b in pairwise(heads)
            if not (a.size <= b.size and ctx.in_log(a.size, a.root) and ctx.in_log(b.size, b.root))
        ]
    )


def check_base(ctx: Context) -> None:
    """The base header, size and trainable map first (bounded work), and only then the
    hashes, streamed: a sparse or forged model.safetensors is refused before it is read."""
    _ = ctx.trainable  # raises Fail unless the header, size and trainable map are right
    base, entries = ctx.dir / "base", listing(ctx.dir / "base")
    files: dict[str, object] = get(ctx.init, "base_files", dict, "init event")
    problems = [f"base/{f} is not listed in base_files" for f in sorted(set(entries) - set(files))]
    for rel, want in sorted(files.items()):
        if rel not in entries or entry_problem(entries[rel]) is not None:
            problems.append(f"base file {rel!r} is not a plain file directly in base/")
        elif rel != "model.safetensors" and entries[rel].st_size > BASE_FILE_CAP:
            problems.append(f"base/{rel} is over FORMAT.md §1's {BASE_FILE_CAP}-byte cap")
        elif sha256_regular(base / rel) != want:
            problems.append(f"base/{rel} does not match its recorded SHA-256")
    if set_digest(ctx.base()) != ctx.init.get("base_digest"):
        problems.append("base/model.safetensors does not match base_digest")
    fail_if(problems)


def check_replay(ctx: Context) -> str | None:
    fail_if(ctx.replay.problems)
    return "; ".join(ctx.replay.readds) or None


def check_tasks_table(ctx: Context) -> None:
    rows = {r["task_id"]: r for r in ctx.db.tasks}
    problems = [f"tasks table lacks {t}" for t in sorted(set(ctx.replay.tasks) - set(rows))]
    problems += [f"tasks table has unknown {t}" for t in sorted(set(rows) - set(ctx.replay.tasks))]
    for tid, info in sorted(ctx.replay.tasks.items()):
        row = rows.get(tid)
        if row is not None:
            bad = [k for k in row if k != "task_id" and row[k] != getattr(info, k)]
            if bad:
                problems.append(f"tasks row {tid}: {', '.join(bad)} disagree with the events")
    fail_if(problems)


def check_vectors(ctx: Context) -> None:
    missing = ctx.unusable(ctx.replay.active)
    retain = ctx.init.get("retain_vectors") is True
    fail_if(
        [
            f"{t}: {'missing though retain_vectors is true' if why == NOT_RETAINED else why}"
            for t, why in missing.items()
            if retain or why != NOT_RETAINED
        ]
    )
    if missing:
        raise Skip(f"--no-retain-vectors: no vector for {', '.join(missing)}")


def _active_sift(ctx: Context) -> list[str]:
    return [t for t in sorted(ctx.replay.active) if ctx.replay.tasks[t].method == "sift"]


def check_vector_signs(ctx: Context) -> None:
    problems, unchecked = [], []
    for tid in _active_sift(ctx):
        if ctx.vector_problem(tid) is not None:
            unchecked.append(tid)
            continue
        bad = sum(violations(q, ctx.signs(n)) for n, q in ctx.vector(tid).items())
        if bad:
            problems.append(f"task {tid}: {bad} entries with q·v < 0")
    fail_if(problems)
    if unchecked:
        raise Skip(f"vectors unavailable for {', '.join(unchecked)}")


def check_masks(ctx: Context) -> None:
    problems = []
    for tid in _active_sift(ctx):
        try:
            masks = ctx.masks(tid)
        except Fail as exc:
            problems.append(str(exc))
            continue
        if ctx.vector_problem(tid) is None:
            q = ctx.vector(tid)
            if any(not np.array_equal(pack_mask(q[n]), masks[n]) for n in q):
                problems.append(f"masks/{tid}.safetensors is not packbits(q ≠ 0) of its vector")
    fail_if(problems)


def check_deleted_files(ctx: Context) -> None:
    problems = []
    for sub in ("vectors", "masks"):
        for name in [n for n in listing(ctx.dir / sub) if n.endswith(".safetensors")]:
            info = ctx.replay.tasks.get(name.removesuffix(".safetensors"))
            if info is None:
                problems.append(f"{sub}/{name} belongs to no task in the log")
            elif info.status == "unlearned":
                problems.append(f"{sub}/{name} still exists for an unlearned task")
            elif sub == "masks" and info.method == "ft":
                problems.append(f"{sub}/{name} exists for an ft task")
    fail_if(problems)


def check_state_digest(ctx: Context) -> None:
    setting = ctx.state_events()  # a key rotation leaves the state as it was
    last = setting[-1] if setting else {}
    want = last.get("state_digest" if len(setting) == 1 else "state_digest_after")
    got = set_digest(ctx.state_file())
    if got != want:
        raise Fail(f"state.safetensors has digest {got}, the last event says {want}")


def check_state_sum(ctx: Context) -> None:
    missing = ctx.unusable(ctx.replay.active)
    if missing and ctx.init.get("retain_vectors") is False:
        raise Skip(
            f"ledger made with --no-retain-vectors; vectors of {len(missing)} active "
            "tasks not retained"
        )
    if missing:
        raise Skip("vectors missing or invalid: " + ", ".join(missing))
    state = ctx.state()  # tensor by tensor: one accumulator, never a second model
    diff = [n for n in state if not np.array_equal(ctx.tensor_sum(n, ctx.replay.active), state[n])]
    if diff:
        raise Fail(f"Q differs from the sum of active vectors in {len(diff)} tensors ({diff[0]}…)")


def check_state_support(ctx: Context) -> None:
    """While every active task is sift, Q ≠ 0 exactly where some active mask is set.

    All q_t agree in sign with v, so they cannot cancel: the support of their sum
    is the union of their supports. This needs only the masks (signed at add), so
    it also catches, without retained vectors, a Q that still holds an unlearned task.
    """
    ft = [t for t in sorted(ctx.replay.active) if ctx.replay.tasks[t].method != "sift"]
    if ft:
        raise Skip(f"active ft tasks ({', '.join(ft)}) have no masks")
    try:
        masks = [ctx.masks(t) for t in sorted(ctx.replay.active)]
    except Fail as exc:
        raise Skip(f"a mask is unusable ({exc})") from None

    def union(name: str) -> U8Array:
        out = np.zeros((math.prod(ctx.trainable[name]) + 7) // 8, dtype=np.uint8)
        for m in masks:
            out |= m[name]
        return out

    diff = [n for n, q in ctx.state().items() if not np.array_equal(pack_mask(q), union(n))]
    if diff:
        raise Fail(
            f"Q ≠ 0 is not the union of the active masks in {len(diff)} tensors ({diff[0]}…)"
        )


def check_state_signs(ctx: Context) -> None:
    ft = [t for t in sorted(ctx.replay.active) if ctx.replay.tasks[t].method != "sift"]
    if ft:
        raise Skip(f"active ft tasks ({', '.join(ft)}): Q need not satisfy the sign invariant")
    bad = sum(violations(q, ctx.signs(n)) for n, q in ctx.state().items())
    if bad:
        raise Fail(f"{bad} entries of Q with Q·v < 0")


def check_state_history(ctx: Context) -> None:
    """Recompute each past state whose active set is still retained; others need deleted vectors."""
    problems, unchecked, lacking = [], [], set()
    if ctx.sum_digest(frozenset()) != ctx.init.get("state_digest"):
        problems.append("init state_digest is not the digest of the all-zero Q")
    usable = []
    for seq, active, want in ctx.replay.history:
        if bad := ctx.unusable(active):
            unchecked.append(seq)
            lacking |= set(bad)
        else:
            usable.append((seq, active, want))
    got = ctx.sum_digests_of([active for _, active, _ in usable])
    problems += [
        f"event {seq}: recomputed state {g}, recorded {want}"
        for (seq, _, want), g in zip(usable, got, strict=True)
        if g != want
    ]
    fail_if(problems)
    if unchecked:
        raise Skip(
            f"recomputed {len(ctx.replay.history) - len(unchecked)} of "
            f"{len(ctx.replay.history)} states; the rest need vectors not available: "
            + ", ".join(sorted(lacking))
        )


def check_certificate_files(ctx: Context) -> None:
    unlearns = {i.unlearn_seq: t for t, i in ctx.replay.tasks.items() if i.unlearn_seq is not None}
    rows = {seq: (tid, env) for seq, tid, env in ctx.db.certificates}
    problems = [f"unlearn event {s} has no certificate" for s in sorted(set(unlearns) - set(rows))]
    folder = ctx.dir / "certificates"
    for seq, (tid, env) in sorted(rows.items()):
        if unlearns.get(seq) != tid:
            problems.append(f"certificate row {seq} is not for the unlearn event of {tid}")
        try:
            same = env is not None and read_regular(folder / f"{seq}.dsse.json", TEXT_CAP) == (
                env.encode("utf-8")
            )
        except FormatError:
            same = False
        if not same:
            problems.append(f"certificates/{seq}.dsse.json is missing or differs from its row")
    files = set(listing(folder))
    problems += [
        f"certificates/{f} has no row" for f in sorted(files - {f"{s}.dsse.json" for s in rows})
    ]
    fail_if(problems)


AUDIT: tuple[tuple[str, Callable[[Context], str | None]], ...] = (
    ("journal", check_journal),
    ("layout", check_layout),
    ("database", check_database),
    ("public-key", check_public_key),
    ("events", check_events),
    ("config", check_config),
    ("tree-heads", check_tree_heads),
    ("consistency", check_consistency),
    ("base", check_base),
    ("replay", check_replay),
    ("tasks-table", check_tasks_table),
    ("vectors", check_vectors),
    ("vector-signs", check_vector_signs),
    ("masks", check_masks),
    ("deleted-files", check_deleted_files),
    ("state-digest", check_state_digest),
    ("state-history", check_state_history),
    ("state-sum", check_state_sum),
    ("state-signs", check_state_signs),
    ("state-support", check_state_support),
    ("certificate-files", check_certificate_files),
)


def _context(ledger_dir: Path, public_key_pem: bytes) -> Context:
    try:
        key = load_public_key(public_key_pem)
    except FormatError as exc:
        raise UnreadableInput(f"public key: {exc}") from None
    return Context(ledger_dir, key, read_ledger(ledger_dir))


def _trusted_heads(ctx: Context, trusted: list[tuple[str, bytes]], state: Path | None) -> None:
    heads = [read_trusted(data, ctx, source) for source, data in trusted]
    check_trusted(ctx, heads + (remembered(state, ctx.log_id) if state else []))


def run_audit(
    ledger_dir: Path,
    public_key_pem: bytes,
    trusted: list[tuple[str, bytes]] | None = None,
    state: Path | None = None,
) -> list[CheckResult]:
    """Every audit check, then each stored certificate as one line (or its non-ok parts).

    ``trusted``: (name, bytes) of checkpoints or certificates already held; ``state``: a
    folder remembering the largest head verified per log, updated after a pass."""
    ctx = _context(ledger_dir, public_key_pem)
    results = [run_one(name, partial(fn, ctx)) for name, fn in AUDIT]
    if trusted or state:
        results.append(run_one("trusted-heads", partial(_trusted_heads, ctx, trusted or [], state)))
    for seq, _, env in ctx.db.certificates:
        name = f"certificate[{seq}]"
        sub = certificate_checks(ctx, (env or "").encode("utf-8"), row_seq=seq)
        if all(r.status != "FAIL" for r in sub):
            results.append(CheckResult(name, "ok"))
        results += [
            CheckResult(f"{name}/{r.name}", r.status, r.detail) for r in sub if r.status != "ok"
        ]
    if state and all(r.status != "FAIL" for r in results):
        remember(state, ctx)
    return results


def run_check(
    ledger_dir: Path,
    certificate: bytes,
    public_key_pem: bytes,
    trusted: list[tuple[str, bytes]] | None = None,
) -> list[CheckResult]:
    """The §7 certificate checks of one envelope, and that the deletion holds *now*: every
    audit check of the current folder (its state the merge of the tasks active at the latest
    head, so the deleted vector is not in it) and no later add bringing the task back."""
    try:
        parse_json(certificate, "certificate")
    except FormatError as exc:
        raise UnreadableInput(str(exc)) from None
    ctx = _context(ledger_dir, public_key_pem)
    folder = [run_one(name, partial(fn, ctx)) for name, fn in AUDIT if name != "certificate-files"]
    if trusted:
        folder.append(run_one("trusted-heads", partial(_trusted_heads, ctx, trusted, None)))
    return [
        *folder,
        *certificate_checks(ctx, certificate),
        run_one("holds-now", partial(deletion_holds, ctx, certificate)),
    ]


def run_served(
    ledger_dir: Path,
    task_id: str,
    model_dir: Path,
    public_key_pem: bytes,
    trusted: list[tuple[str, bytes]] | None = None,
) -> list[CheckResult]:
    """Every audit check of the ledger (an export is only as good as the state it names),
    then the export's card, files and weights (verifier/served.py)."""
    from verifier.served import served_checks

    ctx = _context(ledger_dir, public_key_pem)
    results = [run_one(name, partial(fn, ctx)) for name, fn in AUDIT]
    if trusted:
        results.append(run_one("trusted-heads", partial(_trusted_heads, ctx, trusted, None)))
    return results + served_checks(ctx, model_dir, task_id)
