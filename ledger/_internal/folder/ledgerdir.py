"""A ledger folder (docs/FORMAT.md §1): opening it to read or to commit, and checking it.

Every command opens the folder through ``open_ledger``, which scans it,
finishes or rolls back any write a crash interrupted, and checks the folder
against its own signed log before anything is read or appended: the DuckDB
rows and files are only indexes, and signing a new head over a rewritten
history would launder the rewrite.
"""

from __future__ import annotations

import base64
import math
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ledger._internal.attest.keys import public_from_hex, raw_public, verifies
from ledger._internal.errors import LedgerError
from ledger._internal.folder import journal
from ledger._internal.folder.layout import (
    BASE,
    DB_NAME,
    JOURNAL,
    KEY_PATH_FILE,
    STATE,
    mask_file,
    scan,
    vector_file,
)
from ledger._internal.folder.safefs import entries, read_regular, sha256_file
from ledger._internal.folder.store import Config, SignedHead, Store, StoreLocked, TaskRow, Write
from ledger._internal.log.jcs import canonical, loads_strict
from ledger._internal.log.keychain import KIND, KeyChain, key_chain, short_id
from ledger._internal.log.merkle import leaf_hash, root_from_leaf_hashes
from ledger._internal.log.treehead import head_fields, sign_head
from ledger._internal.vectors.codec import Int64Array
from ledger._internal.vectors.digest import set_digest
from ledger._internal.vectors.encoding import read_vector
from ledger._internal.vectors.tensorfile import (
    Layout,
    check_size,
    read_tensors,
)


