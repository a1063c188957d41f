"""Data-quality baseline and check, in Model Monitor's file formats.

``baseline`` profiles a data set into ``statistics.json`` + ``constraints.json``; ``check`` compares new rows with
them and writes ``constraint_violations.json`` (check types ``data_type_check``, ``completeness_check``,
``baseline_drift_check``, ``missing_column_check``, ``extra_column_check``, ``categorical_values_check``), the
new rows' ``statistics.json`` and ``feature_drift.json`` (the distance of every feature with values).

Drift distances (``comparison_method`` "Robust" / ``categorical_drift_method`` "LInfinity"):

- numeric: max |F_base(e) - F_cur(e)| over the baseline's percentile edges e (a Kolmogorov-Smirnov statistic
  evaluated on the baseline's grid; exact at those points, ties handled). A baseline without our ``ecdf`` block
  (written by AWS) uses its ``kll.buckets`` upper bounds as the grid.
- categorical: max over categories |p_base(c) - p_cur(c)| (L-infinity between the category frequencies).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from forecaster.checks import profile
from forecaster.checks.contract import CONSTRAINTS_FILE, DEFAULT_DRIFT_THRESHOLD, STATISTICS_FILE
from forecaster.checks.profile import STRING, Column
from forecaster.errors import DataValidationError
from forecaster.io import read_json, read_table, table_files
from forecaster.serving.codecs import NA_STRINGS

_SCHEMA_TYPES = {"int": profile.INTEGRAL, "float": profile.FRACTIONAL, "category": profile.STRING}
_MAX_LISTED_VALUES = 5


# ---------------------------------------------------------------------------------------------------- loading
def feature_schema_columns(model_dir: str | Path) -> dict[str, str]:
    """Return ``{feature name: Model Monitor type}`` in CSV order from ``<model_dir>/feature_schema.json``.

    Raises:
        ModelArtifactError: when the file is missing or malformed.
    """
    from forecaster.artifact import FeatureSchema  # a folder holding model.tar.gz (a job's model input) works too

    schema = FeatureSchema.load(model_dir)
    return {name: _SCHEMA_TYPES.get(schema.kinds[name], profile.FRACTIONAL) for name in schema.feature_names}


def load_dataset(path: str | Path, columns: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Read a data set; with ``columns`` (from a feature schema) header-less CSV rows get those names.

    A CSV file whose first line names every schema column (in any order) is read by those names; one whose
    first line is all numbers (or empty fields) is header-less, its fields in schema order: rows with fewer
    fields lack the trailing columns, extra fields are called ``_c<i>`` (Model Monitor's names). A first line of
    other names is another table's header (the keys file preprocess writes beside the features) and is refused.

    Raises:
        DataValidationError: naming the file whose header is not the schema's.
    """
    if not columns:
        return read_table(path)
    names = list(columns)
    files = table_files(path)
    if files[0].suffix.lower() in (".parquet", ".pq"):
        return read_table(path)
    return pd.concat([_schema_csv(file, names) for file in files], ignore_index=True)


def _schema_csv(file: Path, names: list[str]) -> pd.DataFrame:
    first = read_table(file, header=None, nrows=1, dtype=str, keep_default_na=False)  # gzip, quotes, dialect
    head = [str(field).strip() for field in first.iloc[0]] if len(first) else []
    if set(names) <= set(head):
        frame = read_table(file, header=0)
        return frame[[*names, *(c for c in frame.columns if c not in names)]]
    if any(field not in NA_STRINGS and _number(field) is None for field in head):
        raise DataValidationError(
            f"{file} starts with the header {head[:6]}{' …' if len(head) > 6 else ''}, which does not name the "
            f"model's features (e.g. {names[:3]}): another table (a keys file beside the features?). Point the "
            "input at the feature files only, or give them the feature schema's header."
        )
    frame = read_table(file, header=None)
    width = frame.shape[1]
    frame.columns = names[:width] + [f"_c{i}" for i in range(len(names), width)]
    return frame


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def declared_types(columns: Mapping[str, str] | None, categorical: list[str] | None) -> dict[str, str]:
    """Merge schema types with columns the user declares categorical (``--categorical``)."""
    declared = dict(columns or {})
    for name in categorical or ():
        declared[name] = STRING
    return declared


