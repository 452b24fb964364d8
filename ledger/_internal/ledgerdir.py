"""A ledger folder (docs/FORMAT.md §1): layout, opening under the writer lock, committing.

Every command opens the folder through ``open_ledger``, which takes the lock,
finishes or rolls back any write a crash interrupted, and checks the folder
against its own signed log before anything is read or appended: the DuckDB
rows and files are only indexes, and signing a new head over a rewritten
history would launder the rewrite.
"""

from __future__ import annotations

import base64
import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ledger._internal import journal
from ledger._internal.basemodel import load_model, trainable_names
from ledger._internal.codec import Int64Array
from ledger._internal.digest import set_digest
from ledger._internal.errors import LedgerError
from ledger._internal.jcs import canonical, loads_strict
from ledger._internal.keys import key_id, load_private, public_from_hex, raw_public, verifies
from ledger._internal.layout import BASE, DB_NAME, KEY_PATH_FILE, STATE, mask_file, scan
from ledger._internal.merkle import leaf_hash, root_from_leaf_hashes
from ledger._internal.safefs import entries, read_regular, sha256_file
from ledger._internal.store import FORMAT, Config, SignedHead, Store, TaskRow, Write
from ledger._internal.tensorfile import (
    Layout,
    fsync_dir,
    fsync_tree,
    read_tensors,
    write_tensors,
)
from ledger._internal.treehead import head_fields, sign_head, utc_now

# Pickle checkpoints run code when loaded: a base may hold none of them.
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


@dataclass
class Ledger:
    root: Path
    store: Store
    config: Config
    init: dict[str, Any]
    leaves: list[bytes]  # of the stored events, checked against the latest signed head
    key_trusted: bool  # the head was checked against a key from outside the folder
    leftovers: list[
        str
    ]  # staged files no journal names (a reader shows them, a writer removes them)

    @property
    def base_dir(self) -> Path:
        return self.root / BASE

    @property
    def trainable(self) -> dict[str, tuple[int, ...]]:
        return {name: tuple(shape) for name, shape in self.init["trainable"].items()}

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
        last = self.store.event(self.store.size() - 1)
        return str(last["state_digest_after" if "state_digest_after" in last else "state_digest"])

    def read_state(self) -> dict[str, Int64Array]:
        """Q, refused unless it is the state the signed log says it is."""
        tensors = self._read_checked(STATE, self.layout(), self.state_digest(), "merged state")
        return {name: array.astype(np.int64, copy=False) for name, array in tensors.items()}

    def read_mask(self, task_id: str, digest: str) -> dict[str, np.ndarray]:
        layout = self.layout("U8", packed=True)
        return self._read_checked(mask_file(task_id), layout, digest, f"mask of {task_id!r}")

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
        for name, digest in sorted(recorded.items()):
            if sha256_file(self.base_dir / name, self.root) != digest:
                raise LedgerError(f"base/{name} differs from the file signed at init")

    def check_key(self, key: Ed25519PrivateKey) -> None:
        if raw_public(key.public_key()).hex() != self.config.public_key:
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


def _config_from_init(init: dict[str, Any], log_id: str) -> Config:
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


def _check_log(
    store: Store, config: Config, leaves: list[bytes], trusted: Ed25519PublicKey | None
) -> None:
    """The latest signed head must cover exactly the stored events, signed by the trusted key.

    Without a trusted key only the key the folder names can be used, which proves
    nothing against whoever wrote the folder: the caller says so.
    """
    if trusted is not None and raw_public(trusted).hex() != config.public_key:
        raise LedgerError(
            f"the ledger is signed by key {config.public_key[:16]}…, not the one you trust "
            f"({raw_public(trusted).hex()[:16]}…)"
        )
    head = store.head(len(leaves))
    try:
        signature = base64.b64decode(head.signature, validate=True)
    except ValueError:
        signature = b""
    key = trusted or public_from_hex(config.public_key)
    if not verifies(key, signature, head.body.encode()):
        raise LedgerError(f"the tree head of size {len(leaves)} is not signed by the ledger key")
    fields = head_fields(head)
    if fields.get("root") != root_from_leaf_hashes(leaves).hex() or fields.get("size") != len(
        leaves
    ):
        raise LedgerError("the stored events do not match the signed tree head: history rewritten")


def _check_tasks(store: Store, events: list[dict[str, Any]]) -> None:
    """The tasks table is an index: it must be exactly what the signed events say."""
    tasks: dict[str, TaskRow] = {}
    try:
        for event in events[1:]:
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