@dataclass
class Ledger:
    root: Path
    store: Store
    config: Config
    init: dict[str, Any]
    leaves: list[bytes]  # of the stored events, checked against the latest signed head
    key_trusted: bool  # the head was checked against a key from outside the folder
    chain: KeyChain  # the signing keys the log declares, oldest first
    leftovers: list[
        str
    ]  # staged files no journal names (a reader shows them, a writer removes them)

    @property
    def base_dir(self) -> Path:
        return self.root / BASE

    @property
    def trainable(self) -> dict[str, tuple[int, ...]]:
        return {name: tuple(shape) for name, shape in self.init["trainable"].items()}

    @property
    def serving_rule(self) -> str:
        """The rule recorded at init; ledgers from before the field serve by "mean" (the
        paper's rule, which they served by before rules were recorded)."""
        return str(self.init.get("serving_rule", "mean"))

    def layout(self, dtype: str = "I64", packed: bool = False) -> Layout:
        """What a state, vector (I64) or mask (U8, bit-packed) file must hold."""
        return {
            name: (dtype, ((math.prod(shape) + 7) // 8,) if packed else shape)
            for name, shape in self.trainable.items()
        }

    @property
    def num_labels(self) -> int:
        """Labels the base classifies into; data labels must be below it (FORMAT.md §9)."""
        config = loads_strict(read_regular(self.base_dir / "config.json", self.root, 1 << 20))
        labels = config.get("id2label") if isinstance(config, dict) else None
        return len(labels) if isinstance(labels, dict) and labels else 2

    def default_key_path(self) -> Path:
        """The private key named at init; the ledger stores its path, never the key."""
        if not os.path.lexists(self.root / KEY_PATH_FILE):
            raise LedgerError("no default signing key recorded; pass --key")
        raw = read_regular(self.root / KEY_PATH_FILE, self.root, 4096)
        return Path(raw.decode("utf-8", errors="replace").strip())

    def state_digest(self) -> str:
        """The last state-changing event's digest (a key rotation leaves the state alone)."""
        seq = self.store.size() - 1
        while (last := self.store.event(seq))["kind"] == KIND:
            seq -= 1
        return str(last["state_digest_after" if "state_digest_after" in last else "state_digest"])

    def read_state(self) -> dict[str, Int64Array]:
        """Q, refused unless it is the state the signed log says it is."""
        tensors = self._read_checked(STATE, self.layout(), self.state_digest(), "merged state")
        return {name: array.astype(np.int64, copy=False) for name, array in tensors.items()}

    def read_mask(self, task_id: str, digest: str) -> dict[str, np.ndarray]:
        layout = self.layout("U8", packed=True)
        return self._read_checked(mask_file(task_id), layout, digest, f"mask of {task_id!r}")

    def read_vector(self, task_id: str) -> dict[str, Int64Array]:
        """q of a task whose vector is retained, from either encoding (FORMAT.md §3), refused
        unless it is the vector signed at its add."""
        task = self.store.task(task_id)
        if task is None:
            raise LedgerError(f"no task {task_id!r} in this ledger")
        relative, digest = vector_file(task_id), task.mask_digest

        def masks() -> dict[str, np.ndarray]:
            if digest is None:
                raise LedgerError(f"task {task_id!r} has no mask_digest for its vector to lie at")
            return self.read_mask(task_id, digest)

        q = read_vector(self.root / relative, self.root, self.trainable, task.method, masks)
        if set_digest(q) != task.vector_digest:
            raise LedgerError(f"{relative} does not match the signed log (the vector was altered)")
        return q

    def _read_checked(
        self, relative: str, layout: Layout, digest: str, what: str
    ) -> dict[str, np.ndarray]:
        tensors = read_tensors(self.root / relative, layout, self.root)
        if set_digest(tensors) != digest:
            raise LedgerError(f"{relative} does not match the signed log ({what} was altered)")
        return tensors

    def check_base(self) -> None:
        """θ0's files as signed at init: a swapped base would change every replay."""
        recorded: dict[str, str] = self.init["base_files"]
        present = {p.name for p in entries(self.base_dir, self.root)}  # scan: flat, regular
        if present != set(recorded):
            raise LedgerError("base/ does not hold the files signed at init")
        for name in sorted(recorded):  # sizes first: a sparse file would take hours to hash
            if name == "model.safetensors":
                check_size(self.base_dir / name, self.root)
            elif (self.base_dir / name).stat().st_size > BASE_FILE_BYTES:
                raise LedgerError(f"base/{name} is over FORMAT.md §1's {BASE_FILE_BYTES}-byte cap")
        for name, digest in sorted(recorded.items()):
            if sha256_file(self.base_dir / name, self.root) != digest:
                raise LedgerError(f"base/{name} differs from the file signed at init")

    def check_key(self, key: Ed25519PrivateKey) -> None:
        """Only the chain's current key signs new heads; a retired one is named as such."""
        given = raw_public(key.public_key()).hex()
        if given == self.chain.current:
            return
        retired = self.chain.retired_at(given)
        if retired is not None:
            raise LedgerError(
                f"the signing key was retired by the key rotation at event {retired}; "
                f"sign with the current key ({short_id(self.chain.current)})"
            )
        raise LedgerError("the signing key is not this ledger's key (its public key differs)")

    def commit(self, write: Write, plan: journal.Plan) -> None:
        """Journal, staged files, one DB transaction, then the file moves.

        On any failure the journal is settled by the database's verdict: a
        write that committed is finished, anything else rolled back.
        """
        try:
            journal.prepare(self.root, plan)
            self.store.apply(write)
        except OSError as exc:
            journal.settle(self.root, self.store.size(), plan)
            raise LedgerError(f"writing the ledger failed, nothing changed: {exc}") from exc
        except BaseException:
            journal.settle(self.root, self.store.size(), plan)
            raise
        journal.apply_plan(self.root, plan)

    def sign_next_head(self, key: Ed25519PrivateKey, event: dict[str, Any]) -> SignedHead:
        """The head the log will have once ``event`` is appended (certificates carry it)."""
        leaves = [*self.leaves, leaf_hash(canonical(event))]
        return sign_head(key, self.config.log_id, leaves, event["time"])


def config_from_init(init: dict[str, Any], log_id: str) -> Config:
    try:
        return Config(
            log_id,
            init["base_digest"],
            init["sign_seed"],
            init["scale_bits"],
            init["threads"],
            init["public_key"],
            init["retain_vectors"],
        )
    except KeyError as exc:
        raise LedgerError(f"the init event lacks {exc.args[0]!r}") from None


def _check_head(store: Store, leaves: list[bytes], key_hex: str) -> None:
    """The stored head of this size covers exactly these events, signed by ``key_hex``."""
    head = store.head(len(leaves))
    try:
        signature = base64.b64decode(head.signature, validate=True)
    except ValueError:
        signature = b""
    if not verifies(public_from_hex(key_hex), signature, head.body.encode()):
        raise LedgerError(
            f"the tree head of size {len(leaves)} is not signed by the key the chain puts "
            f"in force there ({short_id(key_hex)})"
        )
    fields = head_fields(head)
    if fields.get("root") != root_from_leaf_hashes(leaves).hex() or fields.get("size") != len(
        leaves
    ):
        raise LedgerError("the stored events do not match the signed tree head: history rewritten")


def _check_log(
    store: Store,
    config: Config,
    events: list[dict[str, Any]],
    leaves: list[bytes],
    trusted: Ed25519PublicKey | None,
) -> KeyChain:
    """The latest signed head must cover exactly the stored events, signed by its chain key,
    and each rotation's own head by the key it retires.

    The trusted key may be any key of the chain: the rotation heads it and its
    successors signed cover each later rotation, and each new key signed the
    history it took over. Without
    a trusted key only the keys the folder names can be used, which proves
    nothing against whoever wrote the folder: the caller says so.
    """
    try:
        chain = key_chain(events, leaves, config.log_id)
    except KeyError as exc:
        raise LedgerError(f"a key rotation event lacks {exc.args[0]!r}") from None
    if trusted is not None and raw_public(trusted).hex() not in {k for _, k in chain.keys}:
        raise LedgerError(
            f"the ledger is signed by key {short_id(chain.current)}, and no key of its chain "
            f"({chain.describe()}) is the one you trust ({short_id(raw_public(trusted).hex())})"
        )
    for first, _ in chain.keys[1:]:  # each rotation's own head, by the key it retires
        _check_head(store, leaves[: first - 1], chain.signer(first - 1))
    _check_head(store, leaves, chain.signer(len(leaves)))
    return chain


def _check_tasks(store: Store, events: list[dict[str, Any]]) -> None:
    """The tasks table is an index: it must be exactly what the signed events say."""
    tasks: dict[str, TaskRow] = {}
    try:
        for event in events[1:]:
            if event["kind"] != KIND:
                _replay_task(tasks, event)
    except KeyError as exc:
        raise LedgerError(f"an event lacks the field {exc.args[0]!r}") from None
    if sorted(store.tasks(), key=lambda t: t.task_id) != [tasks[t] for t in sorted(tasks)]:
        raise LedgerError("the tasks table differs from the signed events")


def _replay_task(tasks: dict[str, TaskRow], event: dict[str, Any]) -> None:
    task_id = event["task_id"]
    if event["kind"] == "add" and task_id not in tasks:
        tasks[task_id] = TaskRow(
            task_id,
            event["method"],
            "active",
            event["seq"],
            None,
            event["data_hash"],
            event["vector_digest"],
            event["mask_digest"],
        )
    elif event["kind"] == "unlearn" and task_id in tasks and tasks[task_id].status == "active":
        tasks[task_id] = replace(tasks[task_id], status="unlearned", unlearn_seq=event["seq"])
    else:
        raise LedgerError(f"event {event['seq']} is not a valid {event['kind']} of {task_id!r}")


WAL = DB_NAME + ".wal"
BASE_FILE_BYTES = 1 << 26  # a base file other than the weights, whose header bounds them


def _connect(root: Path, read_only: bool, wait: float) -> Store:
    """DuckDB lets one read-write or many read-only connections hold the file: wait our turn."""
    deadline = time.monotonic() + wait
    while True:
        try:
            return Store(root / DB_NAME, read_only=read_only)
        except StoreLocked:
            if time.monotonic() >= deadline:
                raise LedgerError(f"ledger busy: held by {journal.lock_holder(root)}") from None
            time.sleep(0.05)


@contextmanager
def open_ledger(
    root: Path,
    *,
    trusted: Ed25519PublicKey | None = None,
    write: bool = False,
    wait: float = journal.DEFAULT_WAIT,
) -> Iterator[Ledger]:
    """The folder scanned, recovered and checked against its signed log.

    A writer holds the lock and the database for as long as the context lasts,
    so it should open the ledger only to commit. A reader takes no lock: its
    read-only connection keeps any writer from committing while it reads, and
    a writer holds the database from before its journal exists until after
    its files are in place, so a reader sees one write or the next, never half
    of one. Only a journal (or the journal's own temporary file) a crash left
    behind sends a reader through the writer's recovery first; other staged
    files without a journal cannot come from a crash, and a reader only
    reports them.

    ``trusted``: the public key the caller trusts (a writer's is its signing
    key, compared by ``check_key``). A writer also removes staged files that
    no journal names; a reader only reports them.
    """
    root = root.resolve()
    if not os.path.lexists(root / DB_NAME):
        raise LedgerError(f"{root} is not a ledger (no {DB_NAME}); create one with ledger init")
    scan(root)
    if write:
        with journal.writer_lock(root, wait):
            store = _connect(root, read_only=False, wait=wait)
            try:
                store.check_catalog(root / DB_NAME)
                journal.settle(root, store.size())
                journal.remove_leftovers(root, scan(root))
                yield _checked(root, store, trusted, [])
            finally:
                store.close()
        return
    store = _connect(root, read_only=True, wait=wait)
    try:
        store.check_catalog(root / DB_NAME)
        if any(os.path.lexists(root / name) for name in (JOURNAL, JOURNAL + ".tmp")) or (
            os.path.lexists(root / WAL) and os.lstat(root / WAL).st_size
        ):  # a write a crash interrupted: recovery checkpoints the WAL too
            store.close()
            with open_ledger(root, trusted=trusted, write=True, wait=wait):
                pass  # recovery: the crashed write finished or rolled back
            store = _connect(root, read_only=True, wait=wait)
            store.check_catalog(root / DB_NAME)
        yield _checked(root, store, trusted, scan(root))
    finally:
        store.close()


def _checked(
    root: Path, store: Store, trusted: Ed25519PublicKey | None, leftovers: list[str]
) -> Ledger:
    leaves, events = store.log()
    if not events:
        raise LedgerError("ledger has no init event")
    init = events[0]
    config = config_from_init(init, leaves[0].hex())
    if store.config() != config:
        raise LedgerError("the config table differs from the signed init event")
    chain = _check_log(store, config, events, leaves, trusted)
    _check_tasks(store, events)
    return Ledger(root, store, config, init, leaves, trusted is not None, chain, leftovers)
