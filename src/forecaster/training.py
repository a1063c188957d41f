"""The training lifecycle: validate data, build feature rows, fit, validate, write the artifact atomically.

Feature rows are built partition by partition (:mod:`forecaster.training_rows`).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from forecaster import distributed
from forecaster import metrics as m
from forecaster import training_rows as rows_
from forecaster.artifact import METADATA_FILE, FeatureSchema, library_versions
from forecaster.checkpoints import Checkpoints, open_checkpoints
from forecaster.config import TrainConfig
from forecaster.contract import MEDIAN, quantile_column
from forecaster.errors import DataValidationError
from forecaster.features import FeatureSet
from forecaster.io import atomic_directory, claim_output_directory, read_table, write_json
from forecaster.model import ForecastModel, TrainingSet, calibration_factors, fit_boosters
from forecaster.partitions import map_partitions, partitions
from forecaster.phases import Laps, Progress
from forecaster.spec import DatasetSpec
from forecaster.trainable import check_trainable, with_validation

logger = logging.getLogger(__name__)


def data_report(chain: rows_.ChainSummary) -> dict[str, Any]:
    """Series count and absent days inside the series' lives (logged at train time, stored in the metadata)."""
    report = {
        "series": len(chain.series),
        "days": len(chain.dates),
        "series_with_gaps": chain.series_with_gaps,
        "missing_days": chain.missing_days,
        "missing_days_as": chain.spec.missing_days,
    }
    if report["missing_days"]:
        logger.warning(
            "the history has no row for %d series-days in %d of %d series (between a series' first and last row); "
            "counted as %s (the spec's missing_days)",
            report["missing_days"], report["series_with_gaps"], report["series"],
            "0 sales" if chain.spec.missing_days == "zero" else "unobserved",
        )  # fmt: skip
    return report


def fit_artifact(
    train: pd.DataFrame | str | Path,
    spec: DatasetSpec,
    config: TrainConfig,
    model_dir: str | Path,
    validation: pd.DataFrame | None = None,
    workers: int | None = 1,
    cluster: distributed.Cluster | None = None,
    checkpoint_dir: str | Path | None = None,
) -> dict[str, float]:
    """Train on ``train`` (+ ``validation``), write the model artifact into ``model_dir``; return validation metrics.

    ``train`` is a frame, or the path of a table: one file or a folder of partitions (see
    :mod:`forecaster.partitions`), whose training rows are built partition by partition in ``workers`` processes
    (default: one per core). Without ``validation`` the last ``validation_days`` are held out (a time split, never
    random). The model is written atomically: on any error ``model_dir`` is left as it was.

    The phases, each timed into the metadata's ``phase_seconds``: validate the data, summarize the chain (first
    pass), build the feature rows (second pass), fit with early stopping, calibrate and score on the held-out
    window, refit on all days, write the artifact. With ``checkpoint_dir``, the boosters of the fit and refit
    phases are saved there as they train and a checkpoint of the same data and hyperparameters is resumed
    (:mod:`forecaster.checkpoints`; one host only).

    ``cluster``: one of several hosts training together (:mod:`forecaster.distributed`); only its first host writes.
    """
    started = time.monotonic()
    if cluster is None or cluster.is_leader:
        claim_output_directory(model_dir)  # before the work: a folder of other files is refused, not emptied
    if cluster is not None:  # this host's share of the partitions; the cut-off is known after the summary
        sources, cut_date = distributed.own_partitions(cluster, train, validation), None
    else:
        sources, cut_date = _validated_sources(train, validation, spec, config)
    lap = Laps(started, "validate")
    if cluster is not None:
        chain = distributed.chain_summary(cluster, sources, spec, config, workers)  # type: ignore[arg-type]
    else:
        sources, chain = _summarize(sources, train, spec, config, workers)
    if not chain.level > 0:  # LightGBM's Tweedie and Poisson objectives stop at "sum of labels is zero"
        raise DataValidationError(
            f"No {spec.target!r} value of the training data is above 0 (all are 0 or missing): there is no demand to "
            "learn. Check that the spec's 'target' names the sales column and that the history holds the selling days."
        )
    report = data_report(chain)
    if cut_date is None:  # a path: the last validation_days of the whole table are held out
        cut_date = chain.dates[-1] - pd.Timedelta(days=config.resolved_validation_days)
    lap("summary")
    plan = _row_plan(chain, cut_date, config)
    parts = map_partitions(rows_.partition_rows, [(s, chain, plan, config) for s in sources], workers)
    del sources  # the history: from here on only its feature rows are needed
    fit_rows, valid_rows, refit_parts = _gather_rows(parts, config, cluster)
    del parts
    row_counts = {"early_stopping_fit": len(fit_rows), "validation": len(valid_rows)}
    report["training_rows"] = len(fit_rows)
    lap("features")
    network = distributed.network(cluster)
    network.__enter__()  # left after the refit: every host joins once, before its Dataset is binned
    checkpoints = _checkpoints(checkpoint_dir, cluster, chain, config, cut_date, row_counts)
    model, rounds = _fit(fit_rows, valid_rows, _schema(chain, spec, config), config, cluster, checkpoints)
    del fit_rows
    lap("fit")
    model = _calibrate(model, valid_rows, config)
    scores = validation_metrics(model, valid_rows, spec, chain.features)
    if config.refit:
        all_rows = rows_.gather(refit_parts)  # type: ignore[arg-type]
        del refit_parts  # the partitions' copies of all_rows
        row_counts["final_fit"] = len(all_rows)
        model = _refit(all_rows, model.schema, config, rounds, cluster, checkpoints)
        lap("refit")
    network.__exit__(None, None, None)
    metadata = {
        **_provenance(chain, cut_date),
        "data_report": report,
        "hyperparameters": config.to_dict(),
        "boost_rounds": rounds,
        "training_rows": row_counts,
        "validation_metrics": scores,
        "training_seconds": round(time.monotonic() - started, 1),
        "phase_seconds": lap.seconds,
        "created_at": pd.Timestamp.now(tz="UTC").isoformat(),
    }
    if cluster is not None:
        distributed.record(cluster, metadata)
    if cluster is None or cluster.is_leader:
        with atomic_directory(model_dir) as stage:
            model.save(stage)
            write_json(metadata, stage / METADATA_FILE)
    if checkpoints is not None:
        checkpoints.close()
    return scores


