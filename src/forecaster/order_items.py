"""The item master: pack size, shelf life, unit cost and price, minimum display per series, defaults filled in.

Read like the other ordering inputs (:mod:`forecaster.orders_inputs`: one file or a folder, errors naming file,
row and column), joined on the key columns it has (per item, or per store x item).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from forecaster.errors import DataValidationError, shown
from forecaster.order_defaults import OrderDefaults, entry_constraint
from forecaster.orders_inputs import (
    ITEM_NUMBERS,
    join_keys,
    label,
    numbers,
    read_input,
    series_pairs,
    warn_unmatched,
    whole_days,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ItemNumbers:
    """Per-series arrays of the item master, chain defaults filled in."""

    pack_size: np.ndarray
    shelf_life_days: np.ndarray
    unit_cost: np.ndarray
    unit_price: np.ndarray
    min_display_units: np.ndarray


def read_item_master(
    path: str | Path | None, series: pd.DataFrame, keys: list[str], defaults: OrderDefaults
) -> ItemNumbers:
    """Pack size, shelf life, unit cost and price, minimum display per series (item master, then the defaults).

    The item master is joined on the key columns it has (per item, or per store x item). Shelf life falls back to
    ``shelf_life_days_by_category`` (the category from the item master or the forecasts) and then to
    ``shelf_life_days``; the unit cost to price - margin, then to ``cost_ratio`` x price.
    """
    n = len(series)
    values = {name: np.full(n, np.nan) for name in ITEM_NUMBERS}
    category = series[defaults.category_column].astype(str) if defaults.category_column in series else None
    master_row, master = np.full(n, -1), None
    if path is not None:
        master = read_input(path, "item master", keys, (), defaults.csv)
        on = join_keys(master, keys, "item master", f"file(s) at {path}")
        duplicated = master.duplicated(on).to_numpy()
        if duplicated.any():
            row = int(np.flatnonzero(duplicated)[0])
            raise DataValidationError(
                f"{master['_file'].iat[row]} row {master['_row'].iat[row]}: the item master has more than one row "
                f"for {label(master.iloc[row], on)}; keep one."
            )
        pairs = series_pairs(master, series, on)
        master_row[pairs[:, 0]] = pairs[:, 1]
        warn_unmatched(pairs, n, "item master", path, on, master)
        for name in ITEM_NUMBERS:
            column = numbers(master, name, within=entry_constraint(name), optional=True)
            if name == "shelf_life_days":
                column = whole_days(master, name, column)
            values[name][pairs[:, 0]] = column[pairs[:, 1]]
        if defaults.category_column in master.columns:
            category = pd.Series(np.full(n, None, dtype=object))
            category.iloc[pairs[:, 0]] = master[defaults.category_column].astype(str).to_numpy()[pairs[:, 1]]
    shelf = values["shelf_life_days"]
    if defaults.category_column and category is None:
        raise DataValidationError(
            f"The order defaults name the category column {defaults.category_column!r}, but neither the item master "
            f"nor the forecasts have it. Add the column, or fix 'category_column' in the defaults file."
        )
    if category is not None and defaults.shelf_life_days_by_category:
        shelf = np.where(np.isnan(shelf), _shelf_life_by_category(category, defaults), shelf)
    price = np.where(np.isnan(values["unit_price"]), defaults.unit_price, values["unit_price"])
    cost = np.where(np.isnan(values["unit_cost"]), price - values["margin"], values["unit_cost"])
    cost = np.where(np.isnan(cost), defaults.cost_ratio * price, cost)
    loss = np.flatnonzero(cost >= price)
    if loss.size:
        i = int(loss[0])
        where = (
            f"{master['_file'].iat[master_row[i]]} row {master['_row'].iat[master_row[i]]}: the item master gives"
            if master is not None and master_row[i] >= 0
            else "The order defaults give"
        )
        raise DataValidationError(
            f"{where} {label(series.iloc[i], keys)} a unit cost {cost[i]:g} not below its unit price {price[i]:g}: "
            "there is no margin to order for. Fix unit_cost (or margin, or cost_ratio) or unit_price."
        )
    display = values["min_display_units"]
    return ItemNumbers(
        pack_size=np.where(np.isnan(values["pack_size"]), defaults.pack_size, values["pack_size"]),
        shelf_life_days=np.where(np.isnan(shelf), defaults.shelf_life_days, np.floor(shelf)).astype(np.int64),
        unit_cost=cost,
        unit_price=price,
        min_display_units=np.where(np.isnan(display), defaults.min_display_units, display),
    )


def _shelf_life_by_category(category: pd.Series, defaults: OrderDefaults) -> np.ndarray:
    """Each series' shelf life from ``shelf_life_days_by_category`` (matched without case), NaN where unmapped."""
    folded = {str(name).strip().casefold(): days for name, days in defaults.shelf_life_days_by_category.items()}
    keys = category.astype("string").str.strip().str.casefold()
    days = keys.map(folded).to_numpy(dtype=float, na_value=np.nan)
    unmapped = keys[np.isnan(days)].dropna()
    if len(unmapped):
        logger.warning(
            "%d of %d series have a category that shelf_life_days_by_category does not name (e.g. %s): they take "
            "the shelf life of the item master or shelf_life_days (%d). Categories named: %s.",
            len(unmapped), len(keys), shown(unmapped.iat[0]), defaults.shelf_life_days,
            sorted(defaults.shelf_life_days_by_category),
        )  # fmt: skip
    return days
