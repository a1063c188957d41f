"""The model-build pipeline's first step: cut a long history table into train / history / future / truth.

The last ``horizon`` days become the evaluation window: ``future`` holds what is known in advance for them
(keys, date, known-future and static columns), ``truth`` the observed target; ``train`` (= ``history``, the
features' look-back) everything up to the cut-off day.

As the first step of the build pipeline it also checks, in seconds, what later steps would reject: the data
against the spec, enough days to train, and at least one series to forecast in the evaluation window. Series
that end before the window (ended) or start inside it (new, no history) are not evaluated; their counts are
reported.

A partitioned table (:mod:`forecaster.partitions`) is split partition by partition (in worker processes) at the
cut-off of the whole table, into one file per partition and split, in the table's layout
(:func:`forecaster.partitions.write_partition`: ``history/<file partition>.parquet``, or for Hive folders
``history/store_id=S001/part-0.parquet`` with the key in the folder name only), the layout the sharded steps that
follow read (one S3 object per partition). A table whose series lie in several partitions (partitioned by date)
is split as one table.

With ``"missing_days": "zero"`` (the spec's default) an evaluated series' absent days inside the window, up to its
last row, sold nothing: ``truth`` gets a 0 for each and ``future`` a row (known-future and static values carried
over from the series' previous row), so evaluation scores those days as training learned them. With
``"unobserved"`` they stay out of both.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from forecaster.config import HYPERPARAMETER_CONSTRAINTS, TrainConfig
from forecaster.errors import DataValidationError, InvalidParameterError
from forecaster.io import atomic_directory, write_json, write_table
from forecaster.params import coerce
from forecaster.partitions import Partition, map_partitions, partitions, shared_series, whole_table, write_partition
from forecaster.spec import SPEC_FILE, DatasetSpec
from forecaster.trainable import check_trainable

logger = logging.getLogger(__name__)

SPLITS = ("train", "history", "future", "truth")


def _check_horizon(horizon: int) -> int:
    if isinstance(horizon, bool):
        raise InvalidParameterError(f"The 'horizon' parameter of split must be an int. Got {horizon!r} instead.")
    return coerce("horizon", horizon, HYPERPARAMETER_CONSTRAINTS["horizon"], "split")  # the training range


def cutoff_day(days: pd.Series, horizon: int) -> pd.Timestamp:
    """The last day kept for training: the ``horizon`` calendar days after it are held out.

    Calendar days, not the days that have rows: a day without any (a closed Christmas) inside the window would
    otherwise push the future one day past the horizon the model forecasts.
    """
    days = days.drop_duplicates()
    cutoff = days.max() - pd.Timedelta(days=horizon)
    if not (days <= cutoff).any():
        span = (days.max() - days.min()).days + 1
        raise DataValidationError(
            f"The data spans {span} days; holding out the last {horizon} for evaluation needs more. "
            "Provide a longer history or lower the horizon."
        )
    return cutoff


def split_for_evaluation(frame: pd.DataFrame, spec: DatasetSpec, horizon: int) -> dict[str, pd.DataFrame]:
    """Return ``{"train", "history", "future", "truth"}`` frames; the last ``horizon`` days are held out.

    Raises:
        InvalidParameterError: for a horizon outside the range training accepts.
        DataValidationError: when the data does not fit the spec, spans no more than ``horizon`` days, is too
            short to train or has no series to evaluate.
    """
    horizon = _check_horizon(horizon)
    frame = spec.validate_frame(frame, kind="history")
    cutoff = cutoff_day(frame[spec.date], horizon)
    splits, counts = _split_at(frame, spec, cutoff)
    past = splits["train"]
    if past.empty:
        raise DataValidationError(f"No history before the {horizon}-day evaluation window; provide a longer history.")
    config = TrainConfig(horizon=horizon)
    check_trainable(past, spec, config, past[spec.date].max() - pd.Timedelta(days=config.resolved_validation_days))
    _check_evaluated(counts, horizon, cutoff)
    return splits


def _split_at(
    frame: pd.DataFrame, spec: DatasetSpec, cutoff: pd.Timestamp
) -> tuple[dict[str, pd.DataFrame], pd.Series]:
    """The splits of a validated ``frame`` at ``cutoff`` and the series counts (both / left_only / right_only).

    Only series with rows on both sides of the cut-off are evaluated (in ``future`` and ``truth``).
    """
    past = frame[frame[spec.date] <= cutoff].reset_index(drop=True)
    held_out = frame[frame[spec.date] > cutoff]
    keys = list(spec.keys)
    series = past[keys].drop_duplicates().merge(held_out[keys].drop_duplicates(), on=keys, how="outer", indicator=True)
    held_out = held_out.merge(series.loc[series["_merge"] == "both", keys], on=keys).reset_index(drop=True)
    if spec.missing_days == "zero":
        held_out = _zero_fill(held_out, past, spec, cutoff)
    future_columns = [*spec.keys, spec.date, *spec.known_future, *spec.static]
    splits = {
        "train": past,
        "history": past,
        "future": held_out[future_columns],
        "truth": held_out[[*spec.keys, spec.date, spec.target]],
    }
    return splits, series["_merge"].value_counts()


def _check_evaluated(counts: pd.Series, horizon: int, cutoff: pd.Timestamp) -> None:
    """Log the evaluated / ended / new series counts; raise DataValidationError when none is evaluated."""
    if not counts.get("both", 0):
        raise DataValidationError(
            f"No series has rows both before and in the last {horizon} days (the evaluation window), so there is "
            "nothing to evaluate. Provide data whose series continue into the last days."
        )
    skipped = counts.get("left_only", 0) + counts.get("right_only", 0)
    logger.log(
        logging.WARNING if skipped else logging.INFO,
        "evaluation window after %s: %d series evaluated; skipped %d ended (no rows in the window) and %d new "
        "(no history before it)",
        cutoff.date(), counts.get("both", 0), counts.get("left_only", 0), counts.get("right_only", 0),
    )  # fmt: skip


def _zero_fill(held_out: pd.DataFrame, past: pd.DataFrame, spec: DatasetSpec, cutoff: pd.Timestamp) -> pd.DataFrame:
    """``held_out`` with a row for each absent day of a series between the cut-off and its last row: 0 sales."""
    if held_out.empty:  # a partition whose series all ended before the cut-off
        return held_out
    keys, date = list(spec.keys), spec.date
    ends = held_out.groupby(keys, observed=True, as_index=False)[date].max()
    lengths = (ends[date] - cutoff).dt.days.to_numpy()
    grid = ends.loc[ends.index.repeat(lengths), keys].reset_index(drop=True)
    grid[date] = cutoff + pd.to_timedelta(np.concatenate([np.arange(1, n + 1) for n in lengths]), unit="D")
    absent = grid.merge(held_out[[*keys, date]], on=[*keys, date], how="left", indicator=True)["_merge"]
    added = grid[(absent == "left_only").to_numpy()]
    if added.empty:
        return held_out
    logger.warning(
        "%d absent days of %d series in the evaluation window count as 0 sales (the spec's missing_days: zero)",
        len(added), added[keys].drop_duplicates().shape[0],
    )  # fmt: skip
    carried = [*spec.known_future, *spec.static]
    # each series' last history row seeds the carried values of a window that starts with an absent day
    last_known = past.sort_values(date, kind="stable").drop_duplicates(keys, keep="last").merge(ends[keys], on=keys)
    rows = pd.concat([last_known, held_out, added.assign(**{spec.target: 0.0})], ignore_index=True)
    rows = rows.sort_values([*keys, date], kind="stable").reset_index(drop=True)
    rows[carried] = rows.groupby(keys, observed=True)[carried].ffill()
    return rows[rows[date] > cutoff].reset_index(drop=True)


def _days(job: tuple[Partition, DatasetSpec]) -> tuple[pd.Series, pd.DataFrame]:
    """The partition's days and series (keys)."""
    partition, spec = job
    frame = partition.validated(spec)
    return frame[spec.date].drop_duplicates(), frame[list(spec.keys)].drop_duplicates()


