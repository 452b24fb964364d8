"""Resumable audit work: every expensive result is a file, written atomically.

A run killed at any point loses at most the item in progress; the next run
finds everything before it and goes on. Each cache folder pins the settings it
was made with, so a changed setting cannot silently reuse stale work.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

Flat = npt.NDArray[np.float32]
T = TypeVar("T")


class Cache:
    def __init__(self, root: Path, settings: dict[str, Any]) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        pinned = root / "settings.json"
        if pinned.exists():
            existing = json.loads(pinned.read_text())
            if existing != settings:
                changed = sorted(
                    k for k in {*existing, *settings} if existing.get(k) != settings.get(k)
                )
                raise SystemExit(
                    f"error: cache {root} was made with other settings ({', '.join(changed)}); "
                    "pass another --cache or delete it"
                )
        else:
            write_json(pinned, settings)

    def json(self, relative: str, make: Callable[[], Any]) -> Any:
        path = self.root / relative
        if path.exists():
            return json.loads(path.read_text())
        value = make()
        write_json(path, value)
        return value

    def array(self, relative: str, make: Callable[[], Flat]) -> Flat:
        path = self.root / relative
        if not path.exists():
            _atomic(path, lambda f: np.save(f, make(), allow_pickle=False))
        loaded: Flat = np.load(path, mmap_mode="r")
        return loaded

    def has(self, relative: str) -> bool:
        return (self.root / relative).exists()


def write_json(path: Path, value: Any) -> None:
    _atomic(path, lambda f: f.write(json.dumps(value, indent=1, sort_keys=True).encode() + b"\n"))


def _atomic(path: Path, write: Callable[[Any], object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.fchmod(fd, 0o644)  # mkstemp's 0600 would make committed reports private
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class Log:
    """Progress as plain lines on stderr: readable live and in a background run's log file."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.started = time.perf_counter()

    def __call__(self, message: str) -> None:
        elapsed = time.perf_counter() - self.started
        print(f"[{self.name} {elapsed:7.0f}s] {message}", file=sys.stderr, flush=True)


def timed(make: Callable[[], T]) -> tuple[T, float]:
    started = time.perf_counter()
    value = make()
    return value, time.perf_counter() - started
