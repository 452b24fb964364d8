"""The ledger refuses to build on a folder that no longer matches its signed log.

Each case is named after the attack or accident it represents; each must be
one `error:` line that leaves the folder as it was.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import duckdb
import pytest

from ledger import Hyper, add_task, init_ledger
from tests.helpers import Result, sql, tree_digest


@pytest.fixture(scope="module")
def two_tasks(
    tmp_path_factory: pytest.TempPathFactory,
    tiny_base: Path,
    key: Path,
    task_data: dict[str, Path],
) -> Path:
    led = tmp_path_factory.mktemp("hard") / "led"
    init_ledger(led, tiny_base, key, sign_seed=5)
    add_task(led, "a", task_data["a"], method="sift", hyper=Hyper(steps=3))
    add_task(led, "b", task_data["b"], method="ft", hyper=Hyper(steps=3))
    return led


@pytest.fixture
def led(two_tasks: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "led"
    shutil.copytree(two_tasks, copy)
    return copy


def _link_vectors_outside(led: Path) -> None:
    """Recovery's deletes would act outside the folder through the link."""
    outside = led.parent / "outside"
    shutil.move(led / "vectors", outside)
    (led / "vectors").symlink_to(outside)
    (led / "journal.json").write_text(
        json.dumps({"target_size": 9, "moves": [], "deletes": ["vectors/a.safetensors"]})
    )


def _zero_state(led: Path) -> None:
    from ledger._internal.vectors.tensorfile import read_tensors, write_tensors

    state = read_tensors(led / "state.safetensors")
    (led / "state.safetensors").unlink()
    write_tensors(led / "state.safetensors", {n: t * 0 for n, t in state.items()})


def _rewrite_event(led: Path) -> None:
    con = duckdb.connect(str(led / "ledger.duckdb"))
    (payload,) = con.execute("SELECT payload FROM events WHERE seq = 1").fetchone() or ("",)
    rewritten = payload.replace('"a"', '"z"')  # the index column too, so only the hash tells
    con.execute("UPDATE events SET payload = ?, task_id = 'z' WHERE seq = 1", [rewritten])
    con.close()


