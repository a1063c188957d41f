"""The model-build pipeline's first step: cut a long history table into train / history / future / truth.

The last ``horizon`` days become the evaluation window: ``future`` holds what is known in advance for them
(keys, date, known-future and static columns), ``truth`` the observed target; ``train`` (= ``history``, the
features' look-back) everything up to the cut-off day.

As the first step of the build pipeline it also checks, in seconds, what later steps would reject: the data
against the spec, enough days to train, and at least one series to forecast in the evaluation window. Series
that end before the window (ended) or start inside it (new, no history) are not evaluated; their counts are
reported.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from forecaster.config import HYPERPARAMETER_CONSTRAINTS, TrainConfig
from forecaster.errors import DataValidationError, InvalidParameterError
from forecaster.io import atomic_directory, read_table, write_table
from forecaster.params import coerce
from forecaster.spec import DatasetSpec
from forecaster.training import check_trainable

logger = logging.getLogger(__name__)


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
    config = TrainConfig(horizon=horizon)
    if past.empty:
        raise DataValidationError(f"No history before the {horizon}-day evaluation window; provide a longer history.")
    check_trainable(past, spec, config, past[spec.date].max() - pd.Timedelta(days=config.resolved_validation_days))
    held_out = frame[frame[spec.date] > cutoff]
    keys = list(spec.keys)
    series = past[keys].drop_duplicates().merge(held_out[keys].drop_duplicates(), on=keys, how="outer", indicator=True)
    counts = series["_merge"].value_counts()
    if not counts.get("both", 0):
        raise DataValidationError(
            f"No series has rows both before and in the last {horizon} days (the evaluation window), so there is "
            "nothing to evaluate. Provide data whose series continue into the last days."
        )
    logger.warning(
        "evaluation window after %s: %d series evaluated; skipped %d ended (no rows in the window) and %d new "
        "(no history before it)",
        cutoff.date(), counts.get("both", 0), counts.get("left_only", 0), counts.get("right_only", 0),
    )  # fmt: skip
    held_out = held_out.merge(series.loc[series["_merge"] == "both", keys], on=keys).reset_index(drop=True)
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
