"""The ``ledger`` command line (docs/CLI.md): thin wrappers over ``ledger._internal``."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from ledger import defaults
from ledger._internal.errors import LedgerError
from ledger._internal.log.jcs import SEED_LIMIT

_MAX_SEED = SEED_LIMIT - 1
_wait = click.option(
    "--wait",
    default=30.0,
    show_default=True,
    type=click.FloatRange(0),
    help="Seconds to wait for another writer's commit before giving up (ledger busy).",
)
_PATH = click.Path(path_type=Path)
_EXISTING = click.Path(path_type=Path, exists=True)


@contextmanager
def _progress(label: str) -> Iterator[Callable[[int, int], None]]:
    """A rich progress bar on a terminal; off one (a log, CI), a plain line on stderr every
    few seconds, so a long add is visibly alive and a killed one shows how far it got.
    Work shorter than that prints nothing, so short commands keep a clean stderr.
    ULG_PROGRESS_SECONDS sets the interval (the test suite sets it past any run, so
    what a test sees on stderr never depends on the machine's speed)."""
    if not sys.stderr.isatty():
        every = float(os.environ.get("ULG_PROGRESS_SECONDS", "5"))
        started = last = time.monotonic()
        printed = False

        def line(done: int, total: int) -> None:
            nonlocal last, printed
            now = time.monotonic()
            if now - last >= every or (printed and done == total):
                last, printed = now, True
                click.echo(f"{label}: step {done}/{total} ({now - started:.0f} s)", err=True)

        yield line
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[count]}"),
        TimeElapsedColumn(),
        transient=True,
        console=None,
    ) as bar:
        task = bar.add_task(label, total=None, count="loading")

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total, count=f"{done}/{total}")

        yield update


def _trust(command: Callable[..., Any]) -> Callable[..., Any]:
    """--public-key / --key: the key a reader checks the folder's signed head against."""
    command = click.option(
        "--key",
        "signing_key",
        type=_PATH,
        help="Your private signing key: its public half is the key trusted.",
    )(command)
    return click.option(
        "--public-key",
        type=_PATH,
        help="The operator's public key (KEY.pub) to check the signed head against.",
    )(command)


def _trusted(public_key: Path | None, signing_key: Path | None) -> Any:
    from ledger._internal.attest.keys import load_private, load_public

    if public_key is not None and signing_key is not None:
        raise click.UsageError("give --public-key or --key, not both")
    if public_key is not None:
        return load_public(public_key)
    return load_private(signing_key).public_key() if signing_key is not None else None


def _note_unchecked(checked: bool) -> None:
    if not checked:
        click.echo(
            "note: the signed head was checked only against the key the folder itself names; "
            "pass --public-key KEY.pub to check it against a key you trust",
            err=True,
        )


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """An auditable, exact unlearning ledger for merged fine-tuned models (SIFT-Masks)."""


@cli.command()
@click.argument("key", type=_PATH)
def keygen(key: Path) -> None:
    """Ed25519 private key to KEY (PEM, 0600) and public key to KEY.pub."""
    from ledger._internal.attest.keys import generate

    public = generate(key)
    click.echo(f"wrote {key} and {public}")


@cli.group()
def base() -> None:
    """Build a base model θ0."""


def _base_command(name: str, summary: str) -> Callable[[Callable[..., Any]], Any]:
    """`base tiny` and `base minilm` take the same options and differ only in the builder."""

    def register(builder: Callable[..., None]) -> Any:
        @base.command(name, help=summary)
        @click.argument("out", type=_PATH)
        @click.option(
            "--seed",
            default=0,
            show_default=True,
            type=click.IntRange(0, _MAX_SEED),
            help="Seeds the new weights (and the pretraining).",
        )
        @click.option("--pretrain", type=_EXISTING, help="JSONL to pretrain the model on first.")
        @click.option(
            "--steps",
            default=defaults.PRETRAIN_STEPS,
            show_default=True,
            type=click.IntRange(1),
            help="Pretraining steps (with --pretrain).",
        )
        @click.option(
            "--threads",
            default=defaults.THREADS,
            show_default=True,
            type=click.IntRange(1),
            help="Torch threads for the pretraining.",
        )
        @click.option(
            "--labels",
            default=None,
            help="Comma-separated label names, label 0 first (default: LABEL_0,LABEL_1).",
        )
        def command(
            out: Path,
            seed: int,
            pretrain: Path | None,
            steps: int,
            threads: int,
            labels: str | None,
        ) -> None:
            from ledger._internal.vectors.tensorfile import refuse_nonempty

            refuse_nonempty(out)
            with _progress("pretraining") as bar:
                builder(
                    out,
                    seed,
                    pretrain=pretrain,
                    steps=steps,
                    threads=threads,
                    progress=bar,
                    labels=None if labels is None else labels.split(","),
                )
            click.echo(f"wrote {name} base model to {out}")

        return command

    return register


