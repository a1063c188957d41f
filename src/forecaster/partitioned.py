"""Preprocessing of partitioned data: group totals in a first pass, then feature rows partition by partition.

``forecaster preprocess`` writes, per history partition (see :mod:`forecaster.partitions`), one header-less
feature file (what batch transform sends, one file per partition so several transform instances share the
work) and one keys file; a one-file history gives ``features.csv`` and ``keys.csv``, a partition ``P`` gives
``features-P.csv`` and ``keys-P.csv``. The transform writes ``features-P.csv.out`` next to nothing else, and
:func:`forecaster.forecasting.postprocess` pairs them back by name.

The future data is matched to a history partition by name (same partitioning), else read whole and cut to the
partition's series. Memory: one partition (+ a one-file future) per worker process. A history whose series lie
in several partitions (partitioned by date) is read as one table, with a warning.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from forecaster.artifact import FeatureSchema
from forecaster.contract import DEFAULT_ACTIVE_DAYS
from forecaster.dialect import CsvDialect
from forecaster.errors import DataValidationError, InvalidParameterError
from forecaster.forecasting import SKIPPED_FILE, file_name, inference_rows, series_name, skip_summary
from forecaster.io import atomic_directory, claim_output_directory, write_table
from forecaster.panel import build_panel
from forecaster.partitions import (
    Partition,
    iter_partitions,
    map_partitions,
    partition_shared_series,
    partitions,
    shared_series,
    whole_table,
)
from forecaster.spec import DatasetSpec
from forecaster.totals import TOTALS_FILE, GroupTotals

logger = logging.getLogger(__name__)

FEATURES_STEM = "features"
KEYS_STEM = "keys"


def _partition_totals(job: tuple[Partition, DatasetSpec]) -> tuple[GroupTotals, pd.DataFrame]:
    """The partition's totals and series (keys)."""
    partition, spec = job
    panel = build_panel(spec, partition.validated(spec))
    return GroupTotals.from_panel(panel, spec), panel.series[list(spec.keys)]


def _one_table(history: str | os.PathLike[str], shared: str) -> list[Partition]:
    """The table at ``history`` read whole, because ``shared`` (a series) lies in two of its partitions."""
    logger.warning("%s has rows in two files of %s: reading them as one table", shared, history)
    return [whole_table(history)]


def _totals(
    history: str | os.PathLike[str], spec: DatasetSpec, workers: int | None
) -> tuple[GroupTotals, list[Partition]]:
    """The totals over every partition, and the partitions (the whole table when a series lies in two)."""
    parts, totals, series = partitions(history), None, []
    for part_totals, part_series in iter_partitions(_partition_totals, [(p, spec) for p in parts], workers):
        totals = part_totals if totals is None else GroupTotals.combine([totals, part_totals])  # one at a time
        series.append(part_series)
    shared = shared_series(series, list(spec.keys))
    if shared:  # partitioned by date, say: the totals of the whole table's series
        parts = _one_table(history, shared)
        totals = _partition_totals((parts[0], spec))[0]
    return totals, parts


def group_totals(history: str | os.PathLike[str], spec: DatasetSpec, workers: int | None = None) -> GroupTotals:
    """The item and store totals over every partition of ``history`` (the first pass)."""
    return _totals(history, spec, workers)[0]


def write_group_totals(
    history: str | os.PathLike[str], spec: DatasetSpec, out_dir: str | os.PathLike[str], workers: int | None = None
) -> Path:
    """Write ``group_totals.npz`` of ``history`` into ``out_dir``."""
    return group_totals(history, spec, workers).save(Path(out_dir) / TOTALS_FILE)


@dataclass(frozen=True)
class _Job:
    model_dir: Path
    history: Partition
    future: Partition | None  # the matching future partition, else None: the whole future...
    future_path: Path
    cut_future: bool  # ...cut to the partition's series (a partitioned history)
    totals: Path
    features_dir: Path
    keys_dir: Path
    active_days: int


@functools.lru_cache(maxsize=2)
def _cached_totals(path: Path) -> GroupTotals:
    return GroupTotals.load(path)


@functools.lru_cache(maxsize=1)
def _whole_future(path: Path, csv: CsvDialect | None, text: tuple[str, ...]) -> pd.DataFrame:
    return whole_table(path).read(csv, text=text)


def _preprocess_partition(job: _Job) -> tuple[int, pd.DataFrame]:
    """Feature and keys file of one partition (none when all its series are skipped); (series, skipped series)."""
    schema = FeatureSchema.load(job.model_dir)
    spec = schema.spec
    history = job.history.read(spec.csv, text=spec.text_columns)
    future = (
        job.future.read(spec.csv, text=spec.text_columns)
        if job.future is not None
        else _whole_future(job.future_path, spec.csv, spec.text_columns)
    )
    if job.future is None and job.cut_future:
        keys = list(spec.keys)
        series = history[keys].astype(str).drop_duplicates()
        future = future[pd.MultiIndex.from_frame(future[keys].astype(str)).isin(pd.MultiIndex.from_frame(series))]
    rows = inference_rows(
        schema, history, future, job.active_days, totals=_cached_totals(job.totals), require_rows=False
    )
    if len(rows.keys):
        write_table(rows.features, job.features_dir / file_name(FEATURES_STEM, job.history.name), header=False)
        write_table(rows.keys, job.keys_dir / file_name(KEYS_STEM, job.history.name))
    return rows.series_count, rows.skipped


