"""The check jobs as functions of paths: what the CLI, the processing image and the local runner call.

One function per check job (``run_evaluate``, ``run_check_data_quality``, ...). Each reads its inputs, computes,
and writes its output directory atomically (all files or none). Each returns the main document it wrote, so a
caller can log or branch on it.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from forecaster.checks import attribution, data_quality, decision, evaluation, model_quality, schemas
from forecaster.checks.contract import (
    ANALYSIS_FILE,
    CONSTRAINTS_FILE,
    DECISION_FILE,
    DEFAULT_DRIFT_THRESHOLD,
    DEFAULT_MODEL_QUALITY_TOLERANCE,
    DEFAULT_NDCG_THRESHOLD,
    EVALUATION_FILE,
    EVALUATION_ROWS_FILE,
    FEATURE_DRIFT_FILE,
    NDCG_FILE,
    STATISTICS_FILE,
    VIOLATIONS_FILE,
)
from forecaster.contract import POINT_COLUMN
from forecaster.errors import InvalidParameterError
from forecaster.io import atomic_directory, read_json, read_table, write_json, write_table

if TYPE_CHECKING:
    from forecaster.spec import DatasetSpec

log = logging.getLogger(__name__)
#: ``forecaster evaluate``'s row file (header ``mean,actual``: the point forecast and the actual): the columns a
#: managed model-quality job reads
EVALUATION_DATASET = (EVALUATION_ROWS_FILE, POINT_COLUMN, "actual")


def load_dataset_spec(spec: str | None = None, model_dir: str | Path | None = None) -> DatasetSpec:
    """Load the dataset spec: from ``<model_dir>/feature_schema.json`` when given, else the preset/file ``spec``."""
    from forecaster.artifact import FeatureSchema
    from forecaster.spec import resolve_spec

    if model_dir is not None:  # a folder holding model.tar.gz (a job's model input) works too
        return FeatureSchema.load(model_dir).spec
    return resolve_spec(spec or "default")


def _spec_roles(frame: pd.DataFrame, spec: Any, categorical: list[str] | None) -> tuple[pd.DataFrame, list[str]]:
    """Drop the spec's date column; declare its keys and static columns categorical.

    Raises:
        InvalidParameterError: for a ``--categorical`` name that is no column of ``frame``.
    """
    unknown = [name for name in categorical or () if name not in frame.columns]
    if unknown:
        raise InvalidParameterError(
            f"--categorical names {unknown[0]!r}, which is no column of the data set (columns: "
            f"{list(frame.columns)[:12]}). Check the spelling."
        )
    if spec is None:
        return frame, list(categorical or ())
    named = [c for c in (*spec.keys, *spec.static) if c in frame.columns]
    return frame.drop(columns=[spec.date], errors="ignore"), [*(categorical or ()), *named]


def _evaluate_files(predictions: Path, truth: Path, spec: Any, seed: int) -> tuple[dict[str, Any], pd.DataFrame]:
    columns = {
        "id_cols": list(spec.keys),
        "time_col": spec.date,
        "target_col": spec.target,
        "date_format": spec.date_format,
        "negative_target": spec.negative_target,
    }
    keys = tuple(spec.keys)
    predicted, actual = evaluation.read_forecasts(predictions, keys), read_table(truth, spec.csv, spec.text_columns)
    document = evaluation.evaluate(predicted, actual, **columns, campaign_col=spec.campaign, seed=seed)
    joined = evaluation.join_predictions(predicted, actual, **columns)
    point = evaluation.point_column(joined)
    _, column, actual = EVALUATION_DATASET
    return document, pd.DataFrame({column: joined[point], actual: joined["y"]})


def run_evaluate(predictions: Path, truth: Path, out: Path, *, spec: Any, seed: int = 0) -> dict[str, Any]:
    """Score predictions against the truth; writes ``<out>/evaluation.json``.

    Also writes ``evaluation.csv`` (header ``mean,actual``: the point forecast and the actual): the joined rows in
    the layout a managed Model Monitor model-quality baseline reads (``inference_attribute=mean``,
    ``ground_truth_attribute=actual``).
    """
    document, rows = _evaluate_files(predictions, truth, spec, seed)
    with atomic_directory(out) as stage:
        write_json(document, stage / EVALUATION_FILE)
        write_table(rows, stage / EVALUATION_ROWS_FILE)
    return document


def run_baseline_data_quality(
    dataset: Path,
    out: Path,
    *,
    model_dir: Path | None = None,
    categorical: list[str] | None = None,
    comparison_threshold: float = DEFAULT_DRIFT_THRESHOLD,
    categorical_comparison_threshold: float = DEFAULT_DRIFT_THRESHOLD,
    spec: Any = None,
) -> dict[str, Any]:
    """Profile ``dataset``; writes ``statistics.json`` and ``constraints.json``.

    With a dataset ``spec``, its date column is not profiled (every new day would be a new category) and its
    keys and static columns are categorical.
    """
    columns = data_quality.feature_schema_columns(model_dir) if model_dir else None
    frame, categorical = _spec_roles(data_quality.load_dataset(dataset, columns), spec, categorical)
    stats, constraints = data_quality.baseline(
        frame,
        data_quality.declared_types(columns, categorical),
        comparison_threshold=comparison_threshold,
        categorical_comparison_threshold=categorical_comparison_threshold,
    )
    with atomic_directory(out) as stage:
        write_json(stats, stage / STATISTICS_FILE)
        write_json(constraints, stage / CONSTRAINTS_FILE)
    return constraints


def run_check_data_quality(
    baseline: Path,
    dataset: Path,
    out: Path,
    *,
    model_dir: Path | None = None,
    categorical: list[str] | None = None,
    spec: Any = None,
) -> dict[str, Any]:
    """Check ``dataset`` against a baseline; writes violations, statistics and feature drift.

    ``spec``: as in :func:`run_baseline_data_quality`.
    """
    stats, constraints = data_quality.read_baseline(baseline)
    columns = data_quality.feature_schema_columns(model_dir) if model_dir else None
    frame, categorical = _spec_roles(data_quality.load_dataset(dataset, columns), spec, categorical)
    declared = {n: t for n, t in data_quality.declared_types(columns, categorical).items() if n in frame.columns}
    violations, current, drift = data_quality.check(frame, stats, constraints, declared)
    with atomic_directory(out) as stage:
        write_json(violations, stage / VIOLATIONS_FILE)
        write_json(current, stage / STATISTICS_FILE)
        write_json({"features": drift}, stage / FEATURE_DRIFT_FILE)
    log.info("data-quality check: %d violation(s)", len(violations["violations"]))
    return violations


def run_baseline_model_quality(
    evaluation_dir: Path, out: Path, *, tolerance: float = DEFAULT_MODEL_QUALITY_TOLERANCE
) -> dict[str, Any]:
    """Model-quality baseline from an evaluation; writes ``statistics.json`` and ``constraints.json``."""
    document, _ = model_quality.read_evaluation(evaluation_dir)
    constraints = model_quality.suggest_constraints(document, tolerance)
    with atomic_directory(out) as stage:
        write_json(model_quality.baseline_statistics(document), stage / STATISTICS_FILE)
        write_json(constraints, stage / CONSTRAINTS_FILE)
    return constraints


def run_check_model_quality(
    baseline: Path, predictions: Path, truth: Path, out: Path, *, spec: Any, seed: int = 0
) -> dict[str, Any]:
    """Evaluate new predictions against late ground truth and check them against the baseline's thresholds."""
    constraints_path = Path(baseline) / CONSTRAINTS_FILE if Path(baseline).is_dir() else Path(baseline)
    constraints = read_json(constraints_path)
    schemas.validate(constraints, "model_quality_constraints", constraints_path)
    document, _ = _evaluate_files(predictions, truth, spec, seed)
    violations = model_quality.check(document, constraints)
    with atomic_directory(out) as stage:
        write_json(model_quality.baseline_statistics(document), stage / STATISTICS_FILE)
        write_json(document, stage / EVALUATION_FILE)
        write_json(violations, stage / VIOLATIONS_FILE)
    log.info("model-quality check: %d violation(s)", len(violations["violations"]))
    return violations


