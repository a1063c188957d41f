"""Dense (series × day) arrays built from long frames: the one representation features are computed from."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from forecaster.spec import DatasetSpec


@dataclass(frozen=True)
class Panel:
    """Series-by-day arrays of one data set.

    Attributes:
        series: one row per series: the key columns and the static columns (strings), in panel row order.
        dates: every day from the first to the last date (daily, no gaps).
        target: (n_series, n_days) target; NaN where unknown (no row, or a future day).
        covariates: (n_series, n_days) array per known-future and past-only column; NaN where unknown.
        gaps: (n_series,) days without a history row between the series' first and last row (``missing_days``
            of the spec says whether they count as 0 or as unknown).
    """

    series: pd.DataFrame
    dates: pd.DatetimeIndex
    target: np.ndarray
    covariates: dict[str, np.ndarray]
    gaps: np.ndarray | None = None

    @property
    def n_series(self) -> int:
        return len(self.series)

    def day_index(self, day: pd.Timestamp) -> int:
        """Column index of ``day``."""
        return int((day - self.dates[0]).days)


def build_panel(
    spec: DatasetSpec,
    history: pd.DataFrame,
    future: pd.DataFrame | None = None,
    dates: pd.DatetimeIndex | None = None,
) -> Panel:
    """Pivot validated long frames into a :class:`Panel`.

    ``history`` has every spec column; ``future`` (optional) the keys, date and known-future columns of days
    after the history. Series are ordered by their keys; static values come from each series' last history row.
    The panel spans the frames' first to last day, or ``dates`` (which must cover them: the days of a whole
    chain, when ``history`` is one partition of it).
    """
    frames = [history] if future is None else [history, future]
    keys = list(spec.keys)
    series_ids = pd.concat([f[keys] for f in frames], ignore_index=True).drop_duplicates()
    series_ids = series_ids.sort_values(keys, kind="stable").reset_index(drop=True)
    statics = history.drop_duplicates(keys, keep="last")[keys + list(spec.static)]
    series = series_ids.merge(statics, on=keys, how="left")
    if dates is None:
        dates = pd.date_range(min(f[spec.date].min() for f in frames), max(f[spec.date].max() for f in frames))
    first = dates[0]
    lookup = pd.MultiIndex.from_frame(series[keys]) if len(keys) > 1 else pd.Index(series[keys[0]])

    def positions(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        rows = lookup.get_indexer(pd.MultiIndex.from_frame(frame[keys]) if len(keys) > 1 else frame[keys[0]])
        cols = ((frame[spec.date] - first).dt.days).to_numpy()
        return rows, cols

    shape = (len(series), len(dates))
    hist_rows, hist_cols = positions(history)
    target = np.full(shape, np.nan)
    target[hist_rows, hist_cols] = history[spec.target].to_numpy(dtype=float)
    gaps = _fill_gaps(spec, target, hist_rows, hist_cols, None if future is None else positions(future)[0])
    covariates = {}
    for column in spec.past_only:
        grid = np.full(shape, np.nan)
        grid[hist_rows, hist_cols] = history[column].to_numpy(dtype=float)
        covariates[column] = grid
    fut_rows, fut_cols = positions(future) if future is not None else (None, None)
    for column in spec.known_future:
        grid = np.full(shape, np.nan)
        grid[hist_rows, hist_cols] = history[column].to_numpy(dtype=float)
        if future is not None:
            grid[fut_rows, fut_cols] = future[column].to_numpy(dtype=float)
        covariates[column] = grid
    return Panel(series=series, dates=dates, target=target, covariates=covariates, gaps=gaps)


def _fill_gaps(
    spec: DatasetSpec, target: np.ndarray, rows: np.ndarray, cols: np.ndarray, forecast_rows: np.ndarray | None
) -> np.ndarray:
    """Count each series' absent days inside its life; set them to 0 in ``target`` when ``missing_days`` is zero.

    A series lives from its first history row to its last one; a series being forecast (``forecast_rows``) up to
    the last history day, since it is still sold.
    """
    n_series = target.shape[0]
    present = np.zeros(target.shape, dtype=bool)
    present[rows, cols] = True
    first = np.full(n_series, target.shape[1])
    last = np.full(n_series, -1)
    np.minimum.at(first, rows, cols)
    np.maximum.at(last, rows, cols)
    if forecast_rows is not None and cols.size:
        last[np.unique(forecast_rows)] = np.maximum(last[np.unique(forecast_rows)], cols.max())
    days = np.arange(target.shape[1])
    alive = (days >= first[:, None]) & (days <= last[:, None])
    absent = alive & ~present
    if spec.missing_days == "zero":
        target[absent] = 0.0
    return absent.sum(axis=1)
