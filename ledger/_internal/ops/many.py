"""``ledger add-many``: train a manifest's tasks in parallel workers, commit them in one process.

A task's vector depends on θ0, its data and its spec alone (``add`` trains
without the lock for that reason), so training is the part worth spreading
over processes or a Ray cluster, and nothing about it needs the ledger. The
ledger itself keeps one writer: this process commits each trained task with
``add``'s own commit (``commit_add``), in the manifest's order, so every
invariant and every crash-safety property of ``add`` holds task by task.

This module imports neither torch nor the training code at its top: a worker
unpickles the worker function by importing this module, and a Ray worker must
get to pin the bit-changing environment variables before torch reads them.
"""

from __future__ import annotations

import importlib.util
import json
import multiprocessing
import os
import queue
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from ledger import defaults
from ledger._internal.errors import LedgerError
from ledger._internal.folder.journal import DEFAULT_WAIT
from ledger._internal.folder.safefs import read_user_file, sha256_file
from ledger._internal.log.jcs import loads_strict

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from ledger._internal.folder.ledgerdir import Ledger
    from ledger._internal.folder.store import Config
    from ledger._internal.ops.add import Trained
    from ledger._internal.training.spec import TrainSpec

Progress = Callable[[int, int], None]
MANIFEST_BYTES = 16 << 20  # a manifest names files; it never needs to be large
_INTEGERS = ("seed", "steps", "batch_size", "max_length")
_FIELDS = (  # an entry's fields: `ledger add`'s options, and task and data
    "task",
    "data",
    "method",
    "seed",
    "steps",
    "lr",
    "batch_size",
    "max_length",
    "readd_deleted",
)


@dataclass(frozen=True)
class Settings:
    """The batch's defaults (add-many's options); any entry may override each one."""

    method: str = "sift"
    steps: int = defaults.STEPS
    lr: float = defaults.LR
    batch_size: int = defaults.BATCH_SIZE
    max_length: int = defaults.MAX_LENGTH
    readd_deleted: bool = False


@dataclass(frozen=True)
class Entry:
    """One manifest entry, its data path made absolute so any worker can open it."""

    where: str  # "tasks.jsonl: line 3": every message about the entry starts with it
    task_id: str
    data: Path
    method: str
    seed: int | None
    steps: int
    lr: float
    batch_size: int
    max_length: int
    readd_deleted: bool


def _field(where: str, item: dict[str, Any], name: str, default: Any) -> Any:
    """A field's value, type-checked here because the manifest is JSON (True is no step count)."""
    value = item.get(name, default)
    if value is None and name == "seed":
        return None
    if name in ("task", "data", "method"):
        ok = isinstance(value, str) and value != ""
    elif name == "readd_deleted":
        ok = isinstance(value, bool)
    elif name == "lr":
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    else:
        ok = isinstance(value, int) and not isinstance(value, bool)
    if not ok:
        kind = {"readd_deleted": "true or false", "lr": "a number"}.get(
            name, "an integer" if name in _INTEGERS else "a non-empty string"
        )
        raise LedgerError(f"{where}: {name!r} must be {kind}, not {json.dumps(value)}")
    return value


def _entry(where: str, item: Any, folder: Path, settings: Settings) -> Entry:
    if not isinstance(item, dict):
        raise LedgerError(f"{where}: not a JSON object")
    unknown = sorted(set(item) - set(_FIELDS))
    if unknown:
        raise LedgerError(f"{where}: unknown field {unknown[0]!r} (allowed: {', '.join(_FIELDS)})")
    for name in ("task", "data"):
        if name not in item:
            raise LedgerError(f"{where}: missing field {name!r}")
    value = {name: _field(where, item, name, getattr(settings, name, None)) for name in _FIELDS}
    data = Path(value["data"])
    return Entry(
        where=where,
        task_id=value["task"],
        data=Path(os.path.abspath(data if data.is_absolute() else folder / data)),
        method=value["method"],
        seed=value["seed"],
        steps=value["steps"],
        lr=float(value["lr"]),
        batch_size=value["batch_size"],
        max_length=value["max_length"],
        readd_deleted=value["readd_deleted"],
    )


