"""Clarify-style SHAP explanations of the point forecast: ``analysis.json`` + per-row ``explanations_shap/out.csv``.

What is explained: the raw score of the point booster (``model_mean.txt``) — log of expected demand for the
Tweedie/Poisson objectives — because SHAP values are additive there: ``expected_value + sum(row) = raw score``.

Two methods:

- ``interventional`` (default, Clarify's semantics): exact interventional TreeSHAP (:mod:`treeshap`) against a
  background of k-means cluster centres (``num_clusters``, from at most ``background_sample`` rows, ``seed``),
  built like Clarify's K-prototypes baseline: numeric features = member mean, categorical codes = member mode.
  ``expected_value`` = mean raw score of the background.
- ``tree_path_dependent``: LightGBM ``pred_contrib`` (equal to shap's ``tree_path_dependent`` TreeExplainer,
  tested to 1e-6); no background, ``expected_value`` = the training data's mean raw score. Fast; what the
  server-side explanations use.

The global attributions are mean |SHAP| per feature (Clarify's ``mean_abs``), written under
``explanations.kernel_shap.label0`` — Clarify's key, kept so its tooling and the NDCG check read the file.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from forecaster.checks.data_quality import feature_schema_columns, load_dataset
from forecaster.errors import DataValidationError
from forecaster.params import Interval, Options, validate_params
from forecaster.serving.codecs import FeatureLayout

log = logging.getLogger(__name__)

PARAMS = {
    "num_clusters": [Interval(int, 1, 1000)],
    "background_sample": [Interval(int, 1, None)],
    "max_rows": [Interval(int, 1, None)],
    "seed": [Interval(int, 0, None)],
    "method": [Options(("interventional", "tree_path_dependent"))],
}


def kmeans_background(
    X: np.ndarray, categorical: list[int], *, num_clusters: int = 10, sample: int = 10_000, seed: int = 42
) -> np.ndarray:
    """Cluster centres of (a seeded sample of) ``X``: member means, modes for ``categorical`` columns.

    NaN (missing) values are imputed with the column mean only for the distance computation; a centre is NaN
    where all its members are missing.
    """
    from sklearn.cluster import KMeans

    rng = np.random.default_rng(seed)
    if len(X) > sample:
        X = X[np.sort(rng.choice(len(X), sample, replace=False))]
    counts = (~np.isnan(X)).sum(axis=0)
    means = np.where(np.isnan(X), 0.0, X).sum(axis=0) / np.maximum(counts, 1)
    filled = np.where(np.isnan(X), means, X)
    scale = filled.std(axis=0)
    scaled = (filled - filled.mean(axis=0)) / np.where(scale > 0, scale, 1.0)
    k = min(num_clusters, len(np.unique(scaled, axis=0)))
    labels = KMeans(n_clusters=k, n_init=4, random_state=seed).fit_predict(scaled)
    centres = np.full((k, X.shape[1]), np.nan)
    for cluster in range(k):
        members = X[labels == cluster]
        present = ~np.isnan(members)
        counts = present.sum(axis=0)
        sums = np.where(present, members, 0.0).sum(axis=0)
        centres[cluster] = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
        for column in categorical:
            values = members[present[:, column], column]
            if values.size:
                codes, freq = np.unique(values, return_counts=True)
                centres[cluster, column] = codes[np.argmax(freq)]
    return centres


def explain_matrix(model: Any, X: np.ndarray, background: np.ndarray | None, method: str) -> np.ndarray:
    """SHAP values (n, features + 1) of the point boosters' mean raw score; the last column is the expected value."""
    if method == "tree_path_dependent":
        return model.contributions(X)
    from forecaster.checks import treeshap

    if background is None or len(background) == 0:
        raise DataValidationError("Interventional SHAP needs a non-empty background.")
    boosters = model.point_boosters
    return np.mean([treeshap.interventional_shap(treeshap.flatten(b), X, background) for b in boosters], axis=0)


