"""The ordering policy: forecasts + stock + deliveries + shelf life + cost → one order line per store x item.

For a series that orders on day D (ordered at the close of D, on the shelf on D + L) and next orders on D + r
(on the shelf on D + r + L'), the order must carry the shelf until the next delivery: it covers the demand of
days D + 1 … D + r + L' - 1 (``days_covered``; with L = 1 that is the protection period from this arrival to the
next). Their demand is the sum of the daily demands, each distributed as the forecast says (a two-piece normal
through P10, P50 and P90, cut at 0), the days tied by a Gaussian copula with one correlation (``correlation`` of
:class:`~forecaster.order_defaults.OrderDefaults`, chosen on backtests by ``bench/replenishment.py``); its
quantiles come from Monte Carlo draws. The target (order-up-to level) S balances the two costs of one more unit:

    margin x P(demand until the next delivery > S)
        = holding cost x P(demand until the next delivery < S) + waste cost x P(demand over its shelf life < S)

(with a shelf life no longer than the days covered, the classic critical fractile margin / (margin + cost +
holding cost)); a longer shelf life lets leftovers sell later, so the target rises, up to margin / (margin +
holding cost). The holding cost (``holding_cost_share`` of the waste cost per period carried over) stands mostly
for freshness: a unit carried over displaces a fresher one of the next order. The order is S minus the
usable stock (on-hand units that sell before they expire, first in first out, at the forecast's expected demand)
minus open orders arriving in the days covered, rounded up to packs and floored at 0.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import ndtri

from forecaster.contract import QUANTILES
from forecaster.errors import DataValidationError, InvalidParameterError
from forecaster.io import read_table, write_table
from forecaster.order_defaults import DEFAULT_LOG_SHIFT, OrderDefaults
from forecaster.orders_inputs import (
    FORECAST_VALUES,
    check_unique,
    read_calendar,
    read_item_master,
    read_open_orders,
    read_stock,
)

logger = logging.getLogger(__name__)

#: normal score of the outer quantile levels (P10 and P90 sit at -/+ Z_OUTER)
Z_OUTER = float(ndtri(QUANTILES[-1]))
_CHUNK = 2048  # series per block of Monte Carlo draws (memory: chunk x draws x days x 4 bytes)


# ------------------------------------------------------------------------------------------------- the model
def copula_normals(draws: int, days: int, correlation: float, seed: int = 0) -> np.ndarray:
    """(draws, days) standard normals with correlation ``correlation`` between days (one common factor).

    Every series shares these draws, so they are balanced rather than random: the common factor and each day's
    own noise are stratified (one draw per 1/half of probability, Latin hypercube) and every draw comes with its
    mirror image, so the quantiles of a sum carry no shared Monte Carlo bias.
    """
    rng = np.random.default_rng(seed)
    half = max(draws // 2, 1)
    strata = ndtri((np.arange(half) + 0.5) / half)
    common = rng.permutation(strata)
    own = np.stack([rng.permutation(strata) for _ in range(days)], axis=1)
    z = np.sqrt(correlation) * common[:, None] + np.sqrt(1.0 - correlation) * own
    return np.concatenate([z, -z])


def daily_quantile(
    p10: np.ndarray,
    p50: np.ndarray,
    p90: np.ndarray,
    z: np.ndarray,
    shape: str = "log",
    log_shift: float = DEFAULT_LOG_SHIFT,
) -> np.ndarray:
    """Demand at normal score ``z`` of a day with those quantiles, cut at 0.

    ``shape="normal"``: a two-piece normal (linear in z between and beyond the quantiles); ``"log"``: the same in
    log space, ``log(demand + shift)`` two-piece linear in z with ``shift = log_shift x (P50 + (P90 - P10) / 3)``,
    so the upper tail stretches the way sales jump (multiplicatively). Both pass through P10, P50 and P90. Arrays
    broadcast: ``p*`` (n, 1, days) against ``z`` (draws, days) gives (n, draws, days).
    """
    low, high = np.minimum(p10, p50), np.maximum(p90, p50)
    if shape == "normal":
        scale = np.where(z > 0, (high - p50) / Z_OUTER, (p50 - low) / Z_OUTER)
        return np.maximum(p50 + scale * z, 0.0)
    shift = log_shift * (p50 + (high - low) / 3) + 1e-9
    middle = np.log(p50 + shift)
    slope = np.where(z > 0, np.log(high + shift) - middle, middle - np.log(low + shift)) / Z_OUTER
    return np.maximum(np.exp(middle + slope * z) - shift, 0.0)


def period_draws(quantiles: np.ndarray, z: np.ndarray, defaults: OrderDefaults) -> np.ndarray:
    """Cumulative demand draws: ``quantiles`` (n, 3, days) of P10/P50/P90 → (n, draws, days) running sums."""
    p10, p50, p90 = (quantiles[:, i, None, :] for i in range(3))
    days = daily_quantile(p10, p50, p90, z[None, :, :], defaults.day_shape, defaults.log_shift)
    return np.cumsum(days, axis=2, dtype=np.float32)


def order_up_to(
    quantiles: np.ndarray,
    days_covered: np.ndarray,
    life_days: np.ndarray,
    margin: np.ndarray,
    waste_cost: np.ndarray,
    defaults: OrderDefaults,
    service_level: float | None = None,
    *,
    position: np.ndarray,
    pack_size: np.ndarray,
    min_units: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(target S, service level P(demand of the days covered <= S), order units) per series.

    ``quantiles``: (n, 3, days) P10/P50/P90 of days 1, 2, … after the order day (at least
    max(days_covered, life_days) days); ``life_days``: the last day after the order day a delivered unit sells.
    ``service_level`` given: S is that quantile of the demand of the days covered (costs and shelf life unused).
    The order is S minus ``position`` (usable stock and open orders) in whole packs of ``pack_size``, S never
    below ``min_units``: rounded up, or with ``defaults.pack_rounding == "cost"`` (and no ``service_level``) to
    whichever of the two nearest pack counts has the lower expected cost (:func:`_expected_cost`).
    """
    n = len(quantiles)
    width = int(max(days_covered.max(initial=1), life_days.max(initial=1)))
    z = copula_normals(defaults.draws, width, defaults.correlation)
    target, level, order = np.zeros(n), np.zeros(n), np.zeros(n)
    for start in range(0, n, _CHUNK):
        rows = slice(start, min(start + _CHUNK, n))
        cum = period_draws(quantiles[rows, :, :width], z, defaults)
        period = _draws_at(cum, np.minimum(days_covered[rows], width) - 1)
        draws = (
            _draws_at(cum, np.minimum(days_covered[rows], life_days[rows]) - 1),
            period,
            _draws_at(cum, life_days[rows] - 1),
        )  # demand until the next delivery (or expiry), period, life
        costs = margin[rows], defaults.holding_cost_share * waste_cost[rows], waste_cost[rows]
        if service_level is None:
            s = np.maximum(_balance(*draws, *costs), min_units[rows])
        else:
            s = np.maximum(np.quantile(period, service_level, axis=1), min_units[rows])
        target[rows] = s
        level[rows] = (period <= s[:, None] + 1e-9).mean(axis=1)
        order[rows] = round_to_packs(s - position[rows], pack_size[rows])
        if service_level is None and defaults.pack_rounding == "cost":
            one_less = np.maximum(order[rows] - pack_size[rows], 0.0)
            low, high = position[rows] + one_less, position[rows] + order[rows]
            cheaper = (low >= min_units[rows] - 1e-9) & (
                _expected_cost(low, *draws, *costs) < _expected_cost(high, *draws, *costs)
            )
            order[rows] = np.where(cheaper, one_less, order[rows])
    return target, level, order