@_base_command("tiny", "A small deterministic BERT classifier with its tokenizer, for tests.")
def _tiny(*args: Any, **kwargs: Any) -> None:
    from ledger._internal.model.basemodel import build_tiny

    build_tiny(*args, **kwargs)


@_base_command("minilm", "The shipped all-MiniLM-L6-v2 with a seeded head, optionally pretrained.")
def _minilm(*args: Any, **kwargs: Any) -> None:
    from ledger._internal.model.basemodel import build_minilm

    build_minilm(*args, **kwargs)


@cli.command()
@click.argument("directory", type=_PATH)
@click.option(
    "--base", "base_dir", required=True, type=_EXISTING, help="The base model (ledger base)."
)
@click.option(
    "--key",
    required=True,
    type=_EXISTING,
    help="The signing key (ledger keygen); the default signer of later writes.",
)
@click.option(
    "--seed",
    default=defaults.SIGN_SEED,
    show_default=True,
    type=click.IntRange(0, _MAX_SEED),
    help="Seeds the global sign vector every SIFT fine-tune is constrained to.",
)
@click.option(
    "--scale-bits",
    default=defaults.SCALE_BITS,
    show_default=True,
    type=click.IntRange(0, 62),
    help="Fixed point: vectors are stored as round(τ · 2^K) in int64.",
)
@click.option(
    "--threads",
    default=defaults.THREADS,
    show_default=True,
    type=click.IntRange(1, 256),
    help="Torch threads every fine-tune and replay runs with (part of the determinism record).",
)
@click.option(
    "--retain-vectors/--no-retain-vectors",
    default=True,
    show_default=True,
    help="Keep each active task's vector so the verifier can recompute the merge without torch.",
)
@click.option(
    "--rule",
    "serving_rule",
    default=defaults.SERVING_RULE,
    show_default=True,
    type=click.Choice(defaults.SERVING_RULES),
    help="Serving rule: Q ⊙ m_task divided by |T| (mean), by each entry's contributor "
    "count (count) or by 1 (sum); recorded, and what predict and export use.",
)
def init(
    directory: Path,
    base_dir: Path,
    key: Path,
    seed: int,
    scale_bits: int,
    threads: int,
    retain_vectors: bool,
    serving_rule: str,
) -> None:
    """A new ledger in DIRECTORY over the base model."""
    from ledger._internal.ops.create import init_ledger

    log = init_ledger(
        directory,
        base_dir,
        key,
        sign_seed=seed,
        scale_bits=scale_bits,
        threads=threads,
        retain_vectors=retain_vectors,
        serving_rule=serving_rule,
    )
    click.echo(f"initialised ledger {directory}: log {log}")


