"""Direct multi-horizon features: the one code path for training and inference rows.

A feature row describes (series, forecast origin t0, horizon h) and predicts the target on day d = t0 + h.
Target and past-only values enter only from days <= t0; known-future values of day d (and campaign run lengths
of the known campaign plan) enter as they are. Column names and meanings:

- ``horizon`` (h), ``weekday`` (of day d, Monday = 0)
- known-future value of day d for each known-future column, and ``<col>_at_origin`` (its value on day t0)
- campaign plan of day d: ``campaign_day`` (1-based day of the running campaign, 0 outside one),
  ``campaign_days_left`` (campaign days left including d), ``days_since_campaign`` (days since the last campaign
  day before d, capped at 60; 60 when none): the post-campaign dip
- history at t0: ``lag_0``..``lag_6`` (target k days before t0), ``mean_7/14/28/56``, ``std_7/28``,
  ``zero_share_28``, ``same_weekday_mean`` (mean of the last 4 observed days with d's weekday),
  ``same_weekday_last``, ``noncampaign_mean_28``, ``campaign_uplift`` (56-day mean on campaign days / on other
  days, for the series) and ``item_campaign_uplift`` (the same over all series of the item)
- hierarchy at t0: ``item_mean_7/28`` (mean daily target of the item over all its stores), ``item_trend``
  (their ratio) and ``store_trend`` (7- over 28-day mean of the store over all its items)
- level at t0 (with ``level_features``): ``level_trend`` (the series' 7- over 28-day mean) and ``chain_trend``
  (the same for the mean daily target of every series of the chain): the level the model learns to follow
- past-only columns: ``<col>_lag_0`` and ``<col>_mean_7``
- categoricals: the static columns (and the keys when ``keys_as_features``) as integer codes into vocabularies
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from forecaster.panel import Panel
from forecaster.spec import DatasetSpec
from forecaster.totals import GroupTotals

LAGS = 7
MEAN_WINDOWS = (7, 14, 28, 56)
STD_WINDOWS = (7, 28)
UPLIFT_WINDOW = 56
SAME_WEEKDAY_COUNT = 4
DAYS_SINCE_CAP = 60  # also caps campaign_day and campaign_days_left
LOOKBACK_DAYS = 70  # > every window above: rows only read this many days before their origin
CAMPAIGN_FEATURES = ("campaign_day", "campaign_days_left", "days_since_campaign")
LEVEL_FEATURES = ("level_trend", "chain_trend")
#: features read from other series (the group totals): the item's, the store's and the chain's history
GROUP_FEATURES = ("item_mean_7", "item_mean_28", "item_trend", "store_trend", "chain_trend", "item_campaign_uplift")


@dataclass(frozen=True)
class FeatureSet:
    """Names and kinds of the features of one spec; ``kinds`` maps name → ``int`` | ``float`` | ``category``."""

    names: tuple[str, ...]
    kinds: dict[str, str]
    categorical: tuple[str, ...]


def feature_set(spec: DatasetSpec, keys_as_features: bool = True, level_features: bool = False) -> FeatureSet:
    """Return the ordered features built for ``spec`` (``level_features``: with :data:`LEVEL_FEATURES`)."""
    kinds: dict[str, str] = {"horizon": "int", "weekday": "int"}
    for column in spec.known_future:
        kinds[column] = "float"
        kinds[f"{column}_at_origin"] = "float"
    if spec.campaign:
        kinds.update(dict.fromkeys(CAMPAIGN_FEATURES, "int"))
    kinds.update({f"lag_{k}": "float" for k in range(LAGS)})
    kinds.update({f"mean_{w}": "float" for w in MEAN_WINDOWS})
    kinds.update({f"std_{w}": "float" for w in STD_WINDOWS})
    kinds.update(dict.fromkeys(("zero_share_28", "same_weekday_mean", "same_weekday_last"), "float"))
    kinds.update(dict.fromkeys(("item_mean_7", "item_mean_28", "item_trend"), "float"))
    if len(spec.keys) > 1:
        kinds["store_trend"] = "float"
    if level_features:
        kinds.update(dict.fromkeys(LEVEL_FEATURES, "float"))
    if spec.campaign:
        kinds.update(dict.fromkeys(("noncampaign_mean_28", "campaign_uplift", "item_campaign_uplift"), "float"))
    for column in spec.past_only:
        kinds[f"{column}_lag_0"] = "float"
        kinds[f"{column}_mean_7"] = "float"
    categorical = (*(spec.keys if keys_as_features else ()), *spec.static)
    kinds.update(dict.fromkeys(categorical, "category"))
    return FeatureSet(names=tuple(kinds), kinds=kinds, categorical=categorical)


def origin_bound_features(features: FeatureSet, spec: DatasetSpec) -> tuple[str, ...]:
    """Features of ``features`` that read other series or past-only columns (:data:`GROUP_FEATURES`, ``<col>_*``).

    A recursion (:mod:`forecaster.recursive`) holds them at their forecast origin's values: predicted days have
    neither the other series' targets (partitions) nor past-only values.
    """
    past = tuple(f"{column}_{suffix}" for column in spec.past_only for suffix in ("lag_0", "mean_7"))
    return tuple(name for name in features.names if name in GROUP_FEATURES or name in past)


def encode_categories(values: pd.Series, vocabulary: list[str]) -> np.ndarray:
    """Return float codes of ``values`` in ``vocabulary``; values not in it (unseen) become NaN."""
    codes = pd.Index(vocabulary).get_indexer(values.astype(str))
    return np.where(codes >= 0, codes, np.nan).astype(float)


def build_features(
    panel: Panel,
    spec: DatasetSpec,
    features: FeatureSet,
    vocabularies: dict[str, list[str]],
    series_idx: np.ndarray,
    origin_idx: np.ndarray,
    horizon: np.ndarray,
    known_days: int,
    dtype: type = np.float64,
    totals: GroupTotals | None = None,
) -> np.ndarray:
    """Return the (rows, features) matrix for rows (series_idx, origin_idx, horizon), in ``features`` order.

    Everything computed from target or past-only values reads days <= origin only; known-future values are read
    up to ``origin + known_days`` (the model's horizon) at most, as at inference. Columns are written straight
    into the result (of ``dtype``: training uses float32), so no second copy of the rows is ever held. The
    hierarchy features read ``totals`` (the chain-wide group totals of partitioned data), by default the totals
    of ``panel`` itself.
    """
    series_idx = np.asarray(series_idx, dtype=np.int64)
    horizon = np.asarray(horizon, dtype=np.int64)
    panel, offset = _trim(panel, int(np.min(origin_idx, initial=0)))
    origin_idx = np.asarray(origin_idx, dtype=np.int64) - offset
    day_idx = origin_idx + horizon
    totals = totals if totals is not None else GroupTotals.from_panel(panel, spec)
    columns = _Matrix(features.names, series_idx.size, dtype)
    columns["horizon"] = horizon
    columns["weekday"] = (panel.dates[0].dayofweek + day_idx) % 7
    for column in spec.known_future:
        grid = panel.covariates[column]
        columns[column] = grid[series_idx, day_idx]
        columns[f"{column}_at_origin"] = grid[series_idx, origin_idx]
    if spec.campaign:
        plan = np.nan_to_num(panel.covariates[spec.campaign]) > 0
        for name, grid in zip(CAMPAIGN_FEATURES, campaign_run_lengths(plan), strict=True):
            columns[name] = grid[series_idx, day_idx]
        columns["campaign_days_left"] = np.minimum(columns["campaign_days_left"], known_days - horizon + 1)
    columns.update(series_history_features(panel, spec, features, series_idx, origin_idx, horizon))
    columns.update(_hierarchy_history(panel, spec, totals, series_idx, origin_idx))
    if LEVEL_FEATURES[1] in columns.index:  # models trained without them are still served
        columns["chain_trend"] = _chain_trend(panel, spec, totals, origin_idx)
    if spec.campaign:
        columns["item_campaign_uplift"] = _item_campaign_uplift(panel, spec, totals, series_idx, origin_idx)
    for column in spec.past_only:
        past = _History(panel.covariates[column])
        columns[f"{column}_lag_0"] = past.value(series_idx, origin_idx)
        columns[f"{column}_mean_7"] = past.mean(series_idx, origin_idx, 7)
    for column in features.categorical:
        codes = encode_categories(panel.series[column], vocabularies[column])
        columns[column] = codes[series_idx]
    return columns.matrix


def series_history_features(
    panel: Panel,
    spec: DatasetSpec,
    features: FeatureSet,
    series_idx: np.ndarray,
    origin_idx: np.ndarray,
    horizon: np.ndarray,
) -> dict[str, np.ndarray]:
    """The columns of :func:`build_features` computed from the series' own target alone, by name.

    Lags, means, stds, zero share, same-weekday values, ``level_trend`` and, with a campaign column, the series'
    non-campaign mean and campaign uplift: what a recursion (:mod:`forecaster.recursive`) recomputes after writing
    a prediction into the target. Each is the value :func:`build_features` writes for the same rows.
    """
    series_idx, horizon = np.asarray(series_idx, dtype=np.int64), np.asarray(horizon, dtype=np.int64)
    panel, offset = _trim(panel, int(np.min(origin_idx, initial=0)))  # a no-op on a panel trimmed already
    origin_idx = np.asarray(origin_idx, dtype=np.int64) - offset
    history = _History(panel.target)
    day_idx = origin_idx + horizon
    columns = {f"lag_{k}": history.value(series_idx, origin_idx - k) for k in range(LAGS)}
    for w in MEAN_WINDOWS:
        columns[f"mean_{w}"] = history.mean(series_idx, origin_idx, w)
    for w in STD_WINDOWS:
        columns[f"std_{w}"] = history.std(series_idx, origin_idx, w)
    columns["zero_share_28"] = _History(panel.target == 0, mask=np.isnan(panel.target)).mean(series_idx, origin_idx, 28)
    weekly = np.stack(
        [
            history.value(series_idx, day_idx - 7 * (-(-horizon // 7) + j))
            for j in range(SAME_WEEKDAY_COUNT)  # last observed days with d's weekday, newest first
        ]
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all four days unobserved -> NaN, as intended
        columns["same_weekday_mean"] = np.nanmean(weekly, axis=0)
    columns["same_weekday_last"] = weekly[0]
    if LEVEL_FEATURES[0] in features.kinds:  # models trained without them are still served
        columns["level_trend"] = _ratio(columns["mean_7"], columns["mean_28"])
    if spec.campaign:
        columns.update(_campaign_history(panel, spec, series_idx, origin_idx))
    return columns


class _Matrix:
    """The feature matrix being filled column by column, addressed by feature name."""

    def __init__(self, names: tuple[str, ...], rows: int, dtype: type) -> None:
        self.matrix = np.empty((rows, len(names)), dtype=dtype)
        self.index = {name: i for i, name in enumerate(names)}

    def __setitem__(self, name: str, values: np.ndarray) -> None:
        self.matrix[:, self.index[name]] = values

    def __getitem__(self, name: str) -> np.ndarray:
        return self.matrix[:, self.index[name]]

    def update(self, values: dict[str, np.ndarray]) -> None:
        for name, column in values.items():
            self[name] = column


def _trim(panel: Panel, first_origin: int) -> tuple[Panel, int]:
    """Drop days no feature of an origin >= ``first_origin`` reads (saves memory on long histories)."""
    offset = max(0, first_origin - LOOKBACK_DAYS)
    if offset == 0:
        return panel, 0
    trimmed = Panel(
        series=panel.series,
        dates=panel.dates[offset:],
        target=panel.target[:, offset:],
        covariates={name: grid[:, offset:] for name, grid in panel.covariates.items()},
    )
    return trimmed, offset


class _History:
    """Window statistics over days <= origin via cumulative sums (NaN = not observed)."""

    def __init__(self, grid: np.ndarray, mask: np.ndarray | None = None) -> None:
        grid = np.asarray(grid, dtype=float)
        self.missing = np.isnan(grid) if mask is None else mask
        self.grid = np.where(self.missing, np.nan, grid)

    @staticmethod
    def _cumulative(values: np.ndarray) -> np.ndarray:
        out = np.zeros((values.shape[0], values.shape[1] + 1))
        np.cumsum(values, axis=1, out=out[:, 1:])
        return out

    @functools.cached_property
    def sums(self) -> np.ndarray:
        return self._cumulative(np.where(self.missing, 0.0, self.grid))

    @functools.cached_property
    def squares(self) -> np.ndarray:
        return self._cumulative(np.where(self.missing, 0.0, self.grid) ** 2)

    @functools.cached_property
    def counts(self) -> np.ndarray:
        return self._cumulative((~self.missing).astype(np.float64))

    def value(self, rows: np.ndarray, days: np.ndarray) -> np.ndarray:
        valid = days >= 0
        out = np.full(rows.shape, np.nan)
        out[valid] = self.grid[rows[valid], days[valid]]
        return out

    @staticmethod
    def window(cumulative: np.ndarray, rows: np.ndarray, origin: np.ndarray, width: int) -> np.ndarray:
        end = origin + 1
        start = np.maximum(end - width, 0)
        return cumulative[rows, end] - cumulative[rows, start]

    def mean(self, rows: np.ndarray, origin: np.ndarray, width: int) -> np.ndarray:
        count = self.window(self.counts, rows, origin, width)
        with np.errstate(all="ignore"):
            return np.where(count > 0, self.window(self.sums, rows, origin, width) / count, np.nan)

    def std(self, rows: np.ndarray, origin: np.ndarray, width: int) -> np.ndarray:
        count = self.window(self.counts, rows, origin, width)
        total = self.window(self.sums, rows, origin, width)
        squares = self.window(self.squares, rows, origin, width)
        with np.errstate(all="ignore"):
            variance = (squares - total**2 / count) / (count - 1)
        return np.where(count > 1, np.sqrt(np.maximum(variance, 0.0)), np.nan)


def campaign_run_lengths(plan: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (campaign_day, campaign_days_left, days_since_campaign) grids for a boolean campaign plan."""
    n_series, n_days = plan.shape
    day = np.zeros(plan.shape, dtype=np.int32)
    left = np.zeros(plan.shape, dtype=np.int32)
    since = np.full(plan.shape, DAYS_SINCE_CAP, dtype=np.int32)
    running = np.zeros(n_series, dtype=np.int32)
    last_seen = np.full(n_series, -(10**6), dtype=np.int64)
    for t in range(n_days):
        since[:, t] = np.where(plan[:, t], 0, np.minimum(t - last_seen, DAYS_SINCE_CAP))
        running = np.where(plan[:, t], running + 1, 0)
        day[:, t] = np.minimum(running, DAYS_SINCE_CAP)
        last_seen = np.where(plan[:, t], t, last_seen)
    running = np.zeros(n_series, dtype=np.int32)
    for t in range(n_days - 1, -1, -1):
        running = np.where(plan[:, t], running + 1, 0)
        left[:, t] = np.minimum(running, DAYS_SINCE_CAP)
    return day, left, since


class _GroupHistory:
    """Window means of groups of series (all stores of an item, all items of a store) at each origin."""

    def __init__(self, totals: GroupTotals, name: str, panel: Panel, groups: pd.Series) -> None:
        self.codes, sums, counts = totals.window(name, panel.dates, groups)
        self.sums = _History._cumulative(sums)
        self.counts = _History._cumulative(counts)

    def mean(self, rows: np.ndarray, origin: np.ndarray, width: int) -> np.ndarray:
        groups = self.codes[rows]
        count = _History.window(self.counts, groups, origin, width)
        with np.errstate(all="ignore"):
            return np.where(count > 0, _History.window(self.sums, groups, origin, width) / count, np.nan)


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    with np.errstate(all="ignore"):
        ratio = numerator / denominator
    return np.where(np.isfinite(ratio), ratio, np.nan)


def _hierarchy_history(
    panel: Panel, spec: DatasetSpec, totals: GroupTotals, series_idx: np.ndarray, origin_idx: np.ndarray
) -> dict[str, np.ndarray]:
    """Level and trend of the item over all its stores, and the trend of the store over all its items."""
    item = _GroupHistory(totals, "item", panel, panel.series[spec.keys[-1]])
    item_7, item_28 = item.mean(series_idx, origin_idx, 7), item.mean(series_idx, origin_idx, 28)
    columns = {"item_mean_7": item_7, "item_mean_28": item_28, "item_trend": _ratio(item_7, item_28)}
    if len(spec.keys) > 1:
        store = _GroupHistory(totals, "store", panel, panel.series[spec.keys[0]])
        columns["store_trend"] = _ratio(store.mean(series_idx, origin_idx, 7), store.mean(series_idx, origin_idx, 28))
    return columns


def _chain_trend(panel: Panel, spec: DatasetSpec, totals: GroupTotals, origin_idx: np.ndarray) -> np.ndarray:
    """7- over 28-day mean daily target per observed series-day of the whole chain (all items), at each origin."""
    _, sums, counts = totals.window("item", panel.dates, panel.series[spec.keys[-1]])
    chain_sums = _History._cumulative(sums.sum(axis=0, keepdims=True))
    chain_counts = _History._cumulative(counts.sum(axis=0, keepdims=True))
    row = np.zeros(origin_idx.shape, dtype=np.int64)

    def mean(width: int) -> np.ndarray:
        count = _History.window(chain_counts, row, origin_idx, width)
        with np.errstate(all="ignore"):
            return np.where(count > 0, _History.window(chain_sums, row, origin_idx, width) / count, np.nan)

    return _ratio(mean(7), mean(28))


def _campaign_history(
    panel: Panel, spec: DatasetSpec, series_idx: np.ndarray, origin_idx: np.ndarray
) -> dict[str, np.ndarray]:
    """Baseline (non-campaign) level and past campaign uplift of the series, up to the origin."""
    observed = ~np.isnan(panel.target)
    on = (np.nan_to_num(panel.covariates[spec.campaign]) > 0) & observed
    on_stats = _History(panel.target, mask=~on)
    off_stats = _History(panel.target, mask=on | ~observed)
    series_on = on_stats.mean(series_idx, origin_idx, UPLIFT_WINDOW)
    series_off = off_stats.mean(series_idx, origin_idx, UPLIFT_WINDOW)
    return {
        "noncampaign_mean_28": off_stats.mean(series_idx, origin_idx, 28),
        "campaign_uplift": _ratio(series_on, series_off),
    }


def _item_campaign_uplift(
    panel: Panel, spec: DatasetSpec, totals: GroupTotals, series_idx: np.ndarray, origin_idx: np.ndarray
) -> np.ndarray:
    """Past campaign uplift of the series' item over all its stores (from the group totals), up to the origin."""
    items = panel.series[spec.keys[-1]]
    item_on = _GroupHistory(totals, "item_on", panel, items).mean(series_idx, origin_idx, UPLIFT_WINDOW)
    item_off = _GroupHistory(totals, "item_off", panel, items).mean(series_idx, origin_idx, UPLIFT_WINDOW)
    return _ratio(item_on, item_off)
