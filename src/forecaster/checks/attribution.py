"""Feature-attribution drift: NDCG of the current global SHAP ranking against the baseline's (Clarify's rule).

With a(f) the baseline attribution of feature f, F the features sorted by baseline value and F' sorted by the
current value (both descending): DCG = Σ a(F'_i) / log2(i + 1), iDCG = Σ a(F_i) / log2(i + 1), NDCG = DCG / iDCG.
A feature missing from the current run counts as 0; features only in the current run are ignored (they have no
baseline weight). Ties in the current values are broken by averaging over the tied positions (as
``sklearn.metrics.ndcg_score``), so the score does not depend on the order features are listed in.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from forecaster.checks import schemas
from forecaster.checks.contract import ANALYSIS_FILE, DEFAULT_NDCG_THRESHOLD
from forecaster.errors import DataValidationError
from forecaster.io import read_json
from forecaster.params import Interval, coerce


def ndcg(baseline: Mapping[str, float], current: Mapping[str, float]) -> float:
    """NDCG of ``current``'s ranking weighted by ``baseline`` attributions (1.0 = same order).

    Raises:
        DataValidationError: when the baseline is empty, either side has a negative or non-finite value, or the
            two name no feature in common.
    """
    names = list(baseline)
    gains = np.array([float(baseline[n]) for n in names])
    if gains.size == 0 or not np.all(np.isfinite(gains)) or np.any(gains < 0):
        raise DataValidationError(
            "Baseline attributions must be a non-empty map of finite, non-negative values (mean |SHAP|). "
            f"Got {dict(baseline)!r} instead."
        )
    values = np.array([float(v) for v in current.values()]) if current else np.array([])
    if not np.all(np.isfinite(values)) or np.any(values < 0):
        raise DataValidationError(
            "Current attributions must be finite, non-negative values (mean |SHAP|). Got "
            f"{dict(list(current.items())[:6])!r}{' …' if len(current) > 6 else ''}: explain the data again."
        )
    if not set(names) & set(current):
        raise DataValidationError(
            f"The current attributions name none of the baseline's features (baseline: {names[:4]}, current: "
            f"{list(current)[:4]}): they explain another model or feature set. Explain with the model the baseline "
            "was made with."
        )
    scores = np.array([float(current.get(n, 0.0)) for n in names])
    discounts = 1.0 / np.log2(np.arange(2, gains.size + 2))
    ideal = float(np.sort(gains)[::-1] @ discounts)
    if ideal == 0:
        return 1.0
    # average the discount over tied current scores (sklearn's tie handling)
    order = np.argsort(-scores, kind="stable")
    sorted_scores, sorted_gains = scores[order], gains[order]
    _, starts, counts = np.unique(-sorted_scores, return_index=True, return_counts=True)
    dcg = 0.0
    for start, count in zip(starts, counts, strict=True):
        dcg += sorted_gains[start : start + count].sum() * discounts[start : start + count].mean()
    return float(dcg / ideal)


def read_analysis(directory: str | Path) -> tuple[dict[str, Any], Path]:
    """Read a Clarify ``analysis.json`` from ``directory`` (or that file).

    Raises:
        DataValidationError: when missing or not in Clarify's layout.
    """
    path = Path(directory)
    if path.is_dir():
        path = path / ANALYSIS_FILE
    document = read_json(path)
    schemas.validate(document, "analysis", path)
    return document, path


def drift(
    baseline: dict[str, Any], current: dict[str, Any], threshold: float = DEFAULT_NDCG_THRESHOLD
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Compare two ``analysis.json`` documents label by label.

    Returns:
        ``(violations document, one row per label with its NDCG)``.

    Raises:
        DataValidationError: when a baseline label is missing from the current analysis.
    """
    threshold = coerce("threshold", threshold, [Interval(float, 0, 1)], "check attribution-drift")
    base_labels = baseline["explanations"]["kernel_shap"]
    current_labels = current["explanations"]["kernel_shap"]
    violations, rows = [], []
    for label, base in base_labels.items():
        if label not in current_labels:
            raise DataValidationError(
                f"Label {label!r} of the baseline analysis is missing from the current analysis (labels: "
                f"{sorted(current_labels)}). Explain the same model outputs in both runs."
            )
        score = ndcg(base["global_shap_values"], current_labels[label]["global_shap_values"])
        rows.append({"label": label, "ndcg": score, "threshold": threshold, "drifted": score < threshold})
        if score < threshold:
            violations.append(
                {
                    "label": label,
                    "metric_name": "shap",
                    "constraint_check_type": "feature_attribution_drift_check",
                    "description": f"Feature attribution drift {score} exceeds threshold {threshold}",
                }
            )
    return {"version": "1.0", "violations": violations}, rows
