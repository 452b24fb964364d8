"""A ledger folder (docs/FORMAT.md §1): layout, opening under the writer lock, committing.

Every command opens the folder through ``open_ledger``, which takes the lock
and finishes or rolls back any write a crash interrupted, so no command ever
sees a half-applied write.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger._internal import journal
from ledger._internal.basemodel import load_model, trainable_names
from ledger._internal.codec import Int64Array
from ledger._internal.digest import file_sha256, set_digest
from ledger._internal.errors import LedgerError
from ledger._internal.keys import key_id, load_private, raw_public
from ledger._internal.merkle import leaf_hash
from ledger._internal.store import FORMAT, Config, SignedHead, Store, Write, canonical
from ledger._internal.tensorfile import fsync_dir, read_tensors, write_tensors
from ledger._internal.treehead import sign_head, utc_now

DB_NAME = "ledger.duckdb"
KEY_PATH_FILE = "signing_key_path"
_TASK_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def check_task_id(task_id: str) -> str:
    if not _TASK_ID.fullmatch(task_id):
        raise LedgerError(
            f"invalid task id {task_id!r}: use 1-128 of A-Z a-z 0-9 . _ - "
            "(not starting with . _ -)",
            exit_code=2,
        )
    return task_id


@dataclass
class Ledger:
    root: Path
    store: Store
    config: Config
    trainable: dict[str, tuple[int, ...]]

    @property
    def base_dir(self) -> Path:
        return self.root / "base"

    @property
    def state_path(self) -> Path:
        return self.root / "state.safetensors"

    def vector_path(self, task_id: str) -> Path:
        return self.root / "vectors" / f"{task_id}.safetensors"

    def mask_path(self, task_id: str) -> Path:
        return self.root / "masks" / f"{task_id}.safetensors"

    def default_key_path(self) -> Path:
        """The private key named at init; the ledger stores its path, never the key."""
        try:
            return Path((self.root / KEY_PATH_FILE).read_text().strip())
        except OSError:
            raise LedgerError("no default signing key recorded; pass --key") from None

    def certificate_copy(self, seq: int) -> Path:
        return self.root / "certificates" / f"{seq}.dsse.json"

    def read_state(self) -> dict[str, Int64Array]:
        tensors = read_tensors(self.state_path)
        state: dict[str, Int64Array] = {}
        for name, shape in self.trainable.items():
            array = tensors.get(name)
            if array is None or array.dtype != np.int64 or array.shape != shape:
                raise LedgerError(f"state file is damaged: tensor {name!r} missing or wrong")
            state[name] = array.astype(np.int64, copy=False)
        return state

    def state_digest(self) -> str:
        last = self.store.event(self.store.size() - 1)
        return str(last["state_digest_after" if "state_digest_after" in last else "state_digest"])

    def check_key(self, key: Ed25519PrivateKey) -> None:
        if raw_public(key.public_key()).hex() != self.config.public_key:
            raise LedgerError("the signing key is not this ledger's key (its public key differs)")

    def commit(self, write: Write, plan: journal.Plan) -> None:
        """Journal, staged files, one DB transaction, then the file moves."""
        journal.prepare(self.root, plan)
        try:
            self.store.apply(write)
        except BaseException:
            journal.discard_plan(self.root, plan)
            raise
        journal.apply_plan(self.root, plan)

    def sign_next_head(self, key: Ed25519PrivateKey, event: dict[str, Any]) -> SignedHead:
        """The head the log will have once ``event`` is appended (certificates carry it)."""
        leaves = [*self.store.leaf_hashes(), leaf_hash(canonical(event))]
        return sign_head(key, self.config.log_id, leaves, event["time"])


@contextmanager
def open_ledger(root: Path) -> Iterator[Ledger]:
    if not (root / DB_NAME).is_file():
        raise LedgerError(f"{root} is not a ledger (no {DB_NAME}); create one with ledger init")
    with journal.writer_lock(root):
        store = Store(root / DB_NAME)
        try:
            journal.recover(root, store.size())
            init = store.init_event()
            trainable = {name: tuple(shape) for name, shape in init["trainable"].items()}
            yield Ledger(root, store, store.config(), trainable)
        finally:
            store.close()


def init_ledger(
    root: Path,
    base: Path,
    key_path: Path,
    sign_seed: int,
    scale_bits: int,
    threads: int,
    retain_vectors: bool,
) -> str:
    """Build the ledger in a sibling folder and rename it into place: all or nothing."""
    if (root / DB_NAME).exists():
        raise LedgerError(f"{root} already holds a ledger")
    if root.exists() and any(root.iterdir()):
        raise LedgerError(f"{root} exists and is not empty")
    key = load_private(key_path)
    model, _ = load_model(base)
    names = trainable_names(model)
    params = dict(model.named_parameters())
    trainable = {name: tuple(params[name].shape) for name in names}
    building = root.with_name(root.name + ".init-tmp")
    shutil.rmtree(building, ignore_errors=True)
    try:
        shutil.copytree(base, building / "base")
        base_tensors = read_tensors(building / "base" / "model.safetensors")
        for name, shape in trainable.items():
            if name not in base_tensors or base_tensors[name].shape != shape:
                raise LedgerError(
                    f"base model file lacks parameter {name!r}; build the base with ledger base"
                )
        zeros = {name: np.zeros(shape, dtype=np.int64) for name, shape in trainable.items()}
        write_tensors(building / "state.safetensors", zeros)
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
                str(p.relative_to(building / "base")): file_sha256(p.read_bytes())
                for p in sorted((building / "base").rglob("*"))
                if p.is_file()
            },
            "sign_seed": sign_seed,
            "scale_bits": scale_bits,
            "threads": threads,
            "public_key": public,
            "retain_vectors": retain_vectors,
            "trainable": {name: list(shape) for name, shape in trainable.items()},
            "state_digest": set_digest(zeros),
        }
        log_id = leaf_hash(canonical(init_event)).hex()
        config = Config(
            log_id,
            str(init_event["base_digest"]),
            sign_seed,
            scale_bits,
            threads,
            public,
            retain_vectors,
        )
        head = sign_head(key, log_id, [bytes.fromhex(log_id)], str(init_event["time"]))
        Store.create(building / DB_NAME, config, init_event, head).close()
        if root.exists():
            root.rmdir()
        os.replace(building, root)
        fsync_dir(root.parent)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    return f"{log_id} (key {key_id(key.public_key())[:16]})"