def _json_error(exc: ValueError) -> str:
    return exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)


def read_manifest(path: Path, settings: Settings = Settings()) -> list[Entry]:
    """Every entry, checked for shape before any of them is acted on.

    JSONL (one object a line, blank lines skipped) or one JSON array of the
    same objects; a repeated key or task id is refused, since either would
    leave it to chance which value or which entry is meant.
    """
    try:
        text = read_user_file(path, MANIFEST_BYTES).decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise LedgerError(f"{path}: not UTF-8 ({exc.reason} at byte {exc.start})") from None
    located: list[tuple[str, Any]] = []
    if text.lstrip().startswith("["):
        try:
            items = loads_strict(text)
        except ValueError as exc:
            raise LedgerError(f"{path}: malformed JSON ({_json_error(exc)})") from None
        if not isinstance(items, list):
            raise LedgerError(f"{path}: a JSON manifest is one array of task objects")
        located = [(f"{path}: entry {n}", item) for n, item in enumerate(items, start=1)]
    else:
        for n, line in enumerate(text.split("\n"), start=1):
            if line.strip():
                try:
                    located.append((f"{path}: line {n}", loads_strict(line)))
                except ValueError as exc:
                    raise LedgerError(
                        f"{path}: line {n}: malformed JSON ({_json_error(exc)})"
                    ) from None
    if not located:
        raise LedgerError(f"{path}: no tasks")
    entries = [_entry(where, item, path.parent, settings) for where, item in located]
    first: dict[str, str] = {}
    for entry in entries:
        if entry.task_id in first:
            raise LedgerError(
                f"{entry.where}: task {entry.task_id!r} already appears at {first[entry.task_id]}"
            )
        first[entry.task_id] = entry.where.removeprefix(f"{path}: ")
    return entries


@dataclass(frozen=True)
class Job:
    """One task as a worker receives it: paths and plain values only, so it travels to a
    spawned process or a Ray node unchanged, and the worker checks what it finds there."""

    index: int
    task_id: str
    base_dir: str
    base_files: dict[str, str]  # name -> hex SHA-256, as signed at init
    data: str
    data_hash: str  # as the manifest check found it
    spec: dict[str, Any]
    scale_bits: int
    num_labels: int
    environ: dict[str, str | None]  # the committing process's bit-changing variables


@dataclass(frozen=True)
class Outcome:
    """A worker's answer; a failure travels as text, never as an exception object, so
    nothing a worker raises can break the pool's unpickling of results."""

    index: int
    trained: Trained | None
    texts_cut: int = 0
    error: str | None = None


def describe(exc: BaseException) -> str:
    """One line, as the CLI's error lines are."""
    if isinstance(exc, LedgerError):
        return " ".join(str(exc).split())
    detail = f"{exc.strerror}: {exc.filename}" if isinstance(exc, OSError) else str(exc)
    return f"{type(exc).__name__}: {detail}".splitlines()[0]


_PINNED: dict[str, str | None] | None = None  # what this worker pinned before importing torch


def _pin_environment(environ: dict[str, str | None]) -> None:
    """Give this worker the variables the sequential ``add`` would train under.

    torch, MKL and OpenMP read them once, when torch is imported, and the
    determinism record names them, so a worker must match the committing
    process before that import. Ray, for one, sets OMP_NUM_THREADS in its
    workers, again before each task: a worker that pinned these values before
    its torch import just pins them again. One whose torch was imported by
    someone else, under values that differ now, cannot be fixed and is refused.
    """
    global _PINNED  # the module is the worker process's memory between its jobs
    if "torch" in sys.modules and environ != _PINNED:
        differ = sorted(k for k, v in environ.items() if os.environ.get(k) != v)
        if differ:
            raise LedgerError(
                f"this worker imported torch under other settings ({', '.join(differ)}) than "
                "the committing process; start workers with the same environment"
            )
    for name, value in environ.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    if "torch" not in sys.modules:
        _PINNED = dict(environ)