# ---------------------------------------------------------------------------------------------------- baseline
def baseline(
    frame: pd.DataFrame,
    declared: Mapping[str, str] | None = None,
    *,
    comparison_threshold: float = DEFAULT_DRIFT_THRESHOLD,
    categorical_comparison_threshold: float = DEFAULT_DRIFT_THRESHOLD,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return ``(statistics, constraints)`` documents for ``frame``."""
    stats = profile.statistics(profile.prepare(frame, declared))
    constraints = profile.suggest_constraints(
        stats,
        comparison_threshold=comparison_threshold,
        categorical_comparison_threshold=categorical_comparison_threshold,
    )
    return stats, constraints


def read_baseline(directory: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read ``statistics.json`` and ``constraints.json`` from a baseline directory.

    Raises:
        DataValidationError: when either is missing or not in Model Monitor's layout.
    """
    from forecaster.checks import schemas

    directory = Path(directory)
    stats = read_json(directory / STATISTICS_FILE)
    constraints = read_json(directory / CONSTRAINTS_FILE)
    schemas.validate(stats, "data_quality_statistics", directory / STATISTICS_FILE)
    schemas.validate(constraints, "data_quality_constraints", directory / CONSTRAINTS_FILE)
    return stats, constraints


# ---------------------------------------------------------------------------------------------------- check
def check(
    frame: pd.DataFrame,
    stats: dict[str, Any],
    constraints: dict[str, Any],
    declared: Mapping[str, str] | None = None,
) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    """Compare ``frame`` with a baseline.

    Returns:
        ``(violations document, statistics of frame, feature drift rows)``.
    """
    config = constraints.get("monitoring_config") or profile.DEFAULT_MONITORING_CONFIG
    distribution = {
        **profile.DEFAULT_MONITORING_CONFIG["distribution_constraints"],
        **config.get("distribution_constraints", {}),
    }
    by_name = {f["name"]: f for f in constraints["features"]}
    base_stats = {f["name"]: f for f in stats["features"]}
    # the current data is read with the baseline's types, so a text value in a numeric column shows as a mismatch
    types = {name: f["inferred_type"] for name, f in by_name.items() if f["inferred_type"] in profile.TYPES}
    types.update(declared or {})
    names = [str(c) for c in frame.columns]
    violations: list[dict[str, Any]] = []
    violations += [
        _violation(n, "missing_column_check", f"Column {n} is missing from the data.")
        for n in by_name
        if n not in names
    ]
    violations += [
        _violation(n, "extra_column_check", f"Column {n} is not in the baseline constraints.")
        for n in names
        if n not in by_name
    ]
    current = [profile.prepare_column(frame[n], n, types.get(n)) for n in names if n in by_name]
    drift_rows = []
    for column in current:
        constraint = by_name[column.name]
        violations += _completeness(column, constraint)
        violations += _data_type(column, constraint, float(config.get("datatype_check_threshold", 1.0)))
        violations += _domain(column, constraint, float(config.get("domain_content_threshold", 1.0)))
        if distribution.get("perform_comparison", "Enabled") == "Enabled" and column.name in base_stats:
            row = _drift(column, base_stats[column.name], distribution)
            if row is not None:
                drift_rows.append(row)
                if row["drifted"]:
                    violations.append(
                        _violation(
                            column.name,
                            "baseline_drift_check",
                            f"Baseline drift distance: {row['distance']:.4g} exceeds threshold: {row['threshold']:g}",
                        )
                    )
    return {"violations": violations}, profile.statistics(current), drift_rows


def _violation(name: str, check_type: str, description: str) -> dict[str, str]:
    return {"feature_name": name, "constraint_check_type": check_type, "description": description}


def _completeness(column: Column, constraint: dict[str, Any]) -> list[dict[str, str]]:
    required = float(constraint.get("completeness", 0.0))
    present = column.present
    observed = float(present.mean()) if present.size else 0.0
    if observed + 1e-12 < required:
        return [
            _violation(
                column.name,
                "completeness_check",
                f"Data completeness {observed:.4g} is below the baseline's {required:.4g} "
                f"({int((~present).sum())} of {present.size} values missing).",
            )
        ]
    return []


def _data_type(column: Column, constraint: dict[str, Any], threshold: float) -> list[dict[str, str]]:
    expected = constraint.get("inferred_type")
    if expected not in (profile.INTEGRAL, profile.FRACTIONAL):
        return []
    raw_present = column.raw.notna().to_numpy()
    numbers = pd.to_numeric(column.raw, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    ok = np.isfinite(numbers)
    if expected == profile.INTEGRAL:
        ok &= np.mod(np.where(ok, numbers, 0), 1) == 0
    mismatched = raw_present & ~ok
    total = int(raw_present.sum())
    if total == 0 or 1 - mismatched.sum() / total >= threshold:
        return []
    first = column.raw.iat[int(np.flatnonzero(mismatched)[0])]
    return [
        _violation(
            column.name,
            "data_type_check",
            f"Value: {first} does not meet the constraint requirement! Type {expected} expected; "
            f"{int(mismatched.sum())} of {total} values differ (tolerated share {1 - threshold:g}).",
        )
    ]


def _domain(column: Column, constraint: dict[str, Any], threshold: float) -> list[dict[str, str]]:
    domains = (constraint.get("string_constraints") or {}).get("domains")
    if domains is None or column.strings is None:
        return []
    values = column.strings.dropna()
    if values.empty:
        return []
    unseen = ~values.isin(set(domains)).to_numpy()
    if 1 - unseen.mean() >= threshold:
        return []
    new = pd.unique(values[unseen])[:_MAX_LISTED_VALUES]
    return [
        _violation(
            column.name,
            "categorical_values_check",
            f"{int(unseen.sum())} of {len(values)} values ({unseen.mean():.2%}) are not in the baseline domain, "
            f"e.g. {', '.join(map(str, new))} (tolerated share {1 - threshold:g}).",
        )
    ]


def _drift(column: Column, base: dict[str, Any], config: dict[str, Any]) -> dict[str, Any] | None:
    if column.inferred_type == STRING and "string_statistics" in base:
        buckets = base["string_statistics"]["distribution"]["categorical"]["buckets"]
        distance = categorical_distance(buckets, column.strings)
        threshold, method = float(config["categorical_comparison_threshold"]), config["categorical_drift_method"]
    elif column.numbers is not None and "numerical_statistics" in base:
        distribution = base["numerical_statistics"].get("distribution")
        values = column.numbers[column.present]
        if not distribution or values.size == 0:
            return None
        distance = numeric_distance(distribution, values)
        threshold, method = float(config["comparison_threshold"]), config["comparison_method"]
    else:
        return None
    return {
        "feature_name": column.name,
        "inferred_type": column.inferred_type,
        "method": method,
        "distance": distance,
        "threshold": threshold,
        "drifted": bool(distance > threshold),
    }


def numeric_distance(distribution: dict[str, Any], values: np.ndarray) -> float:
    """KS-style distance between a baseline distribution block and the ``values`` (finite floats)."""
    ecdf = distribution.get("ecdf")
    current = np.sort(values)
    if ecdf:
        edges, base_cdf = np.asarray(ecdf["edges"], dtype=float), np.asarray(ecdf["cdf"], dtype=float)
        minimum = edges[0]
        current_cdf = np.searchsorted(current, edges, side="right") / current.size
    else:  # buckets hold [lower, upper), the last one [lower, upper]: count the current values the same way
        buckets = distribution["kll"]["buckets"]
        edges = np.array([b["upper_bound"] for b in buckets], dtype=float)
        counts = np.array([b["count"] for b in buckets], dtype=float)
        base_cdf = np.cumsum(counts) / counts.sum()
        minimum = float(buckets[0]["lower_bound"])
        current_cdf = np.searchsorted(current, edges, side="left") / current.size
        current_cdf[-1] = np.searchsorted(current, edges[-1], side="right") / current.size
    # just below the baseline's minimum the baseline CDF is 0
    below = float(np.searchsorted(current, minimum, side="left") / current.size)
    return float(max(np.max(np.abs(current_cdf - base_cdf)), below))


def categorical_distance(buckets: list[dict[str, Any]], values: pd.Series) -> float:
    """L-infinity distance between the baseline's category frequencies and those of ``values``."""
    base = pd.Series({str(b["value"]): float(b["count"]) for b in buckets}, dtype=float)
    current = values.dropna().value_counts().astype(float)
    if base.sum() == 0 or current.sum() == 0:
        return 0.0 if base.sum() == current.sum() else 1.0
    both = pd.concat([base / base.sum(), current / current.sum()], axis=1).fillna(0.0)
    return float((both.iloc[:, 0] - both.iloc[:, 1]).abs().max())