def analysis_document(names: list[str], values: np.ndarray, meta: dict[str, Any]) -> dict[str, Any]:
    """Clarify's ``analysis.json`` for SHAP values (n, features + 1)."""
    global_values = np.abs(values[:, :-1]).mean(axis=0)
    return {
        "version": "1.0",
        "explanations": {
            "kernel_shap": {
                "label0": {
                    "global_shap_values": {n: float(v) for n, v in zip(names, global_values, strict=True)},
                    "expected_value": float(values[:, -1].mean()),
                }
            }
        },
        "forecaster": meta,
    }


def explain_dataset(
    model_dir: str | Path,
    dataset: str | Path,
    *,
    background: str | Path | None = None,
    save_local: bool = True,
    **options: Any,
) -> tuple[dict[str, Any], pd.DataFrame | None]:
    """Explain (a seeded sample of) the feature rows in ``dataset``.

    Args:
        model_dir: model directory (``feature_schema.json`` + boosters).
        dataset: feature rows, header-less in schema order or with a header.
        background: feature rows the k-means background is built from (default: ``dataset``).
        save_local: also return the per-row SHAP values.
        **options: num_clusters (10), background_sample (10000), max_rows (10000), seed (42), method.

    Returns:
        ``(analysis document, local explanations or None)``.
    """
    from forecaster.model import ForecastModel

    params = {"num_clusters": 10, "background_sample": 10_000, "max_rows": 10_000, "seed": 42}
    params |= {"method": "interventional", **{k: v for k, v in options.items() if v is not None}}
    params = validate_params(params, PARAMS, "explain")
    started = time.perf_counter()
    model = ForecastModel.load(model_dir)
    names, layout = list(model.schema.feature_names), FeatureLayout.from_schema(model.schema)
    X_all = _matrix(dataset, model_dir, layout)
    rng = np.random.default_rng(params["seed"])
    rows = np.arange(len(X_all))
    if len(rows) > params["max_rows"]:
        rows = np.sort(rng.choice(len(rows), params["max_rows"], replace=False))
    X = X_all[rows]
    centres = None
    if params["method"] == "interventional":
        source = X_all if background is None else _matrix(background, model_dir, layout)
        if background is None and len(np.unique(source[: params["background_sample"]], axis=0)) < 2:
            raise DataValidationError(  # the row would be its own background
                "explain builds its background from the data set, which holds one distinct row: compared with "
                "itself, every attribution is 0 (which the attribution-drift check reads as drift). Give the "
                "background input (e.g. the training features), or explain more rows."
            )
        categorical = [names.index(c) for c in model.schema.categorical_features]
        centres = kmeans_background(
            source, categorical, num_clusters=params["num_clusters"], sample=params["background_sample"],
            seed=params["seed"],
        )  # fmt: skip
    log.info("explain: %d rows x %d background rows (%s)", len(X), 0 if centres is None else len(centres), params)
    values = explain_matrix(model, X, centres, params["method"])
    meta = {
        "method": params["method"],
        "explained_output": "raw score of the point booster (model_mean.txt)",
        "rows_total": len(X_all),
        "rows_explained": len(X),
        "background_rows": 0 if centres is None else len(centres),
        "agg_method": "mean_abs",
        **{k: params[k] for k in ("num_clusters", "background_sample", "seed")},
        "seconds": round(time.perf_counter() - started, 3),
    }
    local = None
    if save_local:
        local = pd.DataFrame(values[:, :-1], columns=names)
        local.insert(0, "row_index", rows)
    return analysis_document(names, values, meta), local


def _matrix(path: str | Path, model_dir: str | Path, layout: FeatureLayout) -> np.ndarray:
    names = list(layout.names)
    frame = load_dataset(path, feature_schema_columns(model_dir))
    missing = [n for n in names if n not in frame.columns]
    if missing:
        raise DataValidationError(
            f"{path} lacks the feature column(s) {missing[:5]}; it needs the {len(names)} columns of "
            "feature_schema.json in order (as written by `forecaster preprocess`)."
        )
    try:
        matrix = frame[names].to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError) as error:
        raise DataValidationError(f"{path} has non-numeric feature values: {error}") from error
    try:  # what the server refuses, explain refuses too: infinite values, codes outside a vocabulary
        layout.check(matrix)
    except DataValidationError as error:
        raise DataValidationError(f"{path}: {error.reason}") from None
    return matrix
