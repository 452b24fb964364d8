"""Task data, public: records, tasks with their train/test split, the MovieLens users shipped.

A record is one JSONL object (``text``, ``label``, any other fields); the
data hash and the file format are FORMAT.md §9's.
"""

from ledger._internal.data.corpora import (
    Record,
    Task,
    movielens_tasks,
    package_file,
    split,
    write_jsonl,
)

__all__ = ["Record", "Task", "movielens_tasks", "package_file", "split", "write_jsonl"]
