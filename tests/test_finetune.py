"""Deterministic fine-tuning on the tiny model: the property unlearning rests on.

No digest is hard-coded (DESIGN.md invariant 2): the bits differ between CPUs
and builds, so every check compares two runs made on this machine, one of
them in a fresh process. Run as ``python -m tests.test_finetune`` this module
is that second process: it reads a job as JSON on stdin and prints τ's digest.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rfc8785
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger._internal.errors import DeterminismMismatch, LedgerError
from ledger._internal.model.basemodel import build_tiny, minilm_source_dir
from ledger._internal.model.loading import load_model, trainable_names
from ledger._internal.training import determinism
from ledger._internal.training.finetune import batch_order, finetune
from ledger._internal.training.signs import sign_vector
from ledger._internal.training.spec import TrainSpec
from tests.helpers import run_cli

REPO = Path(__file__).resolve().parent.parent
GENRES = ["Comedy", "Drama", "Action", "Thriller", "Romance", "Horror", "Sci-Fi", "Documentary"]
TEXTS = [
    f"Movie number {i} ({1960 + 3 * i}) | {GENRES[i % 8]}|{GENRES[(5 * i + 1) % 8]}"
    for i in range(24)
]
LABELS = [(i * 7 + i // 3) % 2 for i in range(24)]


def tau_digest(tau: dict[str, np.ndarray]) -> str:
    """Names, shapes and bytes in sorted-name order: equal iff τ is bitwise equal."""
    h = hashlib.sha256()
    for name in sorted(tau):
        array = tau[name]
        assert array.dtype == np.float32 and array.flags.c_contiguous
        h.update(name.encode() + b"\x00" + repr(array.shape).encode() + b"\x00")
        h.update(array.tobytes())
    return h.hexdigest()


def _job(base: Path, texts: list[str], labels: list[int], spec: TrainSpec) -> str:
    return json.dumps({"base": str(base), "texts": texts, "labels": labels, "spec": spec.to_dict()})


def _run_job(raw: str) -> str:
    job = json.loads(raw)
    spec = TrainSpec.from_dict(job["spec"])
    return tau_digest(finetune(Path(job["base"]), job["texts"], job["labels"], spec))


def _digest_in_fresh_process(job: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "tests.test_finetune"],
        input=job,
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="session")
def tiny(tiny_base: Path) -> Path:
    return tiny_base


@pytest.fixture
def restore_threads() -> Iterator[None]:
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_build_tiny_is_byte_identical_per_seed(tmp_path: Path, tiny: Path) -> None:
    build_tiny(tmp_path / "again", seed=0)
    build_tiny(tmp_path / "other", seed=1)
    first = (tiny / "model.safetensors").read_bytes()
    assert (tmp_path / "again" / "model.safetensors").read_bytes() == first
    assert (tmp_path / "other" / "model.safetensors").read_bytes() != first


def test_tiny_loads_dropout_free_and_eager(tiny: Path) -> None:
    model, tokenizer = load_model(tiny)
    assert not model.training
    assert model.config._attn_implementation == "eager"
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert all(m.p == 0.0 for m in model.modules() if isinstance(m, torch.nn.Dropout))
    saved = json.loads((tiny / "config.json").read_text())
    assert saved["hidden_dropout_prob"] == saved["attention_probs_dropout_prob"] == 0.0
    assert saved["classifier_dropout"] == 0.0
    assert "comedy" in tokenizer.tokenize("A Comedy (1999)")


def test_trainable_names_freeze_embeddings_only(tiny: Path) -> None:
    model, _ = load_model(tiny)
    names = trainable_names(model)
    assert not any("embeddings." in n for n in names)
    assert {"classifier.weight", "classifier.bias", "bert.pooler.dense.weight"} <= set(names)
    every = [n for n, _ in model.named_parameters()]
    assert sorted(set(every) - set(names)) == sorted(n for n in every if "embeddings." in n)


def test_load_model_refuses_a_non_model(tmp_path: Path) -> None:
    with pytest.raises(LedgerError, match="not a model directory"):
        load_model(tmp_path)


def test_minilm_source_dir_has_the_shipped_model() -> None:
    assert (minilm_source_dir() / "model.safetensors").is_file()


@settings(max_examples=5, deadline=None)
@given(
    method=st.sampled_from(["sift", "ft"]),
    seed=st.integers(min_value=0, max_value=2**53 - 1),
    sign_seed=st.integers(min_value=0, max_value=2**53 - 1),
    steps=st.integers(min_value=1, max_value=5),
    lr=st.floats(min_value=1e-5, max_value=1e-2),
    batch_size=st.integers(min_value=1, max_value=8),
    threads=st.sampled_from([1, 2]),
    subset=st.lists(st.integers(0, len(TEXTS) - 1), min_size=1, max_size=12, unique=True),
)
def test_finetune_is_bitwise_reproducible_across_processes(
    tiny: Path,
    method: Any,
    seed: int,
    sign_seed: int,
    steps: int,
    lr: float,
    batch_size: int,
    threads: int,
    subset: list[int],
) -> None:
    spec = TrainSpec(
        method=method,
        seed=seed,
        sign_seed=sign_seed,
        steps=steps,
        lr=lr,
        batch_size=batch_size,
        threads=threads,
    )
    texts = [TEXTS[i] for i in subset]
    labels = [LABELS[i] for i in subset]
    here = tau_digest(finetune(tiny, texts, labels, spec))
    assert _digest_in_fresh_process(_job(tiny, texts, labels, spec)) == here


def test_sift_keeps_every_entry_on_the_sign_vector(tiny: Path) -> None:
    spec = TrainSpec(method="sift", seed=3, sign_seed=11, threads=2, lr=1e-3)
    tau = finetune(tiny, TEXTS, LABELS, spec)
    assert sum(int(np.count_nonzero(t)) for t in tau.values()) > 0
    for name, t in tau.items():
        v = sign_vector(spec.sign_seed, name, t.size).reshape(t.shape)
        assert (t * v >= 0).all(), name


def test_plain_finetuning_violates_the_sign_vector(tiny: Path) -> None:
    spec = TrainSpec(method="ft", seed=3, sign_seed=11, threads=2, lr=1e-3)
    tau = finetune(tiny, TEXTS, LABELS, spec)
    violations = sum(
        int(((t * sign_vector(11, name, t.size).reshape(t.shape)) < 0).sum())
        for name, t in tau.items()
    )
    assert violations > 0


def test_thread_count_changes_bits_and_replay_names_it(tiny: Path, restore_threads: None) -> None:
    one = TrainSpec(method="sift", seed=5, sign_seed=2, threads=1)
    two = TrainSpec(method="sift", seed=5, sign_seed=2, threads=2)
    assert tau_digest(finetune(tiny, TEXTS, LABELS, one)) != tau_digest(
        finetune(tiny, TEXTS, LABELS, two)
    )
    record = json.loads(rfc8785.dumps(determinism.record(two)))
    determinism.check_replay(record)
    determinism.apply_knobs(1, two.seed)
    with pytest.raises(DeterminismMismatch) as raised:
        determinism.check_replay(record)
    assert raised.value.field == "threads"


def test_replay_names_the_first_differing_field(restore_threads: None) -> None:
    determinism.apply_knobs(2, 0)
    record = determinism.record(TrainSpec(method="ft", seed=0, sign_seed=0, threads=2))
    record["environment"]["torch"] = "0.0.0"
    record["environment"]["cpu_capability"] = "NEON"
    with pytest.raises(DeterminismMismatch) as raised:
        determinism.check_replay(record)
    assert raised.value.field == "cpu_capability"


def test_record_refuses_threads_the_process_does_not_run(restore_threads: None) -> None:
    determinism.apply_knobs(1, 0)
    with pytest.raises(LedgerError, match="apply_knobs"):
        determinism.record(TrainSpec(method="ft", seed=0, sign_seed=0, threads=2))


def test_seeds_beyond_json_safe_integers_are_refused() -> None:
    with pytest.raises(LedgerError, match="seed"):
        TrainSpec(method="ft", seed=2**53, sign_seed=0, threads=1)


def test_out_of_range_label_is_named(tiny: Path) -> None:
    spec = TrainSpec(method="sift", seed=0, sign_seed=0, threads=2, steps=1)
    with pytest.raises(LedgerError, match="label 2"):
        finetune(tiny, TEXTS[:3], [0, 2, 1], spec)


def test_spec_round_trips_through_json() -> None:
    spec = TrainSpec(method="ft", seed=2**53 - 1, sign_seed=9, threads=1, lr=1e-4, steps=7)
    assert TrainSpec.from_dict(json.loads(rfc8785.dumps(spec.to_dict()))) == spec


def test_batch_order_matches_an_independent_recomputation() -> None:
    seed, n, steps, batch_size = 7, 5, 4, 3

    def key(epoch: int, i: int) -> bytes:
        return hashlib.sha256(
            b"ulg:order:v1\x00"
            + seed.to_bytes(8, "little")
            + epoch.to_bytes(8, "little")
            + i.to_bytes(8, "little")
        ).digest()

    stream = [i for e in range(3) for i in sorted(range(n), key=lambda i: key(e, i))]
    expected = [stream[j * batch_size : (j + 1) * batch_size] for j in range(steps)]
    assert batch_order(seed, n, steps, batch_size) == expected
    assert sorted(stream[:n]) == list(range(n))
    assert batch_order(seed + 1, n, steps, batch_size) != expected


def test_tiny_base_pretrains_deterministically(
    tmp_path: Path, task_data: dict[str, Path], ledger_cli: Callable[..., Any]
) -> None:
    """`base tiny --pretrain` trains via the fine-tune loop: same bits twice, new vs plain."""
    from tests.helpers import tree_digest

    for name, extra in (
        ("a", ["--pretrain", task_data["a"]]),
        ("b", ["--pretrain", task_data["a"]]),
    ):
        assert ledger_cli("base", "tiny", tmp_path / name, *extra, "--steps", "5").code == 0
    assert ledger_cli("base", "tiny", tmp_path / "plain").code == 0
    weights = {n: tree_digest(tmp_path / n)["model.safetensors"] for n in ("a", "b", "plain")}
    assert weights["a"] == weights["b"] != weights["plain"]
    assert tree_digest(tmp_path / "a")["vocab.txt"] == tree_digest(tmp_path / "plain")["vocab.txt"]


if __name__ == "__main__":
    print(_run_job(sys.stdin.read()))


def test_probe_reports_which_perturbations_change_the_bits(
    tiny: Path, task_data: dict[str, Path]
) -> None:
    """`ledger probe` as an operator runs it: the recorded settings reproduce in other fresh
    processes, folders and hash seeds; another thread count is reported, not a failure."""
    probe = run_cli(
        "ledger", "probe", "--base", tiny, "--data", task_data["a"], "--steps", "2", "--json"
    )
    assert probe.code == 0, probe.err
    runs = {r["perturbation"]: r for r in json.loads(probe.out)}
    assert len(runs) == 7 and runs["recorded settings"]["same_digest"]
    assert all(r["same_digest"] for r in runs.values() if r["same_record"])
    other = runs["threads 1 instead of 2"]
    assert not other["same_record"]
    assert other["same_digest"] == (other["first_differing_tensor"] is None)


def test_label_names_given_to_the_base_reach_the_model(tmp_path: Path) -> None:
    """Named in base/config.json, which init signs, so an export carries them."""
    build_tiny(tmp_path / "named", labels=["dislike", "meh", "like"])
    model, _ = load_model(tmp_path / "named")
    assert model.config.num_labels == 3
    assert model.config.id2label == {0: "dislike", 1: "meh", 2: "like"}
    refused = run_cli("ledger", "base", "tiny", tmp_path / "bad", "--labels", "like,like")
    assert refused.code == 1 and refused.err.startswith("error: labels: give two or more")
    assert not (tmp_path / "bad").exists()
