"""The training lifecycle: validate data, build feature rows, fit, validate, write the artifact atomically.

Feature rows are built partition by partition (:mod:`forecaster.training_rows`).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from forecaster import metrics as m
from forecaster import training_rows as rows_
from forecaster.artifact import METADATA_FILE, FeatureSchema, library_versions
from forecaster.config import TrainConfig
from forecaster.contract import MEDIAN, quantile_column
from forecaster.errors import DataValidationError
from forecaster.features import FeatureSet
from forecaster.io import atomic_directory, read_table, write_json
from forecaster.model import ForecastModel, TrainingSet, calibration_factors, fit_boosters
from forecaster.partitions import map_partitions, partitions
from forecaster.spec import DatasetSpec

logger = logging.getLogger(__name__)


def fit_artifact(
    train: pd.DataFrame | str | Path,
    spec: DatasetSpec,
    config: TrainConfig,
    model_dir: str | Path,
    validation: pd.DataFrame | None = None,
    workers: int | None = 1,
) -> dict[str, float]:
    """Train on ``train`` (+ ``validation``), write the model artifact into ``model_dir``; return validation metrics.

    ``train`` is a frame, or the path of a table: one file or a folder of partitions (see
    :mod:`forecaster.partitions`), whose training rows are built partition by partition in ``workers`` processes
    (default: one per core). Without ``validation`` the last ``validation_days`` are held out (a time split, never
    random). The model is written atomically: on any error ``model_dir`` is left as it was.
    """
    started = time.monotonic()
    if isinstance(train, pd.DataFrame):
        frame = spec.validate_frame(train, kind="history")
        cut_date = frame[spec.date].max() - pd.Timedelta(days=config.resolved_validation_days)
        if validation is not None:
            cut_date = frame[spec.date].max()
            valid_frame = spec.validate_frame(validation, kind="history")
            if valid_frame[spec.date].min() <= cut_date:
                raise DataValidationError(
                    f"The validation data must start after the training data ends ({cut_date.date()}); "
                    f"it starts on {valid_frame[spec.date].min().date()}. Split by date, never at random."
                )
            frame = pd.concat([frame, valid_frame], ignore_index=True)
        sources: list[rows_.Source] = [frame]
    else:
        if validation is not None:
            raise DataValidationError("Validation data goes with a training frame; for a path, hold out days.")
        sources = list(partitions(train))
        cut_date = None
    summaries = map_partitions(rows_.summarize, [(s, spec) for s in sources], workers)
    shared = rows_.shared_series(summaries, spec) if len(sources) > 1 else None
    if shared:  # files split by time, not by series: read them as one table (memory: the whole table)
        logger.warning("%s has rows in two files of %s: reading them as one table", shared, train)
        sources = [spec.validate_frame(read_table(train), kind="history")]
        summaries = [rows_.summarize((sources[0], spec))]
    chain = rows_.ChainSummary.combine(summaries, spec, config)
    if cut_date is None:
        cut_date = chain.dates[-1] - pd.Timedelta(days=config.resolved_validation_days)
    cut = int((cut_date - chain.dates[0]).days)
    n_series = len(chain.series)
    plan = rows_.RowPlan(
        cut=cut,
        fit_rate=rows_.sampling_rate(n_series, cut, config),
        refit_rate=rows_.sampling_rate(n_series, len(chain.dates) - 1, config) if config.refit else 0.0,
        refit=config.refit,
    )
    parts = map_partitions(rows_.partition_rows, [(s, chain, plan, config) for s in sources], workers)
    del sources
    schema = FeatureSchema(
        feature_names=chain.features.names,
        kinds=chain.features.kinds,
        categories=chain.vocabularies,
        horizon=config.horizon,
        spec=spec,
        scale_floor=max(0.05 * chain.level, 1e-3),  # quantile boosters divide by at least 5 % of the mean demand
        keys_as_features=config.keys_as_features,
    )
    fit_rows = rows_.gather([(p.fit, p.fit_rank) for p in parts])
    valid_rows = rows_.gather([(p.valid, p.valid_rank) for p in parts])
    refit_parts = [(p.refit, p.refit_rank) for p in parts] if config.refit else []
    del parts
    if len(valid_rows) == 0:
        raise DataValidationError("The validation window has no observed target values; check the data's dates.")
    row_build_seconds = round(time.monotonic() - started, 1)
    logger.info("training rows: %d, validation rows: %d (%.1f s)", len(fit_rows), len(valid_rows), row_build_seconds)
    with _Progress(config, "fit") as progress:
        model, rounds = fit_boosters(fit_rows, schema, config, valid=valid_rows, progress=progress)
    calibration = calibration_factors(model.predict_uncalibrated(valid_rows.X), valid_rows.y, schema.quantiles)
    schema = dataclasses.replace(schema, quantile_calibration=calibration)
    model = ForecastModel(model.boosters, schema)
    scores = validation_metrics(model, valid_rows, spec, chain.features)
    if config.refit:
        del fit_rows
        all_rows = rows_.gather(refit_parts)  # type: ignore[arg-type]
        del refit_parts
        with _Progress(config, "refit", rounds) as progress:
            model, _ = fit_boosters(all_rows, schema, config, rounds=rounds, progress=progress)
    metadata = {
        "forecaster_version": library_versions()["forecaster"],
        "libraries": library_versions(),
        "training_data_hash": chain.digest,
        "training_window": {
            "start": str(chain.dates[0].date()),
            "end": str(chain.dates[-1].date()),
            "validation_start": str((cut_date + pd.Timedelta(days=1)).date()),
        },
        "series": n_series,
        "hyperparameters": config.to_dict(),
        "boost_rounds": rounds,
        "validation_metrics": scores,
        "row_build_seconds": row_build_seconds,
        "training_seconds": round(time.monotonic() - started, 1),
        "created_at": pd.Timestamp.now(tz="UTC").isoformat(),
    }
    with atomic_directory(model_dir) as stage:
        model.save(stage)
        write_json(metadata, stage / METADATA_FILE)
    return scores


def validation_metrics(
    model: ForecastModel, rows: TrainingSet, spec: DatasetSpec, features: FeatureSet
) -> dict[str, float]:
    """Scores of the held-out window: WAPE (all / campaign days), bias, MAE, RMSE, pinball, coverage."""
    quantiles = model.predict(rows.X)
    levels = model.schema.quantiles
    p50 = quantiles[:, levels.index(MEDIAN)]
    scores = {
        "wape": m.wape(rows.y, p50),
        "bias": m.bias(rows.y, p50),
        "mae": m.mae(rows.y, p50),
        "rmse": m.rmse(rows.y, p50),
        "wape_mean": m.wape(rows.y, model.predict_mean(rows.X)),
        # the outer quantiles: the share of actuals below P10 and below P90
        f"coverage_{quantile_column(levels[0])}": m.coverage(rows.y, quantiles[:, 0]),
        f"coverage_{quantile_column(levels[-1])}": m.coverage(rows.y, quantiles[:, -1]),
    }
    for i, q in enumerate(levels):
        scores[f"pinball_{quantile_column(q)}"] = m.pinball(rows.y, quantiles[:, i], q)
    if spec.campaign:
        campaign = rows.X[:, features.names.index(spec.campaign)] > 0
        scores["wape_campaign"] = m.wape(rows.y[campaign], p50[campaign])
        scores["wape_non_campaign"] = m.wape(rows.y[~campaign], p50[~campaign])
    return {name: round(float(value), 6) for name, value in scores.items()}


class _Progress:
    """A progress bar over boosting rounds of all boosters (silent when stderr is not a terminal)."""

    def __init__(self, config: TrainConfig, label: str, rounds: dict[str, int] | None = None) -> None:
        total = sum(rounds.values()) if rounds else config.num_boost_round + 3 * config.quantile_num_boost_round
        self.bar = tqdm(total=total, desc=label, unit="round", disable=None, leave=False)
        self.done: dict[str, int] = {}

    def __call__(self, booster: str, iteration: int) -> None:
        self.bar.update(iteration - self.done.get(booster, 0))
        self.done[booster] = iteration

    def __enter__(self) -> _Progress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.bar.close()
