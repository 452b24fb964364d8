"""``ledger init``: a new ledger folder over a base model, built aside and renamed into place.

Kept apart from ``ledgerdir`` because only building a ledger loads a model:
commands that read a ledger never import torch or transformers through here.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ledger import defaults
from ledger._internal.attest.keys import key_id, load_private, raw_public
from ledger._internal.errors import LedgerError
from ledger._internal.folder.layout import BASE, DB_NAME, KEY_PATH_FILE, STATE
from ledger._internal.folder.ledgerdir import config_from_init
from ledger._internal.folder.safefs import entries, sha256_file
from ledger._internal.folder.store import FORMAT, Store
from ledger._internal.log.events import InitEvent
from ledger._internal.log.jcs import canonical
from ledger._internal.log.merkle import leaf_hash
from ledger._internal.log.treehead import sign_head, utc_now
from ledger._internal.model.loading import load_model, trainable_names
from ledger._internal.vectors.digest import set_digest
from ledger._internal.vectors.rules import rule
from ledger._internal.vectors.tensorfile import fsync_dir, fsync_tree, read_tensors, write_tensors

# Pickle checkpoints run code when loaded: a base may hold none of them.
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


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
    *,
    sign_seed: int = defaults.SIGN_SEED,
    scale_bits: int = defaults.SCALE_BITS,
    threads: int = defaults.THREADS,
    retain_vectors: bool = True,
    serving_rule: str = defaults.SERVING_RULE,
) -> str:
    """Build the ledger in a private sibling folder, fsync it, rename it into place."""
    rule(serving_rule)  # an unknown rule is refused before anything is written
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
        init_event = InitEvent(
            seq=0,
            format=FORMAT,
            time=utc_now(),
            base_digest=set_digest(base_tensors),
            base_files={
                p.name: sha256_file(p, building) for p in entries(building / BASE, building)
            },
            sign_seed=sign_seed,
            scale_bits=scale_bits,
            threads=threads,
            public_key=public,
            retain_vectors=retain_vectors,
            trainable=trainable,
            state_digest=set_digest(zeros),
            serving_rule=serving_rule,
        ).to_json()
        log_id = leaf_hash(canonical(init_event)).hex()
        head = sign_head(key, log_id, [bytes.fromhex(log_id)], str(init_event["time"]))
        config = config_from_init(init_event, log_id)
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