def _split_partition(job: tuple[Partition, DatasetSpec, pd.Timestamp, Path]) -> pd.Series:
    """Split one partition at the whole table's cut-off, written in its layout; return its series counts."""
    partition, spec, cutoff, stage = job
    splits, counts = _split_at(partition.validated(spec), spec, cutoff)
    for name, part in splits.items():
        if len(part):  # a partition whose series all ended before the cut-off has no future / truth rows
            write_partition(part, partition, stage / name)
    return counts


def write_split(
    data: str | Path, spec: DatasetSpec, horizon: int, out_dir: str | Path, workers: int | None = None
) -> dict[str, Path]:
    """Split the table at ``data`` into ``<out_dir>/<split>/`` (one file per partition); all or nothing.

    A partitioned table is written in its layout: a folder of files as ``<split>/<partition>.parquet``, a folder of
    (Hive) sub-folders as ``<split>/<partition>/part-0.parquet``. Returns ``{split: its file}`` for one table (or a
    table whose series lie in several partitions, read as one), ``{split: its folder}`` for a partitioned one.
    """
    horizon = _check_horizon(horizon)
    parts = partitions(data)
    first = map_partitions(_days, [(p, spec) for p in parts], workers) if len(parts) > 1 else []
    shared = shared_series([series for _, series in first], list(spec.keys))
    if shared:  # partitioned by date, say
        logger.warning("%s has rows in two files of %s: reading them as one table", shared, data)
        parts = [whole_table(data)]
    if len(parts) == 1:  # one table: one file per split
        with atomic_directory(out_dir) as stage:
            frame = parts[0].read(spec.csv, text=spec.text_columns)
            for name, part in split_for_evaluation(frame, spec, horizon).items():
                write_table(part, stage / name / f"{name}.parquet")
            _bundle_spec(spec, stage)
        return {name: Path(out_dir) / name / f"{name}.parquet" for name in SPLITS}
    # the cut-off of the whole table, from the first pass over the partitions' days
    cutoff = cutoff_day(pd.concat([days for days, _ in first]), horizon)
    with atomic_directory(out_dir) as stage:
        counts = map_partitions(_split_partition, [(p, spec, cutoff, stage) for p in parts], workers)
        _check_evaluated(pd.concat(counts).groupby(level=0, observed=True).sum(), horizon, cutoff)
        _bundle_spec(spec, stage)
    return {name: Path(out_dir) / name for name in SPLITS}


def _bundle_spec(spec: DatasetSpec, stage: Path) -> None:
    """The spec travels with the training split (``train --data <out>/train`` reads it, as any bundled spec.json)."""
    write_json(spec.to_dict(), stage / "train" / SPEC_FILE)
