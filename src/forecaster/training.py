"""The training lifecycle: validate data, build feature rows, fit, validate, write the artifact atomically."""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from forecaster import metrics as m
from forecaster.artifact import METADATA_FILE, FeatureSchema, frame_hash, library_versions
from forecaster.config import TrainConfig
from forecaster.contract import MEDIAN, quantile_column
from forecaster.errors import DataValidationError
from forecaster.features import FeatureSet, build_features, feature_set
from forecaster.io import atomic_directory, write_json
from forecaster.model import ForecastModel, TrainingSet, calibration_factors, fit_boosters
from forecaster.panel import Panel, build_panel
from forecaster.spec import DatasetSpec

logger = logging.getLogger(__name__)

#: the early-stopping fit of a refit run draws at least this many rows (or all there are)
MIN_SAMPLE_ROWS = 100_000


@dataclass(frozen=True)
class TrainingData:
    """A validated history as a panel, with what every feature row of it needs."""

    panel: Panel
    spec: DatasetSpec
    features: FeatureSet
    vocabularies: dict[str, list[str]]
    observed_counts: np.ndarray  # (series, days + 1) cumulative count of observed target days

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, spec: DatasetSpec, config: TrainConfig) -> TrainingData:
        panel = build_panel(spec, frame)
        features = feature_set(spec, config.keys_as_features)
        vocabularies = {c: sorted(panel.series[c].dropna().astype(str).unique()) for c in features.categorical}
        counts = np.zeros((panel.n_series, len(panel.dates) + 1))
        np.cumsum(~np.isnan(panel.target), axis=1, out=counts[:, 1:])
        return cls(panel, spec, features, vocabularies, counts)

    def rows(self, series: np.ndarray, origins: np.ndarray, horizons: np.ndarray, config: TrainConfig) -> TrainingSet:
        """Feature rows with targets and stockout weights; rows with an unknown target are dropped."""
        days = origins + horizons
        target = self.panel.target[series, days]
        weight = np.ones_like(target)
        if self.spec.stockout and config.stockout_handling != "none":
            hours = np.nan_to_num(self.panel.covariates[self.spec.stockout][series, days])
            if config.stockout_handling == "exclude":
                weight = np.where(hours > config.stockout_max_hours, 0.0, 1.0)
            else:  # weight (and recover): a day counts in proportion to its hours in stock
                weight = 1.0 - np.clip(hours, 0, 24) / 24.0
            if config.stockout_handling == "recover":  # sales / in-stock share, at most 2x: demand, not sales
                target = target / np.clip(weight, 0.5, 1.0)
        keep = ~np.isnan(target) & (weight > 0)
        series, origins, horizons = series[keep], origins[keep], horizons[keep]
        X = build_features(  # float32: half the memory; LightGBM bins float32 directly
            self.panel, self.spec, self.features, self.vocabularies, series, origins, horizons, config.horizon,
            dtype=np.float32,
        )  # fmt: skip
        return TrainingSet(X=X, y=target[keep], weight=weight[keep])

    def sample(
        self, last_day: int, config: TrainConfig, rng: np.random.Generator, share: float = 1.0
    ) -> tuple[np.ndarray, ...]:
        """Draw (series, origin, horizon) rows whose target day is <= ``last_day``.

        About ``share x min(candidates, config.train_rows(n_series))`` rows, but never fewer than
        ``MIN_SAMPLE_ROWS`` (or all candidates when there are fewer).
        """
        n_series = self.panel.n_series
        origins = np.arange(config.min_history_days - 1, last_day, config.origin_stride)[::-1]  # newest first
        if origins.size == 0:
            raise DataValidationError(
                f"The training data covers {last_day + 1} days before the validation window; at least "
                f"{config.min_history_days + 1} are needed (min_history_days={config.min_history_days}). "
                "Provide a longer history or lower min_history_days / validation_days."
            )
        total = n_series * origins.size * config.horizon
        wanted = min(total, config.train_rows(n_series))
        wanted = max(share * wanted, min(wanted, MIN_SAMPLE_ROWS))
        chosen = np.flatnonzero(rng.random(total, dtype=np.float32) < wanted / total)
        series, origin_pos, horizon_pos = np.unravel_index(chosen, (n_series, origins.size, config.horizon))
        origin, horizon = origins[origin_pos], horizon_pos + 1
        enough = self.observed_counts[series, origin + 1] >= config.min_history_days
        keep = (origin + horizon <= last_day) & enough
        return series[keep], origin[keep], horizon[keep]

    def window(self, origin: int, config: TrainConfig) -> tuple[np.ndarray, ...]:
        """Every series at ``origin`` for horizons 1..H that fall inside the data."""
        horizons = np.arange(1, min(config.horizon, len(self.panel.dates) - 1 - origin) + 1)
        series = np.repeat(np.arange(self.panel.n_series), horizons.size)
        return series, np.full(series.size, origin), np.tile(horizons, self.panel.n_series)


