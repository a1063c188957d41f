"""Partitioned tables: one file, or a folder partitioned by a key, read and processed one partition at a time.

A table at a path (:func:`forecaster.tables.discover`: pyarrow's Hive partitioning gives each file's path keys)
is one of

- a file (CSV, Parquet or Excel): one partition, named ``""``;
- a folder of sub-folders (Hive style, ``store_id=S001/part-0.parquet``, Spark's ``part-00000-….parquet``, nested
  ``store_id=S001/item_group=fruit/…``): one partition per top-level sub-folder, holding every table file under
  it, named after the sub-folder; the keys of its path become columns when the files do not have them;
- a folder of files (one file per store group, ``group-07.csv``): one partition per file, named after the file
  without its extension.

A partition holds **whole series**: every row of a series lies in one partition (checked where the series of all
partitions are known; a table partitioned by date is read as one, with a warning). Work on partitions runs
through :func:`map_partitions`, in worker processes (one per core by default) or in this process, with the same
code. :func:`write_partition` writes a partition's rows back in the layout it was read from (Hive in, Hive out).
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pandas as pd

from forecaster.dialect import CsvDialect
from forecaster.errors import InvalidParameterError
from forecaster.io import write_table
from forecaster.spec import DatasetSpec
from forecaster.tables import Fragment, discover, folder_keys, read_fragments, stem

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class Partition:
    """A set of whole series stored in ``fragments``; ``name`` is ``""`` for a table that is a single file.

    ``folder``: the partition is a sub-folder (written back as one); ``keys``: the Hive keys its folder name sets.
    """

    name: str
    fragments: tuple[Fragment, ...]
    folder: bool = False
    keys: tuple[tuple[str, str], ...] = ()

    @property
    def files(self) -> tuple[Path, ...]:
        return tuple(fragment.path for fragment in self.fragments)

    def read(
        self, csv: CsvDialect | None = None, columns: list[str] | None = None, text: tuple[str, ...] = ()
    ) -> pd.DataFrame:
        """The partition's rows as one frame (``csv``: the spec's CSV dialect, else detected per file).

        ``columns``: only those (and the path keys), e.g. the keys for a cheap pass over the series; ``text``:
        columns read from CSV and Excel as text (the spec's :attr:`~forecaster.spec.DatasetSpec.text_columns`).
        """
        return read_fragments(self.fragments, csv, columns, text)

    def validated(self, spec: DatasetSpec, kind: str = "history") -> pd.DataFrame:
        """The partition's rows read as ``spec`` says (CSV dialect, text columns), checked as ``kind`` data."""
        return spec.validate_frame(self.read(spec.csv, text=spec.text_columns), kind=kind)


def partitions(path: str | os.PathLike[str]) -> list[Partition]:
    """The partitions of the table at ``path``, sorted by name.

    Raises:
        DataValidationError: for a missing path, a folder without table files, an empty partition folder, files and
            folders side by side, or files partitioned by different keys (see :func:`forecaster.tables.discover`).
    """
    layout = discover(path)
    if layout.kind == "file":
        return [Partition("", layout.fragments)]
    groups: dict[str, list[Fragment]] = {}
    for fragment in layout.fragments:
        relative = fragment.path.relative_to(layout.root)
        name = relative.parts[0] if layout.kind == "folders" else stem(fragment.path)
        groups.setdefault(name, []).append(fragment)
    folder = layout.kind == "folders"
    return [
        Partition(name, tuple(group), folder, folder_keys(name, group[0]) if folder else ())
        for name, group in sorted(groups.items())
    ]


def whole_table(path: str | os.PathLike[str]) -> Partition:
    """Every file of the table at ``path`` as one partition (named ``""``): a table not partitioned by series."""
    return Partition("", tuple(fragment for part in partitions(path) for fragment in part.fragments))


def shared_series(series: Iterable[pd.DataFrame], keys: list[str]) -> str | None:
    """``"Series k=v, ..."`` of the first series (keys of each partition's series) in two partitions, else None."""
    frames = [frame[keys].astype(str).drop_duplicates() for frame in series]
    if len(frames) < 2:
        return None
    both = pd.concat(frames, ignore_index=True)
    twice = both.duplicated(keys)
    if not twice.any():
        return None
    row = both[twice].iloc[0]
    return "Series " + ", ".join(f"{k}={row[k]}" for k in keys)


def _series(job: tuple[Partition, list[str], CsvDialect | None]) -> pd.DataFrame:
    partition, keys, csv = job
    return partition.read(csv, columns=keys, text=tuple(keys))[keys].drop_duplicates()


def partition_shared_series(
    parts: list[Partition], keys: list[str], csv: CsvDialect | None, workers: int | None = None
) -> str | None:
    """:func:`shared_series` of ``parts``, from a pass that reads their key columns only.

    No pass where every partition is a folder named after a series key (``store_id=S001``): its rows have that
    value (checked when read), so a series cannot lie in two of them.
    """
    if len(parts) < 2 or all(any(name in keys for name, _ in part.keys) for part in parts):
        return None
    return shared_series(map_partitions(_series, [(p, keys, csv) for p in parts], workers), keys)


def write_partition(frame: pd.DataFrame, partition: Partition, directory: Path) -> Path:
    """Write a partition's rows into ``directory`` as one Parquet file, in the layout the partition was read from.

    A file partition ``P`` becomes ``P.parquet``; a folder partition ``P/part-0.parquet``, without the columns its
    folder name gives (as Hive writers do: the reader puts them back). One file per partition: a
    ``ShardedByS3Key`` input hands every instance whole partitions. Returns the file written.
    """
    if not partition.folder:
        path = directory / f"{partition.name}.parquet"
    else:
        path = directory / partition.name / "part-0.parquet"
        frame = frame.drop(columns=[name for name, _ in partition.keys if name in frame.columns])
    return write_table(frame, path)


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
