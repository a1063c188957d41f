"""The model-build pipeline's first step: cut a long history table into train / history / future / truth.

The last ``horizon`` days become the evaluation window: ``future`` holds what is known in advance for them
(keys, date, known-future and static columns), ``truth`` the observed target; ``train`` (= ``history``, the
features' look-back) everything up to the cut-off day.

As the first step of the build pipeline it also checks, in seconds, what later steps would reject: the data
against the spec, enough days to train, and at least one series to forecast in the evaluation window. Series
that end before the window (ended) or start inside it (new, no history) are not evaluated; their counts are
reported.

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
    if spec.missing_days == "zero":
        held_out = _zero_fill(held_out, past, spec, cutoff)
    future_columns = [*spec.keys, spec.date, *spec.known_future, *spec.static]
    return {
        "train": past,
        "history": past,
        "future": held_out[future_columns],
        "truth": held_out[[*spec.keys, spec.date, spec.target]],
    }


def _zero_fill(held_out: pd.DataFrame, past: pd.DataFrame, spec: DatasetSpec, cutoff: pd.Timestamp) -> pd.DataFrame:
    """``held_out`` with a row for each absent day of a series between the cut-off and its last row: 0 sales."""
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


def write_split(data: str | Path, spec: DatasetSpec, horizon: int, out_dir: str | Path) -> dict[str, Path]:
    """Split the table(s) at ``data`` and write ``<out_dir>/<split>/<split>.parquet``; all or nothing."""
    parts = split_for_evaluation(read_table(data), spec, horizon)
    written = {}
    with atomic_directory(out_dir) as stage:
        for name, part in parts.items():
            write_table(part, stage / name / f"{name}.parquet")
            written[name] = Path(out_dir) / name / f"{name}.parquet"
    return written
