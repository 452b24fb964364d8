"""`verifier served`: an export is bit for bit θ0 + the serving rule at the head it names.

Each serving rule is rebuilt by the verifier's own implementation of FORMAT.md §3
and compared with what `ledger export` wrote; each attack on an export folder is
named after what an operator would change, and must end as a FAIL of the check
that stops it (FORMAT.md §12).
"""

from __future__ import annotations

import json
import shutil
import struct
from collections.abc import Callable
from pathlib import Path

import pytest

from ledger.testing import LedgerFactory
from tests.helpers import ledger_ok, run_cli
from verifier.checks import _context
from verifier.context import Context
from verifier.report import Report, verify_served
from verifier.served import served_checks

A = [{"text": "good fun movie", "label": 1}, {"text": "dull boring plot", "label": 0}] * 3
B = [{"text": "a fine cast", "label": 1}, {"text": "weak and long", "label": 0}] * 3
C = [{"text": "loved it", "label": 1}, {"text": "hated it", "label": 0}] * 3
OPS = [("add", "a"), ("add", "b"), ("add", "c"), ("unlearn", "c")]


@pytest.fixture(scope="module")
def led(ledger_factory: LedgerFactory) -> Path:
    return ledger_factory({"a": A, "b": B, "c": C}, OPS)


@pytest.fixture(scope="module")
def ctx(led: Path, ledger_key: Path) -> Context:
    """The ledger read once: the attacks change only the export, never the ledger."""
    return _context(led, Path(f"{ledger_key}.pub").read_bytes())


@pytest.fixture(scope="module")
def exported(led: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("export") / "a"
    ledger_ok("export", led, "--task", "a", out)
    return out


def _served(led: Path, task: str, model: Path, key: Path) -> Report:
    return verify_served(led, task, model, key.with_name(key.name + ".pub"))


def _status(report: Report) -> dict[str, tuple[str, str]]:
    return {r.name: (r.status, r.detail) for r in report.results}


@pytest.mark.parametrize("rule", ["mean", "count", "sum"])
@pytest.mark.parametrize("task", ["a", "c"])  # c was unlearned: served unmasked
def test_every_rule_is_rebuilt_bit_for_bit(
    led: Path, ledger_key: Path, tmp_path: Path, rule: str, task: str
) -> None:
    out = tmp_path / "export"
    ledger_ok("export", led, "--task", task, out, "--rule", rule)
    report = _served(led, task, out, ledger_key)
    assert report.ok, report.failures
    assert _status(report)["served-weights"][0] == "ok"


def test_an_export_from_an_older_head_is_rebuilt_from_the_vectors(
    led: Path, exported: Path, ledger_key: Path, tmp_path: Path
) -> None:
    """A later add changes the state file; the export's head is then rebuilt from the
    vectors active at it, checked against that head's signed state digest."""
    later = tmp_path / "later"
    shutil.copytree(led, later)
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in B[::-1]), encoding="utf-8")
    ledger_ok("add", later, "--task", "d", "--data", data, "--steps", "2")
    report = _served(later, "a", exported, ledger_key)
    assert report.ok, report.failures


def test_the_ledgers_recorded_rule_is_the_default(
    ledger_base: Path, ledger_key: Path, tmp_path: Path
) -> None:
    led = tmp_path / "count"
    ledger_ok("init", led, "--base", ledger_base, "--key", ledger_key, "--rule", "count")
    data = tmp_path / "a.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in A), encoding="utf-8")
    ledger_ok("add", led, "--task", "a", "--data", data, "--steps", "2")
    ledger_ok("export", led, "--task", "a", tmp_path / "out")
    card = (tmp_path / "out" / "README.md").read_text(encoding="utf-8")
    assert '"serving_rule": "count"' in card
    report = _served(led, "a", tmp_path / "out", ledger_key)
    assert report.ok and "not the ledger's own" not in _status(report)["served-card"][1]


# --- attacks on the export folder: each named after what the operator changed ----------------


def _header(path: Path) -> tuple[int, dict[str, dict[str, object]]]:
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    return n, json.loads(raw[8 : 8 + n])


def _flip_first_byte(out: Path, pick: Callable[[str], bool]) -> None:
    """Flip one bit of the first tensor `pick` chooses, found through the header."""
    path = out / "model.safetensors"
    n, header = _header(path)
    name = next(k for k in sorted(header) if k != "__metadata__" and pick(k))
    lo = header[name]["data_offsets"][0]  # type: ignore[index]
    raw = bytearray(path.read_bytes())
    raw[8 + n + lo] ^= 0x01
    path.write_bytes(bytes(raw))


