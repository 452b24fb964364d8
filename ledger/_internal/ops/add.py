"""Fine-tune a task, quantise, digest, sign, record and merge it (``ledger add``)."""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger import defaults
from ledger._internal.attest.keys import load_private
from ledger._internal.data.records import Dataset, load_dataset
from ledger._internal.errors import LedgerError
from ledger._internal.folder import journal
from ledger._internal.folder.journal import DEFAULT_WAIT
from ledger._internal.folder.layout import STATE, check_task_id, mask_file, vector_file
from ledger._internal.folder.ledgerdir import Ledger, open_ledger
from ledger._internal.folder.store import Config, TaskRow, Write
from ledger._internal.log.events import AddEvent
from ledger._internal.log.treehead import utc_now
from ledger._internal.training.spec import TrainSpec
from ledger._internal.vectors import state
from ledger._internal.vectors.codec import Int64Array
from ledger._internal.vectors.digest import set_digest
from ledger._internal.vectors.tensorfile import write_tensors
from ledger._internal.vectors.vector import TaskVector

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Hyper:
    """The training choices a caller makes; the ledger fixes the rest of the TrainSpec."""

    steps: int = defaults.STEPS
    lr: float = defaults.LR
    batch_size: int = defaults.BATCH_SIZE
    max_length: int = defaults.MAX_LENGTH


def derive_task_seed(sign_seed: int, task_id: str) -> int:
    """Same id, same ledger seed -> same seed, so two ledgers reproduce each other's vectors."""
    digest = hashlib.sha256(
        b"ulg:task-seed:v1\x00" + struct.pack("<Q", sign_seed) + task_id.encode("utf-8")
    ).digest()
    return int.from_bytes(digest[:8], "little") >> 11


def _refuse_existing(ledger: Ledger, task_id: str) -> None:
    existing = ledger.store.task(task_id)
    if existing is not None:
        raise LedgerError(
            f"task {task_id!r} is {existing.status} in this ledger; ids are never reused"
        )


def tombstones(
    ledger: Ledger, data_hash: str, vector_digest: str | None, readd_deleted: bool
) -> list[dict[str, Any]]:
    """The unlearned tasks this add would bring back; refused unless ``readd_deleted``.

    The same data is the same data hash (the same records, in the same order);
    the same vector is the same digest. Either would restore, bit for bit,
    what a certificate says was deleted.
    """
    found = [
        t
        for t in ledger.store.tasks()
        if t.status == "unlearned"
        and (t.data_hash == data_hash or t.vector_digest == vector_digest)
    ]
    if found and not readd_deleted:
        t = found[0]
        what = "data" if t.data_hash == data_hash else "vector"
        raise LedgerError(
            f"this {what} was deleted: task {t.task_id!r}, unlearned at event {t.unlearn_seq} "
            f"(certificates/{t.unlearn_seq}.dsse.json); pass --readd-deleted to add it again"
        )
    return [{"task_id": t.task_id, "unlearn_seq": t.unlearn_seq} for t in found]


def check_request(task_id: str, method: str, hyper: Hyper) -> None:
    """The request's own errors, refused before the ledger is even opened."""
    check_task_id(task_id)
    if method not in ("sift", "ft"):
        raise LedgerError(f"unknown method {method!r}: use sift or ft", exit_code=2)
    if hyper.steps < 1 or hyper.batch_size < 1 or hyper.max_length < 2 or not hyper.lr > 0:
        raise LedgerError("steps, batch size and lr must be positive", exit_code=2)


def signing_key(ledger: Ledger, key_path: Path | None) -> Ed25519PrivateKey:
    """Checked before training, so a wrong or retired key costs no fine-tune."""
    key = load_private(key_path or ledger.default_key_path())
    ledger.check_key(key)
    return key


def task_spec(
    config: Config, task_id: str, method: str, seed: int | None, hyper: Hyper
) -> TrainSpec:
    """The ledger fixes threads and the sign seed; the caller chooses the rest."""
    return TrainSpec(
        method=method,  # type: ignore[arg-type]
        seed=derive_task_seed(config.sign_seed, task_id) if seed is None else seed,
        steps=hyper.steps,
        lr=hyper.lr,
        batch_size=hyper.batch_size,
        max_length=hyper.max_length,
        threads=config.threads,
        sign_seed=config.sign_seed,
    )


def train_task(
    task_id: str,
    base_dir: Path,
    dataset: Dataset,
    spec: TrainSpec,
    scale_bits: int,
    progress: Progress | None = None,
) -> tuple[Trained, int]:
    """The unlocked phase: θ0 + data + spec -> quantised vector and determinism record.

    ``add`` and every ``add-many`` worker run exactly this, so a vector cannot
    depend on which of them trained it. Returns how many texts were cut too.
    Only this phase needs torch and transformers (seconds to import), so they are
    imported here: add-many's committing process, which only checks and commits,
    never loads them.
    """
    from ledger._internal.model.loading import texts_cut
    from ledger._internal.training.determinism import record
    from ledger._internal.training.finetune import finetune

    cut = texts_cut(base_dir, dataset.texts, spec.max_length)
    tau = finetune(base_dir, dataset.texts, dataset.labels, spec, progress)
    vector = TaskVector.from_tau(tau, scale_bits, spec.method, spec.sign_seed)
    trained = Trained(task_id, dataset.data_hash, len(dataset.records), spec, record(spec), vector)
    return trained, cut