def _training_options(for_entries: bool) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The options `add` and `add-many` share; add-many's are defaults for manifest entries."""

    def say(text: str) -> str:
        return f"{text} For manifest entries that do not say." if for_entries else text

    options = [
        click.option(
            "--method",
            default="sift",
            show_default=True,
            type=click.Choice(["sift", "ft"]),
            help=say("sift: sign-constrained (SIFT-Masks); ft: unconstrained fine-tune."),
        ),
        click.option(
            "--steps",
            default=defaults.STEPS,
            show_default=True,
            type=click.IntRange(1),
            help=say("Optimizer steps."),
        ),
        click.option(
            "--lr",
            default=defaults.LR,
            show_default=True,
            type=click.FloatRange(0, 100, min_open=True),
            help=say("AdamW learning rate."),
        ),
        click.option(
            "--batch-size",
            default=defaults.BATCH_SIZE,
            show_default=True,
            type=click.IntRange(1),
            help=say("Records per step."),
        ),
        click.option(
            "--max-length",
            default=defaults.MAX_LENGTH,
            show_default=True,
            type=click.IntRange(2),
            help=say("Tokens per text; longer texts are cut."),
        ),
        click.option(
            "--key", default=None, type=_PATH, help="The signing key (default: the current one)."
        ),
        _wait,
        click.option(
            "--readd-deleted",
            is_flag=True,
            help=say(
                "Add data or a vector an unlearn deleted; the event records which deletion "
                "it reverses."
            ),
        ),
    ]

    def apply(command: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(options):  # as if stacked in this order above the command
            command = option(command)
        return command

    return apply


@cli.command()
@click.argument("directory", type=_PATH)
@click.option("--task", "task_id", required=True, help="The task's id (never reused).")
@click.option("--data", required=True, type=_PATH, help="The task's JSONL records.")
@click.option(
    "--seed",
    default=None,
    type=click.IntRange(0, _MAX_SEED),
    help="The task's training seed (default: derived from the ledger seed and the task id).",
)
@_training_options(for_entries=False)
def add(
    directory: Path,
    task_id: str,
    data: Path,
    method: str,
    seed: int | None,
    steps: int,
    lr: float,
    batch_size: int,
    max_length: int,
    key: Path | None,
    wait: float,
    readd_deleted: bool,
) -> None:
    """Deterministic fine-tune, quantise, digest, sign, record, merge.

    Trains without the writer lock; takes it only to commit."""
    from ledger._internal.ops.add import Hyper, add_task

    with _progress(f"fine-tuning {task_id}") as progress:
        event = add_task(
            directory,
            task_id,
            data,
            method=method,
            seed=seed,
            hyper=Hyper(steps, lr, batch_size, max_length),
            key_path=key,
            progress=progress,
            wait=wait,
            readd_deleted=readd_deleted,
        )
    click.echo(f"added {task_id}: {event['vector_digest']} (event {event['seq']})")
    if event["texts_cut"]:
        click.echo(
            f"note: {event['texts_cut']} of {event['n_records']} texts were longer than "
            f"--max-length {max_length} tokens and were cut to it",
            err=True,
        )


@cli.command("add-many")
@click.argument("directory", type=_PATH)
@click.option(
    "--tasks",
    "manifest",
    required=True,
    type=_PATH,
    help="The manifest: JSONL (or a JSON array), one {task, data, ...} per task.",
)
@click.option(
    "--workers",
    default=None,
    type=click.IntRange(1),
    help="Tasks training at once (default: CPU count // the ledger's --threads, at least 1).",
)
@click.option(
    "--executor",
    default="local",
    show_default=True,
    type=click.Choice(["local", "ray"]),
    help="local: spawned worker processes; ray: Ray tasks (pip install '.[ray]').",
)
@click.option(
    "--ray-address",
    default=None,
    help="An existing Ray cluster (ray.init(address=...)); default: a local Ray.",
)
@_training_options(for_entries=True)
def add_many(
    directory: Path,
    manifest: Path,
    workers: int | None,
    executor: str,
    ray_address: str | None,
    method: str,
    steps: int,
    lr: float,
    batch_size: int,
    max_length: int,
    key: Path | None,
    wait: float,
    readd_deleted: bool,
) -> None:
    """Many adds: train in parallel workers, commit in this process in manifest order.

    The whole manifest is checked first (a bad entry changes nothing); a task that
    fails is reported and the others still land (exit 1)."""
    from ledger._internal.ops import many

    if ray_address is not None and executor != "ray":
        raise click.UsageError("--ray-address needs --executor ray")
    start = many.ray_executor(ray_address) if executor == "ray" else many.local_executor
    settings = many.Settings(method, steps, lr, batch_size, max_length, readd_deleted)

    def report(result: many.TaskResult) -> None:
        if result.status == "failed":
            click.echo(f"failed: {result.task_id}: {result.error}", err=True)
            return
        click.echo(f"{result.status} {result.task_id}: {result.digest} (event {result.seq})")
        if result.texts_cut:
            click.echo(
                f"note: {result.task_id}: {result.texts_cut} of {result.n_records} texts were "
                "longer than its max length and were cut to it",
                err=True,
            )

    with _progress("fine-tuning the batch") as progress:
        results = many.add_many(
            directory,
            manifest,
            executor=start,
            settings=settings,
            workers=workers,
            key_path=key,
            wait=wait,
            progress=progress,
            report=report,
        )
    failed = [r.task_id for r in results if r.status == "failed"]
    if failed:
        raise LedgerError(
            f"{len(failed)} of {len(results)} tasks failed ({', '.join(failed)}); the others "
            "landed: fix them and rerun the manifest (tasks already added are skipped)"
        )


@cli.command()
@click.argument("directory", type=_PATH)
@click.option("--task", "task_id", required=True, help="The task to unlearn.")
@click.option(
    "--data", required=True, type=_PATH, help="The task's JSONL, as it was added (replayed)."
)
@click.option(
    "--certificate", required=True, type=_PATH, help="Where to write the signed certificate."
)
@click.option("--key", default=None, type=_PATH, help="The signing key (default: the current one).")
@_wait
def unlearn(
    directory: Path, task_id: str, data: Path, certificate: Path, key: Path | None, wait: float
) -> None:
    """Replay, check the digest, subtract, and write a signed certificate.

    Replays without the writer lock; takes it only to commit."""
    from ledger._internal.ops.unlearn import unlearn_task

    with _progress(f"replaying {task_id}") as progress:
        event = unlearn_task(
            directory, task_id, data, certificate, key_path=key, progress=progress, wait=wait
        )
    click.echo(f"unlearned {task_id} (event {event['seq']}); certificate: {certificate}")


@cli.command()
@click.argument("directory", type=_PATH)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@_trust
def status(
    directory: Path, as_json: bool, public_key: Path | None, signing_key: Path | None
) -> None:
    """Active and unlearned tasks, the state digest and the log's head."""
    from ledger._internal.ops.status import ledger_status

    report = ledger_status(directory, _trusted(public_key, signing_key))
    if as_json:
        click.echo(json.dumps(report, indent=2, sort_keys=True))
    else:
        click.echo(f"state  {report['state_digest']}")
        click.echo(f"log    size {report['tree_size']}, root {report['root']}")
        for task_id, task in sorted(report["tasks"].items()):
            click.echo(f"{task['status']:<10} {task_id}  {task['digest']}")
        for leftover in report["leftovers"]:
            click.echo(f"leftover   {leftover}  (no journal names it; the next write removes it)")
    _note_unchecked(report["key_checked"])


@cli.command()
@click.argument("directory", type=_PATH)
@click.option("--task", "task_id", required=True, help="Whose served model answers.")
@click.option("--text", required=True, help="The text to classify.")
@click.option("--json", "as_json", is_flag=True, help="Label, probabilities and how it was served.")
@click.option(
    "--rule",
    "serving_rule",
    default=None,
    type=click.Choice(defaults.SERVING_RULES),
    help="Serving rule (default: the one recorded at init).",
)
@_trust
def predict(
    directory: Path,
    task_id: str,
    text: str,
    as_json: bool,
    serving_rule: str | None,
    public_key: Path | None,
    signing_key: Path | None,
) -> None:
    """The label the served model for TASK gives to TEXT."""
    from ledger._internal.folder.ledgerdir import open_ledger
    from ledger._internal.ops.serve import UNKNOWN_TASK
    from ledger._internal.ops.serve import predict as run

    with open_ledger(directory, trusted=_trusted(public_key, signing_key)) as ledger:
        result = run(ledger, task_id, text, serving_rule)
    click.echo(json.dumps(result, sort_keys=True) if as_json else str(result["label"]))
    if result["served"] == UNKNOWN_TASK:
        click.echo(
            f"note: the ledger has no task {task_id!r}; this is the unmasked merged model",
            err=True,
        )
    _note_unchecked(ledger.key_trusted)


@cli.command()
@click.argument("directory", type=_PATH)
@click.option("--task", "task_id", required=True, help="Whose served model to export.")
@click.argument("out", type=_PATH)
@click.option(
    "--rule",
    "serving_rule",
    default=None,
    type=click.Choice(defaults.SERVING_RULES),
    help="Serving rule (default: the one recorded at init).",
)
@_trust
def export(
    directory: Path,
    task_id: str,
    out: Path,
    serving_rule: str | None,
    public_key: Path | None,
    signing_key: Path | None,
) -> None:
    """The served model for TASK as a Hugging Face folder OUT."""
    from ledger._internal.folder.ledgerdir import open_ledger
    from ledger._internal.ops.serve import export as run

    with open_ledger(directory, trusted=_trusted(public_key, signing_key)) as ledger:
        how = run(ledger, task_id, out, serving_rule)
    click.echo(f"exported the {how} served model for {task_id} to {out}")
    _note_unchecked(ledger.key_trusted)


@cli.command()
@click.argument("directory", type=_PATH)
@click.option("--event", type=click.IntRange(0), help="Inclusion proof of event SEQ.")
@click.option("--consistency", type=click.IntRange(1), help="Consistency proof from size OLD.")
@click.option("--record", type=click.IntRange(1), help="Inclusion of data LINE in --task's data.")
@click.option("--size", type=click.IntRange(1), help="Against the head of this size (latest).")
@click.option("--task", "task_id", help="With --record.")
@click.option("--data", type=_PATH, help="With --record: the task's JSONL.")
@_trust
def proof(
    directory: Path,
    event: int | None,
    consistency: int | None,
    record: int | None,
    size: int | None,
    task_id: str | None,
    data: Path | None,
    public_key: Path | None,
    signing_key: Path | None,
) -> None:
    """RFC 9162 proofs as JSON: an event's inclusion, log consistency, or a data record's."""
    from ledger._internal.folder.ledgerdir import open_ledger
    from ledger._internal.ops import proofs

    if [event, consistency, record].count(None) != 2:
        raise click.UsageError("give exactly one of --event, --consistency, --record")
    if record is not None and (task_id is None or data is None):
        raise click.UsageError("--record needs --task and --data")
    with open_ledger(directory, trusted=_trusted(public_key, signing_key)) as ledger:
        if event is not None:
            result = proofs.event_inclusion(ledger, event, size)
        elif consistency is not None:
            result = proofs.log_consistency(ledger, consistency, size)
        else:
            assert record is not None and task_id is not None and data is not None
            result = proofs.record_inclusion(ledger, task_id, data, record)
    click.echo(json.dumps(result, indent=2, sort_keys=True))
    _note_unchecked(ledger.key_trusted)


@cli.command()
@click.argument("directory", type=_PATH)
@click.option(
    "--key", "signing_key", type=_PATH, help="The signing key (default: the current one)."
)
def checkpoint(directory: Path, signing_key: Path | None) -> None:
    """The latest signed head as a C2SP tlog-checkpoint signed note on stdout.

    Keep it: `verifier audit --trusted-head FILE` later proves that the folder it
    is shown grew from this head, and catches a rollback or a fork."""
    from ledger._internal.attest.keys import load_private
    from ledger._internal.folder.ledgerdir import open_ledger
    from ledger._internal.log.checkpoint import checkpoint_note
    from ledger._internal.log.treehead import head_fields

    with open_ledger(directory) as ledger:
        key = load_private(signing_key or ledger.default_key_path())
        ledger.check_key(key)  # so the head just checked is signed by this key
        head = head_fields(ledger.store.head(ledger.store.size()))
        note = checkpoint_note(ledger.config.log_id, head["size"], head["root"], key)
    click.echo(note, nl=False)


@cli.command("sample-data")
@click.argument("out", type=_PATH)
def sample_data(out: Path) -> None:
    """Real task files to try the ledger on, into the new or empty folder OUT.

    alice.jsonl and bob.jsonl are two MovieLens users' ratings ("Title (year) |
    genres", label 1 for 4 stars or more); pooled.jsonl pools 50 other users, for
    `ledger base minilm --pretrain`."""
    from ledger._internal.data.corpora import write_samples
    from ledger._internal.vectors.tensorfile import refuse_nonempty

    refuse_nonempty(out)
    for path in write_samples(out):
        click.echo(f"wrote {path} ({len(path.read_text().splitlines())} records)")


@cli.command()
@click.option("--base", "base_dir", required=True, type=_EXISTING, help="The base model.")
@click.option("--data", required=True, type=_EXISTING, help="One task's JSONL records.")
@click.option(
    "--steps",
    default=defaults.STEPS,
    show_default=True,
    type=click.IntRange(1),
    help="Optimizer steps per run.",
)
@click.option(
    "--threads",
    default=defaults.THREADS,
    show_default=True,
    type=click.IntRange(1, 256),
    help="The thread count recorded (the ledger's --threads).",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per run.")
def probe(base_dir: Path, data: Path, steps: int, threads: int, as_json: bool) -> None:
    """Which perturbations change a fine-tune's digest, in fresh processes.

    Exits 1 if the recorded settings do not reproduce (a second process, another
    working directory or another hash seed giving other bits)."""
    from ledger._internal.training.probe import probe as run

    outcomes = run(base_dir, data, steps, threads)
    if as_json:
        click.echo(json.dumps([o.to_json() for o in outcomes], indent=2))
    else:
        width = max(len(o.perturbation.name) for o in outcomes)
        click.echo(
            f"{'perturbation':<{width}}  digest            same bits  first differing tensor"
        )
        for o in outcomes:
            same = "yes" if o.reproduces else "NO" if o.perturbation.same_record else "no"
            click.echo(
                f"{o.perturbation.name:<{width}}  {o.digest[7:23]}  {same:<9}  "
                f"{o.first_difference or '-'}"
            )
    broken = [
        o.perturbation.name for o in outcomes if o.perturbation.same_record and not o.reproduces
    ]
    if broken:
        raise LedgerError(
            "the recorded settings do not reproduce on this machine: " + ", ".join(broken)
        )


@cli.command("rotate-key")
@click.argument("directory", type=_PATH)
@click.option("--key", "old_key", required=True, type=_PATH, help="The current signing key.")
@click.option("--new-key", required=True, type=_PATH, help="The key that signs from now on.")
@_wait
def rotate_key(directory: Path, old_key: Path, new_key: Path, wait: float) -> None:
    """Hand the ledger to a new key: a key_rotation event, its head signed by the old key.

    Later heads and certificates are signed by the new key, which also becomes
    the default signer; the old key's holders can no longer extend the log
    for anyone who trusts the new key or keeps a later checkpoint."""
    from ledger._internal.ops.rotation import rotate_key as rotate

    event = rotate(directory, old_key, new_key, wait=wait)
    click.echo(
        f"rotated at event {event['seq']}: key {event['old_key_id'][:16]} -> "
        f"{event['new_key_id'][:16]}"
    )


@cli.command()
@click.option("--workdir", default=Path("demo-work"), show_default=True, type=_PATH)
@click.option(
    "--users",
    default=8,
    show_default=True,
    type=click.IntRange(2, 50),
    help="Tasks to merge (MovieLens genre detectors, one genre each up to eight).",
)
@click.option(
    "--model",
    default="minilm",
    show_default=True,
    type=click.Choice(["minilm", "tiny"]),
    help="tiny: the test model, for a smoke run in seconds.",
)
def demo(workdir: Path, users: int, model: str) -> None:
    """The whole path on MiniLM: heterogeneous tasks merged, served, unlearned, verified."""
    from ledger._internal.ops.demo import run_demo

    run_demo(workdir, users, model)


def main(argv: list[str] | None = None) -> Any:
    """Every failure is one ``error:`` line on stderr: 2 for usage, 1 for refusals."""
    # Offline by design, and no library chatter between our own lines.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    try:
        return cli.main(args=argv, standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as exc:
        click.echo(exc.ctx.get_help() if exc.ctx else "")
        click.echo("error: missing command (see the list above)", err=True)
        sys.exit(2)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.Abort:
        click.echo("error: aborted", err=True)
        sys.exit(1)
    except click.ClickException as exc:
        click.echo(f"error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    except LedgerError as exc:
        click.echo(f"error: {' '.join(str(exc).split())}", err=True)
        sys.exit(exc.exit_code)
    except Exception as exc:
        # The contract is one error line; ULG_TRACEBACK=1 shows the whole story.
        if os.environ.get("ULG_TRACEBACK") == "1":
            raise
        detail = f"{exc.strerror}: {exc.filename}" if isinstance(exc, OSError) else str(exc)
        click.echo(f"error: {type(exc).__name__}: {detail}".splitlines()[0], err=True)
        sys.exit(1)