def check_trainable(frame: pd.DataFrame, spec: DatasetSpec, config: TrainConfig, cut_date: pd.Timestamp) -> None:
    """Fail fast, before any feature is built, when a validated history cannot train a model.

    Training needs ``min_history_days`` observed days of at least one series before ``cut_date`` (the start of
    the validation window) and an observed target after it.

    Raises:
        DataValidationError: saying what is too short and how to fix it.
    """
    before = frame[frame[spec.date] <= cut_date]
    span = int((cut_date - frame[spec.date].min()).days) + 1 if not before.empty else 0
    observed = before[before[spec.target].notna()].groupby(list(spec.keys), sort=False).size()
    if span <= config.min_history_days or observed.empty or observed.max() < config.min_history_days:
        raise DataValidationError(
            f"The training data covers {span} days before the {config.resolved_validation_days}-day validation "
            f"window (longest series: {int(observed.max()) if not observed.empty else 0} observed days); at least "
            f"{config.min_history_days + 1} are needed, {config.min_history_days} of them observed in one series "
            f"(min_history_days={config.min_history_days}). Provide a longer history or lower min_history_days / "
            "validation_days."
        )
    after = frame[(frame[spec.date] > cut_date) & frame[spec.target].notna()]
    if after.empty:
        raise DataValidationError(
            f"The validation window after {cut_date.date()} has no observed target values; check the data's dates."
        )


def data_report(panel: Panel, spec: DatasetSpec) -> dict[str, Any]:
    """Series count and absent days inside the series' lives (logged at train time, stored in the metadata)."""
    gaps = panel.gaps if panel.gaps is not None else np.zeros(panel.n_series, dtype=int)
    report = {
        "series": panel.n_series,
        "days": len(panel.dates),
        "series_with_gaps": int((gaps > 0).sum()),
        "missing_days": int(gaps.sum()),
        "missing_days_as": spec.missing_days,
    }
    if report["missing_days"]:
        logger.warning(
            "the history has no row for %d series-days in %d of %d series (between a series' first and last row); "
            "counted as %s (the spec's missing_days)",
            report["missing_days"], report["series_with_gaps"], panel.n_series,
            "0 sales" if spec.missing_days == "zero" else "unobserved",
        )  # fmt: skip
    return report


