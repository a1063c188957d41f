"""Synthetic daily fruit-and-vegetable sales with campaigns, Swedish holidays, weather and stockouts.

One row per store × item × day. The generating process (documented with formulas in docs/data.md#generating-process):
expected demand = item base level × store size × store-item affinity × slow random-walk level × yearly season ×
weekday × holiday × weather anomaly × campaign uplift ``exp(elasticity · (1 − discount))`` × post-campaign dip;
latent demand is negative-binomial around it; stores stock what they plan (under-planning deep campaigns, with
occasional short deliveries), so ``units_sold = min(demand, stock)`` and ``stockout_hours`` is the part of the
day left after the shelf ran empty. Everything comes from ``numpy.random.SeedSequence(seed)``: the same
arguments give the same frame, and store ``k`` is the same whatever the number of stores.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import holidays
import numpy as np
import pandas as pd

from forecaster.errors import InvalidParameterError
from forecaster.io import write_json, write_table
from forecaster.params import Interval, Options, coerce
from forecaster.spec import SPEC_FILE

SYNTH_SPEC: dict[str, Any] = {
    "keys": ["store_id", "item_id"],
    "date": "date",
    "target": "units_sold",
    "known_future": ["campaign", "discount", "holiday"],
    "static": ["category", "city"],
    "past_only": ["stockout_hours", "temperature"],
    "campaign": "campaign",
    "stockout": "stockout_hours",
}

# name, category, units/day at an average store, promo elasticity, season amplitude, season peak (day of year),
# demand change per °C of temperature anomaly. Ordered so that a short assortment still mixes categories.
ASSORTMENT: tuple[tuple[str, str, float, float, float, int, float], ...] = (
    ("banana", "fruit", 60.0, 2.5, 0.05, 30, 0.0),
    ("tomato", "vegetable", 40.0, 3.0, 0.25, 200, 0.01),
    ("strawberries", "berries", 15.0, 4.5, 1.2, 178, 0.04),
    ("iceberg_lettuce", "salad", 20.0, 3.5, 0.35, 180, 0.03),
    ("potato", "root_vegetable", 50.0, 2.0, 0.15, 300, -0.01),
    ("apple", "fruit", 45.0, 2.5, 0.15, 280, 0.0),
    ("cucumber", "vegetable", 35.0, 3.0, 0.3, 190, 0.02),
    ("blueberries", "berries", 10.0, 4.0, 0.8, 215, 0.03),
    ("carrot", "root_vegetable", 30.0, 2.5, 0.1, 320, -0.01),
    ("dill", "herbs", 6.0, 3.0, 0.9, 173, 0.02),
    ("orange", "fruit", 25.0, 3.0, 0.3, 20, -0.01),
    ("baby_spinach", "salad", 12.0, 3.0, 0.2, 150, 0.01),
    ("bell_pepper", "vegetable", 22.0, 3.0, 0.2, 210, 0.01),
    ("onion", "root_vegetable", 25.0, 2.0, 0.05, 300, 0.0),
    ("watermelon", "fruit", 8.0, 4.0, 1.3, 200, 0.06),
    ("raspberries", "berries", 8.0, 4.0, 1.0, 200, 0.04),
    ("pear", "fruit", 15.0, 3.0, 0.2, 290, 0.0),
    ("broccoli", "vegetable", 18.0, 3.0, 0.15, 260, 0.0),
    ("basil", "herbs", 7.0, 3.0, 0.5, 190, 0.02),
    ("grapes", "fruit", 18.0, 3.5, 0.2, 250, 0.01),
    ("cabbage", "vegetable", 10.0, 2.5, 0.3, 330, -0.02),
    ("avocado", "fruit", 20.0, 3.5, 0.1, 200, 0.01),
    ("beetroot", "root_vegetable", 8.0, 2.5, 0.3, 300, -0.01),
    ("lemon", "fruit", 14.0, 2.5, 0.1, 360, 0.0),
    ("mushrooms", "vegetable", 15.0, 3.0, 0.25, 270, -0.01),
)
# city, share of stores, annual mean temperature (°C), seasonal amplitude (°C)
CITIES: tuple[tuple[str, float, float, float], ...] = (
    ("Stockholm", 0.25, 7.5, 9.5),
    ("Göteborg", 0.14, 8.0, 8.0),
    ("Malmö", 0.12, 9.0, 8.0),
    ("Uppsala", 0.08, 6.5, 10.0),
    ("Västerås", 0.06, 7.0, 10.0),
    ("Örebro", 0.06, 6.5, 10.0),
    ("Linköping", 0.06, 7.0, 9.5),
    ("Helsingborg", 0.05, 8.5, 8.0),
    ("Jönköping", 0.05, 6.5, 9.0),
    ("Umeå", 0.05, 3.5, 12.0),
    ("Sundsvall", 0.04, 4.5, 11.0),
    ("Luleå", 0.04, 2.0, 13.5),
)
WEEKDAY = np.array([0.92, 0.88, 0.92, 1.00, 1.18, 1.22, 0.88])  # Monday .. Sunday
HOLIDAY_EFFECT, EVE_EFFECT = 0.70, 1.30  # on a public holiday (reduced hours) and the shopping day before it
CAMPAIGN_DAYS, GAP_DAYS, POST_DAYS = (3, 10), (3, 30), 7  # campaign length, quiet days between, dip window
DISCOUNTS = np.round(np.arange(0.60, 0.901, 0.05), 2)  # price paid / full price during a campaign
PARTICIPATION, DIP, DIP_DECAY = 0.9, 0.3, 0.7
DISPERSION, LEVEL_SIGMA = 8.0, 0.01  # negative-binomial shape; daily sd of the log-level random walk
PLAN_EXPONENT, SHORT_DELIVERY = 0.7, 0.01  # campaign uplift planned as uplift**0.7; chance of a short delivery

_COUNT = [Interval(int, 1, None)]
_LATENT = ("demand", "baseline")  # columns only return_demand=True adds


def generate(
    stores: int = 10,
    items: int = 20,
    days: int = 180,
    seed: int = 0,
    start: str = "2024-01-01",
    *,
    return_demand: bool = False,
) -> pd.DataFrame:
    """Generate a synthetic sales frame, one row per store × item × day, sorted by store, item and date.

    Args:
        stores: number of stores (ids ``S001``, ``S002``, …).
        items: number of items; names cycle through the assortment with a suffix (``banana_2``) beyond it.
        days: number of consecutive days.
        seed: random seed; the same arguments give an identical frame.
        start: first date (``YYYY-MM-DD``).
        return_demand: also return ``demand`` (latent demand before stockouts) and ``baseline`` (expected
            demand without campaign effects), for tests and teaching; never use them as features.

    Returns:
        Columns store_id, item_id, date, units_sold, campaign, discount, holiday, category, city,
        stockout_hours, temperature (see ``SYNTH_SPEC`` for their roles).

    Raises:
        InvalidParameterError: for a count below 1, a negative seed or a start that is not a date.
    """
    stores = coerce("stores", stores, _COUNT, "generate")
    items = coerce("items", items, _COUNT, "generate")
    days = coerce("days", days, _COUNT, "generate")
    seed = coerce("seed", seed, [Interval(int, 0, None)], "generate")
    dates = pd.date_range(_parse_start(start), periods=days, freq="D")

    weather_seq, item_seq, campaign_seq, store_root = np.random.SeedSequence(seed).spawn(4)
    catalogue = _items(items, np.random.default_rng(item_seq))
    order = np.argsort(catalogue["name"], kind="stable")  # rows sorted by item id
    catalogue = {key: value[order] for key, value in catalogue.items()}
    campaigns = _campaigns(items, days, np.random.default_rng(campaign_seq))
    holiday, day_effect = _calendar(dates)
    temperature, anomaly = _weather(dates, np.random.default_rng(weather_seq))
    blocks = []  # one store at a time, dropping the latent arrays unless asked for: peak memory ≈ 1.5 × frame
    for seq in store_root.spawn(stores):
        block = _store(catalogue, campaigns, dates.dayofyear.values, day_effect, anomaly, np.random.default_rng(seq))
        blocks.append({key: value for key, value in block.items() if key not in _LATENT or return_demand})

    def stack(key: str) -> np.ndarray:
        return np.concatenate([block[key].ravel() for block in blocks])

    cities = np.array([city for city, *_ in CITIES], dtype=object)
    city_index = np.array([block["city"] for block in blocks])
    width = max(3, len(str(stores)))
    return pd.DataFrame(
        {
            "store_id": np.repeat(np.array([f"S{s + 1:0{width}d}" for s in range(stores)], dtype=object), items * days),
            "item_id": np.tile(np.repeat(catalogue["name"], days), stores),
            "date": np.tile(dates.values, stores * items),
            "units_sold": stack("sold"),
            "campaign": stack("campaign").astype(np.int64),
            "discount": stack("discount"),
            "holiday": np.tile(holiday, stores * items),
            "category": np.tile(np.repeat(catalogue["category"], days), stores),
            "city": np.repeat(cities[city_index], items * days),
            "stockout_hours": stack("stockout_hours"),
            "temperature": np.repeat(temperature[city_index], items, axis=0).ravel(),
            **{key: stack(key) for key in _LATENT if return_demand},
        },
        copy=False,
    )


def write_dataset(
    out_dir: str | os.PathLike[str],
    *,
    stores: int = 10,
    items: int = 20,
    days: int = 180,
    seed: int = 0,
    start: str = "2024-01-01",
    fmt: str = "csv",
) -> Path:
    """Write ``sales.csv`` (or ``sales.parquet``) and ``spec.json`` into ``out_dir``, each file atomically.

    A ``sales`` file of the other format left there by an earlier run is removed, so that reading the whole
    directory does not see the rows twice. ``spec.json`` is written last.

    Returns:
        ``out_dir`` as a Path.
    """
    fmt = coerce("fmt", fmt, [Options(("csv", "parquet"))], "write_dataset")
    frame = generate(stores=stores, items=items, days=days, seed=seed, start=start)
    out_dir = Path(out_dir)
    write_table(frame, out_dir / f"sales.{fmt}")
    for other in ("sales.csv", "sales.parquet"):
        if other != f"sales.{fmt}":
            (out_dir / other).unlink(missing_ok=True)
    write_json(SYNTH_SPEC, out_dir / SPEC_FILE)
    return out_dir


def _parse_start(start: Any) -> pd.Timestamp:
    try:
        timestamp = pd.Timestamp(start)
    except (TypeError, ValueError):
        timestamp = pd.NaT
    if pd.isna(timestamp) or isinstance(start, int | float):
        raise InvalidParameterError(
            f"The 'start' parameter of generate must be a date like '2024-01-01'. Got {start!r} instead."
        )
    return timestamp.normalize()


def _items(count: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Item attributes: the assortment cycled, with lognormal base levels and jittered seasons beyond it."""
    rows = [ASSORTMENT[i % len(ASSORTMENT)] for i in range(count)]
    cycle = np.arange(count) // len(ASSORTMENT)
    names = [name if c == 0 else f"{name}_{c + 1}" for (name, *_), c in zip(rows, cycle, strict=True)]
    column = list(zip(*rows, strict=True))
    return {
        "name": np.array(names, dtype=object),
        "category": np.array(column[1], dtype=object),
        "base": np.array(column[2]) * rng.lognormal(0.0, np.where(cycle == 0, 0.15, 0.5)),
        "elasticity": np.array(column[3]) * rng.uniform(0.85, 1.15, count),
        "amplitude": np.array(column[4]),
        "peak": np.array(column[5]) + np.where(cycle == 0, 0, rng.integers(-20, 21, count)),
        "heat": np.array(column[6]),
    }