def _check_base(base: Path, files: dict[str, str]) -> None:
    """On another node the same path may hold other files: a vector trained on another
    θ0 would be signed, and no replay could ever reproduce it for an unlearn."""
    for name, digest in sorted(files.items()):
        if sha256_file(base / name, base.parent) != digest:
            raise LedgerError(f"the worker's {base / name} differs from the base signed at init")


def train_job(job: Job, progress: Progress | None = None) -> Outcome:
    """The worker function, the same for every executor: ``add``'s training phase
    (``train_task``) on the job's base and data, after checking both are what the
    manifest check saw. Never raises."""
    try:
        _pin_environment(job.environ)
        from ledger._internal.data.records import load_dataset
        from ledger._internal.ops.add import train_task
        from ledger._internal.training.spec import TrainSpec

        base = Path(job.base_dir)
        _check_base(base, job.base_files)
        dataset = load_dataset(Path(job.data), job.num_labels)
        if dataset.data_hash != job.data_hash:
            raise LedgerError(f"{job.data} changed after the manifest was checked")
        spec = TrainSpec.from_dict(job.spec)
        trained, cut = train_task(job.task_id, base, dataset, spec, job.scale_bits, progress)
        return Outcome(job.index, trained, cut)
    except Exception as exc:
        return Outcome(job.index, None, error=describe(exc))


class Executor(Protocol):
    """Where jobs train. ``reported``: (job index, steps done) since the last call."""

    def submit(self, job: Job) -> Future[Outcome]: ...

    def reported(self) -> list[tuple[int, int]]: ...


ExecutorFactory = Callable[[int, int], AbstractContextManager[Executor]]  # (workers, threads)

_REPORTS: Any = None  # in a local worker: the queue its steps go to


def _keep_queue(reports: Any) -> None:
    global _REPORTS  # a pool initializer's only way to hand its worker state
    _REPORTS = reports


def _local_job(job: Job) -> Outcome:
    return train_job(job, lambda done, _total: _REPORTS.put((job.index, done)))


class _LocalPool:
    """Spawned, not forked: a fork would copy the parent's torch and thread state, which
    the determinism record cannot describe; a spawned worker starts as ``ledger add`` does."""

    def __init__(self, workers: int) -> None:
        self._context = multiprocessing.get_context("spawn")
        self._reports = self._context.Queue()
        self._workers = workers
        self._pool = self._start()

    def _start(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            self._workers,
            mp_context=self._context,
            initializer=_keep_queue,
            initargs=(self._reports,),
        )

    def submit(self, job: Job) -> Future[Outcome]:
        try:
            return self._pool.submit(_local_job, job)
        except BrokenProcessPool:  # a worker died (killed, out of memory): its jobs failed
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = self._start()
            return self._pool.submit(_local_job, job)

    def reported(self) -> list[tuple[int, int]]:
        found = []
        while True:
            try:
                found.append(self._reports.get_nowait())
            except queue.Empty:
                return found

    def close(self, finished: bool) -> None:
        self._pool.shutdown(wait=finished, cancel_futures=True)
        self._reports.close()


@contextmanager
def local_executor(workers: int, threads: int) -> Iterator[Executor]:
    """``workers`` processes, each training one task at a time with the ledger's threads."""
    del threads  # every job sets its own thread count (apply_knobs)
    pool = _LocalPool(workers)
    finished = False
    try:
        yield pool
        finished = True
    finally:
        pool.close(finished)


RAY_MISSING = "--executor ray needs Ray, which is not installed: pip install '.[ray]'"


