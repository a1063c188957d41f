"""A recursive point forecast from the direct model: its horizon-1 point, fed back as if observed.

From origin t0 the horizon-1 row predicts day t0 + 1; that prediction is written into the target as if it had
been observed, the horizon-1 row of origin t0 + 1 predicts day t0 + 2, and so on up to the model's horizon. No
booster is trained for it: it is the direct model's own one-step point (:meth:`ForecastModel.predict_mean`),
applied recursively, all series at once per step. The rows are built by the one feature path
(:func:`forecaster.features.build_features`) on a panel whose target is extended with the predictions.

What a step beyond t0 reads:

- the series' own target statistics (lags, means, stds, zero share, same-weekday values, ``level_trend``, the
  series' campaign uplift and non-campaign mean) are recomputed from the extended target;
- known-future values and the campaign plan of the new origin and day are read as they are (they are known);
- the features of other series (:data:`forecaster.features.GROUP_FEATURES`: item, store and chain history from the
  group totals) and the past-only columns (``<col>_lag_0``, ``<col>_mean_7``: stockout hours, weather) are **held
  at their values at t0** (:func:`forecaster.features.origin_bound_features`). Predicted days have no past-only
  values, and on partitioned data the other partitions' predictions are not known, so holding them is the one
  choice that keeps each series' recursion independent of which other series are in the frame.

Only values of days <= t0 enter: changing a target after t0 leaves every recursive forecast of origin t0 unchanged.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from forecaster.features import (
    LOOKBACK_DAYS,
    FeatureSet,
    build_features,
    origin_bound_features,
    series_history_features,
)
from forecaster.model import ForecastModel
from forecaster.panel import Panel
from forecaster.spec import DatasetSpec
from forecaster.totals import GroupTotals


def recursive_points(
    model: ForecastModel,
    panel: Panel,
    spec: DatasetSpec,
    features: FeatureSet,
    series_idx: np.ndarray,
    origin_idx: int,
    horizon: np.ndarray,
    totals: GroupTotals | None = None,
    predict: Callable[[np.ndarray], np.ndarray] | None = None,
) -> np.ndarray:
    """Return the recursive point forecast of each row (series_idx, origin_idx, horizon), one origin for all rows.

    ``panel`` holds the history up to day ``origin_idx`` and the known-future values of the days after it (an
    inference panel); ``totals``: the chain's group totals (default: those of ``panel``). Steps run up to the
    largest horizon asked for. ``predict``: the one-step point of a feature matrix fed back at each step (default:
    the model's own point, :meth:`ForecastModel.predict_mean`; e.g. a separately trained one-step booster).
    """
    series_idx = np.asarray(series_idx, dtype=np.int64)
    horizon = np.asarray(horizon, dtype=np.int64)
    if series_idx.size == 0:
        return np.zeros(0)
    unique, rows = np.unique(series_idx, return_inverse=True)
    steps = int(horizon.max())
    work, origin = _working_panel(panel, origin_idx, steps)
    totals = totals if totals is not None else GroupTotals.from_panel(work, spec)
    n = unique.size
    predict = predict if predict is not None else model.predict_mean
    ones = np.ones(n, dtype=np.int64)
    # every step's row at once: what does not change with the predictions (known future, campaign plan, categories)
    X = build_features(
        work, spec, features, model.schema.categories, np.tile(unique, steps),
        np.repeat(origin + np.arange(steps), n), np.ones(n * steps, dtype=np.int64), model.schema.horizon,
        totals=totals,
    )  # fmt: skip
    held = [features.names.index(name) for name in origin_bound_features(features, spec)]
    X[n:, held] = np.tile(X[:n, held], (steps - 1, 1))
    points = np.empty((n, steps))
    for step in range(steps):
        block = X[step * n : (step + 1) * n]
        if step:  # the series' own target statistics, from the target extended with the steps before
            own = series_history_features(work, spec, features, unique, np.full(n, origin + step), ones)
            for name, values in own.items():
                block[:, features.names.index(name)] = values
        points[:, step] = predict(block)
        if origin + step + 1 < work.target.shape[1]:
            work.target[unique, origin + step + 1] = points[:, step]
    return points[rows, horizon - 1]


def _working_panel(panel: Panel, origin: int, steps: int) -> tuple[Panel, int]:
    """The days the recursion reads, with a target of its own; the origin's index in it.

    The target of days after the origin is set to unknown (NaN) before the predictions are written into it.
    """
    first = max(0, origin - LOOKBACK_DAYS)
    last = min(panel.target.shape[1], origin + steps + 1)
    days = slice(first, last)
    target = panel.target[:, days].copy()
    target[:, origin - first + 1 :] = np.nan
    work = dataclasses.replace(
        panel,
        dates=panel.dates[days],
        target=target,
        covariates={name: grid[:, days] for name, grid in panel.covariates.items()},
    )
    return work, origin - first
