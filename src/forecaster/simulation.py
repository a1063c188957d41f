"""``forecaster orders simulate``: forecasts and actual sales from files, the policies replayed over them.

The forecasts are either one per day, or made on several days (a column saying when each was made, as a daily
batch writes them); then each order day uses the newest forecast made by that day
(:func:`forecasts_by_order_day`). The replay itself is :mod:`forecaster.replenishment`'s.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from forecaster.days import parse_days
from forecaster.errors import DataValidationError, shown
from forecaster.order_defaults import OrderDefaults
from forecaster.order_items import read_item_master
from forecaster.orders import forecast_layout
from forecaster.orders_inputs import FORECAST_VALUES, label, read_calendar
from forecaster.replenishment import (
    Replay,
    daily_quantile_policy,
    day_matrix,
    forecast_policy,
    per_order_day,
    period_coverage,
    rule_of_thumb_policy,
    simulate,
)
from forecaster.tables import check_unique

logger = logging.getLogger(__name__)


def simulate_files(
    forecasts: pd.DataFrame,
    actuals: pd.DataFrame,
    target: str,
    stockout: str | None = None,
    calendar: str | Path | None = None,
    item_master: str | Path | None = None,
    defaults_path: str | Path | None = None,
    origin: str | None = None,
) -> dict[str, Any]:
    """Replay the policies over the forecast days; results per policy and the period-sum calibration.

    Policies: this product's, today's per-day proposals and, with 28 days of actuals before the forecasts, the
    rule of thumb. ``origin``: the column saying when each forecast was made (the last day of sales it knew); the
    orders of each day then use the newest forecast made by that day, as a daily batch does, and the replay runs
    over the forecast days the actuals cover. Without it every order uses the one forecast of each day.
    """
    keys, date = forecast_layout(forecasts)
    defaults = OrderDefaults.load(defaults_path)
    frame = forecasts.assign(
        **{date: _dates(forecasts[date], "forecasts", date)},
        **{column: _numbers(forecasts[column], "forecasts", column, low=0.0) for column in FORECAST_VALUES},
    )
    frame[keys] = frame[keys].astype(str)
    needed = [*keys, date, target, *([stockout] if stockout else [])]
    missing = [c for c in needed if c not in actuals.columns]
    if missing:
        raise DataValidationError(
            f"The actuals have no column {missing[0]!r}; they need {needed} (the stockout column only with "
            f"--stockout). Columns found: {list(actuals.columns)}."
        )
    actual = actuals.assign(**{date: _dates(actuals[date], "actuals", date)})
    actual[keys] = actual[keys].astype(str)
    actual[target] = _numbers(actual[target], "actuals", target, low=0.0)
    actual["_out"] = (_numbers(actual[stockout], "actuals", stockout) > 0).astype(float) if stockout else 0.0
    if origin is None or origin in frame.columns:  # else forecasts_by_order_day says the column is missing
        check_unique(frame, [*keys, date, *([origin] if origin else [])], "forecasts")
    check_unique(actual, [*keys, date], "actuals")
    if origin is None:
        series, values, dates = day_matrix(frame, keys, date, list(FORECAST_VALUES))
        made, use = [values], [0] * len(dates)
    else:
        series, dates, made, use = forecasts_by_order_day(frame, keys, date, origin, actual[date].max())
    replay_days = actual[actual[date].isin(dates)].merge(series, on=keys)
    in_actuals = actual[keys].drop_duplicates().merge(series[keys], on=keys, how="left", indicator=True)
    unforecast = int((in_actuals["_merge"] == "left_only").sum())
    if unforecast:
        logger.info("%d of %d series of the actuals have no forecasts: left out", unforecast, len(in_actuals))
    _, observed, _ = day_matrix(replay_days, keys, date, [target, "_out"], series, dates)
    if np.isnan(observed).any() or (origin is None and np.isnan(values).any()):
        lacking = "forecasts" if origin is None and np.isnan(values).any() else "actuals"
        gaps = np.isnan(values).any(axis=1) if lacking == "forecasts" else np.isnan(observed).any(axis=1)
        row, day = (int(i[0]) for i in np.nonzero(gaps))
        where = label(series.iloc[row], keys)
        raise DataValidationError(
            f"The forecasts and the actuals must cover the same series on every day from {dates[0].date()} to "
            f"{dates[-1].date()} ({len(series)} series x {len(dates)} days). The {lacking} have no value for "
            f"{where} on {dates[day].date()}: add it, or leave that series or day out of both."
        )
    items = read_item_master(item_master, series, keys, defaults)
    replay = Replay(
        observed[:, 0],
        observed[:, 1] == 0,
        items,
        read_calendar(calendar, series, keys, defaults),
        dates.weekday.to_numpy(),
    )
    ours = [forecast_policy(values, items, defaults) for values in made]  # one policy per forecast made
    proposals = [daily_quantile_policy(values[:, :3]) for values in made]
    policies = {
        "forecaster": per_order_day([ours[k] for k in use]),
        "daily_quantile": per_order_day([proposals[k] for k in use]),
    }
    before = actual[actual[date] < dates[0]]
    skipped = {}
    if before[date].nunique() >= 28:
        past = before.pivot_table(index=keys, columns=date, values=target).reindex(
            pd.MultiIndex.from_frame(series[keys])
        )
        policies["rule_of_thumb"] = rule_of_thumb_policy(past.to_numpy()[:, -28:], replay.demand)
    else:
        skipped["rule_of_thumb"] = (
            f"the actuals hold {before[date].nunique()} days before the first replayed day {dates[0].date()}; the "
            "rule of thumb needs the 28 days before it (its mean of the last 28 days' sales)"
        )
        logger.warning("the rule-of-thumb policy is left out: %s", skipped["rule_of_thumb"])
    return {
        "policies": {name: simulate(replay, policy) for name, policy in policies.items()},
        **({"skipped_policies": skipped} if skipped else {}),
        "calibration": period_coverage([made[k][:, :3] for k in use], replay.demand, defaults),
        "correlation": defaults.correlation,
        "forecasts": {"origin_column": origin, "forecasts_used": len(made), "days": len(dates)},
    }


def forecasts_by_order_day(
    frame: pd.DataFrame, keys: list[str], date: str, origin: str, last_day: pd.Timestamp
) -> tuple[pd.DataFrame, pd.DatetimeIndex, list[np.ndarray], list[int]]:
    """Series, replay days, the forecasts made (each (n, 4, T)) and, per order day, which of them it uses.

    Forecasts made on several days: the order at the close of day t (and the first fill, the day before the first
    day) uses the newest forecast whose ``origin`` is at most that day (every forecast's days come after its
    origin, so the first fill has one); a forecast's days beyond its horizon repeat its last day. ``use[0]`` is
    the first fill's, ``use[t + 1]`` day t's, as :func:`forecaster.replenishment.per_order_day` reads them.
    """
    if origin not in frame.columns:
        raise DataValidationError(f"The forecasts have no column {origin!r} (the day each forecast was made).")
    made_on = _dates(frame[origin], "forecasts", origin)
    early = np.flatnonzero((frame[date] <= made_on).to_numpy())
    if early.size:
        row = early[0]
        raise DataValidationError(
            f"Row {row + 1} of the forecasts forecasts {frame[date].iat[row].date()} from {origin} "
            f"{made_on.iat[row].date()}: a forecast's days come after the day it was made. Fix the {origin!r} column."
        )
    frame = frame.assign(**{origin: made_on})[frame[date] <= last_day]
    series = frame[keys].drop_duplicates().reset_index(drop=True)
    dates = pd.DatetimeIndex(np.sort(frame[date].unique()))
    origins = np.sort(frame[origin].unique())
    order_days = [dates[0] - pd.Timedelta(days=1), *dates[:-1]]
    made: dict[np.datetime64, int] = {}
    forecasts: list[np.ndarray] = []
    use = []
    for day in order_days:
        newest = origins[np.searchsorted(origins, np.datetime64(day), side="right") - 1]
        if newest not in made:
            _, values, _ = day_matrix(frame[frame[origin] == newest], keys, date, list(FORECAST_VALUES), series, dates)
            made[newest] = len(forecasts)
            forecasts.append(_repeat_last_day(values, pd.Timestamp(newest), dates))
        values = forecasts[made[newest]]
        arrival = min(dates.get_indexer([day])[0] + 1 if day >= dates[0] else 0, len(dates) - 1)
        if np.isnan(values[:, :, arrival]).any():
            raise DataValidationError(
                f"The forecast made on {pd.Timestamp(newest).date()} has no row for "
                f"{int(np.isnan(values[:, 0, arrival]).sum())} of the {len(series)} series on "
                f"{dates[arrival].date()}: every forecast must cover every series."
            )
        use.append(made[newest])
    return series, dates, forecasts, use


def _repeat_last_day(values: np.ndarray, made_on: pd.Timestamp, dates: pd.DatetimeIndex) -> np.ndarray:
    """Days after a forecast's last day take that day's values (as the policy pads beyond the forecasts)."""
    out = values.copy()
    for t in range(1, out.shape[2]):
        gap = np.isnan(out[:, :, t]) & (dates[t] > made_on)
        out[:, :, t] = np.where(gap, out[:, :, t - 1], out[:, :, t])
    return out


def _dates(column: pd.Series, what: str, name: str) -> pd.Series:
    """``column`` as timestamps; a value that is no ISO date raises naming the table, row and column."""
    parsed = parse_days(column)
    bad = np.flatnonzero(parsed.isna().to_numpy())
    if bad.size:
        raise DataValidationError(
            f"The {what}' row {bad[0] + 1}, column {name!r}: {shown(column.iat[bad[0]])} is not an ISO date like "
            "2024-05-31."
        )
    return parsed


def _numbers(column: pd.Series, what: str, name: str, low: float | None = None) -> pd.Series:
    """``column`` as floats; a value that is not a number (or below ``low``) raises naming the table, row and column."""
    values = pd.to_numeric(column, errors="coerce")
    bad = np.flatnonzero((values.isna() & column.notna()).to_numpy())
    if bad.size:
        raise DataValidationError(
            f"The {what}' row {bad[0] + 1}, column {name!r}: {shown(column.iat[bad[0]])} is not a number."
        )
    out = np.isinf(values.to_numpy(dtype=float)) | ((values < low).to_numpy() if low is not None else False)
    if out.any():
        row = int(np.flatnonzero(out)[0])
        rule = "finite numbers" + (f" >= {low:g}" if low is not None else "")
        raise DataValidationError(
            f"The {what}' row {row + 1}, column {name!r}: {column.iat[row]} is out of range; {what} must be {rule}."
        )
    return values.astype(float)
