"""Property-based testing kit for suites that build on the ledger (needs the ``testing`` extra:
hypothesis and pytest).

Load the fixtures as a plugin (in the top ``conftest.py`` or a test module), and
import the strategies wherever a property needs data::

    pytest_plugins = ("ledger.testing",)  # fixtures: ledger_base, ledger_key, ledger_factory
    from ledger.testing import records, histories, tamperings

The fixtures are session-scoped (a tiny model built once, one operator key),
so hypothesis can drive them without its function-scoped-fixture warning.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import strategies as st

from ledger import Hyper, add_task, build_tiny, generate_key, init_ledger, unlearn_task
from ledger.data import Record, write_jsonl

# Words the tiny model's vocabulary holds whole, so texts tokenize into real tokens.
WORDS = ("good", "great", "fun", "bad", "dull", "boring", "movie", "film", "plot", "cast")
Operation = tuple[str, str]  # ("add" | "unlearn", task id)


def records(
    num_labels: int = 2, min_size: int = 1, max_size: int = 16
) -> st.SearchStrategy[list[Record]]:
    """A task's data: JSONL records with a short text and a valid label."""
    record = st.fixed_dictionaries(
        {
            "text": st.lists(st.sampled_from(WORDS), min_size=1, max_size=6).map(" ".join),
            "label": st.integers(0, num_labels - 1),
        }
    )
    return st.lists(record, min_size=min_size, max_size=max_size)


@st.composite
def histories(draw: st.DrawFn, max_tasks: int = 3, max_operations: int = 5) -> list[Operation]:
    """A valid sequence of adds and unlearns: ids never reused, only active tasks unlearned."""
    operations: list[Operation] = []
    active: list[str] = []
    added = 0
    for _ in range(draw(st.integers(1, max_operations))):
        can_add = added < max_tasks
        if active and (not can_add or draw(st.booleans())):
            task = draw(st.sampled_from(active))
            active.remove(task)
            operations.append(("unlearn", task))
        elif can_add:
            task = f"t{added}"
            added += 1
            active.append(task)
            operations.append(("add", task))
    return operations


@dataclass(frozen=True)
class Tampering:
    """One flipped bit in one file of a ledger folder, picked by index and position so that
    the same example means the same file in every folder of the same layout."""

    file: int
    position: int
    bit: int

    # Contents the format ignores (FORMAT.md §1), and the database, whose free blocks and
    # padding no reader can account for (FORMAT.md §11): flips there may rightly pass.
    SKIPPED = ("LOCK", "signing_key_path", "ledger.duckdb")

    def apply(self, folder: Path) -> Path:
        """Flip the bit in place; returns the file it changed."""
        files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name not in self.SKIPPED)
        target = files[self.file % len(files)]
        data = bytearray(target.read_bytes())
        if data:
            data[self.position % len(data)] ^= 1 << self.bit
        else:
            data = bytearray(b"\x00")
        target.write_bytes(bytes(data))
        return target


def tamperings() -> st.SearchStrategy[Tampering]:
    """Any one flipped bit in any file of a folder (indices wrap to the folder's size)."""
    return st.builds(Tampering, st.integers(0, 10_000), st.integers(0, 1 << 30), st.integers(0, 7))


@pytest.fixture(scope="session")
def ledger_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny deterministic BERT, built once (seconds)."""
    out = tmp_path_factory.mktemp("ledger-base") / "tiny"
    build_tiny(out, seed=0)
    return out


@pytest.fixture(scope="session")
def ledger_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An operator's Ed25519 key; its public half is the path plus ``.pub``."""
    path = tmp_path_factory.mktemp("ledger-key") / "operator.key"
    generate_key(path)
    return path


LedgerFactory = Callable[[Mapping[str, Sequence[Record]], Sequence[Operation] | None], Path]


@pytest.fixture(scope="session")
def ledger_factory(
    tmp_path_factory: pytest.TempPathFactory, ledger_base: Path, ledger_key: Path
) -> Iterator[LedgerFactory]:
    """``make(data, operations)``: a new ledger folder with ``operations`` applied in order
    (default: add every task of ``data``), each task trained on ``data[task]`` for 2 steps."""
    made: list[Path] = []

    def make(
        data: Mapping[str, Sequence[Record]], operations: Sequence[Operation] | None = None
    ) -> Path:
        root = tmp_path_factory.mktemp("ledger")
        led = root / "led"
        init_ledger(led, ledger_base, ledger_key)
        for kind, task in [("add", t) for t in data] if operations is None else operations:
            path = write_jsonl(root / f"{task}.jsonl", list(data[task]))
            if kind == "add":
                add_task(led, task, path, hyper=Hyper(steps=2))
            else:
                unlearn_task(led, task, path, root / f"{task}.dsse.json")
        made.append(root)
        return led

    yield make
    for root in made:
        shutil.rmtree(root, ignore_errors=True)