def _validated_sources(
    train: pd.DataFrame | str | Path, validation: pd.DataFrame | None, spec: DatasetSpec, config: TrainConfig
) -> tuple[list[rows_.Source], pd.Timestamp | None]:
    """Validate phase: the sources of the training rows and the last training day (None: known after the summary).

    A frame is validated (with ``validation`` after it) and checked trainable; a path is split into its partitions,
    validated as each is read.
    """
    if not isinstance(train, pd.DataFrame):
        if validation is not None:
            raise DataValidationError("Validation data goes with a training frame; for a path, hold out days.")
        return list(partitions(train)), None
    frame = spec.validate_frame(train, kind="history")
    if validation is not None:
        cut_date = frame[spec.date].max()
        try:
            checked = spec.validate_frame(validation, kind="history")
        except DataValidationError as error:  # its messages speak of history: say which data it was
            raise DataValidationError(f"In the validation data (validation channel): {error}") from error
        frame = with_validation(frame, checked, spec)
    else:
        cut_date = frame[spec.date].max() - pd.Timedelta(days=config.resolved_validation_days)
    check_trainable(frame, spec, config, cut_date)
    return [frame], cut_date


def _summarize(
    sources: list[rows_.Source], train: Any, spec: DatasetSpec, config: TrainConfig, workers: int | None
) -> tuple[list[rows_.Source], rows_.ChainSummary]:
    """Summary phase (first pass): the chain's series, days, features and totals; the sources the rows come from.

    Partitions that share a series (files split by time, not by series) are read as one table instead.
    """
    summaries, totals = rows_.summarize_partitions(sources, spec, workers)
    shared = rows_.shared_series(summaries, spec) if len(sources) > 1 else None
    if shared:  # memory: the whole table
        logger.warning("%s has rows in two files of %s: reading them as one table", shared, train)
        sources = [spec.validate_frame(read_table(train, spec.csv, spec.text_columns), kind="history")]
        summaries, totals = rows_.summarize_partitions(sources, spec, 1)
    # the summaries and totals are freed on return: the workers of the second pass are forked, keep this process small
    return sources, rows_.ChainSummary.combine(summaries, spec, config, totals)


def _row_plan(chain: rows_.ChainSummary, cut_date: pd.Timestamp, config: TrainConfig) -> rows_.RowPlan:
    """Which rows the second pass builds: with a refit, the early-stopping fit samples a share of them."""
    cut = int((cut_date - chain.dates[0]).days)
    n_series = len(chain.series)
    return rows_.RowPlan(
        cut=cut,
        fit_rate=rows_.sampling_rate(n_series, cut, config, share=config.validation_sample if config.refit else 1.0),
        refit_rate=rows_.sampling_rate(n_series, len(chain.dates) - 1, config) if config.refit else 0.0,
        refit=config.refit,
    )