@contextmanager
def open_ledger(
    root: Path, *, trusted: Ed25519PublicKey | None = None, write: bool = False
) -> Iterator[Ledger]:
    """The folder scanned, recovered and checked against its signed log.

    ``trusted``: the public key the caller trusts (a writer's is its signing
    key, compared by ``check_key``). A writer also removes staged files that
    no journal names; a reader only reports them.
    """
    root = root.resolve()
    if not os.path.lexists(root / DB_NAME):
        raise LedgerError(f"{root} is not a ledger (no {DB_NAME}); create one with ledger init")
    scan(root)
    with journal.writer_lock(root):
        store = Store(root / DB_NAME, read_only=not write)
        try:
            store.check_catalog()
            journal.settle(root, store.size())
            leftovers = scan(root)
            if write:
                journal.remove_leftovers(root, leftovers)
                leftovers = []
            leaves, events = store.log()
            if not events:
                raise LedgerError("ledger has no init event")
            init = events[0]
            config = _config_from_init(init, leaves[0].hex())
            if store.config() != config:
                raise LedgerError("the config table differs from the signed init event")
            _check_log(store, config, leaves, trusted)
            _check_tasks(store, events)
            yield Ledger(root, store, config, init, leaves, trusted is not None, leftovers)
        finally:
            store.close()


def _check_base_source(base: Path) -> None:
    """A base as `ledger base` writes it: flat, safetensors weights, no pickle to unpickle."""
    if not base.is_dir():
        raise LedgerError(f"base {base} is not a folder")
    names = sorted(os.listdir(base))
    for name in names:
        if not (base / name).is_file():
            raise LedgerError(f"base {base} holds {name!r}, which is not a file (a base is flat)")
        if name.endswith(_PICKLE_SUFFIXES):
            raise LedgerError(
                f"base {base} holds pickle file {name!r}: loading one runs code; "
                "save the model with safetensors only"
            )
    for needed in ("config.json", "model.safetensors"):
        if needed not in names:
            raise LedgerError(f"base {base} has no {needed}; build it with ledger base")


def _base_trainable(base: Path, building: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """θ0's tensors and trainable shapes, refusing a base the format cannot describe."""
    # our reader first: a damaged file gets a clear line, not the loader's error
    tensors = read_tensors(building / BASE / "model.safetensors", root=building)
    model, _ = load_model(building / BASE)
    params = dict(model.named_parameters())
    trainable = {name: list(params[name].shape) for name in trainable_names(model)}
    if any(t.dtype != np.float32 for t in tensors.values()):
        raise LedgerError("base model tensors must all be float32; build it with ledger base")
    stored = {n: list(t.shape) for n, t in tensors.items() if "embeddings." not in n}
    if stored != trainable:
        raise LedgerError(
            "base model file's tensors are not its parameters; build the base with ledger base"
        )
    return tensors, trainable


def init_ledger(
    root: Path,
    base: Path,
    key_path: Path,
    sign_seed: int,
    scale_bits: int,
    threads: int,
    retain_vectors: bool,
) -> str:
    """Build the ledger in a private sibling folder, fsync it, rename it into place."""
    root = root.resolve()
    if (root / DB_NAME).exists():
        raise LedgerError(f"{root} already holds a ledger")
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise LedgerError(f"{root} exists and is not an empty folder")
    if not root.parent.is_dir():
        raise LedgerError(f"{root.parent} does not exist")
    key = load_private(key_path)
    _check_base_source(base)
    building = Path(tempfile.mkdtemp(prefix=f".{root.name}.init-", dir=root.parent))
    try:
        shutil.copytree(base, building / BASE)
        base_tensors, trainable = _base_trainable(base, building)
        zeros = {name: np.zeros(shape, dtype=np.int64) for name, shape in trainable.items()}
        write_tensors(building / STATE, zeros)
        for sub in ("vectors", "masks", "certificates"):
            (building / sub).mkdir()
        (building / KEY_PATH_FILE).write_text(str(key_path.resolve()) + "\n")
        public = raw_public(key.public_key()).hex()
        init_event = {
            "kind": "init",
            "seq": 0,
            "format": FORMAT,
            "time": utc_now(),
            "base_digest": set_digest(base_tensors),
            "base_files": {
                p.name: sha256_file(p, building) for p in entries(building / BASE, building)
            },
            "sign_seed": sign_seed,
            "scale_bits": scale_bits,
            "threads": threads,
            "public_key": public,
            "retain_vectors": retain_vectors,
            "trainable": trainable,
            "state_digest": set_digest(zeros),
        }
        log_id = leaf_hash(canonical(init_event)).hex()
        head = sign_head(key, log_id, [bytes.fromhex(log_id)], str(init_event["time"]))
        config = _config_from_init(init_event, log_id)
        Store.create(building / DB_NAME, config, init_event, head).close()
        fsync_tree(building)
        if root.exists():
            root.rmdir()
        os.replace(building, root)
        fsync_dir(root.parent)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    return f"{log_id} (key {key_id(key.public_key())[:16]})"