def add_task(  # noqa: PLR0913  (keyword-only: one per `ledger add` option)
    root: Path,
    task_id: str,
    data_path: Path,
    *,
    method: str = "sift",
    seed: int | None = None,
    hyper: Hyper = Hyper(),
    key_path: Path | None = None,
    progress: Progress | None = None,
    wait: float = DEFAULT_WAIT,
    readd_deleted: bool = False,
) -> dict[str, Any]:
    """Check, train without the lock, then commit on top of whatever landed meanwhile.

    The vector depends on the task's data, spec and θ0 alone, never on the
    other tasks, so a commit that happened during training changes nothing
    but the state it is added to (re-read under the lock). Returns the event,
    and as ``texts_cut`` how many texts ``max_length`` cut.
    """
    check_request(task_id, method, hyper)
    with open_ledger(root, wait=wait) as ledger:
        _refuse_existing(ledger, task_id)
        key = signing_key(ledger, key_path)
        ledger.check_base()
        dataset = load_dataset(data_path, ledger.num_labels)
        tombstones(ledger, dataset.data_hash, None, readd_deleted)
        ledger.read_state()  # a damaged folder is refused before any training
        config, base_dir = ledger.config, ledger.base_dir
    spec = task_spec(config, task_id, method, seed, hyper)
    trained, cut = train_task(task_id, base_dir, dataset, spec, config.scale_bits, progress)
    event = commit_add(root, trained, key, config, readd_deleted=readd_deleted, wait=wait)
    return {**event, "texts_cut": cut}


def commit_add(
    root: Path,
    trained: Trained,
    key: Ed25519PrivateKey,
    config: Config,
    *,
    readd_deleted: bool = False,
    wait: float = DEFAULT_WAIT,
) -> dict[str, Any]:
    """The locked phase: re-check what training did not hold the lock for, then one
    journaled write. ``config`` is the ledger as it was when training began."""
    task_id = trained.task_id
    with open_ledger(root, write=True, wait=wait) as ledger:
        if ledger.config != config:
            raise LedgerError("the ledger was replaced while the task trained; nothing changed")
        ledger.check_key(key)  # a rotation may have retired it meanwhile
        _refuse_existing(ledger, task_id)
        readds = tombstones(ledger, trained.data_hash, trained.vector.vector_digest, readd_deleted)
        ledger.check_base()
        tip = state.Tip(
            ledger.store.size(),
            ledger.read_state(),
            ledger.state_digest(),
            ledger.store.active_ids(),
        )
        planned = plan_add(trained, tip, utc_now(), readds)
        event, vector = planned.event.to_json(), trained.vector
        files = journal.Plan(tip.seq + 1)
        files.put(STATE, lambda p: write_tensors(p, planned.merged))
        if config.retain_vectors:
            files.put(vector_file(task_id), lambda p: write_tensors(p, *vector.stored()))
        if vector.mask is not None:
            mask = vector.mask
            files.put(mask_file(task_id), lambda p: write_tensors(p, mask))
        ledger.commit(Write(event, ledger.sign_next_head(key, event), planned.row), files)
        return event


@dataclass(frozen=True)
class Trained:
    """What the unlocked phase produced: the task's vector and the record of how."""

    task_id: str
    data_hash: str
    n_records: int
    spec: TrainSpec
    determinism: dict[str, Any]
    vector: TaskVector


@dataclass(frozen=True)
class AddPlan:
    """Everything an add appends, computed without I/O: the event, the row, the new Q."""

    event: AddEvent
    row: TaskRow
    merged: dict[str, Int64Array]


def plan_add(trained: Trained, tip: state.Tip, time: str, readds: list[dict[str, Any]]) -> AddPlan:
    """The add as a function of the trained vector and the ledger's tip alone, so that it
    can be tested, and reasoned about, apart from files, locks and journals.

    It takes ``tip.state`` over: its tensors are replaced one by one as they are
    merged, so the peak stays Q plus one tensor (a copy would double it)."""
    vector = trained.vector
    merged = state.add(tip.state, vector.q)
    event = AddEvent(
        seq=tip.seq,
        time=time,
        task_id=trained.task_id,
        method=trained.spec.method,
        data_hash=trained.data_hash,
        n_records=trained.n_records,
        spec=trained.spec.to_dict(),
        determinism=trained.determinism,
        vector_digest=vector.vector_digest,
        mask_digest=vector.mask_digest,
        state_digest_before=tip.state_digest,
        state_digest_after=set_digest(merged),
        active_after=sorted([*tip.active, trained.task_id]),
        readds=readds or None,  # the deletions this add knowingly reverses
    )
    row = TaskRow(
        trained.task_id,
        trained.spec.method,
        "active",
        tip.seq,
        None,
        trained.data_hash,
        vector.vector_digest,
        vector.mask_digest,
    )
    return AddPlan(event, row, merged)