def _gather_rows(
    parts: list[rows_.PartitionRows], config: TrainConfig, cluster: distributed.Cluster | None = None
) -> tuple[TrainingSet, TrainingSet, list[tuple[TrainingSet | None, np.ndarray | None]]]:
    """Features phase (second pass, gathered): the fit and validation rows; the refit rows still per partition.

    With a ``cluster`` the validation rows are every host's (each host evaluates the same rows).
    """
    fit_rows = rows_.gather([(p.fit, p.fit_rank) for p in parts])
    valid = [(p.valid, p.valid_rank) for p in parts]
    valid_rows = rows_.gather(cluster.gather(valid) if cluster is not None else valid)
    refit_parts = [(p.refit, p.refit_rank) for p in parts] if config.refit else []
    if len(valid_rows) == 0:
        raise DataValidationError("The validation window has no observed target values; check the data's dates.")
    logger.info("training rows: %d, validation rows: %d", len(fit_rows), len(valid_rows))
    return fit_rows, valid_rows, refit_parts


def _schema(chain: rows_.ChainSummary, spec: DatasetSpec, config: TrainConfig) -> FeatureSchema:
    """The feature schema the boosters are trained on (not yet calibrated)."""
    return FeatureSchema(
        feature_names=chain.features.names,
        kinds=chain.features.kinds,
        categories=chain.vocabularies,
        horizon=config.horizon,
        spec=spec,
        scale_floor=max(0.05 * chain.level, 1e-3),  # quantile boosters divide by at least 5 % of the mean demand
        keys_as_features=config.keys_as_features,
        point_relative=config.point_relative,
        point_bags=config.point_bags,
    )


def _checkpoints(
    checkpoint_dir: str | Path | None,
    cluster: distributed.Cluster | None,
    chain: rows_.ChainSummary,
    config: TrainConfig,
    cut_date: pd.Timestamp,
    row_counts: dict[str, int],
) -> Checkpoints | None:
    """The checkpoints of a one-host job; none when several hosts train together (each would resume alone)."""
    if checkpoint_dir is not None and cluster is not None:
        logger.warning(
            "host %s keeps no checkpoints in %s: %d hosts train together, and only one-host jobs resume from "
            "checkpoints", cluster.host, checkpoint_dir, len(cluster.hosts),
        )  # fmt: skip
        return None
    return open_checkpoints(checkpoint_dir, data=chain.digest, config=config.to_dict(), cut=cut_date, rows=row_counts)


