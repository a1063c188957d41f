"""Column profiles in Model Monitor's data-quality layout: ``statistics.json`` and suggested ``constraints.json``.

Types follow Model Monitor: ``Integral``, ``Fractional`` or ``String``. A column is ``String`` when it holds
text, or when declared categorical (integer-coded categoricals of the feature schema, ``--categorical``);
integer columns are ``Integral``; float columns ``Fractional`` (Model Monitor infers from the text, we from the
column type, so a float column that happens to hold whole numbers stays ``Fractional``).

Numeric distributions carry Model Monitor's 10 equal-width ``kll.buckets`` and, for an exact drift distance, the
baseline's empirical CDF at its percentiles (``distribution.ecdf``: ``edges`` and ``cdf``; our extension, ignored
by AWS tooling). Everything is vectorised: one sort per numeric column, one ``value_counts`` per string column.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from forecaster.checks.contract import DEFAULT_DRIFT_THRESHOLD
from forecaster.params import Interval, coerce

INTEGRAL, FRACTIONAL, STRING = "Integral", "Fractional", "String"
TYPES = (INTEGRAL, FRACTIONAL, STRING)
NUM_BUCKETS = 10
#: Percentile grid of the stored empirical CDF (0, 1, ..., 100 %); duplicates collapse.
ECDF_POINTS = 101
#: String columns with at most this many distinct values get a ``domains`` constraint.
MAX_DOMAIN_SIZE = 1000
DEFAULT_MONITORING_CONFIG: dict[str, Any] = {
    "evaluate_constraints": "Enabled",
    "emit_metrics": "Enabled",
    "datatype_check_threshold": 1.0,
    "domain_content_threshold": 1.0,
    "distribution_constraints": {
        "perform_comparison": "Enabled",
        "comparison_threshold": DEFAULT_DRIFT_THRESHOLD,
        "comparison_method": "Robust",
        "categorical_comparison_threshold": DEFAULT_DRIFT_THRESHOLD,
        "categorical_drift_method": "LInfinity",
    },
}


@dataclass(frozen=True)
class Column:
    """One column, prepared once: numeric values as float64 (NaN = missing) or strings (None = missing)."""

    name: str
    inferred_type: str
    numbers: np.ndarray | None  # float64, for Integral/Fractional
    strings: pd.Series | None  # str with NaN for missing, for String
    raw: pd.Series

    @property
    def present(self) -> np.ndarray:
        """Boolean mask of non-missing values."""
        if self.numbers is not None:
            return np.isfinite(self.numbers)
        return self.strings.notna().to_numpy()


def prepare(frame: pd.DataFrame, declared: Mapping[str, str] | None = None) -> list[Column]:
    """Classify every column of ``frame`` (``declared`` maps names to a type and wins over inference)."""
    declared = declared or {}
    return [prepare_column(frame[name], str(name), declared.get(str(name))) for name in frame.columns]


def prepare_column(series: pd.Series, name: str, declared: str | None = None) -> Column:
    """Prepare one column; ``declared`` is Integral, Fractional or String (None = infer)."""
    kind = declared or _infer(series)
    if kind == STRING:
        return Column(name, STRING, None, as_strings(series), series)
    numbers = pd.to_numeric(series, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    return Column(name, kind, np.where(np.isfinite(numbers), numbers, np.nan), None, series)


def _infer(series: pd.Series) -> str:
    if pd.api.types.is_bool_dtype(series) or pd.api.types.is_integer_dtype(series):
        return INTEGRAL
    if pd.api.types.is_float_dtype(series):
        return FRACTIONAL
    present = series.dropna()
    numbers = pd.to_numeric(present, errors="coerce")
    if len(present) and numbers.notna().all():
        return INTEGRAL if bool(np.all(np.mod(numbers.to_numpy(dtype=float), 1) == 0)) else FRACTIONAL
    return STRING


def as_strings(series: pd.Series) -> pd.Series:
    """Values as strings, missing as NaN; whole floats print as integers (3.0 -> "3", for integer codes)."""
    if pd.api.types.is_float_dtype(series):
        values = series.to_numpy(dtype=float, na_value=np.nan)
        whole = np.isfinite(values) & (np.mod(values, 1) == 0)
        integers = np.where(whole, values, 0).astype(np.int64).astype(str)
        text = np.where(whole, integers, series.astype(str).to_numpy())
        return pd.Series(text, index=series.index, dtype=object).where(series.notna(), np.nan)
    return series.astype(str).where(series.notna(), np.nan)


# ---------------------------------------------------------------------------------------------------- statistics
def column_statistics(column: Column) -> dict[str, Any]:
    """Model Monitor's per-feature statistics entry for ``column``."""
    present = column.present
    common = {"num_present": int(present.sum()), "num_missing": int((~present).sum())}
    if column.inferred_type == STRING:
        counts = column.strings.value_counts(dropna=True)
        return {
            "name": column.name,
            "inferred_type": STRING,
            "string_statistics": {
                "common": common,
                "distinct_count": float(len(counts)),
                "distribution": {
                    "categorical": {"buckets": [{"value": str(v), "count": int(c)} for v, c in counts.items()]}
                },
            },
        }
    values = np.sort(column.numbers[present])
    stats: dict[str, Any] = {"common": common}
    if values.size:
        scale = max(abs(float(values[0])), abs(float(values[-1]))) or 1.0  # no overflow in squares: 1e200 is finite
        with np.errstate(over="ignore"):  # a sum past 1.8e308 is inf, refused by write_json naming the column
            stats.update(
                mean=float((values / scale).mean() * scale),
                sum=float(values.sum()),
                std_dev=float((values / scale).std() * scale),
                min=float(values[0]),
                max=float(values[-1]),
            )
        edges = np.unique(np.quantile(values, np.linspace(0, 1, ECDF_POINTS), method="inverted_cdf"))
        cdf = np.searchsorted(values, edges, side="right") / values.size
        stats["distribution"] = {
            "kll": {"buckets": _buckets(values)},
            "ecdf": {"edges": edges.tolist(), "cdf": cdf.tolist()},
        }
    return {"name": column.name, "inferred_type": column.inferred_type, "numerical_statistics": stats}


