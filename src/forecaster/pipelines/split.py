"""The model-build pipeline's first step: cut a long history table into train / history / future / truth.

The last ``horizon`` days become the evaluation window: ``future`` holds what is known in advance for them
(keys, date, known-future and static columns), ``truth`` the observed target; ``train`` (= ``history``, the
features' look-back) everything up to the cut-off day.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from forecaster.config import HYPERPARAMETER_CONSTRAINTS
from forecaster.errors import DataValidationError, InvalidParameterError
from forecaster.io import atomic_directory, read_table, write_table
from forecaster.params import coerce
from forecaster.spec import DatasetSpec


def split_for_evaluation(frame: pd.DataFrame, spec: DatasetSpec, horizon: int) -> dict[str, pd.DataFrame]:
    """Return ``{"train", "history", "future", "truth"}`` frames; the last ``horizon`` days are held out.

    Raises:
        InvalidParameterError: for a horizon outside the range training accepts.
        DataValidationError: when the data does not fit the spec or spans no more than ``horizon`` days.
    """
    if isinstance(horizon, bool):
        raise InvalidParameterError(f"The 'horizon' parameter of split must be an int. Got {horizon!r} instead.")
    horizon = coerce("horizon", horizon, HYPERPARAMETER_CONSTRAINTS["horizon"], "split")  # the training range
    frame = spec.validate_frame(frame, kind="history")
    days = frame[spec.date].drop_duplicates().sort_values()
    if len(days) <= horizon:
        raise DataValidationError(
            f"The data spans {len(days)} days; holding out the last {horizon} for evaluation needs more. "
            "Provide a longer history or lower the horizon."
        )
    cutoff = days.iloc[-horizon - 1]
    past = frame[frame[spec.date] <= cutoff].reset_index(drop=True)
    held_out = frame[frame[spec.date] > cutoff].reset_index(drop=True)
    future_columns = [*spec.keys, spec.date, *spec.known_future, *spec.static]
    return {
        "train": past,
        "history": past,
        "future": held_out[future_columns],
        "truth": held_out[[*spec.keys, spec.date, spec.target]],
    }


def write_split(data: str | Path, spec: DatasetSpec, horizon: int, out_dir: str | Path) -> dict[str, Path]:
    """Split the table(s) at ``data`` and write ``<out_dir>/<split>/<split>.parquet``; all or nothing."""
    parts = split_for_evaluation(read_table(data), spec, horizon)
    written = {}
    with atomic_directory(out_dir) as stage:
        for name, part in parts.items():
            write_table(part, stage / name / f"{name}.parquet")
            written[name] = Path(out_dir) / name / f"{name}.parquet"
    return written
