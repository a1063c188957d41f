"""Order lines: forecasts, stock, open orders, delivery calendar and item master → one line per store x item.

The policy itself (the period demand, the target, the usable stock, the pack rounding) is
:mod:`forecaster.order_policy`'s; this module reads and checks the inputs, runs it and writes the lines.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from forecaster.contract import SERVICE_LEVELS
from forecaster.days import parse_days
from forecaster.errors import DataValidationError, InvalidParameterError, shown
from forecaster.io import read_table, write_table
from forecaster.order_defaults import OrderDefaults
from forecaster.order_items import read_item_master
from forecaster.order_policy import order_up_to, round_to_packs, usable_stock
from forecaster.orders_inputs import (
    FORECAST_VALUES,
    label,
    next_order,
    read_calendar,
    read_open_orders,
    read_stock,
)
from forecaster.params import coerce
from forecaster.tables import check_unique

logger = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------------ order lines
def forecast_layout(forecasts: pd.DataFrame) -> tuple[list[str], str]:
    """(key columns, date column) of a forecast table: ``<keys...>, <date>, p10, p50, p90, mean``."""
    missing = [c for c in FORECAST_VALUES if c not in forecasts.columns]
    if missing:
        raise DataValidationError(
            f"The forecasts have no column {missing[0]!r}; they need <keys...>, <date>, {', '.join(FORECAST_VALUES)} "
            "(what forecaster postprocess writes)."
        )
    position = list(forecasts.columns).index(FORECAST_VALUES[0])
    if position < 2:
        raise DataValidationError(
            f"The forecasts need key columns and a date column before p10 (<keys...>, <date>, "
            f"{', '.join(FORECAST_VALUES)}); columns found: {list(forecasts.columns)}."
        )
    columns = list(forecasts.columns)
    return columns[: position - 1], columns[position - 1]


def order_lines(
    forecasts: pd.DataFrame,
    order_date: str | pd.Timestamp | None = None,
    *,
    stock: str | Path | None = None,
    open_orders: str | Path | None = None,
    calendar: str | Path | None = None,
    item_master: str | Path | None = None,
    defaults: OrderDefaults | None = None,
    service_level: float | None = None,
) -> pd.DataFrame:
    """One order line per series that orders on ``order_date`` (default: the day before the first forecast day).

    A later ``order_date`` uses the forecast days after it (an earlier run's forecasts, reused).

    Without ``stock`` the shelf counts as empty: the lines say so (``stock_considered`` False) and a warning is
    logged. Raises DataValidationError for bad inputs (naming file, row and column) before anything is written.
    """
    defaults = defaults or OrderDefaults()
    if service_level is not None:
        coerce("service_level", service_level, [SERVICE_LEVELS], "orders")
    keys, date = forecast_layout(forecasts)
    frame = forecasts.copy()
    frame[keys] = frame[keys].astype(str)
    frame[date] = parse_days(frame[date])
    if frame[date].isna().any():
        row = int(np.flatnonzero(frame[date].isna().to_numpy())[0])
        raise DataValidationError(
            f"The forecasts' row {row + 1} has the {date} {shown(forecasts[date].iat[row])}: not a date. The "
            f"forecasts are read as <keys...>, <date>, {', '.join(FORECAST_VALUES)} (what forecaster postprocess "
            f"writes), so the column just before p10 ({date!r}) must be the date; columns found: "
            f"{list(forecasts.columns)}. Move the date column there, or drop the columns between it and p10."
        )
    day = frame[date].min() - pd.Timedelta(days=1) if order_date is None else _order_day(order_date)
    check_unique(frame, [*keys, date], "forecasts", "keep one forecast per series and day (the newest run's)")
    extra = [defaults.category_column] if defaults.category_column in frame.columns else []
    series = frame[[*keys, *extra]].drop_duplicates(keys).reset_index(drop=True)
    values = _day_arrays(frame, series, keys, date, day)
    leads = read_calendar(calendar, series, keys, defaults)
    lead = leads[:, day.weekday()]
    ordering = np.flatnonzero(~np.isnan(lead))
    if ordering.size == 0:
        raise DataValidationError(
            f"The delivery calendar has no order on {day.date()} ({day.day_name()}) for any of the {len(series)} "
            "series: add that weekday to the calendar (or its chain default), or pass the --order-date of an order day."
        )
    if ordering.size < len(series):
        logger.info("%d of %d series do not order on %s", len(series) - ordering.size, len(series), day.date())
    items = read_item_master(item_master, series, keys, defaults)
    gap, next_lead = next_order(leads, day.weekday())
    covered = (gap + next_lead - 1).astype(np.int64)
    life = (np.nan_to_num(lead) + items.shelf_life_days - 1).astype(np.int64)
    _check_horizon(values, covered, ordering, series, keys, day)
    width = int(max(covered[ordering].max(), life[ordering].max()))
    filled = pd.DataFrame(values.reshape(-1, values.shape[2])).ffill(axis=1).to_numpy().reshape(values.shape)
    filled = np.pad(filled, ((0, 0), (0, 0), (0, max(0, width - filled.shape[2]))), mode="edge")
    buckets = read_stock(stock, series, keys, day, defaults.csv) if stock is not None else np.empty((0, 3))
    if stock is None:
        logger.warning("no stock given: the orders treat every shelf as empty (stock_considered = False)")
    counted, not_counted = usable_stock(buckets, len(series), filled[:, 3], covered)
    on_order = np.zeros(len(series))
    if open_orders is not None:
        rows = read_open_orders(open_orders, series, keys, day, defaults.csv)
        inside = rows[:, 2] <= covered[rows[:, 0].astype(np.int64)]
        np.add.at(on_order, rows[inside, 0].astype(np.int64), rows[inside, 1])
    position = counted[ordering] + on_order[ordering]
    target, level, order = order_up_to(
        filled[ordering, :3],
        covered[ordering],
        life[ordering],
        (items.unit_price - items.unit_cost + defaults.stockout_penalty)[ordering],
        (items.unit_cost + defaults.disposal_cost)[ordering],
        defaults,
        service_level,
        position=position,
        pack_size=items.pack_size[ordering],
        min_units=items.min_display_units[ordering],
        before=(lead[ordering] - 1).astype(np.int64),
    )
    broken = np.flatnonzero(~np.isfinite(order) | ~np.isfinite(target))
    if broken.size:  # e.g. a pack size of 1e-320 or a log_shift of 1e300: nothing is delivered
        row = series.iloc[ordering[broken[0]]]
        raise DataValidationError(
            f"The order of {label(row, keys)} is not a finite number of units (target "
            f"{target[broken[0]]}, pack size {items.pack_size[ordering[broken[0]]]:g}): check its pack size and "
            "the numbers of the defaults file."
        )
    lines = series.loc[ordering, keys].reset_index(drop=True)
    lines["order_date"] = day.strftime("%Y-%m-%d")
    lines["arrival_date"] = (day + pd.to_timedelta(lead[ordering], unit="D")).strftime("%Y-%m-%d")
    lines["next_arrival_date"] = (day + pd.to_timedelta(covered[ordering] + 1, unit="D")).strftime("%Y-%m-%d")
    lines["days_covered"] = covered[ordering]
    lines["expected_demand"] = np.take_along_axis(
        np.cumsum(filled[ordering, 3], axis=1), (covered[ordering] - 1)[:, None], axis=1
    )[:, 0]
    lines["target_units"] = target
    lines["stock_counted"] = counted[ordering]
    lines["stock_not_counted"] = not_counted[ordering]
    lines["on_order"] = on_order[ordering]
    lines["order_units"] = order
    lines["rounded_down"] = order < round_to_packs(target - position, items.pack_size[ordering])
    lines["pack_size"] = items.pack_size[ordering]
    lines["shelf_life_days"] = items.shelf_life_days[ordering]
    lines["service_level"] = level
    lines["stock_considered"] = stock is not None
    shown_units = ["expected_demand", "target_units", "stock_counted", "stock_not_counted"]
    lines[shown_units] = lines[shown_units].round(3)  # a person reads them: 11.802, not 11.802234649658203
    lines["service_level"] = lines["service_level"].round(4)
    return lines


def _day_arrays(frame: pd.DataFrame, series: pd.DataFrame, keys: list[str], date: str, day: pd.Timestamp) -> np.ndarray:
    """(n, 4, days) P10/P50/P90/mean of days 1 … after ``day`` (NaN where the forecasts have no row).

    Days up to the order day are left out (an earlier run's forecasts serve a later order day: the stock counted
    at the close of the order day already reflects its sales).
    """
    offset = (frame[date] - day).dt.days.to_numpy()
    after = offset >= 1
    if not after.any():
        raise DataValidationError(
            f"The forecasts end on {frame[date].max().date()}, not after the order day {day.date()}: order on a day "
            "before the last forecast day (--order-date) or forecast the days after the order day."
        )
    if offset.min() > 1:  # the first days a delivery must cover have no forecast at all
        first = frame[date].min()
        raise DataValidationError(
            f"The order day {day.date()} is {int(offset.min()) - 1} day(s) before the day before the first forecast "
            f"day ({first.date()}): the orders need the forecasts of the days after the order day. Order on "
            f"{(first - pd.Timedelta(days=1)).date()} or later (--order-date, the pipelines' OrderDate), or leave "
            "it empty."
        )
    if not after.all():
        logger.info("%d forecast rows up to the order day %s are not used", int((~after).sum()), day.date())
    index = series[keys].reset_index().merge(frame[keys], on=keys, how="right")["index"].to_numpy()
    values = np.full((len(series), 4, int(offset.max())), np.nan)
    for i, column in enumerate(FORECAST_VALUES):
        numbers = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float)
        bad = np.flatnonzero(~np.isfinite(numbers) | (numbers < 0))
        if bad.size:
            raise DataValidationError(
                f"The forecasts' row {bad[0] + 1} has {column}={shown(frame[column].iat[bad[0]])}: forecasts must be "
                "finite numbers >= 0."
            )
        values[index[after], i, offset[after] - 1] = numbers[after]
    crossed = int(((values[:, 0] > values[:, 1]) | (values[:, 1] > values[:, 2])).sum())
    if crossed:
        logger.warning(
            "%d forecast rows have crossed quantiles (p10 > p50 or p50 > p90): the orders read them as a day with "
            "no spread beyond its median. Check the forecasts' columns.",
            crossed,
        )
    return values


def _check_horizon(
    values: np.ndarray, covered: np.ndarray, ordering: np.ndarray, series: pd.DataFrame, keys: list[str], day
) -> None:
    short = [i for i in ordering if np.isnan(values[i, :3, : covered[i]]).any() or values.shape[2] < covered[i]]
    if short:
        row = series.iloc[short[0]]
        last = day + pd.Timedelta(days=int(covered[short[0]]))
        raise DataValidationError(
            f"The forecasts of {label(row, keys)} do not cover every day from "
            f"{(day + pd.Timedelta(days=1)).date()} to {last.date()} (until the next delivery): forecast a longer "
            "horizon or fill the missing days."
        )


def _order_day(value: str | pd.Timestamp) -> pd.Timestamp:
    """The order day of ``--order-date``: an ISO date (``12.02.2024`` could be either of two days).

    A time of day and a UTC offset are dropped: the day as written.
    """
    day = parse_days(pd.Series([str(value)])).iat[0]
    if pd.isna(day):
        raise InvalidParameterError(
            f"The 'order_date' parameter must be an ISO date like 2024-05-31. Got {value!r} instead."
        )
    return day


def write_orders(forecasts: str | Path | pd.DataFrame, out: str | Path, **options) -> pd.DataFrame:
    """Read the forecasts (a file or folder), compute :func:`order_lines` and write them atomically to ``out``."""
    csv = (options.get("defaults") or OrderDefaults()).csv
    frame = forecasts if isinstance(forecasts, pd.DataFrame) else read_table(forecasts, csv, dtype=str)
    lines = order_lines(frame, **options)
    write_table(lines, out)
    return lines
