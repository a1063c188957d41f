"""The chain-wide defaults of the ordering inputs (a JSON file, every entry optional) and weekday parsing.

Read by :mod:`forecaster.orders_inputs` (the tables) and :mod:`forecaster.orders` (the policy); every default is
declared here once and documented in ``docs/ordering.md``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from forecaster.dialect import CsvDialect
from forecaster.errors import DataValidationError, InvalidParameterError
from forecaster.io import read_json
from forecaster.params import NON_NEGATIVE, Interval, Options, Text, coerce

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
#: the correlation between the days of one period chosen on backtest folds 1-2 (bench/replenishment.py)
DEFAULT_CORRELATION = 0.1
#: the ``log`` day shape's shift, as a share of P50 + (P90 - P10) / 3 (bench/replenishment.py)
DEFAULT_LOG_SHIFT = 0.6
#: the cost balance's carrying cost, as a share of the waste cost, chosen by total cost on replay folds 1-2
DEFAULT_HOLDING_COST_SHARE = 0.25
#: the longest lead time and shelf life the defaults and the tables (calendar, item master) accept, in days
MAX_LEAD_TIME_DAYS, MAX_SHELF_LIFE_DAYS = 60, 366


@dataclass(frozen=True)
class OrderDefaults:
    """Chain-wide defaults of the ordering inputs (a JSON object with any of these entries).

    Attributes:
        pack_size: units per pack; orders are whole packs.
        pack_rounding: ``up`` (the order reaches the target, rounded up to whole packs) or ``cost`` (of the two
            nearest pack counts, the one with the lower expected cost under the cost balance; ordering to a
            ``--service-level`` always rounds up).
        shelf_life_days: days a delivered unit can be sold (arrival day included).
        shelf_life_days_by_category: shelf life per value of ``category_column`` (wins over ``shelf_life_days``).
        category_column: item-master or forecast column holding the category.
        unit_price: selling price of a unit.
        cost_ratio: unit cost = cost_ratio x unit price where the item master gives neither cost nor margin.
        disposal_cost: extra cost of a unit thrown away (on top of its unit cost).
        stockout_penalty: extra cost of a unit of demand not served (on top of the lost margin).
        holding_cost_share: cost of carrying a unit into the next period, as a share of the waste cost: mostly
            freshness (a unit carried over displaces a fresher one of the next order and ages the stock behind it).
        min_display_units: the target is never below this.
        order_weekdays: weekdays stores order on (0 = Monday), where the calendar names none for a store.
        lead_time_days: days from order to shelf, where the calendar names none.
        correlation: correlation between the demand of the days of one period (Gaussian copula), in [0, 1].
        draws: Monte Carlo draws of the period demand per series.
        day_shape: a day's demand between and beyond its quantiles: ``log`` (two-piece in log space) or ``normal``.
        log_shift: the ``log`` shape works on ``log(demand + shift)``, shift = log_shift x (P50 + (P90 - P10) / 3):
            smaller is more skewed (a longer upper tail beyond P90, a lower P80 between P50 and P90).
        csv: how the ordering inputs' CSV files are written, where detection cannot tell (``{"decimal": ","}``
            for ``1.200`` meaning 1200); the dataset spec's ``csv`` entry, for these files.
    """

    pack_size: float = 1.0
    pack_rounding: str = "up"
    shelf_life_days: int = 3
    shelf_life_days_by_category: dict[str, int] = field(default_factory=dict)
    category_column: str = ""
    unit_price: float = 1.0
    cost_ratio: float = 0.6
    disposal_cost: float = 0.0
    stockout_penalty: float = 0.0
    holding_cost_share: float = DEFAULT_HOLDING_COST_SHARE
    min_display_units: float = 0.0
    order_weekdays: tuple[int, ...] = (0, 1, 2, 3, 4, 5, 6)
    lead_time_days: int = 1
    correlation: float = DEFAULT_CORRELATION
    draws: int = 1000
    day_shape: str = "log"
    log_shift: float = DEFAULT_LOG_SHIFT
    csv: CsvDialect = field(default_factory=CsvDialect)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "order defaults") -> OrderDefaults:
        """Validate a JSON object of defaults; errors name the entry, what it must be and what it got."""
        if not isinstance(data, dict):
            raise InvalidParameterError(f"The {source} must be a JSON object. Got {type(data).__name__} instead.")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidParameterError(
                f"Unknown entry {unknown[0]!r} in the {source}. Valid: {', '.join(sorted(known))}."
            )
        values: dict[str, Any] = {}
        for name, value in data.items():
            if name in _SCALARS:
                values[name] = coerce(name, value, [_SCALARS[name]], source)
            elif name == "shelf_life_days_by_category":
                if not isinstance(value, dict):
                    raise InvalidParameterError(
                        f"The {name!r} parameter of {source} must be an object of category -> days. Got {value!r}."
                    )
                values[name] = {
                    str(k): coerce(f"{name}[{k}]", v, [_SCALARS["shelf_life_days"]], source) for k, v in value.items()
                }
            elif name == "csv":
                values[name] = CsvDialect.from_dict(value, source)
            else:  # order_weekdays
                if not isinstance(value, list) or not value:
                    raise InvalidParameterError(f"The {name!r} parameter of {source} must be a non-empty list.")
                values[name] = tuple(sorted({parse_weekday(v, f"the {name!r} entry of {source}") for v in value}))
        return cls(**values)

    @classmethod
    def load(cls, path: str | Path | None) -> OrderDefaults:
        """The defaults of the JSON file at ``path``, or of the one JSON file in folder ``path`` (None: built-in)."""
        if path is None:
            return cls()
        files = sorted(Path(path).glob("*.json")) if Path(path).is_dir() else [Path(path)]  # a dir: a job's input
        if len(files) != 1:
            raise InvalidParameterError(f"The order defaults folder {path} must hold one .json file, not {len(files)}.")
        return cls.from_dict(read_json(files[0]), source=f"order defaults {files[0]}")

    def with_correlation(self, correlation: float) -> OrderDefaults:
        """A copy with another day-to-day correlation."""
        return replace(self, correlation=coerce("correlation", correlation, [_SCALARS["correlation"]], "orders"))


_SCALARS = {
    "pack_size": Interval(float, 0, None, closed="neither"),
    "shelf_life_days": Interval(int, 1, MAX_SHELF_LIFE_DAYS),
    "unit_price": Interval(float, 0, None, closed="neither"),
    "cost_ratio": Interval(float, 0, 1, closed="neither"),
    "disposal_cost": Interval(float, 0, None),
    "stockout_penalty": Interval(float, 0, None),
    "holding_cost_share": Interval(float, 0, 1),
    "min_display_units": Interval(float, 0, None),
    "lead_time_days": Interval(int, 1, MAX_LEAD_TIME_DAYS),
    "correlation": Interval(float, 0, 1),
    "draws": Interval(int, 16, 100_000),
    "category_column": Text(),
    "day_shape": Options(("log", "normal")),
    "pack_rounding": Options(("up", "cost")),
    "log_shift": Interval(float, 0, None, closed="neither"),
}


#: a number of a table without an entry of its own in the defaults (stock, open orders, unit cost, margin)


def entry_constraint(name: str) -> Interval:
    """The range of the defaults' entry ``name``, which a table's column of the same name obeys too."""
    constraint = _SCALARS.get(name, NON_NEGATIVE)
    return constraint if isinstance(constraint, Interval) else NON_NEGATIVE


def parse_weekday(value: Any, where: str) -> int:
    """0 (Monday) … 6 (Sunday) from a number or a (short) English weekday name."""
    text = str(value).strip().lower()
    if text.isdigit() and int(text) < 7:
        return int(text)
    for number, name in enumerate(WEEKDAYS):
        if len(text) >= 3 and name.startswith(text):
            return number
    raise DataValidationError(
        f"{where} must be a weekday (Monday … Sunday, Mon … Sun or 0 … 6). Got {value!r} instead."
    )
