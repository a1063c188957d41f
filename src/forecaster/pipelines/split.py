"""The model-build pipeline's first step: cut a long history table into train / history / future / truth.

The last ``horizon`` days become the evaluation window: ``future`` holds what is known in advance for them
(keys, date, known-future and static columns), ``truth`` the observed target; ``train`` (= ``history``, the
features' look-back) everything up to the cut-off day.

A partitioned table (:mod:`forecaster.partitions`) is split partition by partition (in worker processes) at the
cut-off of the whole table, into one file per partition and split: ``history/<partition>.parquet`` and so on, the
layout the sharded steps that follow read (one S3 object per partition).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from forecaster.config import HYPERPARAMETER_CONSTRAINTS
from forecaster.errors import DataValidationError, InvalidParameterError
from forecaster.io import atomic_directory, write_table
from forecaster.params import coerce
from forecaster.partitions import Partition, map_partitions, partitions
from forecaster.spec import DatasetSpec

SPLITS = ("train", "history", "future", "truth")


def _check_horizon(horizon: int) -> int:
    if isinstance(horizon, bool):
        raise InvalidParameterError(f"The 'horizon' parameter of split must be an int. Got {horizon!r} instead.")
    return coerce("horizon", horizon, HYPERPARAMETER_CONSTRAINTS["horizon"], "split")  # the training range


def cutoff_day(days: pd.Series, horizon: int) -> pd.Timestamp:
    """The last day kept for training: ``horizon`` distinct days of ``days`` come after it."""
    days = days.drop_duplicates().sort_values()
    if len(days) <= horizon:
        raise DataValidationError(
            f"The data spans {len(days)} days; holding out the last {horizon} for evaluation needs more. "
            "Provide a longer history or lower the horizon."
        )
    return days.iloc[-horizon - 1]


def split_for_evaluation(
    frame: pd.DataFrame, spec: DatasetSpec, horizon: int, cutoff: pd.Timestamp | None = None
) -> dict[str, pd.DataFrame]:
    """Return ``{"train", "history", "future", "truth"}`` frames; the last ``horizon`` days are held out.

    ``cutoff``: the last training day (of the whole table when ``frame`` is one partition of it).

    Raises:
        InvalidParameterError: for a horizon outside the range training accepts.
        DataValidationError: when the data does not fit the spec or spans no more than ``horizon`` days.
    """
    horizon = _check_horizon(horizon)
    frame = spec.validate_frame(frame, kind="history")
    cutoff = cutoff if cutoff is not None else cutoff_day(frame[spec.date], horizon)
    past = frame[frame[spec.date] <= cutoff].reset_index(drop=True)
    held_out = frame[frame[spec.date] > cutoff].reset_index(drop=True)
    future_columns = [*spec.keys, spec.date, *spec.known_future, *spec.static]
    return {
        "train": past,
        "history": past,
        "future": held_out[future_columns],
        "truth": held_out[[*spec.keys, spec.date, spec.target]],
    }


def _days(job: tuple[Partition, DatasetSpec]) -> pd.Series:
    partition, spec = job
    return spec.validate_frame(partition.read(), kind="history")[spec.date].drop_duplicates()


def _split_partition(job: tuple[Partition, DatasetSpec, int, pd.Timestamp | None, Path]) -> None:
    partition, spec, horizon, cutoff, stage = job
    for name, part in split_for_evaluation(partition.read(), spec, horizon, cutoff).items():
        if len(part):  # a partition whose series all ended before the cut-off has no future / truth rows
            write_table(part, stage / name / f"{partition.name if cutoff is not None else name}.parquet")


def write_split(
    data: str | Path, spec: DatasetSpec, horizon: int, out_dir: str | Path, workers: int | None = None
) -> dict[str, Path]:
    """Split the table at ``data`` into ``<out_dir>/<split>/`` (one file per partition); all or nothing.

    Returns ``{split: its file}`` for one table, ``{split: its folder}`` for a partitioned one.
    """
    horizon = _check_horizon(horizon)
    parts = partitions(data)
    cutoff = None
    if len(parts) > 1:  # the cut-off of the whole table: a first pass over the partitions' days
        cutoff = cutoff_day(pd.concat(map_partitions(_days, [(p, spec) for p in parts], workers)), horizon)
    with atomic_directory(out_dir) as stage:
        map_partitions(_split_partition, [(p, spec, horizon, cutoff, stage) for p in parts], workers)
    if cutoff is None:  # one table: one file per split
        return {name: Path(out_dir) / name / f"{name}.parquet" for name in SPLITS}
    return {name: Path(out_dir) / name for name in SPLITS}