def ray_executor(address: str | None) -> ExecutorFactory:
    """A factory, so a missing Ray is refused before the manifest is even read."""
    if importlib.util.find_spec("ray") is None:
        raise LedgerError(RAY_MISSING)

    @contextmanager
    def start(workers: int, threads: int) -> Iterator[Executor]:
        import logging

        import ray

        owned = not ray.is_initialized()  # a caller's session (a notebook, a test) is kept
        if owned:
            options: dict[str, Any] = {
                "include_dashboard": False,
                "log_to_driver": False,
                "logging_level": logging.ERROR,
            }
            if address is None:
                ray.init(num_cpus=workers * threads, **options)
            else:
                ray.init(address=address, **options)
        # Ray reserves the cores the fine-tune really uses, so it never packs two on one
        remote = ray.remote(num_cpus=threads)(train_job)

        class RayJobs:
            def submit(self, job: Job) -> Future[Outcome]:
                future: Future[Outcome] = remote.remote(job).future()
                return future

            def reported(self) -> list[tuple[int, int]]:
                return []  # a Ray job's steps are counted when it returns

        try:
            yield RayJobs()
        finally:
            if owned:
                ray.shutdown()

    return start


@dataclass(frozen=True)
class TaskResult:
    """What became of one entry."""

    task_id: str
    status: Literal["added", "already added", "failed"]
    seq: int | None = None  # the task's add event
    digest: str | None = None
    error: str | None = None
    texts_cut: int = 0
    n_records: int = 0


@dataclass(frozen=True)
class _Batch:
    """The checked manifest: what to train, and what the commits will check it against."""

    jobs: list[Job]
    entries: list[Entry]  # the jobs' entries, same order
    already: list[TaskResult]
    key: Ed25519PrivateKey
    config: Config


def _already(ledger: Ledger, entry: Entry, data_hash: str, spec: TrainSpec) -> TaskResult | None:
    """An entry whose task is active with the same data and spec is the task the manifest
    asks for, landed by an earlier run: skipped, so that a batch that partly failed is
    retried by running the same manifest again. Any other use of a known id is refused."""
    from ledger._internal.training.spec import TrainSpec

    existing = ledger.store.task(entry.task_id)
    if existing is None:
        return None
    if existing.status == "active" and existing.data_hash == data_hash:
        recorded = TrainSpec.from_dict(ledger.store.event(existing.add_seq)["spec"])
        if recorded == spec:
            return TaskResult(
                entry.task_id, "already added", existing.add_seq, existing.vector_digest
            )
    other = " with other data or settings" if existing.status == "active" else ""
    raise LedgerError(
        f"task {entry.task_id!r} is {existing.status} in this ledger{other}; ids are never reused"
    )


def _check_batch(root: Path, entries: list[Entry], key_path: Path | None, wait: float) -> _Batch:
    """Everything ``add`` checks before training, for every entry, before any training."""
    from ledger._internal.data.records import load_dataset
    from ledger._internal.folder.ledgerdir import open_ledger
    from ledger._internal.ops.add import Hyper, check_request, signing_key, task_spec, tombstones
    from ledger._internal.training.environ import BIT_CHANGING_ENV

    environ = {name: os.environ.get(name) for name in BIT_CHANGING_ENV}
    jobs: list[Job] = []
    kept: list[Entry] = []
    already: list[TaskResult] = []
    with open_ledger(root, wait=wait) as ledger:
        key = signing_key(ledger, key_path)
        ledger.check_base()
        ledger.read_state()  # a damaged folder is refused before any training
        config, num_labels = ledger.config, ledger.num_labels
        for entry in entries:
            try:
                hyper = Hyper(entry.steps, entry.lr, entry.batch_size, entry.max_length)
                check_request(entry.task_id, entry.method, hyper)
                spec = task_spec(config, entry.task_id, entry.method, entry.seed, hyper)
                dataset = load_dataset(entry.data, num_labels)
                done = _already(ledger, entry, dataset.data_hash, spec)
                if done is not None:
                    already.append(done)
                    continue
                tombstones(ledger, dataset.data_hash, None, entry.readd_deleted)
            except LedgerError as exc:
                raise LedgerError(f"{entry.where}: {exc}", exc.exit_code) from None
            kept.append(entry)
            jobs.append(
                Job(
                    index=len(jobs),
                    task_id=entry.task_id,
                    base_dir=str(ledger.base_dir),
                    base_files=dict(ledger.init["base_files"]),
                    data=str(entry.data),
                    data_hash=dataset.data_hash,
                    spec=spec.to_dict(),
                    scale_bits=config.scale_bits,
                    num_labels=num_labels,
                    environ=environ,
                )
            )
    return _Batch(jobs, kept, already, key, config)


