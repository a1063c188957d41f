"""Partitioned tables: one file, or a folder partitioned by a key, read and processed one partition at a time.

A table at a path is one of

- a file (CSV or Parquet): one partition, named ``""``;
- a folder of sub-folders (Hive style, ``store_id=S001/part-0.parquet``): one partition per sub-folder, holding
  every table file under it, named after the sub-folder;
- a folder of files (one file per store group, ``group-07.csv``): one partition per file, named after the file
  without its extension.

A partition holds **whole series**: every row of a series lies in one partition (checked where the series of all
partitions are known). Work on partitions runs through :func:`map_partitions`, in worker processes (one per core by
default) or in this process, with the same code.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd

from forecaster.errors import DataValidationError, InvalidParameterError
from forecaster.io import read_table, table_files

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class Partition:
    """A set of whole series stored in ``files``; ``name`` is ``""`` for a table that is a single file."""

    name: str
    files: tuple[Path, ...]

    def read(self, **csv_kwargs: Any) -> pd.DataFrame:
        """The partition's rows as one frame."""
        frames = [read_table(file, **csv_kwargs) for file in self.files]
        return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".csv.gz", ".parquet", ".csv", ".pq"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def partitions(path: str | os.PathLike[str]) -> list[Partition]:
    """The partitions of the table at ``path``, sorted by name.

    Raises:
        DataValidationError: for a missing path, a folder without table files, or two files of one name.
    """
    path = Path(path)
    files = table_files(path)
    if path.is_file():
        return [Partition("", (path,))]
    groups: dict[str, list[Path]] = {}
    for file in files:
        relative = file.relative_to(path)
        name = relative.parts[0] if len(relative.parts) > 1 else _stem(file)
        groups.setdefault(name, []).append(file)
    clashes = [name for name, group in groups.items() if len(group) > 1 and path.joinpath(name).is_file()]
    if clashes:
        raise DataValidationError(f"{path} holds both a file and a folder named {clashes[0]!r}; keep one of them.")
    return [Partition(name, tuple(sorted(group))) for name, group in sorted(groups.items())]


def default_workers() -> int:
    """Worker processes used by default: one per core this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not on Linux
        return max(1, os.cpu_count() or 1)


def map_partitions(function: Callable[[T], R], items: Iterable[T], workers: int | None = None) -> list[R]:
    """``[function(item) for item in items]``, in up to ``workers`` processes (default: one per core).

    See :func:`iter_partitions` (results one at a time, so that a caller can fold them as they come).
    """
    return list(iter_partitions(function, items, workers))


def iter_partitions(function: Callable[[T], R], items: Iterable[T], workers: int | None = None) -> Iterator[R]:
    """``function(item)`` for each of ``items`` in order, in up to ``workers`` processes (default: one per core).

    With one worker (or one item) everything runs in this process. Workers are forked where the platform can (no
    re-import of the entry script: the training toolkit runs a plain script), else spawned; they run pandas and
    numpy only, never LightGBM, so a parent that already ran LightGBM's OpenMP threads is safe. ``function`` must
    be a module-level function.
    """
    items = list(items)
    workers = default_workers() if workers is None else workers
    if workers < 1:
        raise InvalidParameterError(f"The 'workers' parameter must be an int >= 1. Got {workers!r} instead.")
    if workers == 1 or len(items) <= 1:
        yield from map(function, items)
        return
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    with ProcessPoolExecutor(max_workers=min(workers, len(items)), mp_context=context) as pool:
        yield from pool.map(function, items)
