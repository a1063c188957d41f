"""Model-quality baseline and check (Model Monitor's regression layout).

The baseline turns an ``evaluation.json`` (or a Model Monitor ``statistics.json``) into ``statistics.json`` and
``constraints.json``: error metrics (mae, mse, rmse and, as forecasting extras, wape) must not grow beyond
baseline × (1 + ``tolerance``), r2 must not fall below baseline − ``tolerance`` × |baseline|. Model Monitor's own
suggestion is the baseline value itself (``tolerance`` 0), which flags any small deterioration; the default 0.1
leaves 10 % room. Edit ``constraints.json`` to set thresholds by hand.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from forecaster.checks import schemas
from forecaster.checks.contract import DEFAULT_MODEL_QUALITY_TOLERANCE, EVALUATION_FILE, STATISTICS_FILE
from forecaster.errors import DataValidationError
from forecaster.io import read_json
from forecaster.params import Interval, coerce

GREATER, LESS = "GreaterThanThreshold", "LessThanThreshold"
#: metric -> (operator, where to read it in evaluation.json)
CONSTRAINED_METRICS: dict[str, tuple[str, tuple[str, ...]]] = {
    "mae": (GREATER, ("regression_metrics", "mae", "value")),
    "mse": (GREATER, ("regression_metrics", "mse", "value")),
    "rmse": (GREATER, ("regression_metrics", "rmse", "value")),
    "r2": (LESS, ("regression_metrics", "r2", "value")),
    "wape": (GREATER, ("forecast_metrics", "overall", "wape")),
}


def read_evaluation(directory: str | Path) -> tuple[dict[str, Any], Path]:
    """Read ``evaluation.json`` (else ``statistics.json``) from ``directory`` (or that file itself).

    Raises:
        DataValidationError: when neither exists or it has no ``regression_metrics``.
    """
    path = Path(directory)
    if path.is_dir():
        candidates = [path / EVALUATION_FILE, path / STATISTICS_FILE]
        found = next((p for p in candidates if p.is_file()), None)
        if found is None:
            raise DataValidationError(
                f"{path} holds neither evaluation.json nor statistics.json. Point --input evaluation= at the output "
                "of `forecaster evaluate`."
            )
        path = found
    document = read_json(path)
    schemas.validate(document, "model_quality_statistics" if "forecast_metrics" not in document else "evaluation", path)
    return document, path


def metric_value(document: dict[str, Any], metric: str) -> float | None:
    """The value of ``metric`` in an evaluation/statistics document, None when absent or NaN."""
    value: Any = document
    for part in CONSTRAINED_METRICS[metric][1]:
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return float(value) if isinstance(value, int | float) and value == value else None


def suggest_constraints(
    evaluation: dict[str, Any], tolerance: float = DEFAULT_MODEL_QUALITY_TOLERANCE
) -> dict[str, Any]:
    """Model-quality ``constraints.json`` from a baseline evaluation."""
    tolerance = coerce("tolerance", tolerance, [Interval(float, 0, None)], "baseline model-quality")
    constraints = {}
    for metric, (operator, _) in CONSTRAINED_METRICS.items():
        value = metric_value(evaluation, metric)
        if value is None:
            continue
        slack = tolerance * abs(value)
        threshold = value + slack if operator == GREATER else value - slack
        constraints[metric] = {"threshold": threshold, "comparison_operator": operator}
    return {"version": 0.0, "regression_constraints": constraints}


def baseline_statistics(evaluation: dict[str, Any]) -> dict[str, Any]:
    """Model Monitor's model-quality ``statistics.json`` (the evaluation's metrics, dataset wrapper kept)."""
    stats = {
        "version": 0.0,
        "dataset": evaluation.get("dataset", {}),
        "regression_metrics": evaluation["regression_metrics"],
    }
    if "forecast_metrics" in evaluation:
        stats["forecast_metrics"] = evaluation["forecast_metrics"]
    return stats


def check(evaluation: dict[str, Any], constraints: dict[str, Any]) -> dict[str, Any]:
    """Compare a new evaluation with ``constraints``; return the violations document."""
    violations = []
    for metric, rule in constraints.get("regression_constraints", {}).items():
        if metric not in CONSTRAINED_METRICS:
            continue
        value = metric_value(evaluation, metric)
        threshold, operator = float(rule["threshold"]), rule["comparison_operator"]
        if value is None:  # a gate that cannot be evaluated does not pass
            violations.append(
                {
                    "metric_name": metric,
                    "constraint_check_type": operator,
                    "description": f"Metric {metric} could not be computed (missing or NaN in the evaluation: WAPE "
                    "needs actuals that sum above 0, R2 actuals that vary), so it cannot be checked against "
                    f"'{threshold:.4g}'",
                }
            )
            continue
        broken = value > threshold if operator == GREATER else value < threshold
        if broken:
            std = (evaluation.get("regression_metrics", {}).get(metric) or {}).get("standard_deviation", "NaN")
            spread = f" +/- {std:.4g}" if isinstance(std, int | float) else ""
            violations.append(
                {
                    "metric_name": metric,
                    "constraint_check_type": operator,
                    "description": f"Metric {metric} with {value:.4g}{spread} was {operator} '{threshold:.4g}'",
                }
            )
    return {"violations": violations}
