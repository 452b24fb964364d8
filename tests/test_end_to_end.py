"""The whole path through the real CLI: tiny model, real DuckDB, real keys, the verifier."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from tests.helpers import Result, run_cli, tree_digest


@pytest.fixture(scope="module")
def history(
    tmp_path_factory: pytest.TempPathFactory,
    tiny_base: Path,
    key: Path,
    task_data: dict[str, Path],
) -> dict[str, Path]:
    """Ledger A adds a, b, c, d and unlearns c; ledger B adds d, b, a (other processes)."""
    root = tmp_path_factory.mktemp("history")
    a, b = root / "A", root / "B"
    for led in (a, b):
        assert run_cli("ledger", "init", led, "--base", tiny_base, "--key", key).code == 0
    for task in "abcd":
        assert run_cli("ledger", "add", a, "--task", task, "--data", task_data[task]).code == 0
    cert = root / "c.dsse.json"
    done = run_cli(
        "ledger", "unlearn", a, "--task", "c", "--data", task_data["c"], "--certificate", cert
    )
    assert done.code == 0, done.err
    for task in "dba":
        assert run_cli("ledger", "add", b, "--task", task, "--data", task_data[task]).code == 0
    return {"A": a, "B": b, "cert": cert, "pub": key.with_name(key.name + ".pub")}


def _status(led: Path) -> dict[str, object]:
    result = run_cli("ledger", "status", led, "--json")
    assert result.code == 0, result.err
    status: dict[str, object] = json.loads(result.out)
    return status


def test_unlearning_equals_never_having_added(history: dict[str, Path]) -> None:
    a, b = _status(history["A"]), _status(history["B"])
    assert a["active"] == b["active"] == ["a", "b", "d"]
    assert a["unlearned"] == ["c"]
    assert a["state_digest"] == b["state_digest"]
    assert a["tree_size"] == 6 and b["tree_size"] == 4
    tasks_a, tasks_b = a["tasks"], b["tasks"]
    assert isinstance(tasks_a, dict) and isinstance(tasks_b, dict)
    for task in "abd":  # same id, data, base and seed -> same vector in any ledger
        assert tasks_a[task]["digest"] == tasks_b[task]["digest"]


def test_verifier_passes_on_both_ledgers(history: dict[str, Path]) -> None:
    for led in (history["A"], history["B"]):
        audit = run_cli("verifier", "audit", "--ledger", led, "--public-key", history["pub"])
        assert audit.code == 0, audit.out + audit.err
        assert "FAIL" not in audit.out and "ok" in audit.out
    check = run_cli(
        "verifier",
        "check",
        "--ledger",
        history["A"],
        "--certificate",
        history["cert"],
        "--public-key",
        history["pub"],
    )
    assert check.code == 0, check.out + check.err


def test_unlearning_deletes_the_task_files(history: dict[str, Path]) -> None:
    a = history["A"]
    assert not (a / "vectors" / "c.safetensors").exists()
    assert not (a / "masks" / "c.safetensors").exists()
    assert (a / "certificates" / "5.dsse.json").read_bytes() == history["cert"].read_bytes()


def test_other_tasks_masks_and_served_models_are_those_of_the_remaining_merge(
    history: dict[str, Path],
) -> None:
    from ledger._internal.folder.ledgerdir import open_ledger
    from ledger._internal.ops.serve import served_deltas
    from ledger._internal.vectors.rules import RULES

    a, b = history["A"], history["B"]
    for task in "abd":
        assert (a / "masks" / f"{task}.safetensors").read_bytes() == (
            b / "masks" / f"{task}.safetensors"
        ).read_bytes()
        for rule in RULES.values():  # the count rule reads every active mask
            with open_ledger(a) as led_a, open_ledger(b) as led_b:
                deltas_a, how_a = served_deltas(led_a, task, rule)
                deltas_b, how_b = served_deltas(led_b, task, rule)
            assert how_a == how_b == "masked"
            assert all(deltas_a[n].tobytes() == deltas_b[n].tobytes() for n in deltas_a)


def test_predict_and_export(history: dict[str, Path], tmp_path: Path) -> None:
    a = history["A"]
    served = run_cli("ledger", "predict", a, "--task", "a", "--text", "great fun movie", "--json")
    assert served.code == 0, served.err
    assert json.loads(served.out)["served"] == "masked"
    gone = run_cli("ledger", "predict", a, "--task", "c", "--text", "great fun movie", "--json")
    assert json.loads(gone.out)["served"] == "unmasked" and "no task" not in gone.err
    typo = run_cli("ledger", "predict", a, "--task", "aa", "--text", "great fun movie", "--json")
    assert typo.code == 0 and json.loads(typo.out)["served"] == "unmasked: unknown task"
    assert "note: the ledger has no task 'aa'; this is the unmasked merged model" in typo.err
    out = tmp_path / "export"
    assert run_cli("ledger", "export", a, "--task", "a", out).code == 0
    assert (out / "model.safetensors").is_file() and (out / "config.json").is_file()
    _, front, _ = (out / "README.md").read_text().split("---\n", 2)  # the model card
    card = yaml.safe_load(front)
    status = json.loads(run_cli("ledger", "status", a, "--json").out)
    assert card["ledger"]["root"] == status["root"] and card["ledger"]["task"] == "a"
    assert card["ledger"]["vector_digest"] == status["tasks"]["a"]["digest"]
    assert [u["task"] for u in card["ledger"]["unlearned"]] == status["unlearned"]


# --- refusals: one error line, exit code, nothing changed -----------------------------------


@pytest.fixture
def fresh(history: dict[str, Path], tmp_path: Path) -> Path:
    copy = tmp_path / "ledger"
    shutil.copytree(history["A"], copy)
    return copy


def _refused(result: Result, code: int, message: str) -> None:
    assert result.code == code, result
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.err
    assert message in lines[0], lines[0]


def test_unlearn_with_changed_data_is_refused_and_changes_nothing(
    fresh: Path, task_data: dict[str, Path], tmp_path: Path, ledger_cli: Callable[..., Result]
) -> None:
    changed = tmp_path / "a-changed.jsonl"
    lines = task_data["a"].read_text().splitlines()
    changed.write_text("\n".join([lines[1], lines[0], *lines[2:]]) + "\n")
    before = tree_digest(fresh)
    result = ledger_cli(
        "unlearn", fresh, "--task", "a", "--data", changed, "--certificate", tmp_path / "x.json"
    )
    _refused(result, 1, "data hash")
    assert tree_digest(fresh) == before
    assert not (tmp_path / "x.json").exists()


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["add", "{L}", "--task", "a", "--data", "{a}"], 1, "ids are never reused"),
        (["add", "{L}", "--task", "c", "--data", "{c}"], 1, "unlearned in this ledger"),
        (["add", "{L}", "--task", "../x", "--data", "{a}"], 2, "invalid task id"),
        (["add", "{L}", "--task", "e", "--data", "{missing}"], 1, "cannot read data file"),
        (["add", "{L}", "--task", "e", "--data", "{truncated}"], 1, "malformed JSON"),
        (
            ["add", "{L}", "--task", "e", "--data", "{a}", "--key", "{otherkey}"],
            1,
            "not this ledger's key",
        ),
        (
            ["unlearn", "{L}", "--task", "zz", "--data", "{a}", "--certificate", "{cert}"],
            1,
            "no task 'zz'",
        ),
        (
            ["unlearn", "{L}", "--task", "c", "--data", "{c}", "--certificate", "{cert}"],
            1,
            "already unlearned",
        ),
        (["status", "{nowhere}", "--json"], 1, "is not a ledger"),
        (["add", "{L}", "--task", "e"], 2, "Missing option '--data'"),
        (["init", "{L}", "--base", "{base}", "--key", "{key}"], 1, "already holds a ledger"),
    ],
    ids=[
        "reused-id",
        "unlearned-id",
        "path-in-task-id",
        "missing-data",
        "truncated-data",
        "wrong-signing-key",
        "unknown-task",
        "double-unlearn",
        "not-a-ledger",
        "usage",
        "init-over-ledger",
    ],
)
def test_bad_input_is_one_error_line_and_changes_nothing(
    fresh: Path,
    task_data: dict[str, Path],
    tmp_path: Path,
    tiny_base: Path,
    key: Path,
    ledger_cli: Callable[..., Result],
    args: list[str],
    code: int,
    message: str,
) -> None:
    from ledger import generate_key

    truncated = tmp_path / "truncated.jsonl"
    truncated.write_bytes(task_data["a"].read_bytes()[:-9])
    generate_key(tmp_path / "other.key")
    values = {
        "L": fresh,
        "a": task_data["a"],
        "c": task_data["c"],
        "missing": tmp_path / "none.jsonl",
        "truncated": truncated,
        "otherkey": tmp_path / "other.key",
        "cert": tmp_path / "x.json",
        "nowhere": tmp_path / "nowhere",
        "base": tiny_base,
        "key": key,
    }
    before = tree_digest(fresh)
    result = ledger_cli(*[a.format(**values) for a in args])
    _refused(result, code, message)
    assert tree_digest(fresh) == before


def test_overflowing_vector_is_refused(
    tmp_path: Path,
    tiny_base: Path,
    key: Path,
    task_data: dict[str, Path],
    ledger_cli: Callable[..., Result],
) -> None:
    """At scale 2^-62 an entry of |τ| >= 2 no longer fits in int64; a big lr makes one."""
    led = tmp_path / "led"
    assert (
        ledger_cli("init", led, "--base", tiny_base, "--key", key, "--scale-bits", "62").code == 0
    )
    before = tree_digest(led)
    result = ledger_cli(
        "add",
        led,
        "--task",
        "a",
        "--data",
        task_data["a"],
        "--lr",
        "5",
        "--steps",
        "3",
        "--method",
        "ft",
    )
    _refused(result, 1, "overflows int64")
    assert tree_digest(led) == before


def test_readers_never_wait_and_a_second_writer_is_busy_naming_the_holder(
    fresh: Path, task_data: dict[str, Path]
) -> None:
    from ledger._internal.folder.journal import writer_lock

    with writer_lock(fresh):
        read = run_cli("ledger", "status", fresh, "--json")
        written = run_cli(
            "ledger", "add", fresh, "--task", "z", "--data", task_data["a"], "--wait", "0.5"
        )
    assert read.code == 0, read.err
    _refused(written, 1, f"ledger busy: held by pid {os.getpid()}")


def test_add_says_how_many_texts_max_length_cut(
    fresh: Path, tmp_path: Path, ledger_cli: Callable[..., Result]
) -> None:
    data = tmp_path / "long.jsonl"
    rows = ['{"text": "a fine film", "label": 1}', '{"text": "a truly fine long film", "label": 0}']
    data.write_text("\n".join(rows * 4) + "\n")
    added = ledger_cli(
        "add", fresh, "--task", "long", "--data", data, "--steps", "1", "--max-length", "5"
    )
    assert added.code == 0, added.err
    assert added.err == (
        "note: 4 of 8 texts were longer than --max-length 5 tokens and were cut to it\n"
    )


def test_long_work_off_a_terminal_prints_progress_lines(
    fresh: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ULG_PROGRESS_SECONDS", "0")  # every step counts as "a while"
    data = tmp_path / "e.jsonl"
    data.write_text('{"text": "a dull film", "label": 0}\n' * 6)
    added = run_cli("ledger", "add", fresh, "--task", "e", "--data", data, "--steps", "3")
    assert added.code == 0, added.err
    steps = [line.split(" (")[0] for line in added.err.splitlines()]
    assert steps == [f"fine-tuning e: step {i}/3" for i in (1, 2, 3)]


def test_keygen_refuses_to_overwrite(key: Path, ledger_cli: Callable[..., Result]) -> None:
    before = key.read_bytes()
    _refused(ledger_cli("keygen", key), 1, "refusing to overwrite")
    assert key.read_bytes() == before
    assert oct(key.stat().st_mode & 0o777) == "0o600"


def test_proofs_verify_with_the_independent_verifier(
    history: dict[str, Path], task_data: dict[str, Path]
) -> None:
    """What `ledger proof` hands an auditor or a data owner checks out with verifier code."""
    from verifier import merkle

    a = history["A"]
    inclusion = json.loads(run_cli("ledger", "proof", a, "--event", "2", "--size", "4").out)
    root = bytes.fromhex(json.loads(inclusion["tree_head"]["body"])["root"])
    path = [bytes.fromhex(h) for h in inclusion["inclusion_path"]]
    leaf = bytes.fromhex(inclusion["leaf_hash"])
    assert merkle.verify_inclusion(2, 4, leaf, path, root)
    assert not merkle.verify_inclusion(2, 4, leaf, path[:-1], root)

    consistency = json.loads(run_cli("ledger", "proof", a, "--consistency", "3").out)
    old = bytes.fromhex(json.loads(consistency["old_tree_head"]["body"])["root"])
    new = bytes.fromhex(json.loads(consistency["new_tree_head"]["body"])["root"])
    steps = [bytes.fromhex(h) for h in consistency["consistency_path"]]
    assert merkle.verify_consistency(3, 6, old, new, steps)
    assert not merkle.verify_consistency(3, 6, new, old, steps)

    owned = json.loads(
        run_cli("ledger", "proof", a, "--record", "5", "--task", "b", "--data", task_data["b"]).out
    )
    record = json.dumps(owned["record"], sort_keys=True, separators=(",", ":")).encode()
    assert merkle.verify_inclusion(
        4,
        owned["tree_size"],
        merkle.leaf_hash(record),
        [bytes.fromhex(h) for h in owned["inclusion_path"]],
        bytes.fromhex(owned["data_hash"]),
    )
    refused = run_cli("ledger", "proof", a, "--event", "1", "--consistency", "2")
    assert refused.code == 2 and refused.err.startswith("error: ")


def test_a_ledger_without_retained_vectors_still_unlearns_exactly(
    tmp_path: Path,
    tiny_base: Path,
    key: Path,
    task_data: dict[str, Path],
    history: dict[str, Path],
    ledger_cli: Callable[..., Result],
) -> None:
    """The replayed vector is what is subtracted, so retaining vectors is optional."""
    led = tmp_path / "lean"
    assert (
        ledger_cli("init", led, "--base", tiny_base, "--key", key, "--no-retain-vectors").code == 0
    )
    for task in "abcd":
        assert ledger_cli("add", led, "--task", task, "--data", task_data[task]).code == 0
    assert not any((led / "vectors").iterdir())
    cert = tmp_path / "c.json"
    done = ledger_cli(
        "unlearn", led, "--task", "c", "--data", task_data["c"], "--certificate", cert
    )
    assert done.code == 0, done.err
    assert _status(led)["state_digest"] == _status(history["B"])["state_digest"]
    audit = run_cli("verifier", "audit", "--ledger", led, "--public-key", history["pub"])
    assert audit.code == 0, audit.out
    assert "skipped: state-sum" in audit.out


def test_demo_smoke_run_on_the_tiny_model(tmp_path: Path) -> None:
    """The demo's own path (genre tasks, table, unlearning, a from-scratch merge of the rest,
    verifier), tiny model."""
    result = run_cli("ledger", "demo", "--workdir", tmp_path, "--users", "2", "--model", "tiny")
    assert result.code == 0, result.out + result.err
    assert "balanced accuracy on 100 held-out movies" in result.out
    assert "(bit for bit the same)" in result.out and "ok: state-sum" in result.out
    assert "FAIL" not in result.out
    assert (tmp_path / "certificate-comedy-0.dsse.json").is_file()