def _check_paired(results: list[tuple[int, pd.DataFrame]], names: list[str], keys: list[str]) -> None:
    """Raise when a series ended in one partition and is new in another: its history and future were split apart."""
    skipped = pd.concat([r[1].assign(_partition=name) for r, name in zip(results, names, strict=True)])
    ended, new = (skipped[skipped["reason"] == reason].astype({k: str for k in keys}) for reason in ("ended", "new"))
    both = ended.merge(new, on=keys, suffixes=("_history", "_future"))
    if not both.empty:
        first = both.iloc[0]
        raise DataValidationError(
            f"{len(both)} series (e.g. {series_name(first, keys)}) have their history in the partition "
            f"{first['_partition_history']} and their future rows in {first['_partition_future']}: future partitions "
            "are paired with history partitions by name. Partition the future like the history (the same series "
            "in the same file or Hive folder), or give the future as one file."
        )


def preprocess(
    model_dir: str | os.PathLike[str],
    history: str | os.PathLike[str],
    future: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    keys_dir: str | os.PathLike[str] | None = None,
    totals: str | os.PathLike[str] | None = None,
    workers: int | None = None,
    active_days: int = DEFAULT_ACTIVE_DAYS,
) -> list[str]:
    """Write the feature and keys files of every history partition; return the names of those written.

    Args:
        model_dir: the model (its feature schema) the rows are for.
        history: history table: a file or a folder of partitions.
        future: the known-future rows of the forecast days: one file, or partitioned like ``history``.
        out_dir: folder of the feature files (nothing else is written there unless ``keys_dir`` is it).
        keys_dir: folder of the keys files (default: ``out_dir``).
        totals: ``group_totals.npz`` (or its folder) of the whole history; default: computed from ``history``.
            Give it when ``history`` is one shard of the chain (a multi-instance processing job).
        workers: worker processes (default: one per core).
        active_days: also skip series without a sale in the last ``active_days`` history days (see
            :func:`forecaster.forecasting.inference_rows`).

    The series not forecast are listed in ``keys_dir``: ``skipped_series.csv`` (one-file history) or
    ``skipped_series-P.csv`` (P: the first partition, so the shards of a multi-instance job write disjoint files).
    Both folders are written all or nothing.

    Raises:
        DataValidationError: when no partition has a series to forecast.
    """
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    keys_dir = Path(keys_dir) if keys_dir is not None else out_dir
    out, keys = out_dir.resolve(), keys_dir.resolve()
    if out != keys and (out in keys.parents or keys in out.parents):  # one write would replace the other's files
        raise InvalidParameterError(
            f"The keys directory {keys_dir} and the features directory {out_dir} are one inside the other: each "
            "output replaces its directory's contents. Give the same directory, or two side by side."
        )
    for output in {out_dir, keys_dir}:  # before the totals pass
        claim_output_directory(output)
    spec = FeatureSchema.load(model_dir).spec
    future_parts = {p.name: p for p in partitions(future)}
    with tempfile.TemporaryDirectory(prefix="forecaster-totals-") as scratch:
        if totals is None:
            chain_totals, history_parts = _totals(history, spec, workers)
            totals = chain_totals.save(Path(scratch) / TOTALS_FILE)
        else:  # a shard, say: the first pass that finds series shared by partitions reads their keys only
            history_parts = partitions(history)
            shared = partition_shared_series(history_parts, list(spec.keys), spec.csv, workers)
            history_parts = _one_table(history, shared) if shared else history_parts
        totals_path = Path(totals) / TOTALS_FILE if Path(totals).is_dir() else Path(totals)
        if not totals_path.is_file():
            raise DataValidationError(f"No group totals at {totals}; write them with `forecaster group-totals`.")
        with (
            atomic_directory(out_dir) as features_stage,
            atomic_directory(keys_dir) if keys_dir != out_dir else contextlib.nullcontext(features_stage) as keys_stage,
        ):
            matched = all(p.name in future_parts for p in history_parts) and len(future_parts) > 1
            extra = sorted(set(future_parts) - {p.name for p in history_parts}) if matched else []
            if extra:
                logger.warning("future partitions without history are not forecast: %s", ", ".join(extra[:5]))
            jobs = [
                _Job(
                    model_dir=model_dir,
                    history=part,
                    future=future_parts.get(part.name) if matched else None,
                    future_path=Path(future),
                    cut_future=len(history_parts) > 1,
                    totals=totals_path,
                    features_dir=features_stage,
                    keys_dir=keys_stage,
                    active_days=active_days,
                )
                for part in history_parts
            ]
            results = map_partitions(_preprocess_partition, jobs, workers)
            if matched:
                _check_paired(results, [part.name for part in history_parts], list(spec.keys))
            skipped = pd.concat([result[1] for result in results], ignore_index=True)
            forecast_count = sum(result[0] for result in results)
            if not forecast_count:
                raise DataValidationError(
                    f"No series to forecast: {skip_summary(0, skipped)}. Check that the future data has rows for "
                    "the history's series (the same key values) on the days after the history"
                    f"{f', and lower active_days ({active_days})' if active_days else ''}."
                )
            # one file per processing instance: a shard is named after its first partition (disjoint on S3)
            write_table(skipped, keys_stage / file_name(Path(SKIPPED_FILE).stem, history_parts[0].name))
    print(skip_summary(forecast_count, skipped))
    return [part.name for part, result in zip(history_parts, results, strict=True) if result[0]]