def _card(out: Path, change: Callable[[dict[str, object]], None]) -> None:
    path = out / "README.md"
    lines = path.read_text(encoding="utf-8").splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("ledger: "))
    fields = json.loads(lines[at].removeprefix("ledger: "))
    change(fields)
    lines[at] = "ledger: " + json.dumps(fields)  # \u escapes: a lone surrogate stays text
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _set(key: str, value: object) -> Callable[[Path], None]:
    return lambda out: _card(out, lambda f: f.__setitem__(key, value))


def _symlinked_weights(out: Path) -> None:
    honest = out.parent / "elsewhere.safetensors"
    shutil.copy(out / "model.safetensors", honest)
    (out / "model.safetensors").unlink()
    (out / "model.safetensors").symlink_to(honest)


def _upper_root(out: Path) -> None:
    _card(out, lambda f: f.__setitem__("root", str(f["root"]).upper()))


def _event_as_a_boolean(out: Path) -> None:
    """A boolean where the ledger wrote the event's number (compared as JSON, not by ==)."""
    _card(out, lambda f: f["unlearned"][0].__setitem__("event", True))  # type: ignore[index]


def _quoted_duplicate(out: Path) -> None:
    """A second `"ledger":` line: YAML (last one wins) reads it, a line reader might not."""
    path = out / "README.md"
    lines = path.read_text(encoding="utf-8").splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("ledger: "))
    lines.insert(at + 1, '"ledger": ' + lines[at].removeprefix("ledger: ").replace('"c"', '"x"'))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _not_utf8(out: Path) -> None:
    path = out / "README.md"
    path.write_bytes(path.read_bytes().replace(b"# The served", b"# The \xff served"))


def _tokenizer_cased(out: Path) -> None:
    """do_lower_case off: every upper-case word becomes [UNK], same weights."""
    path = out / "tokenizer_config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    config["do_lower_case"] = False
    path.write_text(json.dumps(config), encoding="utf-8")


def _sparse_tokenizer(out: Path) -> None:
    """A tokenizer.json of 4 GiB on disk as a hole: refused by its size, never hashed."""
    with (out / "tokenizer.json").open("r+b") as handle:
        handle.truncate(1 << 32)


def _metadata_stash(out: Path) -> None:
    """A deleted vector's bytes kept in the weights file's __metadata__ (safetensors loads it)."""
    path = out / "model.safetensors"
    n, header = _header(path)
    header["__metadata__"] = {"format": "pt", "kept": "00" * 64}
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + path.read_bytes()[8 + n :])


def _plant(out: Path, name: str) -> None:
    """A PEFT adapter next to the weights: transformers would load it on top of them."""
    (out / name).write_text("{}", encoding="utf-8")


def _config_relabelled(out: Path) -> None:
    config = json.loads((out / "config.json").read_text(encoding="utf-8"))
    config["id2label"] = {"0": "POSITIVE", "1": "NEGATIVE"}
    (out / "config.json").write_text(json.dumps(config), encoding="utf-8")