def _draws_at(cum: np.ndarray, day_index: np.ndarray) -> np.ndarray:
    """(n, draws) of the running demand sums ``cum`` (n, draws, days) at each row's day index."""
    return np.take_along_axis(cum, day_index[:, None, None], axis=2)[:, :, 0]


def _expected_cost(
    units: np.ndarray,
    gain: np.ndarray,
    period: np.ndarray,
    life: np.ndarray,
    margin: np.ndarray,
    hold: np.ndarray,
    waste: np.ndarray,
) -> np.ndarray:
    """Expected cost of stocking ``units``: the cost balance's three terms, integrated (its slope is the balance).

    margin x E(demand before the next delivery - units)+ + hold x E(units - demand of the days covered)+
    + waste x E(units - demand over the shelf life)+, over the draws.
    """
    units = units[:, None]
    return (
        margin * np.maximum(gain - units, 0.0).mean(axis=1)
        + hold * np.maximum(units - period, 0.0).mean(axis=1)
        + waste * np.maximum(units - life, 0.0).mean(axis=1)
    )


def _balance(
    gain: np.ndarray, period: np.ndarray, life: np.ndarray, margin: np.ndarray, hold: np.ndarray, waste: np.ndarray
) -> np.ndarray:
    """The smallest S among ``gain``'s draws with margin x P(gain > S) <= hold x P(period < S) + waste x P(life < S).

    Exact on the draws' empirical distributions: one sort per array, the counts by one search over all rows.
    """
    n, draws = gain.shape
    candidates = np.sort(gain, axis=1).astype(float)
    above = 1.0 - np.arange(1, draws + 1) / draws  # P(gain > the j-th smallest draw)
    over = hold[:, None] * _share_below(period, candidates) + waste[:, None] * _share_below(life, candidates)
    stop = margin[:, None] * above[None, :] <= over
    first = np.where(stop.any(axis=1), stop.argmax(axis=1), draws - 1)
    return candidates[np.arange(n), first]


