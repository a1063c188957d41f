"""The ordering inputs, declared once: stock, open orders, delivery calendar, item master and the chain defaults.

Each table is optional, CSV, Parquet or Excel, one file or a (partitioned) folder, read with
:func:`forecaster.tables.read_fragment` (a Hive folder's keys become columns) file by file so that every error
names the file, the row (1 = first data row) and the column. Series are joined
on the key columns a table has (the forecasts' keys, e.g. ``store_id`` and ``item_id``); keys are compared as
strings. The chain-wide defaults are a JSON file (:class:`forecaster.order_defaults.OrderDefaults`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from forecaster.contract import POINT_COLUMN, QUANTILE_COLUMNS
from forecaster.days import parse_days
from forecaster.dialect import CsvDialect
from forecaster.errors import DataValidationError, shown
from forecaster.order_defaults import NON_NEGATIVE, WEEKDAYS, OrderDefaults, entry_constraint, parse_weekday
from forecaster.params import Interval
from forecaster.tables import discover, read_fragment

logger = logging.getLogger(__name__)

#: the input tables' columns (besides the series' keys). stock: on-hand units counted at the close of the order
#: day; several rows per series = shelf-life buckets
STOCK_UNITS, STOCK_DATE, DAYS_LEFT, EXPIRY_DATE = "on_hand_units", "stock_date", "shelf_life_days_left", "expiry_date"
#: open orders: units already ordered and the day they are on the shelf
OPEN_UNITS, ARRIVAL_DATE = "units", "arrival_date"
#: delivery calendar: the weekday an order is placed (Monday … Sunday, mon … sun or 0 = Monday … 6) and the days
#: until it is on the shelf (ordered on D, on the shelf on D + lead_time_days)
WEEKDAY, LEAD_TIME = "weekday", "lead_time_days"
#: item master: the numbers the order needs per item (or store x item); a missing value takes the chain default
ITEM_NUMBERS = ("pack_size", "shelf_life_days", "unit_cost", "unit_price", "margin", "min_display_units")
#: the columns of the forecast table (after the keys and the date) the policy reads
FORECAST_VALUES = (*QUANTILE_COLUMNS, POINT_COLUMN)


# ---------------------------------------------------------------------------------------------------- reading
def read_input(
    path: str | Path, what: str, keys: list[str], required: tuple[str, ...], csv: CsvDialect | None = None
) -> pd.DataFrame:
    """Every table file at ``path`` with its key columns as strings, plus ``_file`` and ``_row`` for messages.

    ``keys`` are the forecasts' key columns; the table must have the ``required`` columns and may have any subset
    of the keys (it is joined on the ones it has). ``csv`` pins the CSV dialect (the defaults' ``csv`` entry).
    """
    frames = []
    for fragment in discover(path).fragments:  # a Hive folder's keys (store_id=S001/) become columns
        file = fragment.path
        frame = read_fragment(fragment, csv, text=tuple(keys))
        if frame.empty:
            raise DataValidationError(f"{file} has a header but no rows. Provide at least one data row.")
        _check_key_spelling(frame, keys, what, file)
        missing = [c for c in required if c not in frame.columns]
        if missing:
            raise DataValidationError(
                f"The {what} file {file} has no column {missing[0]!r}. It needs {list(required)} and may have the "
                f"key columns {keys}; columns found: {list(frame.columns)}."
            )
        for key in keys:
            if key in frame.columns:
                bad = frame[key].isna().to_numpy()
                if bad.any():
                    chain = (
                        " A row for the whole chain goes into the defaults file (order_weekdays, lead_time_days), not "
                        "beside rows that name their store."
                        if what == "delivery calendar"
                        else ""
                    )
                    where = _where(file, int(np.flatnonzero(bad)[0]), key)
                    raise DataValidationError(f"{where}: the key is missing.{chain}")
                frame[key] = frame[key].astype(str)
        frame["_file"], frame["_row"] = str(file), np.arange(1, len(frame) + 1)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def _folded(name: object) -> str:
    """A column name without case, spaces, dashes and underscores: ``Store_ID`` and ``store id`` fold alike."""
    return "".join(ch for ch in str(name).casefold() if ch.isalnum())


def _check_key_spelling(frame: pd.DataFrame, keys: list[str], what: str, file: Any) -> None:
    """Refuse a column spelled like a key but not as the forecasts spell it (it would not join, silently)."""
    folded = {_folded(key): key for key in keys}
    for column in frame.columns:
        key = folded.get(_folded(column))
        if key is not None and column != key and key not in frame.columns:
            raise DataValidationError(
                f"The {what} file {file} has a column {column!r} where the forecasts' key column is {key!r}: rename "
                f"it to {key!r} (keys join by exact name; the forecasts' key columns are {keys})."
            )


def label(row: Any, keys: list[str]) -> str:
    """A series as messages name it, e.g. ``store_id='S001', item_id='banana'`` (quoted: a stray space shows)."""
    return ", ".join(f"{key}={shown(row[key])}" for key in keys)


def _where(file: Any, row: int, column: str) -> str:
    return f"{file} row {row + 1}, column {column!r}"


def numbers(frame: pd.DataFrame, column: str, *, within: Interval = NON_NEGATIVE, optional: bool = False) -> np.ndarray:
    """``frame[column]`` as finite floats; a non-number or one outside ``within`` raises (file, row, column).

    ``optional``: an empty cell is NaN (the default applies).
    """
    low, strict = within.low, within.closed in ("neither", "right")
    high = np.inf if within.high is None else within.high
    if column not in frame.columns:
        return np.full(len(frame), np.nan)
    values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float)
    bad = np.isnan(values) & (frame[column].notna().to_numpy() | (not optional))
    bad |= np.isinf(values) | (values > high) | ((values <= low) if strict else (values < low))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        rule = f"{'>' if strict else '>='} {low:g}" + (f" and <= {high:g}" if np.isfinite(high) else "")
        raise DataValidationError(
            f"{_where(frame['_file'].iat[row], int(frame['_row'].iat[row]) - 1, column)}: must be a finite number "
            f"{rule}. Got {frame[column].iat[row]} instead."
        )
    return values


def whole_days(frame: pd.DataFrame, column: str, values: np.ndarray) -> np.ndarray:
    """``values`` (``frame[column]`` as numbers) unchanged; a fraction of a day raises naming file, row and column."""
    fractional = np.flatnonzero(~np.isnan(values) & (values != np.floor(values)))
    if fractional.size:
        row = int(fractional[0])
        raise DataValidationError(
            f"{_where(frame['_file'].iat[row], int(frame['_row'].iat[row]) - 1, column)}: must be a whole number of "
            f"days. Got {frame[column].iat[row]} instead."
        )
    return values


def dates(frame: pd.DataFrame, column: str) -> pd.Series:
    """``frame[column]`` as day timestamps; an unparseable value raises naming file, row and column."""
    parsed = parse_days(frame[column])
    bad = parsed.isna().to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataValidationError(
            f"{_where(frame['_file'].iat[row], int(frame['_row'].iat[row]) - 1, column)}: must be an ISO date like "
            f"2024-05-31. Got {frame[column].iat[row]} instead."
        )
    return parsed


def join_keys(frame: pd.DataFrame, keys: list[str], what: str, file_hint: str = "") -> list[str]:
    """The key columns ``frame`` has (at least one unless it is a chain-wide table)."""
    present = [key for key in keys if key in frame.columns]
    if not present and file_hint:
        raise DataValidationError(f"The {what} {file_hint} has none of the key columns {keys}; add them.")
    return present


def check_known(table: pd.DataFrame, series: pd.DataFrame, on: list[str], what: str) -> None:
    """Raise naming the first row of ``table`` whose keys are none of ``series``' (an unknown store x item)."""
    known = series[on].drop_duplicates()
    merged = table[on].merge(known, on=on, how="left", indicator=True)
    unknown = np.flatnonzero((merged["_merge"] == "left_only").to_numpy())
    if unknown.size:
        row = int(unknown[0])
        values = label(table.iloc[row], on)
        raise DataValidationError(
            f"{table['_file'].iat[row]} row {table['_row'].iat[row]}: the {what} names {values}, which is not among "
            "the forecast series. Remove the row or forecast that series first."
        )


def _series_index(table: pd.DataFrame, series: pd.DataFrame, on: list[str]) -> np.ndarray:
    """Row of ``series`` for each row of ``table`` (joined on ``on``; -1 where absent)."""
    lookup = series[on].reset_index(drop=True).reset_index().drop_duplicates(on)
    return table[on].merge(lookup, on=on, how="left")["index"].fillna(-1).to_numpy(dtype=np.int64)


def read_stock(
    path: str | Path, series: pd.DataFrame, keys: list[str], order_date: pd.Timestamp, csv: CsvDialect | None = None
) -> np.ndarray:
    """Stock as rows ``(series, units, days_left)``; ``days_left`` is inf where the file gives no shelf life.

    Units with ``d`` days left can be sold on the ``d`` days after the order day (0: they expire today).
    """
    stock = read_input(path, "stock", keys, (STOCK_UNITS, STOCK_DATE), csv)
    on = join_keys(stock, keys, "stock", f"file(s) at {path}")
    if on != keys:
        raise DataValidationError(f"The stock at {path} must name every key column {keys} (stock is per series).")
    units = numbers(stock, STOCK_UNITS)
    counted = dates(stock, STOCK_DATE)
    other = np.flatnonzero((counted != order_date).to_numpy())
    if other.size:
        row = int(other[0])
        raise DataValidationError(
            f"{_where(stock['_file'].iat[row], int(stock['_row'].iat[row]) - 1, STOCK_DATE)}: the stock was counted "
            f"on {counted.iat[row].date()}, not on the order day {order_date.date()}. Use the stock drop of "
            f"{order_date.date()} or pass --order-date {counted.iat[row].date()}."
        )
    days_left = numbers(stock, DAYS_LEFT, optional=True)
    if EXPIRY_DATE in stock.columns:
        given = stock[EXPIRY_DATE].notna().to_numpy()
        expiry = dates(stock.loc[given], EXPIRY_DATE)
        from_expiry = (expiry - order_date).dt.days.to_numpy()
        clash = np.flatnonzero(~np.isnan(days_left[given]) & (days_left[given] != from_expiry))
        if clash.size:
            row = np.flatnonzero(given)[clash[0]]
            raise DataValidationError(
                f"{_where(stock['_file'].iat[row], int(stock['_row'].iat[row]) - 1, EXPIRY_DATE)}: the row gives "
                f"{DAYS_LEFT} {days_left[row]:g} and an {EXPIRY_DATE} {from_expiry[clash[0]]:g} days after the "
                f"order day {order_date.date()}. Give one of the two, or make them agree."
            )
        days_left[given] = from_expiry
        negative = np.flatnonzero(days_left[given] < 0)
        if negative.size:
            row = np.flatnonzero(given)[negative[0]]
            raise DataValidationError(
                f"{_where(stock['_file'].iat[row], int(stock['_row'].iat[row]) - 1, EXPIRY_DATE)}: the expiry date is "
                f"before the order day {order_date.date()}; remove expired stock from the drop."
            )
    check_known(stock, series, on, "stock")
    _warn_repeated_rows(stock, on, units, days_left, path)
    index = _series_index(stock, series, on)
    return np.column_stack([index, units, np.where(np.isnan(days_left), np.inf, days_left)])


def _warn_repeated_rows(
    stock: pd.DataFrame, on: list[str], units: np.ndarray, days_left: np.ndarray, path: Any
) -> None:
    """Log stock rows that repeat an earlier row exactly (a drop exported twice would count its stock twice)."""
    rows = stock[on].astype(str).assign(_units=units, _days_left=np.nan_to_num(days_left, nan=np.inf))
    repeated = np.flatnonzero(rows.duplicated().to_numpy())
    if not repeated.size:
        return
    row = int(repeated[0])
    first = int(np.flatnonzero((rows.iloc[:row] == rows.iloc[row]).all(axis=1).to_numpy())[0])
    logger.warning(
        "%d stock row(s) at %s repeat an earlier row exactly, e.g. %s repeats %s (%s): each is counted as stock "
        "of its own. Remove the copies if the drop was exported twice.",
        repeated.size, path, _where(stock["_file"].iat[row], int(stock["_row"].iat[row]) - 1, STOCK_UNITS),
        _where(stock["_file"].iat[first], int(stock["_row"].iat[first]) - 1, STOCK_UNITS), label(stock.iloc[row], on),
    )  # fmt: skip


def read_open_orders(
    path: str | Path, series: pd.DataFrame, keys: list[str], order_date: pd.Timestamp, csv: CsvDialect | None = None
) -> np.ndarray:
    """Open orders as rows ``(series, units, arrival offset in days after the order day)``."""
    orders = read_input(path, "open orders", keys, (OPEN_UNITS, ARRIVAL_DATE), csv)
    on = join_keys(orders, keys, "open orders", f"file(s) at {path}")
    if on != keys:
        raise DataValidationError(f"The open orders at {path} must name every key column {keys}.")
    units = numbers(orders, OPEN_UNITS)
    offset = (dates(orders, ARRIVAL_DATE) - order_date).dt.days.to_numpy()
    early = np.flatnonzero(offset < 1)
    if early.size:
        row = int(early[0])
        raise DataValidationError(
            f"{_where(orders['_file'].iat[row], int(orders['_row'].iat[row]) - 1, ARRIVAL_DATE)}: an open order "
            f"must arrive after the order day {order_date.date()}; count what has arrived as stock."
        )
    check_known(orders, series, on, "open orders")
    return np.column_stack([_series_index(orders, series, on), units, offset]).astype(float)


def read_calendar(
    path: str | Path | None, series: pd.DataFrame, keys: list[str], defaults: OrderDefaults
) -> np.ndarray:
    """Lead time in days per series (rows) and weekday (0 = Monday … 6), NaN where the series does not order.

    Calendar rows name a weekday, a lead time and any of the key columns (usually the store); a series with no row
    of its own orders on the chain default (``order_weekdays``, ``lead_time_days`` of :class:`OrderDefaults`).
    """
    table = np.full((len(series), 7), np.nan)
    table[:, list(defaults.order_weekdays)] = defaults.lead_time_days
    if path is None:
        return table
    calendar = read_input(path, "delivery calendar", keys, (WEEKDAY,), defaults.csv)
    on = join_keys(calendar, keys, "delivery calendar")
    others = [c for c in calendar.columns if c not in (*keys, WEEKDAY, LEAD_TIME, "_file", "_row")]
    if not on and others:  # a chain-wide calendar has only the two; a store column under another name is a mistake
        raise DataValidationError(
            f"The delivery calendar at {path} has none of the forecasts' key columns {keys} but has the columns "
            f"{others}. A calendar per store names its store column as the forecasts do (e.g. {keys[0]!r}); a "
            f"chain-wide calendar has only {WEEKDAY!r} and {LEAD_TIME!r}."
        )
    lead = numbers(calendar, LEAD_TIME, within=entry_constraint(LEAD_TIME), optional=True)
    lead = whole_days(calendar, LEAD_TIME, lead)
    lead = np.where(np.isnan(lead), defaults.lead_time_days, lead)
    places = zip(calendar[WEEKDAY], calendar["_file"], calendar["_row"], strict=True)
    weekday = np.array([parse_weekday(value, _where(file, row - 1, WEEKDAY)) for value, file, row in places])
    twice = calendar[on].assign(_weekday=weekday).duplicated().to_numpy()
    if twice.any():
        row = int(np.flatnonzero(twice)[0])
        where = label(calendar.iloc[row], on) + ", " if on else ""
        raise DataValidationError(
            f"{calendar['_file'].iat[row]} row {calendar['_row'].iat[row]}: the delivery calendar has {where}"
            f"{WEEKDAY} {calendar[WEEKDAY].iat[row]} twice; keep one row (one lead time per order day)."
        )
    if not on:  # a chain-wide calendar
        table[:] = np.nan
        table[:, weekday] = lead
    else:
        pairs = series_pairs(calendar, series, on)
        own = np.unique(pairs[:, 0])
        warn_unmatched(pairs, len(series), "delivery calendar", path, on, calendar)
        table[own] = np.nan
        table[pairs[:, 0], weekday[pairs[:, 1]]] = lead[pairs[:, 1]]
    _check_deliveries_in_order(table, series, keys, path)
    return table


def next_order(leads: np.ndarray, weekday: int) -> tuple[np.ndarray, np.ndarray]:
    """Days until each series' next order day after ``weekday`` (1 … 7) and that order's lead time."""
    gap, lead = np.full(len(leads), 7.0), leads[:, weekday].copy()
    for step in range(6, 0, -1):
        column = leads[:, (weekday + step) % 7]
        found = ~np.isnan(column)
        gap, lead = np.where(found, step, gap), np.where(found, column, lead)
    return gap, np.nan_to_num(lead, nan=1.0)


def _check_deliveries_in_order(table: np.ndarray, series: pd.DataFrame, keys: list[str], path: Any) -> None:
    """Every order must be on the shelf before the next order's delivery (an order's days end where the next begin)."""
    for weekday in range(7):
        gap, next_lead = next_order(table, weekday)
        late = np.flatnonzero(table[:, weekday] >= gap + next_lead)
        if late.size:
            i = int(late[0])
            following = WEEKDAYS[(weekday + int(gap[i])) % 7].title()
            when = "on the same day as" if table[i, weekday] == gap[i] + next_lead[i] else "after"
            whose = f"has {label(series.iloc[i], keys)} order" if len(np.unique(table, axis=0)) > 1 else "orders"
            raise DataValidationError(
                f"The delivery calendar at {path} {whose} on {WEEKDAYS[weekday].title()} with a lead time of "
                f"{table[i, weekday]:g} days: that delivery would come {when} the one of the next order "
                f"({following}, lead time {next_lead[i]:g} days, on the shelf {gap[i] + next_lead[i]:g} days after "
                f"{WEEKDAYS[weekday].title()}'s order). Each delivery must arrive before the next order's: shorten "
                "that lead time or drop one of the two order days."
            )


def warn_unmatched(pairs: np.ndarray, total: int, what: str, path: Any, on: list[str], table: pd.DataFrame) -> None:
    """Log how many of ``total`` series no row of ``table`` names (:func:`_pairs`: they take the chain defaults)."""
    missing = total - np.unique(pairs[:, 0]).size
    if not missing:
        return
    unused = np.setdiff1d(np.arange(len(table)), pairs[:, 1])
    example = ""
    if unused.size:
        row = int(unused[0])
        example = f"; its rows match no forecast series, e.g. {label(table.iloc[row], on)}"
    logger.warning(
        "%d of %d forecast series have no row in the %s at %s (joined on %s%s): they take the chain defaults. "
        "Check the key values (007 against 7, case) if they should have one.",
        missing, total, what, path, ", ".join(on), example,
    )  # fmt: skip


def series_pairs(table: pd.DataFrame, series: pd.DataFrame, on: list[str]) -> np.ndarray:
    """(series row, table row) pairs of the series each row of ``table`` applies to (joined on ``on``)."""
    left = series[on].reset_index(drop=True).assign(_series=np.arange(len(series)))
    right = table[on].assign(_table=np.arange(len(table)))
    return left.merge(right, on=on)[["_series", "_table"]].to_numpy(dtype=np.int64)
