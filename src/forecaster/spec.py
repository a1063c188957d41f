"""Dataset spec: which column plays which role, and validation of frames against it.

A spec is a small JSON document (see ``presets/*.json``)::

    {"keys": ["store_id", "item_id"], "date": "date", "target": "units_sold",
     "known_future": ["campaign", "discount", "holiday"], "static": ["category"],
     "past_only": ["stockout_hours"], "campaign": "campaign", "stockout": "stockout_hours"}

- ``keys``: columns that identify a series (store × item).
- ``known_future``: numeric covariates known for the forecast days too (campaign plan, discount, holidays).
- ``static``: per-series categoricals (category, city); constant over time.
- ``past_only``: numeric covariates known only afterwards (stockout hours, weather actuals).
- ``campaign``: which known-future column is the 0/1 campaign flag (campaign features and metrics).
- ``stockout``: which past-only column holds the hours (0–24) a series was out of stock that day.

Options (how to read the data, not column roles):

- ``date_format``: a ``strftime`` format such as ``"%d/%m/%Y"``; without it dates must be ISO (``2024-05-31``,
  also with a time of day).
- ``missing_days``: what an *absent* row means. ``"zero"`` (default): a day with no row between a series' first
  row and its last row (at inference: the last history day) sold nothing, as in sales exports that only list
  days with sales. ``"unobserved"``: the day is unknown (like a row with an empty target). Before a series'
  first row and after its last row it does not exist either way.
- ``negative_target``: ``"clip"`` (default) sets negative targets (returns) to 0 and logs a warning with their
  count; ``"error"`` refuses the data.
- ``csv``: pins the dialect of CSV files where detection is ambiguous, any of
  ``{"sep": ";", "decimal": ",", "encoding": "cp1252"}`` (see :mod:`forecaster.dialect`).
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from forecaster.days import parse_days
from forecaster.dialect import COMMA_NUMBER, COMMA_THOUSANDS, CsvDialect
from forecaster.errors import DataValidationError, InvalidParameterError, shown
from forecaster.tables import check_unique, file_without, files_of, source_of

logger = logging.getLogger(__name__)

PRESETS = ("default", "freshretailnet")
#: The dataset spec file that travels with the data (``forecaster synth``, a training channel, a staged drop).
SPEC_FILE = "spec.json"
_LIST_FIELDS = ("keys", "known_future", "static", "past_only")
_NAME_FIELDS = ("date", "target")
#: Excel's serial day numbers of 1927 to 2119 (days since 1899-12-30), what a date cell saved as a number holds
_EXCEL_DAY_NUMBERS = re.compile(r"[1-7]\d{4}(?:\.0+)?")
#: the largest magnitude of a number in the data: LightGBM holds the target as 32-bit floats (beyond: inf)
MAX_MAGNITUDE = float(np.finfo(np.float32).max)
_OPTIONAL_FIELDS = ("campaign", "stockout", "date_format")
#: spec options with a fixed set of values; the first value is the default
OPTION_VALUES: dict[str, tuple[str, ...]] = {
    "missing_days": ("zero", "unobserved"),
    "negative_target": ("clip", "error"),
}


@dataclass(frozen=True)
class DatasetSpec:
    """Column roles of a demand data set."""

    keys: tuple[str, ...]
    date: str
    target: str
    known_future: tuple[str, ...] = ()
    static: tuple[str, ...] = ()
    past_only: tuple[str, ...] = ()
    campaign: str | None = None
    stockout: str | None = None
    date_format: str | None = None
    missing_days: str = OPTION_VALUES["missing_days"][0]
    negative_target: str = OPTION_VALUES["negative_target"][0]
    csv: CsvDialect | None = None
    source: str = field(default="", compare=False, repr=False)
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not self.keys:
            raise InvalidParameterError("The 'keys' entry of the dataset spec must list at least one column. Got [].")
        columns = self.columns
        duplicated = sorted({c for c in columns if columns.count(c) > 1})
        if duplicated:
            raise InvalidParameterError(
                f"Column {duplicated[0]!r} has more than one role in the dataset spec; give each column one role."
            )
        if self.campaign is not None and self.campaign not in self.known_future:
            raise InvalidParameterError(
                f"The 'campaign' entry of the dataset spec must name a 'known_future' column. Got {self.campaign!r} "
                f"instead; known_future is {list(self.known_future)}."
            )
        if self.stockout is not None and self.stockout not in self.past_only:
            raise InvalidParameterError(
                f"The 'stockout' entry of the dataset spec must name a 'past_only' column. Got {self.stockout!r} "
                f"instead; past_only is {list(self.past_only)}."
            )

    # ----------------------------------------------------------------------------------------------- loading
    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "dataset spec") -> DatasetSpec:
        """Build a spec from its JSON form, with errors that name the offending entry."""
        if not isinstance(data, dict):
            raise InvalidParameterError(f"The {source} must be a JSON object. Got {type(data).__name__} instead.")
        missing = [name for name in ("keys", *_NAME_FIELDS) if name not in data]
        if missing:
            raise InvalidParameterError(
                f"The {source} must have the entry {missing[0]!r}. Add it (see docs/data.md#dataset-spec)."
            )
        known = set(_LIST_FIELDS) | set(_NAME_FIELDS) | set(_OPTIONAL_FIELDS) | set(OPTION_VALUES) | {"csv"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidParameterError(
                f"Unknown entry {unknown[0]!r} in the {source}. Valid entries: {', '.join(sorted(known))}."
            )
        values: dict[str, Any] = {}
        for name in _LIST_FIELDS:
            value = data.get(name, [])
            if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
                raise InvalidParameterError(
                    f"The {name!r} entry of the {source} must be a list of column names. Got {value!r} instead."
                )
            values[name] = tuple(value)
        for name in (*_NAME_FIELDS, *_OPTIONAL_FIELDS):
            value = data.get(name)
            if value is None and name in _OPTIONAL_FIELDS:
                values[name] = None
                continue
            if not isinstance(value, str) or not value:
                raise InvalidParameterError(
                    f"The {name!r} entry of the {source} must be a column name. Got {value!r} instead."
                )
            values[name] = value
        for name, allowed in OPTION_VALUES.items():
            value = data.get(name, allowed[0])
            if value not in allowed:
                raise InvalidParameterError(
                    f"The {name!r} entry of the {source} must be one of {list(allowed)}. Got {value!r} instead."
                )
            values[name] = value
        values["csv"] = CsvDialect.from_dict(data["csv"], source) if data.get("csv") is not None else None
        return cls(**values, source=source)

    @classmethod
    def from_json(cls, path: str | Path) -> DatasetSpec:
        """Load a spec from a JSON file."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError as error:
            raise InvalidParameterError(f"Dataset spec file {path} does not exist.") from error
        except json.JSONDecodeError as error:
            raise InvalidParameterError(f"Dataset spec file {path} is not valid JSON: {error}.") from error
        return cls.from_dict(data, source=f"dataset spec {path}")

    @classmethod
    def preset(cls, name: str) -> DatasetSpec:
        """Return a built-in spec: ``default`` or ``freshretailnet``."""
        if name not in PRESETS:
            raise InvalidParameterError(
                f"The 'spec' parameter must be a preset among {{{', '.join(map(repr, PRESETS))}}} or the path of a "
                f"JSON spec file. Got {name!r} instead."
            )
        text = resources.files("forecaster.presets").joinpath(f"{name}.json").read_text()
        return cls.from_dict(json.loads(text), source=f"preset {name!r}")

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form of the spec."""
        data = asdict(self)
        data.pop("extra")
        data.pop("source")
        data.pop("csv")
        if self.csv is not None:
            data["csv"] = self.csv.to_dict()
        return {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}

    # ----------------------------------------------------------------------------------------------- roles
    @property
    def columns(self) -> list[str]:
        """Every column the spec names, keys first."""
        return [*self.keys, self.date, self.target, *self.known_future, *self.static, *self.past_only]

    @property
    def text_columns(self) -> tuple[str, ...]:
        """Keys and static columns: read from CSV and Excel as text, as written (``007``, ``1.10``)."""
        return (*self.keys, *self.static)

    @property
    def numeric_covariates(self) -> tuple[str, ...]:
        """Known-future and past-only columns (both numeric)."""
        return (*self.known_future, *self.past_only)

    # ----------------------------------------------------------------------------------------------- frames
    def validate_frame(self, frame: pd.DataFrame, *, kind: str = "history") -> pd.DataFrame:
        """Check ``frame`` against the spec and return a clean copy with canonical dtypes.

        ``kind`` is ``history`` (every column, the target included) or ``future`` (keys, date and the
        known-future columns only). Keys and statics become categoricals of strings (one string per distinct value,
        not per row), the date a day-precision timestamp, numeric roles float64. Extra columns are dropped.

        Raises:
            DataValidationError: naming the column (and the first bad row: its file and row there too, for a frame
                read from several files) and how to fix it.
        """
        try:
            return self._validate_frame(frame, kind)
        except DataValidationError as error:
            found = re.search(r"\brow (\d+)\b", str(error))
            source = source_of(frame, int(found.group(1))) if found else None
            if source is None:
                raise
            path, row = source
            where = f"in {path}" if row == int(found.group(1)) else f"row {row} of {path}"
            raise DataValidationError(f"{error} ({where}.)") from error

    def _validate_frame(self, frame: pd.DataFrame, kind: str) -> pd.DataFrame:
        if kind not in ("history", "future"):
            raise InvalidParameterError(f"The 'kind' parameter must be 'history' or 'future'. Got {kind!r} instead.")
        required = self.columns if kind == "history" else [*self.keys, self.date, *self.known_future]
        for column in required:
            partly = file_without(frame, column)
            if partly:
                raise DataValidationError(
                    f"File {partly[0]} has no column {column!r}, which {partly[1]} and the other files of the {kind} "
                    "data have: its rows would count as missing. Give every file the spec's columns (a renamed "
                    "column? name it as in the other files)."
                )
        missing = [c for c in required if c not in frame.columns]
        if missing:
            hint = (
                "The future frame needs the keys, the date and every known-future column for each forecast day."
                if kind == "future"
                else f"The spec expects columns {required}."
            )
            if self.source:
                hint += f" (spec in effect: {self.source}; pass --spec to choose another)"
            raise DataValidationError(
                f"The {kind} data{files_of(frame)} has no column {missing[0]!r} (missing: {missing}). {hint} "
                f"Columns found: {list(frame.columns)}."
            )
        if frame.empty:
            raise DataValidationError(f"The {kind} data has no rows.")
        out = pd.DataFrame(index=pd.RangeIndex(len(frame)))
        for column in (*self.keys, *(self.static if kind == "history" else ())):
            values = frame[column].reset_index(drop=True)
            _require_present(values, column, kind, role="key" if column in self.keys else "static")
            out[column] = string_categories(values)
        out[self.date] = _parse_dates(frame[self.date].reset_index(drop=True), self.date, kind, self.date_format)
        numeric = (self.target, *self.numeric_covariates) if kind == "history" else self.known_future
        for column in numeric:
            role = "target" if column == self.target else "covariate"
            out[column] = _to_numeric(frame[column].reset_index(drop=True), column, kind, role)
        if kind == "future":
            for column in self.known_future:
                _require_present(out[column], column, kind, role="known-future")
        if kind == "history":
            negative = np.flatnonzero(out[self.target].to_numpy() < 0)
            if negative.size and self.negative_target == "error":
                raise DataValidationError(
                    f"The {self.target!r} column (target) must be non-negative. Got {out[self.target].iat[negative[0]]}"
                    f' in row {negative[0] + 1} instead; record returns separately, or set "negative_target": '
                    '"clip" in the spec to count them as 0.'
                )
            if negative.size:
                logger.warning(
                    "%d of %d %s rows have a negative %r (returns); counted as 0 (negative_target=clip)",
                    negative.size, len(out), kind, self.target,
                )  # fmt: skip
                out.loc[negative, self.target] = 0.0
        check_unique(out, [*self.keys, self.date], f"{kind} data", "aggregate to one row per series and day")
        return out


def string_categories(values: pd.Series) -> pd.Categorical:
    """``values`` as a categorical of their string forms, categories sorted (what ``astype(str)`` gives, lean)."""
    codes, uniques = pd.factorize(values)
    labels = pd.Index(uniques).astype(str)
    categories = labels.unique().sort_values()
    return pd.Categorical.from_codes(categories.get_indexer(labels)[codes], categories=categories)


def bundled_spec(data: str | Path) -> Path | None:
    """The ``spec.json`` that travels with ``data`` (inside it when a folder, else beside it), if there is one.

    The rule every entry point shares: a spec given explicitly wins, then the bundled one, then the default preset.
    """
    data = Path(data)
    path = (data if data.is_dir() else data.parent) / SPEC_FILE
    return path if path.is_file() else None


def resolve_spec(value: str | Path) -> DatasetSpec:
    """Return the preset called ``value`` or the spec in the JSON file at ``value``."""
    text = str(value)
    if text in PRESETS:
        return DatasetSpec.preset(text)
    if text.endswith(".json") or Path(text).is_file():
        return DatasetSpec.from_json(text)
    return DatasetSpec.preset(text)  # raises the error that lists the presets


def _require_present(values: pd.Series, column: str, kind: str, role: str) -> None:
    missing = values.isna().to_numpy()
    if missing.any():
        row = int(np.flatnonzero(missing)[0])
        raise DataValidationError(
            f"The {column!r} column ({role}) of the {kind} data must have no missing values. "
            f"Got a missing value in row {row + 1} instead."
        )


def _parse_dates(values: pd.Series, column: str, kind: str, date_format: str | None) -> pd.Series:
    parsed = parse_days(values, date_format)
    bad = parsed.isna().to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        expected = f"dates in the format {date_format!r}" if date_format else "ISO dates like 2024-05-31"
        fix = 'For another format set "date_format" in the spec (e.g. "%d/%m/%Y").'
        if _EXCEL_DAY_NUMBERS.fullmatch(str(values.iat[row]).strip()):
            fix = "It looks like an Excel day number: format the column as a date in Excel (yyyy-mm-dd) and save again."
        raise DataValidationError(
            f"The {column!r} column (date) of the {kind} data must hold {expected}. Got {shown(values.iat[row])} in "
            f"row {row + 1} instead. {fix}"
        )
    return parsed


def _to_numeric(values: pd.Series, column: str, kind: str, role: str) -> pd.Series:
    """``values`` as float64; a value that is not a finite number within ``MAX_MAGNITUDE`` raises naming the row."""
    numbers = _numbers(values, column, kind, role)
    out_of_range = np.flatnonzero(np.abs(numbers.to_numpy()) > MAX_MAGNITUDE)  # NaN (missing) compares False
    if out_of_range.size:
        raise DataValidationError(
            f"The {column!r} column ({role}) of the {kind} data must hold finite numbers within ±{MAX_MAGNITUDE:.3g} "
            f"(the 32-bit floats LightGBM learns from). Got {values.iat[out_of_range[0]]} in row "
            f"{out_of_range[0] + 1}; fix it, or leave it empty for a missing value."
        )
    return numbers


def _numbers(values: pd.Series, column: str, kind: str, role: str) -> pd.Series:
    if pd.api.types.is_bool_dtype(values):
        return values.astype(float)
    if pd.api.types.is_numeric_dtype(values):
        return values.astype(float)
    converted = pd.to_numeric(values, errors="coerce")
    bad = (converted.isna() & values.notna()).to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        text = str(values.iat[row]).strip()
        hint = ""
        if COMMA_THOUSANDS.fullmatch(text):
            hint = " It looks like a thousands separator: write the number without it (1234, not 1,234)."
        elif COMMA_NUMBER.fullmatch(text):
            hint = (
                ' It looks like a decimal comma: pin it in the spec, "csv": {"decimal": ","} (it also reads the '
                "numbers an Excel sheet holds as text)."
            )
        raise DataValidationError(
            f"The {column!r} column ({role}) of the {kind} data must be numeric. Got dtype {values.dtype} instead, "
            f"with {shown(values.iat[row])} in row {row + 1}; fix or remove that value.{hint}"
        )
    return converted.astype(float)