def _campaigns(items: int, days: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Chain-wide campaign calendar per item: (items, days) arrays of campaign number and post-campaign day."""
    per_item = days // (CAMPAIGN_DAYS[0] + POST_DAYS + GAP_DAYS[0]) + 3
    length = rng.integers(CAMPAIGN_DAYS[0], CAMPAIGN_DAYS[1] + 1, (items, per_item))
    gap = rng.integers(GAP_DAYS[0], GAP_DAYS[1] + 1, (items, per_item))
    first = rng.integers(-25, 10, (items, 1))
    begin = first + np.cumsum(np.concatenate([np.zeros((items, 1), int), (length + POST_DAYS + gap)[:, :-1]], 1), 1)
    end = begin + length
    number = np.broadcast_to(np.arange(1, per_item + 1), begin.shape)
    return {
        "active": _mark(begin, end, number, days),
        "after": _mark(end, end + POST_DAYS, number, days),
        "end": end,
        "discount": rng.choice(DISCOUNTS, (items, per_item)),
    }


def _mark(begin: np.ndarray, end: np.ndarray, number: np.ndarray, days: int) -> np.ndarray:
    """(rows, days) array holding ``number`` on days in [begin, end) of each non-overlapping window, else 0."""
    rows = np.broadcast_to(np.arange(begin.shape[0])[:, None], begin.shape)
    diff = np.zeros((begin.shape[0], days + 1), np.int64)
    np.add.at(diff, (rows, np.clip(begin, 0, days)), number)
    np.add.at(diff, (rows, np.clip(end, 0, days)), -number)
    return np.cumsum(diff, axis=1)[:, :days]


def _calendar(dates: pd.DatetimeIndex) -> tuple[np.ndarray, np.ndarray]:
    """Public-holiday flag (Swedish public holidays, plain Sundays excluded) and weekday × holiday effect."""
    years = range(dates[0].year, dates[-1].year + 2)
    public = holidays.country_holidays("SE", years=years, categories=("public",), include_sundays=False)
    days = dates.append(pd.DatetimeIndex([dates[-1] + pd.Timedelta(days=1)]))
    flag = np.array([day.date() in public for day in days], dtype=np.int64)
    eve = (flag[1:] == 1) & (flag[:-1] == 0)
    effect = WEEKDAY[dates.dayofweek] * np.where(flag[:-1] == 1, HOLIDAY_EFFECT, np.where(eve, EVE_EFFECT, 1.0))
    return flag[:-1], effect


def _weather(dates: pd.DatetimeIndex, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Daily mean temperature per city (seasonal curve + AR(1) anomaly) and the anomaly, both (cities, days)."""
    mean, amplitude = (np.array([row[i] for row in CITIES])[:, None] for i in (2, 3))
    season = mean + amplitude * np.cos(2 * np.pi * (dates.dayofyear.values - 200) / 365.25)
    shocks = rng.normal(0.0, 2.0, (len(CITIES), len(dates)))
    anomaly = np.empty_like(shocks)
    anomaly[:, 0] = shocks[:, 0] / np.sqrt(1 - 0.8**2)
    for t in range(1, len(dates)):
        anomaly[:, t] = 0.8 * anomaly[:, t - 1] + shocks[:, t]
    return np.round(season + anomaly, 1), anomaly


def _store(
    catalogue: dict[str, np.ndarray],
    campaigns: dict[str, np.ndarray],
    doy: np.ndarray,
    day_effect: np.ndarray,
    anomaly: np.ndarray,
    rng: np.random.Generator,
) -> dict[str, Any]:
    """One store's (items, days) arrays: demand, stock, sales, campaign participation and stockouts."""
    items, days = campaigns["active"].shape
    city = int(rng.choice(len(CITIES), p=np.array([row[1] for row in CITIES]) / sum(row[1] for row in CITIES)))
    size = rng.lognormal(0.0, 0.35)
    affinity = rng.lognormal(0.0, 0.2, (items, 1))
    level = np.exp(np.cumsum(rng.normal(0.0, LEVEL_SIGMA, (items, days)), axis=1))
    phase = 2 * np.pi * (doy[None, :] - catalogue["peak"][:, None]) / 365.25
    season = np.exp(catalogue["amplitude"][:, None] * np.cos(phase))
    weather = np.exp(catalogue["heat"][:, None] * anomaly[city])
    baseline = catalogue["base"][:, None] * size * affinity * level * season * day_effect * weather
    joins = rng.random(campaigns["discount"].shape) < PARTICIPATION
    rows = np.arange(items)[:, None]
    active, after = campaigns["active"], campaigns["after"]
    on = (active > 0) & joins[rows, np.maximum(active - 1, 0)]
    discount = np.where(on, campaigns["discount"][rows, np.maximum(active - 1, 0)], 1.0)
    elasticity = catalogue["elasticity"][:, None]
    uplift = np.exp(elasticity * (1.0 - discount))
    dipped = (after > 0) & joins[rows, np.maximum(after - 1, 0)]
    previous = campaigns["discount"][rows, np.maximum(after - 1, 0)]
    since = np.arange(days)[None, :] - campaigns["end"][rows, np.maximum(after - 1, 0)]
    dip = np.where(dipped, np.exp(-DIP * elasticity * (1.0 - previous) * DIP_DECAY**since), 1.0)
    expected = baseline * uplift * dip
    demand = rng.poisson(expected * rng.gamma(DISPERSION, 1.0 / DISPERSION, expected.shape))
    safety = rng.lognormal(np.log(1.6), 0.1)
    stock = np.ceil(safety * baseline * uplift**PLAN_EXPONENT * dip)
    short = rng.random(stock.shape) < SHORT_DELIVERY
    stock = np.where(short, np.floor(stock * rng.uniform(0.0, 0.5, stock.shape)), stock)
    sold = np.minimum(demand, stock).astype(np.int64)
    out = demand > stock
    hours = np.where(out, np.maximum(np.round(24.0 * (1.0 - stock / np.maximum(demand, 1)), 1), 0.1), 0.0)
    return {
        "city": city,
        "sold": sold,
        "campaign": on,
        "discount": discount,
        "stockout_hours": hours,
        "demand": demand,
        "baseline": baseline,
    }