def _collect(future: Future[Outcome], job: Job) -> Outcome:
    try:
        return future.result()
    except Exception as exc:  # the worker died, or its answer could not come back
        return Outcome(job.index, None, error=f"the worker failed: {describe(exc)}")


def _commit(root: Path, batch: _Batch, outcome: Outcome, wait: float) -> TaskResult:
    from ledger._internal.ops.add import commit_add

    entry = batch.entries[outcome.index]
    if outcome.trained is None:
        return TaskResult(entry.task_id, "failed", error=outcome.error)
    try:
        event = commit_add(
            root,
            outcome.trained,
            batch.key,
            batch.config,
            readd_deleted=entry.readd_deleted,
            wait=wait,
        )
    except Exception as exc:  # refused at commit (an id taken meanwhile, a busy ledger...)
        return TaskResult(entry.task_id, "failed", error=describe(exc))
    return TaskResult(
        entry.task_id,
        "added",
        event["seq"],
        event["vector_digest"],
        texts_cut=outcome.texts_cut,
        n_records=outcome.trained.n_records,
    )


def _train_and_commit(
    root: Path,
    batch: _Batch,
    executor: Executor,
    window: int,
    wait_s: float,
    progress: Progress | None,
    report: Callable[[TaskResult], None],
) -> None:
    """Submit in manifest order, commit in manifest order as soon as the next task is
    trained. At most ``window`` tasks are trained or training and not yet committed,
    so the vectors waiting on a slow earlier task stay bounded in memory."""
    jobs = batch.jobs
    steps = [job.spec["steps"] for job in jobs]
    done = [0] * len(jobs)
    pending: dict[Future[Outcome], int] = {}
    ready: dict[int, Outcome] = {}
    submitted = committed = 0
    while committed < len(jobs):
        while submitted < len(jobs) and submitted - committed < window:
            pending[executor.submit(jobs[submitted])] = submitted
            submitted += 1
        finished, _ = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
        for future in finished:
            index = pending.pop(future)
            ready[index] = _collect(future, jobs[index])
            done[index] = steps[index]
        for index, step in executor.reported():
            done[index] = max(done[index], step)
        if progress is not None:
            progress(sum(done), sum(steps))
        while committed in ready:
            report(_commit(root, batch, ready.pop(committed), wait_s))
            committed += 1


def add_many(  # noqa: PLR0913  (keyword-only: one per `ledger add-many` option)
    root: Path,
    manifest: Path,
    *,
    executor: ExecutorFactory = local_executor,
    settings: Settings = Settings(),
    workers: int | None = None,
    key_path: Path | None = None,
    wait: float = DEFAULT_WAIT,
    progress: Progress | None = None,
    report: Callable[[TaskResult], None] | None = None,
) -> list[TaskResult]:
    """Check the whole manifest (a bad entry: refused, nothing changed), train its tasks
    on ``executor``, and commit each trained task in manifest order.

    A task that fails to train or to commit is a ``failed`` result and the rest
    still land; each commit is ``add``'s, so whatever stops the batch leaves
    the ledger as the last landed task left it. Returns one result per entry:
    the ones already in the ledger first, then the others in manifest order
    (``report`` gets each as it is known).
    """
    root = root.resolve()
    entries = read_manifest(manifest, settings)
    batch = _check_batch(root, entries, key_path, wait)
    results: list[TaskResult] = []

    def keep(result: TaskResult) -> None:
        results.append(result)
        if report is not None:
            report(result)

    for result in batch.already:
        keep(result)
    if batch.jobs:
        count = workers or max(1, (os.cpu_count() or 1) // batch.config.threads)
        count = min(count, len(batch.jobs))
        with executor(count, batch.config.threads) as running:
            _train_and_commit(root, batch, running, 2 * count, wait, progress, keep)
    return results
