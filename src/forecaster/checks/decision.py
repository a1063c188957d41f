"""Retrain decision: the business rule that turns violation files into ``decision.json``.

Every ``*violations*.json`` under the given directories is read, and every file given by its path (a directory
without one means "no violation", as for Model Monitor; a path that does not exist is an error). Rules:

- a model-quality violation (ground truth showed the forecasts got worse) → retrain;
- a feature-attribution drift violation (NDCG below its threshold) → retrain;
- data drift (``baseline_drift_check``, ``categorical_values_check``) on at least ``min_drifted_features``
  features → retrain: demand patterns moved away from the training data;
- schema problems (``missing_column_check``, ``extra_column_check``, ``data_type_check``,
  ``completeness_check``) do **not** trigger retraining — a model retrained on a broken feed would learn the
  breakage — they are listed under ``data_issues`` for someone to fix the feed;
- optionally, ``max_wape``: retrain when a model-quality ``evaluation.json``/``statistics.json`` found next to
  the violations shows an overall WAPE above it.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from forecaster.checks.contract import EVALUATION_FILE, STATISTICS_FILE
from forecaster.errors import DataValidationError
from forecaster.io import read_json
from forecaster.params import Interval, coerce

DRIFT_CHECKS = ("baseline_drift_check", "categorical_values_check")
DATA_ISSUE_CHECKS = ("missing_column_check", "extra_column_check", "data_type_check", "completeness_check")


def _files(directories: Iterable[Path], pattern: str) -> list[Path]:
    found: list[Path] = []
    for directory in directories:
        directory = Path(directory)
        found += [directory] if directory.is_file() and directory.match(pattern) else sorted(directory.rglob(pattern))
    return sorted(dict.fromkeys(p for p in found if p.is_file()))


def _violation_files(inputs: Iterable[Path]) -> list[Path]:
    """The ``*violations*.json`` under ``inputs``, and every file given itself that is no evaluation or statistics.

    A file named on the command line is read whatever its name: skipping it would decide "no violation" unseen.

    Raises:
        DataValidationError: for an input path that does not exist.
    """
    inputs = [Path(path) for path in inputs]
    missing = next((path for path in inputs if not path.exists()), None)
    if missing is not None:
        raise DataValidationError(
            f"{missing} does not exist: pass the folder (or file) the check wrote its violations to."
        )
    given = [path for path in inputs if path.is_file() and path.name not in (EVALUATION_FILE, STATISTICS_FILE)]
    return sorted(dict.fromkeys([*_files(inputs, "*violations*.json"), *given]))


def collect(directories: Iterable[Path]) -> dict[str, list[dict[str, Any]]]:
    """Read every violation file under ``directories``, grouped as data_quality / model_quality / attribution.

    Raises:
        DataValidationError: for a violation file that is not ``{"violations": [...]}``.
    """
    groups: dict[str, list[dict[str, Any]]] = {"data_quality": [], "model_quality": [], "attribution": []}
    for path in _violation_files(directories):
        document = read_json(path)
        items = document.get("violations") if isinstance(document, dict) else None
        if not isinstance(items, list):
            raise DataValidationError(f"{path} is not a violations file: it needs a top-level 'violations' list.")
        for item in items:
            if not isinstance(item, dict):
                raise DataValidationError(f"{path}: every entry of 'violations' must be an object. Got {item!r}.")
            if "feature_name" in item:
                group = "data_quality"
            elif item.get("constraint_check_type") == "feature_attribution_drift_check":
                group = "attribution"
            else:
                group = "model_quality"
            groups[group].append({**item, "source": str(path)})
    return groups


def decide(
    directories: Iterable[Path], *, min_drifted_features: int = 1, max_wape: float | None = None
) -> dict[str, Any]:
    """Apply the retrain rule to the violation files (and evaluations) under ``directories``."""
    min_drifted_features = coerce(
        "min_drifted_features", min_drifted_features, [Interval(int, 1, None)], "decide-retrain"
    )
    if max_wape is not None:
        max_wape = coerce("max_wape", max_wape, [Interval(float, 0, None)], "decide-retrain")
    directories = [Path(d) for d in directories]
    groups = collect(directories)
    reasons: list[str] = []
    for item in groups["model_quality"]:
        reasons.append(f"model quality: {item.get('description', item.get('metric_name'))}")
    for item in groups["attribution"]:
        reasons.append(f"feature attribution drift ({item.get('label', 'label0')}): {item.get('description')}")
    drifted = sorted({v["feature_name"] for v in groups["data_quality"] if v["constraint_check_type"] in DRIFT_CHECKS})
    if len(drifted) >= min_drifted_features:
        reasons.append(f"data drift on {len(drifted)} feature(s): {', '.join(drifted)}")
    if max_wape is not None:
        evaluations = _files(directories, EVALUATION_FILE)
        scored = {path.parent for path in evaluations}  # a model-quality check writes both: one reason per folder
        statistics = [path for path in _files(directories, STATISTICS_FILE) if path.parent not in scored]
        for path in evaluations + statistics:
            overall = (read_json(path).get("forecast_metrics") or {}).get("overall") or {}
            if "wape" not in overall:  # a data-quality statistics.json: no forecast metrics
                continue
            wape = overall["wape"]
            if not isinstance(wape, int | float) or isinstance(wape, bool) or wape != wape:
                # null (no sales in the window) or "NaN": nothing shows the model is fine
                shown = "null (no sales in the window?)" if wape is None else repr(wape)
                reasons.append(f"WAPE in {path} is {shown}, not a number: the limit {max_wape:g} cannot be checked")
            elif wape > max_wape:
                reasons.append(f"WAPE {wape:.4g} in {path} is above the limit {max_wape:g}")
    issues = [
        f"{v['constraint_check_type']} on {v['feature_name']}: {v['description']}"
        for v in groups["data_quality"]
        if v["constraint_check_type"] in DATA_ISSUE_CHECKS
    ]
    return {
        "retrain": bool(reasons),
        "reasons": reasons,
        "data_issues": issues,
        "violation_counts": {name: len(items) for name, items in groups.items()},
        "inputs": [str(d) for d in directories],
        "decided_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