def run_attribution_drift(
    baseline: Path, current: Path, out: Path, *, threshold: float = DEFAULT_NDCG_THRESHOLD
) -> dict[str, Any]:
    """NDCG of current vs baseline attributions; writes ``constraint_violations.json`` and ``ndcg.json``."""
    base, _ = attribution.read_analysis(baseline)
    now, _ = attribution.read_analysis(current)
    violations, rows = attribution.drift(base, now, threshold)
    with atomic_directory(out) as stage:
        write_json(violations, stage / VIOLATIONS_FILE)
        write_json({"labels": rows}, stage / NDCG_FILE)
    return violations


def run_decide(directories: list[Path], out: Path, **rules: Any) -> dict[str, Any]:
    """Apply the retrain rule; writes ``decision.json``."""
    document = decision.decide(directories, **rules)
    with atomic_directory(out) as stage:
        write_json(document, stage / DECISION_FILE)
    log.info("retrain: %s (%s)", document["retrain"], "; ".join(document["reasons"]) or "no reason")
    return document


def run_explain(model_dir: Path, dataset: Path, out: Path, **options: Any) -> dict[str, Any]:
    """SHAP explanations of the model on ``dataset``; writes ``analysis.json`` and local explanations."""
    from forecaster.checks import explain

    started = time.perf_counter()
    analysis, local = explain.explain_dataset(model_dir, dataset, **options)
    with atomic_directory(out) as stage:
        write_json(analysis, stage / ANALYSIS_FILE)
        if local is not None:
            (stage / "explanations_shap").mkdir()
            local.to_csv(stage / "explanations_shap" / "out.csv", index=False)
    log.info("explain: %.1f s", time.perf_counter() - started)
    return analysis