def _buckets(sorted_values: np.ndarray) -> list[dict[str, float]]:
    low, high = float(sorted_values[0]), float(sorted_values[-1])
    bounds = np.linspace(low, high, NUM_BUCKETS + 1) if high > low else np.array([low, high])
    # counts per bucket, last bucket closed on the right (as a histogram)
    positions = np.searchsorted(sorted_values, bounds[1:-1], side="left")
    counts = np.diff(np.concatenate([[0], positions, [sorted_values.size]]))
    return [
        {"lower_bound": float(lo), "upper_bound": float(hi), "count": float(n)}
        for lo, hi, n in zip(bounds[:-1], bounds[1:], counts, strict=True)
    ]


def statistics(columns: list[Column]) -> dict[str, Any]:
    """The ``statistics.json`` document."""
    rows = len(columns[0].raw) if columns else 0
    return {
        "version": 0.0,
        "dataset": {"item_count": rows},
        "features": [column_statistics(c) for c in columns],
    }


# ---------------------------------------------------------------------------------------------------- constraints
def suggest_constraints(
    stats: dict[str, Any],
    *,
    comparison_threshold: float = DEFAULT_DRIFT_THRESHOLD,
    categorical_comparison_threshold: float = DEFAULT_DRIFT_THRESHOLD,
    max_domain_size: int = MAX_DOMAIN_SIZE,
) -> dict[str, Any]:
    """The suggested ``constraints.json`` for ``stats`` (what Model Monitor's baselining job writes).

    Raises:
        InvalidParameterError: for a threshold that is not a finite number ≥ 0 (the check would refuse the file).
    """
    for name, value in (
        ("comparison_threshold", comparison_threshold),
        ("categorical_comparison_threshold", categorical_comparison_threshold),
    ):
        coerce(name, value, [Interval(float, 0, None)], "baseline data-quality")
    features = []
    for feature in stats["features"]:
        block = feature.get("numerical_statistics") or feature.get("string_statistics")
        common = block["common"]
        total = common["num_present"] + common["num_missing"]
        entry: dict[str, Any] = {
            "name": feature["name"],
            "inferred_type": feature["inferred_type"],
            "completeness": common["num_present"] / total if total else 0.0,
        }
        if feature["inferred_type"] == STRING:
            buckets = block["distribution"]["categorical"]["buckets"]
            if len(buckets) <= max_domain_size:
                entry["string_constraints"] = {"domains": sorted(b["value"] for b in buckets)}
        elif "min" in block:
            entry["num_constraints"] = {"is_non_negative": block["min"] >= 0}
        features.append(entry)
    config = {**DEFAULT_MONITORING_CONFIG}
    config["distribution_constraints"] = {
        **DEFAULT_MONITORING_CONFIG["distribution_constraints"],
        "comparison_threshold": comparison_threshold,
        "categorical_comparison_threshold": categorical_comparison_threshold,
    }
    return {"version": 0.0, "features": features, "monitoring_config": config}