def _share_below(draws: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Per row, the share of ``draws`` strictly below each of ``points`` (rows searched at once, offset apart)."""
    n, count = draws.shape
    span = float(max(draws.max(initial=0.0), points.max(initial=0.0))) + 1.0
    offset = (np.arange(n) * span)[:, None]
    flat = np.sort(draws.astype(float), axis=1) + offset
    found = np.searchsorted(flat.ravel(), (points + offset).ravel(), side="left").reshape(points.shape)
    return (found - np.arange(n)[:, None] * count) / count


def usable_stock(
    buckets: np.ndarray, n: int, mean: np.ndarray, days_covered: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(units counted, units not counted) per series of stock rows ``(series, units, days_left)``.

    First in, first out: the oldest units sell first, at the forecast's expected daily demand ``mean`` (n, days);
    units with ``d`` days left count as far as the expected demand of days 1 … d is left for them once the older
    units are sold. Units still sellable after the days covered count in full.
    """
    counted, total = np.zeros(n), np.zeros(n)
    if len(buckets) == 0:
        return counted, total
    rows = buckets[np.lexsort((buckets[:, 2], buckets[:, 0]))]
    series, units, left = rows[:, 0].astype(np.int64), rows[:, 1], rows[:, 2]
    np.add.at(total, series, units)
    cum = np.concatenate([np.zeros((n, 1)), np.cumsum(mean, axis=1)], axis=1)
    rank = pd.Series(series).groupby(series).cumcount().to_numpy()
    for r in range(int(rank.max()) + 1):
        at = np.flatnonzero(rank == r)
        s = series[at]
        full = left[at] >= days_covered[s]
        reach = cum[s, np.minimum(np.where(np.isfinite(left[at]), left[at], 0), cum.shape[1] - 1).astype(np.int64)]
        counted[s] += np.where(full, units[at], np.clip(reach - counted[s], 0.0, units[at]))
    return counted, total - counted


def round_to_packs(units: np.ndarray, pack_size: np.ndarray) -> np.ndarray:
    """Up to whole packs, floored at 0."""
    return np.maximum(np.ceil(np.round(units / pack_size, 9)), 0.0) * pack_size


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
        raise DataValidationError("The forecasts need key columns and a date column before p10.")
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

    Without ``stock`` the shelf counts as empty: the lines say so (``stock_considered`` False) and a warning is
    logged. Raises DataValidationError for bad inputs (naming file, row and column) before anything is written.
    """
    defaults = defaults or OrderDefaults()
    if service_level is not None and not 0 < service_level < 1:
        raise InvalidParameterError(
            f"The 'service_level' parameter of orders must be a float in the range (0, 1). Got {service_level!r}."
        )
    keys, date = forecast_layout(forecasts)
    frame = forecasts.copy()
    frame[keys] = frame[keys].astype(str)
    frame[date] = pd.to_datetime(frame[date].astype(str), format="ISO8601", errors="coerce").dt.normalize()
    if frame[date].isna().any():
        row = int(np.flatnonzero(frame[date].isna().to_numpy())[0])
        raise DataValidationError(
            f"The forecasts' row {row + 1} has the {date} {forecasts[date].iat[row]!r}: not a date."
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
    buckets = read_stock(stock, series, keys, day) if stock is not None else np.empty((0, 3))
    if stock is None:
        logger.warning("no stock given: the orders treat every shelf as empty (stock_considered = False)")
    counted, not_counted = usable_stock(buckets, len(series), filled[:, 3], covered)
    on_order = np.zeros(len(series))
    if open_orders is not None:
        rows = read_open_orders(open_orders, series, keys, day)
        inside = rows[:, 2] <= covered[rows[:, 0].astype(np.int64)]
        np.add.at(on_order, rows[inside, 0].astype(np.int64), rows[inside, 1])
    target, level, order = order_up_to(
        filled[ordering, :3],
        covered[ordering],
        life[ordering],
        (items.unit_price - items.unit_cost + defaults.stockout_penalty)[ordering],
        (items.unit_cost + defaults.disposal_cost)[ordering],
        defaults,
        service_level,
        position=counted[ordering] + on_order[ordering],
        pack_size=items.pack_size[ordering],
        min_units=items.min_display_units[ordering],
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
    position = counted[ordering] + on_order[ordering]
    lines["rounded_down"] = order < round_to_packs(target - position, items.pack_size[ordering])
    lines["pack_size"] = items.pack_size[ordering]
    lines["shelf_life_days"] = items.shelf_life_days[ordering]
    lines["service_level"] = level
    lines["stock_considered"] = stock is not None
    return lines


def _day_arrays(frame: pd.DataFrame, series: pd.DataFrame, keys: list[str], date: str, day: pd.Timestamp) -> np.ndarray:
    """(n, 4, days) P10/P50/P90/mean of days 1 … after ``day`` (NaN where the forecasts have no row)."""
    offset = (frame[date] - day).dt.days.to_numpy()
    if (offset < 1).any():
        first = frame[date].min().date()
        raise DataValidationError(
            f"The forecasts start on {first}, not after the order day {day.date()}: order on a day before the first "
            "forecast day (--order-date) or forecast from the order day on."
        )
    index = series[keys].reset_index().merge(frame[keys], on=keys, how="right")["index"].to_numpy()
    values = np.full((len(series), 4, int(offset.max())), np.nan)
    for i, column in enumerate(FORECAST_VALUES):
        numbers = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float)
        bad = np.flatnonzero(np.isnan(numbers) | (numbers < 0))
        if bad.size:
            raise DataValidationError(
                f"The forecasts' row {bad[0] + 1} has {column}={frame[column].iat[bad[0]]!r}: forecasts must be "
                "numbers >= 0."
            )
        values[index, i, offset - 1] = numbers
    return values


def next_order(leads: np.ndarray, weekday: int) -> tuple[np.ndarray, np.ndarray]:
    """Days until each series' next order day after ``weekday`` (1 … 7) and that order's lead time."""
    gap, lead = np.full(len(leads), 7.0), leads[:, weekday].copy()
    for step in range(6, 0, -1):
        column = leads[:, (weekday + step) % 7]
        found = ~np.isnan(column)
        gap, lead = np.where(found, step, gap), np.where(found, column, lead)
    return gap, np.nan_to_num(lead, nan=1.0)


def _check_horizon(
    values: np.ndarray, covered: np.ndarray, ordering: np.ndarray, series: pd.DataFrame, keys: list[str], day
) -> None:
    short = [i for i in ordering if np.isnan(values[i, :3, : covered[i]]).any() or values.shape[2] < covered[i]]
    if short:
        row = series.iloc[short[0]]
        last = day + pd.Timedelta(days=int(covered[short[0]]))
        raise DataValidationError(
            f"The forecasts of {', '.join(f'{k}={row[k]}' for k in keys)} do not cover every day from "
            f"{(day + pd.Timedelta(days=1)).date()} to {last.date()} (until the next delivery): forecast a longer "
            "horizon or fill the missing days."
        )


def _order_day(value: str | pd.Timestamp) -> pd.Timestamp:
    """The order day of ``--order-date``: an ISO date (``12.02.2024`` could be either of two days)."""
    try:
        return pd.to_datetime(value, format="ISO8601").normalize()
    except (TypeError, ValueError) as error:
        raise InvalidParameterError(
            f"The 'order_date' parameter must be an ISO date like 2024-05-31. Got {value!r} instead."
        ) from error


def write_orders(forecasts: str | Path | pd.DataFrame, out: str | Path, **options) -> pd.DataFrame:
    """Read the forecasts (a file or folder), compute :func:`order_lines` and write them atomically to ``out``."""
    frame = forecasts if isinstance(forecasts, pd.DataFrame) else read_table(forecasts, dtype=str)
    lines = order_lines(frame, **options)
    write_table(lines, out)
    return lines