ATTACKS: dict[str, tuple[Callable[[Path], None], str, str]] = {
    "trainable-weight-bit-flipped": (
        lambda out: _flip_first_byte(out, lambda k: "embeddings." not in k),
        "served-weights",
        "differs from θ0",
    ),
    "frozen-embedding-bit-flipped": (
        lambda out: _flip_first_byte(out, lambda k: "embeddings." in k),
        "served-weights",
        "differs from θ0",
    ),
    "card-claims-another-rule": (_set("serving_rule", "sum"), "served-weights", "`sum` rule"),
    "card-names-an-unknown-rule": (
        _set("serving_rule", "median"),
        "served-card",
        "serving_rule is",
    ),
    "card-names-an-older-head": (_set("tree_size", 2), "served-card", "not in this log"),
    "card-root-not-hex": (_set("root", "zz"), "served-card", "64 hex digits"),
    "card-root-in-capitals": (_upper_root, "served-card", "64 hex digits"),
    "card-of-another-task": (_set("task", "b"), "served-card", "task is"),
    "card-of-another-ledger": (_set("log_id", "00" * 32), "served-card", "log_id is"),
    "card-event-as-a-boolean": (_event_as_a_boolean, "served-card", "unlearned is"),
    "card-quoted-duplicate-ledger-key": (_quoted_duplicate, "served-card", "not one new"),
    "card-not-utf8": (_not_utf8, "served-card", "not UTF-8"),
    "card-hides-an-active-task": (_set("active_tasks", ["a"]), "served-card", "active_tasks"),
    "card-field-added": (_set("note", "x"), "served-card", "exactly the fields"),
    "card-hides-an-unlearned-task": (_set("unlearned", []), "served-card", "unlearned"),
    "adapter-planted": (
        lambda out: _plant(out, "adapter_config.json"),
        "served-files",
        "'adapter_config.json' is not a file",
    ),
    "config-relabelled": (_config_relabelled, "served-files", "'config.json' is not the base's"),
    "tokenizer-config-uncased-off": (
        _tokenizer_cased,
        "served-files",
        "'tokenizer_config.json' is not the base's",
    ),
    "tokenizer-grown-sparse": (_sparse_tokenizer, "served-files", "its size differs"),
    "weights-metadata-stash": (_metadata_stash, "served-weights", "header"),
    "weights-symlinked": (_symlinked_weights, "served-files", "symbolic link"),
}


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_an_attack_on_the_export_fails_its_check(
    ctx: Context, exported: Path, tmp_path: Path, attack: str
) -> None:
    change, check, why = ATTACKS[attack]
    out = tmp_path / "export"
    shutil.copytree(exported, out)
    change(out)
    status, detail = {r.name: (r.status, r.detail) for r in served_checks(ctx, out, "a")}[check]
    assert status == "FAIL" and why in detail, (status, detail)


def test_an_export_whose_head_cannot_be_rebuilt_is_not_verified(
    ledger_factory: LedgerFactory, ledger_key: Path, tmp_path: Path
) -> None:
    """Exported while b was active, then b unlearned: Q at that head needs b's deleted
    vector, so the weights cannot be checked, and any bytes there must not pass."""
    led = ledger_factory({"a": A, "b": B}, [("add", "a"), ("add", "b")])
    out = tmp_path / "export"
    ledger_ok("export", led, "--task", "a", out)
    data = tmp_path / "b.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in B), encoding="utf-8")
    ledger_ok("unlearn", led, "--task", "b", "--data", data, "--certificate", tmp_path / "b.c")
    n, _ = _header(out / "model.safetensors")
    raw = (out / "model.safetensors").read_bytes()
    (out / "model.safetensors").write_bytes(raw[: 8 + n] + b"\x41" * (len(raw) - 8 - n))
    report = _served(led, "a", out, ledger_key)
    status, detail = _status(report)["served-weights"]
    assert not report.ok and status == "FAIL" and "cannot be verified" in detail, detail


def test_q_is_checked_as_it_is_used(
    led: Path, exported: Path, ledger_key: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A state file that reads differently the second time (a FUSE mount, a writer in
    place): the weights check digests the very Q it serves from."""
    from verifier.context import Context

    honest = Context.state

    def shifted(self: Context) -> dict[str, object]:
        return {n: q + 1 for n, q in honest(self).items()}

    monkeypatch.setattr(Context, "state", shifted)
    status, detail = _status(_served(led, "a", exported, ledger_key))["served-weights"]
    assert status == "FAIL" and "Q as read here is not the signed state" in detail, detail


def test_a_name_no_terminal_can_print_is_escaped(
    led: Path, exported: Path, ledger_key: Path, tmp_path: Path
) -> None:
    """A root holding a lone surrogate (valid JSON, not UTF-8): a FAIL line, no traceback."""
    out = tmp_path / "export"
    shutil.copytree(exported, out)
    _card(out, lambda f: f.__setitem__("task", "\ud800"))
    done = run_cli(
        "verifier", "served", "--ledger", led, "--task", "a", "--model", out,
        "--public-key", f"{ledger_key}.pub",
    )  # fmt: skip
    assert done.code == 1 and "Traceback" not in done.err and "\\ud800" in done.out, done.err


def test_an_export_that_is_not_a_folder_is_one_error_line(led: Path, ledger_key: Path) -> None:
    done = run_cli(
        "verifier", "served", "--ledger", led, "--task", "a", "--model", led / "nowhere",
        "--public-key", f"{ledger_key}.pub",
    )  # fmt: skip
    assert done.code == 1 and done.err.startswith("error: exported model") and not done.out