def fit_artifact(
    train: pd.DataFrame,
    spec: DatasetSpec,
    config: TrainConfig,
    model_dir: str | Path,
    validation: pd.DataFrame | None = None,
) -> dict[str, float]:
    """Train on ``train`` (+ ``validation``), write the model artifact into ``model_dir``; return validation metrics.

    Without ``validation`` the last ``validation_days`` of ``train`` are held out (a time split, never random).
    The model is written atomically: on any error ``model_dir`` is left as it was.
    """
    started = time.monotonic()
    frame = spec.validate_frame(train, kind="history")
    if validation is not None:
        valid_frame = spec.validate_frame(validation, kind="history")
        overlap = valid_frame[spec.date].min() <= frame[spec.date].max()
        if overlap:
            raise DataValidationError(
                f"The validation data must start after the training data ends ({frame[spec.date].max().date()}); "
                f"it starts on {valid_frame[spec.date].min().date()}. Split by date, never at random."
            )
        cut_date = frame[spec.date].max()
        for column in (*spec.keys, *spec.static):  # one category set, so the concatenation stays categorical
            categories = frame[column].cat.categories.union(valid_frame[column].cat.categories)
            frame[column] = frame[column].cat.set_categories(categories)
            valid_frame[column] = valid_frame[column].cat.set_categories(categories)
        frame = pd.concat([frame, valid_frame], ignore_index=True)
    else:
        cut_date = frame[spec.date].max() - pd.Timedelta(days=config.resolved_validation_days)
    check_trainable(frame, spec, config, cut_date)
    lap = _Laps(started, "validate")
    data_hash = frame_hash(frame)
    data = TrainingData.from_frame(frame, spec, config)
    del frame  # the panel holds what training needs
    report = data_report(data.panel, spec)
    lap("panel")
    cut = data.panel.day_index(cut_date)
    rng = np.random.default_rng(config.seed)
    schema = FeatureSchema(
        feature_names=data.features.names,
        kinds=data.features.kinds,
        categories=data.vocabularies,
        horizon=config.horizon,
        spec=spec,
        scale_floor=_scale_floor(data.panel.target),
        keys_as_features=config.keys_as_features,
        point_relative=config.point_relative,
    )
    valid_rows = data.rows(*data.window(cut, config), config.replace(stockout_handling="none"))
    if len(valid_rows) == 0:
        raise DataValidationError("The validation window has no observed target values; check the data's dates.")
    # refit: the early-stopping fit sees a share of the rows (rounds, calibration, metrics); one full fit follows
    share = config.validation_sample if config.refit else 1.0
    fit_rows = data.rows(*data.sample(cut, config, rng, share=share), config)
    row_counts = {"early_stopping_fit": len(fit_rows), "validation": len(valid_rows)}
    logger.info("training rows: %d, validation rows: %d", len(fit_rows), len(valid_rows))
    report["training_rows"] = len(fit_rows)
    lap("features")
    with _Progress(config, "fit") as progress:
        model, rounds = fit_boosters(fit_rows, schema, config, valid=valid_rows, progress=progress)
    del fit_rows
    lap("fit")
    calibration = calibration_factors(model.predict_uncalibrated(valid_rows.X), valid_rows.y, schema.quantiles)
    schema = dataclasses.replace(schema, quantile_calibration=calibration, point_blend=config.point_blend)
    if config.point_bias_correction:
        schema = dataclasses.replace(schema, point_scale=bias_factor(ForecastModel(model.boosters, schema), valid_rows))
    model = ForecastModel(model.boosters, schema)
    scores = validation_metrics(model, valid_rows, data)
    if config.refit:
        all_rows = data.rows(*data.sample(len(data.panel.dates) - 1, config, rng), config)
        row_counts["final_fit"] = len(all_rows)
        with _Progress(config, "refit", rounds) as progress:
            model, _ = fit_boosters(all_rows, schema, config, rounds=rounds, progress=progress)
        lap("refit")
    metadata = {
        "forecaster_version": library_versions()["forecaster"],
        "libraries": library_versions(),
        "training_data_hash": data_hash,
        "training_window": {
            "start": str(data.panel.dates[0].date()),
            "end": str(data.panel.dates[-1].date()),
            "validation_start": str((cut_date + pd.Timedelta(days=1)).date()),
        },
        "series": data.panel.n_series,
        "data_report": report,
        "hyperparameters": config.to_dict(),
        "boost_rounds": rounds,
        "training_rows": row_counts,
        "validation_metrics": scores,
        "training_seconds": round(time.monotonic() - started, 1),
        "phase_seconds": lap.seconds,
        "created_at": pd.Timestamp.now(tz="UTC").isoformat(),
    }
    with atomic_directory(model_dir) as stage:
        model.save(stage)
        write_json(metadata, stage / METADATA_FILE)
    return scores


def validation_metrics(model: ForecastModel, rows: TrainingSet, data: TrainingData) -> dict[str, float]:
    """Scores of the held-out window.

    The point forecast's WAPE (all / campaign days), bias, MAE and RMSE; the quantiles' pinball loss and coverage;
    ``wape_p50`` (the P50 as a point forecast) for comparison.
    """
    quantiles = model.predict(rows.X)
    levels = model.schema.quantiles
    point = model.predict_mean(rows.X)
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
    if data.spec.campaign:
        campaign = rows.X[:, data.features.names.index(data.spec.campaign)] > 0
        scores["wape_campaign"] = m.wape(rows.y[campaign], point[campaign])
        scores["wape_non_campaign"] = m.wape(rows.y[~campaign], point[~campaign])
    return {name: round(float(value), 6) for name, value in scores.items()}


def bias_factor(model: ForecastModel, rows: TrainingSet, bounds: tuple[float, float] = (0.8, 1.25)) -> float:
    """Factor that removes the point forecast's bias on held-out ``rows`` (sum of actuals / sum of forecasts)."""
    predicted = float(model.predict_mean(rows.X).sum())
    return round(float(np.clip(rows.y.sum() / predicted, *bounds)), 6) if predicted > 0 else 1.0


def _scale_floor(target: np.ndarray) -> float:
    """Smallest demand level quantile boosters divide by: 5 % of the average daily target (> 0)."""
    level = float(np.nanmean(target)) if np.isfinite(target).any() else 0.0
    return max(0.05 * level, 1e-3)


class _Laps:
    """Seconds spent per training phase (stored in the metadata: what takes the time)."""

    def __init__(self, started: float, first: str) -> None:
        self.seconds: dict[str, float] = {}
        self.last = started
        self(first)

    def __call__(self, phase: str) -> None:
        now = time.monotonic()
        self.seconds[phase] = round(now - self.last, 2)
        self.last = now


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
