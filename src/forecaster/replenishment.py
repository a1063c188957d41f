"""Replay ordering policies day by day against actual sales: waste, availability and cost per policy.

Each day of the replay: the deliveries due arrive (fresh, with the item's full shelf life); the day's demand (the
actual sales) is served first in, first out; units whose last sellable day it was are thrown away; then every
series whose calendar says so orders, and the order arrives ``lead`` days later. With no stock data, every
policy starts every series at its own target level on the first day (an order placed the day before, with an
empty shelf). A policy is an order-up-to rule: a target per ordering series and what it counts as stock.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from forecaster.contract import DEFAULT_SERVICE_LEVEL, QUANTILES
from forecaster.order_defaults import OrderDefaults
from forecaster.order_items import ItemNumbers
from forecaster.order_policy import (
    copula_normals,
    order_up_to,
    period_draws,
    round_to_packs,
    usable_stock,
)
from forecaster.orders_inputs import next_order


@dataclass
class Day:
    """What a policy sees when series ``rows`` order at the close of day ``t`` (-1: the first fill)."""

    t: int
    rows: np.ndarray
    days_covered: np.ndarray  # (len(rows),) days after t until the next delivery is on the shelf
    life_days: np.ndarray  # (len(rows),) the last day after t a unit delivered by this order sells
    stock: np.ndarray  # (len(rows), shelf) on hand after expiry; column j sells on j + 1 more days
    on_order: np.ndarray  # (len(rows),) open orders arriving within the days covered
    lead: np.ndarray  # (len(rows),) days until this order is on the shelf


#: a policy: the order units of the ordering rows of a day (rounded up to whole packs by the replay)
Policy = Callable[[Day], np.ndarray]


@dataclass(frozen=True)
class Replay:
    """Daily arrays of one replay: demand (n, T) and the in-stock flag of the data (n, T)."""

    demand: np.ndarray
    in_stock: np.ndarray
    items: ItemNumbers
    leads: np.ndarray  # (n, 7) lead time per weekday, NaN = no order that weekday
    weekdays: np.ndarray  # (T,) weekday of each day (0 = Monday)


def simulate(replay: Replay, policy: Policy, trace: bool = False) -> dict[str, Any]:
    """Run ``policy`` over the replay; return its totals (see :func:`summarize`).

    With ``trace`` the daily (n, T) arrays (sold, waste, delivered, end_stock, after_sales) are under ``"trace"``.
    """
    demand, items = replay.demand, replay.items
    n, days = demand.shape
    shelf = int(items.shelf_life_days.max())
    stock, pipeline = np.zeros((n, shelf)), np.zeros((n, days + 8))
    life_index = items.shelf_life_days - 1
    totals = {name: np.zeros((n, days)) for name in ("sold", "waste", "delivered", "end_stock", "after_sales")}
    first = _orders(replay, policy, -1, stock, pipeline, first_fill=True)
    np.add.at(stock, (np.arange(n), life_index), first)
    totals["delivered"][:, 0] += first
    for t in range(days):
        if t > 0:
            arriving = pipeline[:, t]
            np.add.at(stock, (np.arange(n), life_index), arriving)
            totals["delivered"][:, t] += arriving
        before = np.cumsum(stock, axis=1) - stock
        take = np.clip(demand[:, t, None] - before, 0.0, stock)
        stock -= take
        totals["sold"][:, t] = take.sum(axis=1)
        totals["after_sales"][:, t] = stock.sum(axis=1)
        totals["waste"][:, t] = stock[:, 0]
        stock = np.concatenate([stock[:, 1:], np.zeros((n, 1))], axis=1)
        totals["end_stock"][:, t] = stock.sum(axis=1)
        if t < days - 1:
            _orders(replay, policy, t, stock, pipeline)
    return {**summarize(replay, totals), **({"trace": totals} if trace else {})}


def _orders(
    replay: Replay, policy: Policy, t: int, stock: np.ndarray, pipeline: np.ndarray, first_fill: bool = False
) -> np.ndarray:
    """Place the orders of day ``t`` into ``pipeline`` (arrival day index); return the units per series."""
    n, days = replay.demand.shape
    weekday = (int(replay.weekdays[0]) - 1) % 7 if t < 0 else int(replay.weekdays[t])
    lead = np.ones(n) if first_fill else replay.leads[:, weekday]
    gap, next_lead = next_order(replay.leads, weekday)
    covered = (gap + next_lead - 1).astype(np.int64)
    life = (np.nan_to_num(lead) + replay.items.shelf_life_days - 1).astype(np.int64)
    arrival = t + np.nan_to_num(lead, nan=days).astype(np.int64)
    # an order whose days covered run past the replay is placed too (the forecasts' last day stands in for the
    # days after it): leaving it out emptied the shelves of the replay's last days under sparse calendars
    rows = np.flatnonzero(~np.isnan(lead) & (arrival < days))
    units = np.zeros(n)
    if rows.size == 0:
        return units
    due = np.cumsum(pipeline, axis=1)
    until = np.minimum(t + covered[rows], pipeline.shape[1] - 1)
    on_order = due[rows, until] - due[rows, t] if t >= 0 else np.zeros(rows.size)
    day = Day(t, rows, covered[rows], life[rows], stock[rows], on_order, np.nan_to_num(lead[rows]).astype(np.int64))
    units[rows] = round_to_packs(policy(day), replay.items.pack_size[rows])
    if not first_fill:
        np.add.at(pipeline, (rows, arrival[rows]), units[rows])
    return units


def summarize(replay: Replay, totals: dict[str, np.ndarray]) -> dict[str, Any]:
    """Waste (units, value, % of delivered), fill rate, empty-shelf share, cost and days of cover of a replay."""
    items, demand = replay.items, replay.demand
    lost = np.maximum(demand - totals["sold"], 0.0)
    margin = (items.unit_price - items.unit_cost)[:, None]
    empty = totals["after_sales"] <= 1e-9  # sold out: the day ended with an empty shelf
    in_stock = replay.in_stock
    waste_value = float((totals["waste"] * items.unit_cost[:, None]).sum())
    lost_margin = float((lost * margin).sum())
    return {
        "demand_units": float(demand.sum()),
        "sold_units": float(totals["sold"].sum()),
        "delivered_units": float(totals["delivered"].sum()),
        "waste_units": float(totals["waste"].sum()),
        "waste_value": waste_value,
        "waste_share_of_delivered": float(totals["waste"].sum() / max(totals["delivered"].sum(), 1e-12)),
        "fill_rate": float(totals["sold"].sum() / max(demand.sum(), 1e-12)),
        "fill_rate_in_stock_days": float(totals["sold"][in_stock].sum() / max(demand[in_stock].sum(), 1e-12)),
        "empty_shelf_share": float(empty.mean()),
        "empty_shelf_share_in_stock_days": float(empty[in_stock].mean()) if in_stock.any() else float("nan"),
        "lost_units": float(lost.sum()),
        "lost_margin": lost_margin,
        "total_cost": waste_value + lost_margin,
        "mean_days_of_cover": float(totals["end_stock"].sum() / max(demand.sum(), 1e-12)),
        "series": int(demand.shape[0]),
        "days": int(demand.shape[1]),
    }


# ------------------------------------------------------------------------------------------------ policies
def forecast_policy(
    quantiles: np.ndarray, items: ItemNumbers, defaults: OrderDefaults, service_level: float | None = None
) -> Policy:
    """This product's policy on day-indexed forecasts ``quantiles`` (n, 4, T): P10, P50, P90, mean per day.

    ``service_level``: order to that quantile of the period demand instead of the cost balance.
    """
    margin = items.unit_price - items.unit_cost + defaults.stockout_penalty
    waste = items.unit_cost + defaults.disposal_cost

    def policy(day: Day) -> np.ndarray:
        ahead = _ahead(quantiles[day.rows], day.t, int(max(day.days_covered.max(), day.life_days.max())))
        counted, _ = usable_stock(stock_buckets(day.stock), len(day.rows), ahead[:, 3], day.days_covered)
        _, _, order = order_up_to(
            ahead[:, :3],
            day.days_covered,
            day.life_days,
            margin[day.rows],
            waste[day.rows],
            defaults,
            service_level,
            position=counted + day.on_order,
            pack_size=items.pack_size[day.rows],
            min_units=items.min_display_units[day.rows],
            before=np.asarray(day.lead, dtype=np.int64) - 1,
        )
        return order

    return policy


def daily_quantile_policy(quantiles: np.ndarray, service_level: float = DEFAULT_SERVICE_LEVEL) -> Policy:
    """Today's proposals: each arrival day's demand quantile at ``service_level``, stock not counted."""
    levels = np.array(QUANTILES)
    upper = int(np.clip(np.searchsorted(levels, service_level), 1, len(levels) - 1))
    weight = (service_level - levels[upper - 1]) / (levels[upper] - levels[upper - 1])
    per_day = quantiles[:, upper - 1] + weight * (quantiles[:, upper] - quantiles[:, upper - 1])

    def policy(day: Day) -> np.ndarray:
        arrival = np.minimum(day.t + day.lead, per_day.shape[1] - 1)
        return per_day[day.rows, arrival]

    return policy


def rule_of_thumb_policy(past: np.ndarray, demand: np.ndarray, safety_days: float = 1.0) -> Policy:
    """Stores' rule of thumb: mean of the last 28 days' sales x (days covered + ``safety_days``), all stock counted.

    ``past`` (n, >= 1) are the days before the replay, ``demand`` (n, T) the replay's days (known once past).
    """
    sales = np.concatenate([past, demand], axis=1)
    start = past.shape[1]

    def policy(day: Day) -> np.ndarray:
        end = start + day.t + 1
        level = np.nanmean(sales[day.rows, max(0, end - 28) : end], axis=1)
        return level * (day.days_covered + safety_days) - day.stock.sum(axis=1) - day.on_order

    return policy


def per_order_day(policies: list[Policy]) -> Policy:
    """One policy per order day: ``policies[t + 1]`` orders at the close of day t, ``policies[0]`` the first fill."""

    def policy(day: Day) -> np.ndarray:
        return policies[min(day.t + 1, len(policies) - 1)](day)

    return policy


def _ahead(values: np.ndarray, t: int, width: int) -> np.ndarray:
    """Columns t+1 … of day-indexed ``values`` (n, k, T), padded with the last day up to ``width`` days."""
    ahead = values[:, :, t + 1 : t + 1 + width]
    if ahead.shape[2] < width:
        ahead = np.pad(ahead, ((0, 0), (0, 0), (0, width - ahead.shape[2])), mode="edge")
    return ahead


def stock_buckets(stock: np.ndarray) -> np.ndarray:
    """Stock rows ``(row, units, days_left)`` of an (n, shelf) on-hand array (column j sells j + 1 more days)."""
    rows, column = np.nonzero(stock > 0)
    return np.column_stack([rows, stock[rows, column], column + 1]).astype(float)


# ------------------------------------------------------------------------------------------------ calibration
def period_coverage(
    quantiles: np.ndarray | list[np.ndarray],
    actual: np.ndarray,
    defaults: OrderDefaults,
    lengths: tuple[int, ...] = (1, 2, 3),
    levels: tuple[float, ...] = (0.5, 0.8, 0.95),
    in_stock: np.ndarray | None = None,
) -> dict[str, float]:
    """Share of k-day actual sums at or below the model's quantile of that sum, for every start day and k.

    ``quantiles`` (n, 3, T) P10/P50/P90 per day (or one such array per start day: the forecast the orders of that
    start used), ``actual`` (n, T). Keys ``"k=2 P80"``; calibrated = the level.
    With ``in_stock`` (n, T) also ``"in-stock k=2 P80"``: only windows whose every day was in stock.
    """
    n, days = actual.shape
    hits: dict[str, list[int]] = {}
    z = copula_normals(defaults.draws, max(lengths), defaults.correlation)
    for start in range(days):
        for chunk in range(0, n, 4096):
            rows = slice(chunk, min(chunk + 4096, n))
            width = min(max(lengths), days - start)
            source = quantiles[start] if isinstance(quantiles, list) else quantiles
            cum = period_draws(source[rows, :, start : start + width], z[:, :width], defaults)
            sums = np.cumsum(actual[rows, start : start + width], axis=1)
            for k in range(1, width + 1):
                if k not in lengths:
                    continue
                masks = {"": np.ones(sums.shape[0], dtype=bool)}
                if in_stock is not None:
                    masks["in-stock "] = in_stock[rows, start : start + k].all(axis=1)
                predicted = np.quantile(cum[:, :, k - 1], levels, axis=1)
                for level, value in zip(levels, predicted, strict=True):
                    below = sums[:, k - 1] <= value + 1e-9
                    for prefix, mask in masks.items():
                        cell = hits.setdefault(f"{prefix}k={k} P{round(level * 100)}", [0, 0])
                        cell[0] += int(below[mask].sum())
                        cell[1] += int(mask.sum())
    return {key: hit / max(total, 1) for key, (hit, total) in hits.items()}


def day_matrix(
    frame: pd.DataFrame,
    keys: list[str],
    date: str,
    columns: list[str],
    series: pd.DataFrame | None = None,
    dates: pd.DatetimeIndex | None = None,
) -> tuple[pd.DataFrame, np.ndarray, pd.DatetimeIndex]:
    """(series, (n, len(columns), T) values, dates) of a long frame with one row per series and day (NaN: none).

    ``series`` and ``dates`` default to those of ``frame``; rows outside them are left out.
    """
    dates = pd.DatetimeIndex(np.sort(frame[date].unique())) if dates is None else dates
    series = frame[keys].drop_duplicates().reset_index(drop=True) if series is None else series
    row = series[keys].reset_index().merge(frame[keys], on=keys, how="right")["index"].to_numpy(dtype=float)
    column = dates.get_indexer(frame[date])
    keep = ~np.isnan(row) & (column >= 0)
    frame, row, column = frame[keep], row[keep].astype(np.int64), column[keep]
    values = np.full((len(series), len(columns), len(dates)), np.nan)
    for i, name in enumerate(columns):
        values[row, i, column] = frame[name].to_numpy(dtype=float)
    return series, values, dates
