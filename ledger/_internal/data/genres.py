"""A controlled-heterogeneity task family on MovieLens movie texts: genre detectors.

Task t labels a movie 1 iff its genres hold g_t. For a share 1 − h of T tasks
g_t is the shared genre (Drama); for round(h·T) of them it is another common
genre, in rotation, so h sets how much the tasks disagree. Unlike the
per-user tasks, whose labels mostly carry a user's prior, each task here needs
its own features (by construction a fresh head is at chance), which is what
the paper's claim is about: merging tasks that disagree costs FT+Merge their
signal, and SIFT-Masks' masks are meant to keep it. The audits
(`audits.heterogeneity`) and `ledger demo` draw the same tasks from here.

A task is named by (genre, index within that genre's tasks) and nothing else,
so a Drama task is the same at every h and the T tasks at one h are the first
T of that h's sequence. Per task: 30 + 30 movies split 80/20 by the ledger's
hash split (train and a 12-row test), and 50 + 50 more movies, never trained
on, as the wide held-out set.
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

from ledger._internal.data.corpora import Record, Task, movie_text, movielens_frame, split

SHARED = "Drama"
# The eight most common genres after Drama, most common first.
ROTATION = ("Comedy", "Thriller", "Action", "Romance", "Adventure", "Crime", "Horror", "Sci-Fi")
PER_LABEL = 30  # movies per label, split 80/20 into train and test
WIDE_PER_LABEL = 50  # further movies per label: the wide held-out set


@dataclass(frozen=True)
class Movie:
    movie_id: int
    text: str
    genres: frozenset[str]


@functools.cache
def movies() -> tuple[Movie, ...]:
    """Every distinct movie of the shipped MovieLens ratings, by movieId."""
    frame = movielens_frame().drop_duplicates("movieId").sort_values("movieId")
    return tuple(
        Movie(int(m), movie_text(t, y, g), frozenset(g.split("|")))
        for m, t, y, g in zip(frame.movieId, frame.title, frame.year, frame.genres, strict=True)
    )


def genre_task_id(genre: str, index: int) -> str:
    return f"{genre.lower()}-{index}"


def _rank(name: str, movie_id: int) -> bytes:
    return hashlib.sha256(f"ulg:heterogeneity:v1\x00{name}\x00{movie_id}".encode()).digest()


@dataclass(frozen=True)
class GenreTask:
    """One task of the family: "is g one of this movie's genres?"."""

    genre: str
    index: int
    task: Task  # the 30 + 30 movies, hash split into train and the 12-row test
    wide: list[Record]  # 50 + 50 further movies, never trained on
    core_ids: tuple[int, ...]  # movieIds of the task's rows, in row order
    wide_ids: tuple[int, ...]  # and of the wide set's

    @property
    def task_id(self) -> str:
        return self.task.task_id


@functools.cache
def genre_task(genre: str, index: int) -> GenreTask:
    """Positives (genre present) and negatives each ordered by SHA-256(task, movieId):
    the first 30 of each are the task's rows, the next 50 of each its wide set."""
    name = genre_task_id(genre, index)
    order = sorted(movies(), key=lambda m: _rank(name, m.movie_id))
    positive = [m for m in order if genre in m.genres]
    negative = [m for m in order if genre not in m.genres]
    need = PER_LABEL + WIDE_PER_LABEL
    if len(positive) < need or len(negative) < need:
        raise ValueError(f"genre {genre!r} has {len(positive)} movies, {need} are needed")

    def rows(chosen: Sequence[tuple[Movie, int]]) -> list[tuple[str, Record]]:
        keyed = [(str(m.movie_id), {"text": m.text, "label": y}) for m, y in chosen]
        return sorted(keyed, key=lambda kr: _rank(name, int(kr[0])))  # labels interleaved

    core = rows([(m, 1) for m in positive[:PER_LABEL]] + [(m, 0) for m in negative[:PER_LABEL]])
    wide = rows(
        [(m, 1) for m in positive[PER_LABEL:need]] + [(m, 0) for m in negative[PER_LABEL:need]]
    )
    return GenreTask(
        genre,
        index,
        split(name, core),
        [r for _, r in wide],
        tuple(int(k) for k, _ in core),
        tuple(int(k) for k, _ in wide),
    )


def non_shared(share: float, size: int) -> int:
    """round(h·T) with halves up (Python's round sends 2.5 to 2)."""
    return math.floor(share * size + 0.5)


def plan(share: float, size: int) -> list[tuple[str, int]]:
    """(genre, index) of the T tasks at share h: position i is non-shared iff
    round(h·(i+1)) > round(h·i), so any first T hold exactly round(h·T) of them,
    and the j-th non-shared task is always ROTATION[j mod 8]'s (j div 8)-th."""
    counts: dict[str, int] = {}
    out = []
    others = 0
    for i in range(size):
        if non_shared(share, i + 1) > non_shared(share, i):
            genre = ROTATION[others % len(ROTATION)]
            others += 1
        else:
            genre = SHARED
        out.append((genre, counts.get(genre, 0)))
        counts[genre] = counts.get(genre, 0) + 1
    return out


def genre_tasks(share: float, size: int) -> list[GenreTask]:
    """The family's T tasks at heterogeneity h = share."""
    return [genre_task(g, i) for g, i in plan(share, size)]