def _fit(
    fit_rows: TrainingSet,
    valid_rows: TrainingSet,
    schema: FeatureSchema,
    config: TrainConfig,
    cluster: distributed.Cluster | None = None,
    checkpoints: Checkpoints | None = None,
) -> tuple[ForecastModel, dict[str, int]]:
    """Fit phase: the boosters, each stopping early on the held-out window; the rounds each one used."""
    if len(fit_rows.y) < 2 * config.min_data_in_leaf:  # no tree can split: every forecast of a booster is one value
        logger.warning(
            "The early-stopping fit has %d training rows; a split needs 2 x min_data_in_leaf = %d, so the trees "
            "cannot split and the forecasts will barely depend on the features. Lower min_data_in_leaf (e.g. to "
            "%d) or give more history.", len(fit_rows.y), 2 * config.min_data_in_leaf, max(1, len(fit_rows.y) // 20),
        )  # fmt: skip
    network = cluster.lightgbm_params() if cluster is not None else None
    checkpoint = checkpoints.stage("fit") if checkpoints else None
    with Progress(config, "fit") as progress:
        return fit_boosters(
            fit_rows, schema, config, valid=valid_rows, progress=progress, network=network, checkpoint=checkpoint
        )


def _calibrate(model: ForecastModel, valid_rows: TrainingSet, config: TrainConfig) -> ForecastModel:
    """Calibrate phase: quantile factors, the point blend and (optionally) the bias factor from the held-out window."""
    schema = model.schema
    calibration = calibration_factors(model.predict_uncalibrated(valid_rows.X), valid_rows.y, schema.quantiles)
    calibration = shrunk(calibration, config.quantile_calibration_weight)
    schema = dataclasses.replace(schema, quantile_calibration=calibration, point_blend=config.point_blend)
    if config.point_bias_correction and config.point_bias_weight > 0:  # weight 0 stores factor ** 0 = 1: skip it
        factor = bias_factor(ForecastModel(model.boosters, schema), valid_rows)
        schema = dataclasses.replace(schema, point_scale=shrunk((factor,), config.point_bias_weight)[0])
    return ForecastModel(model.boosters, schema)


def _refit(
    all_rows: TrainingSet,
    schema: FeatureSchema,
    config: TrainConfig,
    rounds: dict[str, int],
    cluster: distributed.Cluster | None = None,
    checkpoints: Checkpoints | None = None,
) -> ForecastModel:
    """Refit phase: one fit on every day, each booster for the rounds early stopping chose; the schema is kept."""
    network = cluster.lightgbm_params() if cluster is not None else None
    checkpoint = checkpoints.stage("refit") if checkpoints else None
    with Progress(config, "refit", rounds) as progress:
        model, _ = fit_boosters(
            all_rows, schema, config, rounds=rounds, progress=progress, network=network, checkpoint=checkpoint
        )
    return model


def _provenance(chain: rows_.ChainSummary, cut_date: pd.Timestamp) -> dict[str, Any]:
    """The metadata that says what the model was trained with: library versions, data digest, window, series."""
    return {
        "forecaster_version": library_versions()["forecaster"],
        "libraries": library_versions(),
        "training_data_hash": chain.digest,
        "training_window": {
            "start": str(chain.dates[0].date()),
            "end": str(chain.dates[-1].date()),
            "validation_start": str((cut_date + pd.Timedelta(days=1)).date()),
        },
        "series": len(chain.series),
    }


def validation_metrics(
    model: ForecastModel, rows: TrainingSet, spec: DatasetSpec, features: FeatureSet
) -> dict[str, float]:
    """Scores of the held-out window.

    The point forecast's WAPE (all / campaign days), bias, MAE and RMSE; the quantiles' pinball loss and coverage;
    ``wape_p50`` (the P50 as a point forecast) for comparison.
    """
    quantiles = model.predict(rows.X)
    levels = model.schema.quantiles
    point = model.predict_mean(rows.X, quantiles)
    scores = {
        "wape": m.wape(rows.y, point),
        "bias": m.bias(rows.y, point),
        "mae": m.mae(rows.y, point),
        "rmse": m.rmse(rows.y, point),
        "wape_p50": m.wape(rows.y, quantiles[:, levels.index(MEDIAN)]),
        # the outer quantiles: the share of actuals below P10 and below P90
        f"coverage_{quantile_column(levels[0])}": m.coverage(rows.y, quantiles[:, 0]),
        f"coverage_{quantile_column(levels[-1])}": m.coverage(rows.y, quantiles[:, -1]),
        # days with sales only: a zero sale is below every quantile
        f"coverage_{quantile_column(levels[0])}_sold": m.coverage(rows.y[rows.y > 0], quantiles[rows.y > 0, 0]),
        f"coverage_{quantile_column(levels[-1])}_sold": m.coverage(rows.y[rows.y > 0], quantiles[rows.y > 0, -1]),
    }
    for i, q in enumerate(levels):
        scores[f"pinball_{quantile_column(q)}"] = m.pinball(rows.y, quantiles[:, i], q)
    if spec.campaign:
        campaign = rows.X[:, features.names.index(spec.campaign)] > 0
        scores["wape_campaign"] = m.wape(rows.y[campaign], point[campaign])
        scores["wape_non_campaign"] = m.wape(rows.y[~campaign], point[~campaign])
    return {name: round(float(value), 6) for name, value in scores.items()}


def bias_factor(model: ForecastModel, rows: TrainingSet, bounds: tuple[float, float] = (0.8, 1.25)) -> float:
    """Factor that removes the point forecast's bias on held-out ``rows`` (sum of actuals / sum of forecasts)."""
    predicted = float(model.predict_mean(rows.X).sum())
    return round(float(np.clip(rows.y.sum() / predicted, *bounds)), 6) if predicted > 0 else 1.0


def shrunk(factors: tuple[float, ...], weight: float) -> tuple[float, ...]:
    """Factors shrunk toward 1: ``factor ** weight`` (1 = as fitted, 0 = none).

    A factor fitted on the held-out window's last days need not hold on the days after it (the chain's level
    moves): the weight is chosen by the backtest (``bench/accuracy.py``) on folds other than the confirmation fold.
    """
    return tuple(round(float(f) ** weight, 6) for f in factors)