def _replace_mask(led: Path) -> None:
    shutil.copy(led / "masks/a.safetensors", led / "masks/a.safetensors.bak")
    data = bytearray((led / "masks/a.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (led / "masks/a.safetensors").write_bytes(bytes(data))
    (led / "masks/a.safetensors.bak").unlink()


TAMPERING: dict[str, tuple[Callable[[Path], object], str]] = {
    "state-zeroed-to-launder-a-task": (_zero_state, "does not match the signed log"),
    "config-scale-rewritten": (
        lambda led: sql(led, "UPDATE config SET scale_bits = 8"),
        "config table differs from the signed init event",
    ),
    "history-rewritten-before-append": (_rewrite_event, "history rewritten"),
    "event-index-column-disagrees-with-payload": (
        lambda led: sql(led, "UPDATE events SET task_id = 'z' WHERE seq = 1"),
        "event 1: its kind or task_id column is not its payload's",
    ),
    "head-signature-forged": (
        lambda led: sql(led, "UPDATE tree_heads SET signature = 'AAAA' || substr(signature, 5)"),
        "is not signed by the key the chain puts in force there",
    ),
    "base-file-swapped": (
        lambda led: (led / "base/vocab.txt").write_text("[PAD]\n"),
        "differs from the file signed at init",
    ),
    "planted-journal-escapes-the-folder": (
        lambda led: (led / "journal.json").write_text(
            json.dumps({"target_size": 9, "moves": [], "deletes": ["../victim"]})
        ),
        "names a path a write never touches",
    ),
    "planted-journal-deletes-a-base-file": (
        lambda led: (led / "journal.json").write_text(
            json.dumps({"target_size": 9, "moves": [], "deletes": ["base/config.json"]})
        ),
        "names a path a write never touches",
    ),
    "symlinked-vectors-folder-with-a-journal-deleting-through-it": (
        lambda led: _link_vectors_outside(led),
        "vectors is a symbolic link",
    ),
    "symlink-planted-at-a-staged-name": (
        lambda led: (led / "state.safetensors.staged-3").symlink_to("../victim"),
        "state.safetensors.staged-3 is a symbolic link",
    ),
    "fifo-planted-as-a-vector": (
        lambda led: os.mkfifo(led / "vectors" / "z.safetensors"),
        "vectors/z.safetensors is a FIFO",
    ),
    "vector-hard-linked-outside": (
        lambda led: os.link(led / "vectors/a.safetensors", led.parent / "kept-copy"),
        "vectors/a.safetensors is hard-linked",
    ),
    "subfolder-planted-in-base": (
        lambda led: (led / "base" / "extra").mkdir(),
        "base/extra is a folder",
    ),
    "backup-file-planted": (
        lambda led: shutil.copy(led / "vectors/a.safetensors", led / "vectors/a.bak"),
        "vectors/a.bak is not a file a ledger folder holds",
    ),
    "view-substituted-for-the-events-table": (
        lambda led: sql(
            led,
            "ALTER TABLE events RENAME TO events_real",
            "CREATE VIEW events AS SELECT seq, kind, task_id, content AS payload "
            "FROM events_real, read_text('../victim')",
        ),
        "holds view events",
    ),
    "macro-planted": (
        lambda led: sql(led, "CREATE MACRO steal(p) AS p"),
        "holds macro 'steal'",
    ),
    "oversized-event-payload": (
        lambda led: sql(led, "UPDATE events SET payload = repeat('x', 2000000) WHERE seq = 1"),
        "over FORMAT.md §5's cap",
    ),
    "macro-shadowing-a-built-in-hides-a-planted-table": (
        lambda led: sql(
            led,
            "CREATE MACRO current_database() AS CASE WHEN contains(current_query(), "
            "'duckdb_views') THEN 'nowhere' ELSE 'ledger' END",
            "CREATE TABLE kept AS SELECT 1 AS vector",
        ),
        "holds macro 'current_database'",
    ),
    "bytes-appended-to-the-database": (
        lambda led: (led / "ledger.duckdb").write_bytes(
            (led / "ledger.duckdb").read_bytes() + b"\x01" * 4096
        ),
        "bytes past its last block",
    ),
    "journal-for-an-impossible-write-deletes-an-active-vector": (
        lambda led: (led / "journal.json").write_text(
            json.dumps({"target_size": 1, "moves": [], "deletes": ["vectors/a.safetensors"]})
        ),
        "no write made it",
    ),
    "sparse-base-file-over-the-cap": (
        lambda led: os.truncate(led / "base" / "config.json", 100 << 20),
        "over FORMAT.md §1's",
    ),
    "many-rows-of-compressible-text": (
        lambda led: sql(
            led,
            "INSERT INTO events SELECT 1000 + i, 'add', 'x', repeat('A', 100000) "
            "FROM range(3000) t(i)",
        ),
        "bytes of text (FORMAT.md §5)",
    ),
    "column-default-planted": (
        lambda led: sql(led, "ALTER TABLE tasks ALTER COLUMN method SET DEFAULT 'sift'"),
        "has a default or a comment",
    ),
    "damaged-journal": (
        lambda led: (led / "journal.json").write_text("garbage"),
        "journal.json is damaged",
    ),
    "lock-file-symlinked": (
        lambda led: (
            (led / "LOCK").unlink(missing_ok=True),
            (led / "LOCK").symlink_to("../victim"),
        ),
        "LOCK is a symbolic link",
    ),
    "task-row-marked-unlearned": (
        lambda led: sql(led, "UPDATE tasks SET status = 'unlearned' WHERE task_id = 'b'"),
        "tasks table differs from the signed events",
    ),
    "task-row-duplicated": (
        lambda led: sql(
            led,
            "CREATE TABLE t2 AS SELECT * FROM tasks; DROP TABLE tasks; "
            "CREATE TABLE tasks AS SELECT * FROM t2 UNION ALL SELECT * FROM t2 WHERE task_id='b';"
            "DROP TABLE t2",
        ),
        "tasks table differs from the signed events",
    ),
    "tables-dropped": (
        lambda led: sql(led, "DROP TABLE events"),
        "table events does not have FORMAT.md §5's columns",
    ),
}


@pytest.mark.parametrize("case", sorted(TAMPERING))
def test_add_refuses_a_tampered_folder(
    led: Path, task_data: dict[str, Path], ledger_cli: Callable[..., Result], case: str
) -> None:
    victim = led.parent / "victim"
    victim.write_text("not the ledger's")
    tamper, message = TAMPERING[case]
    tamper(led)
    outside = _outside_files(led)
    before = tree_digest(led)
    result = ledger_cli("add", led, "--task", "c", "--data", task_data["c"], "--steps", "2")
    assert result.code == 1, result
    assert result.err.count("\n") == 1 and result.err.startswith("error: "), result.err
    assert message in result.err
    assert tree_digest(led) == before
    assert _outside_files(led) == outside, "a file outside the ledger folder changed"


def _outside_files(led: Path) -> dict[str, tuple[bytes, int]]:
    """Bytes and mtime of every file beside the ledger folder: the attacks aim there."""
    return {
        p.name: (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(led.parent.rglob("*"))
        if p.is_file() and not p.is_symlink() and led not in p.parents
    }


def test_a_tampered_mask_is_never_served(led: Path, ledger_cli: Callable[..., Result]) -> None:
    _replace_mask(led)
    result = ledger_cli("predict", led, "--task", "a", "--text", "good")
    assert result.code == 1 and "masks/a.safetensors does not match" in result.err


def test_recovery_works_from_any_working_directory(
    led: Path, task_data: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A journal written via a relative path must not be resolved against another cwd."""
    from ledger import status as ledger_status
    from ledger._internal.folder import journal

    class Crash(BaseException):
        pass

    def crash(root: Path, plan: journal.Plan) -> None:
        raise Crash

    monkeypatch.chdir(led.parent)
    monkeypatch.setattr(journal, "apply_plan", crash)
    with pytest.raises(Crash):
        add_task(Path("led"), "c", task_data["c"], method="sift", hyper=Hyper(steps=2))
    monkeypatch.undo()
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "led").mkdir(parents=True)
    monkeypatch.chdir(elsewhere)
    assert ledger_status(led)["active"] == ["a", "b", "c"]
    assert not any((elsewhere / "led").iterdir())


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("inside", "outside the ledger folder"),
        ("missing-folder", "cannot write a certificate into"),
        ("existing", "refusing to overwrite"),
    ],
)
def test_certificate_destination_is_checked_before_the_replay(
    led: Path,
    task_data: dict[str, Path],
    tmp_path: Path,
    ledger_cli: Callable[..., Result],
    where: str,
    message: str,
) -> None:
    out = {
        "inside": led / "c.json",
        "missing-folder": tmp_path / "nowhere" / "c.json",
        "existing": task_data["a"],
    }[where]
    before = tree_digest(led)
    result = ledger_cli(
        "unlearn", led, "--task", "a", "--data", task_data["a"], "--certificate", out
    )
    assert result.code == 1 and message in result.err
    assert tree_digest(led) == before


def test_a_world_readable_private_key_is_refused(
    led: Path,
    key: Path,
    task_data: dict[str, Path],
    tmp_path: Path,
    ledger_cli: Callable[..., Result],
) -> None:
    loose = tmp_path / "loose.key"
    shutil.copy(key, loose)
    os.chmod(loose, 0o644)
    result = ledger_cli("add", led, "--task", "c", "--data", task_data["c"], "--key", loose)
    assert result.code == 1 and "readable by others" in result.err


def test_keygen_leaves_no_half_pair(tmp_path: Path, ledger_cli: Callable[..., Result]) -> None:
    (tmp_path / "k.pub").symlink_to(tmp_path / "dangling")
    result = ledger_cli("keygen", tmp_path / "k")
    assert result.code == 1 and result.err.startswith("error: ")
    assert not (tmp_path / "k").exists()


@pytest.mark.parametrize(
    "args",
    [
        ["--max-length", "1000"],
        ["--lr", "inf"],
        ["--lr", "1e300"],
    ],
    ids=["max-length-beyond-positions", "infinite-lr", "huge-lr"],
)
def test_bad_training_options_are_one_line(
    led: Path, task_data: dict[str, Path], ledger_cli: Callable[..., Result], args: list[str]
) -> None:
    before = tree_digest(led)
    result = ledger_cli("add", led, "--task", "c", "--data", task_data["c"], *args)
    assert result.code in (1, 2) and result.err.count("\n") == 1, result
    assert result.err.startswith("error: ")
    assert tree_digest(led) == before


@pytest.mark.parametrize("change", ["extra-tensor", "half-precision"])
def test_init_refuses_a_base_the_format_cannot_describe(
    tiny_base: Path, key: Path, tmp_path: Path, ledger_cli: Callable[..., Result], change: str
) -> None:
    import numpy as np

    from ledger._internal.vectors.tensorfile import read_tensors, write_tensors

    base = tmp_path / "base"
    shutil.copytree(tiny_base, base)
    tensors = read_tensors(base / "model.safetensors")
    if change == "extra-tensor":
        tensors["extra.weight"] = np.zeros(3, dtype=np.float32)
    else:
        tensors = {n: t.astype(np.float16) for n, t in tensors.items()}
    (base / "model.safetensors").unlink()
    if change == "extra-tensor":
        write_tensors(base / "model.safetensors", tensors)
    else:
        from safetensors.numpy import save_file

        save_file(tensors, str(base / "model.safetensors"))
    result = ledger_cli("init", tmp_path / "led", "--base", base, "--key", key)
    assert result.code == 1 and result.err.startswith("error: "), result
    assert not (tmp_path / "led").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["base"]


def test_a_stray_staged_file_is_shown_by_status_and_removed_by_the_next_write(
    led: Path, task_data: dict[str, Path], ledger_cli: Callable[..., Result]
) -> None:
    stray = led / "vectors" / "a.safetensors.staged-7"
    stray.write_bytes(b"debris of a write no journal names")
    shown = ledger_cli("status", led, "--json")
    assert shown.code == 0 and json.loads(shown.out)["leftovers"] == [
        "vectors/a.safetensors.staged-7"
    ]
    assert stray.exists(), "a reader must not change the folder"
    added = ledger_cli("add", led, "--task", "c", "--data", task_data["c"], "--steps", "2")
    assert added.code == 0, added.err
    assert not stray.exists()
    assert json.loads(ledger_cli("status", led, "--json").out)["leftovers"] == []


@pytest.mark.parametrize("command", ["status", "predict", "proof"])
def test_readers_check_the_head_against_a_key_from_outside_the_folder(
    led: Path, key: Path, tmp_path: Path, ledger_cli: Callable[..., Result], command: str
) -> None:
    """A forged folder carries its own key: only a key the reader brings proves anything."""
    from ledger import generate_key

    other = generate_key(tmp_path / "other.key")
    args = {
        "status": ["status", led, "--json"],
        "predict": ["predict", led, "--task", "a", "--text", "good"],
        "proof": ["proof", led, "--event", "1"],
    }[command]
    refused = ledger_cli(*args, "--public-key", other)
    assert refused.code == 1 and refused.err.startswith("error: "), refused
    assert "no key of its chain" in refused.err and refused.err.count("\n") == 1
    for trusted in (["--public-key", key.with_name(key.name + ".pub")], ["--key", key]):
        checked = ledger_cli(*args, *trusted)
        assert checked.code == 0 and checked.err == "", checked
    unchecked = ledger_cli(*args)
    assert unchecked.code == 0 and "was checked only against the key the folder" in unchecked.err
