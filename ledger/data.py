"""Task data, public: records, tasks with their train/test split, the MovieLens users shipped.

A record is one JSONL object (``text``, ``label``, any other fields); the
data hash and the file format are FORMAT.md §9's.
"""

from ledger._internal.data import genres
from ledger._internal.data.corpora import (
    Record,
    Task,
    movielens_tasks,
    package_file,
    split,
    write_jsonl,
)
from ledger._internal.data.genres import GenreTask, genre_tasks
from ledger._internal.data.records import Dataset, load_dataset

__all__ = [
    "Dataset",
    "GenreTask",
    "Record",
    "Task",
    "genre_tasks",
    "genres",
    "load_dataset",
    "movielens_tasks",
    "package_file",
    "split",
    "write_jsonl",
]
