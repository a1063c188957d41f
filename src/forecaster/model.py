"""The forecasting model: a point booster plus non-crossing quantile boosters, and their training."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np

from forecaster.artifact import SCHEMA_FILE, FeatureSchema, booster_files, model_files
from forecaster.checkpoints import BoosterCheckpoint, resume_booster
from forecaster.config import TrainConfig
from forecaster.contract import MEDIAN, QUANTILES, point_bag_booster, point_bag_index, quantile_booster
from forecaster.errors import DataValidationError, ModelArtifactError
from forecaster.io import write_json

logger = logging.getLogger(__name__)

SCALE_FEATURE = "mean_28"  # quantile boosters learn target / scale: their error is then relative to the level
#: variance power of each point objective (Tweedie: its own): the loss of a target divided by s scales with s^(2-p)
POINT_LOSS_POWER = {"poisson": 1.0, "regression": 0.0}
#: the last line of a LightGBM model file saved from Python, and how much of the file's end holds it
_LAST_LINE = b"pandas_categorical:"
_TAIL_BYTES = 1 << 16


@dataclass
class TrainingSet:
    """Feature rows with their targets and sample weights (stockout handling)."""

    X: np.ndarray
    y: np.ndarray
    weight: np.ndarray

    def __len__(self) -> int:
        return len(self.y)


class ForecastModel:
    """LightGBM boosters for the mean and the P10/P50/P90 of daily demand, with their feature schema."""

    def __init__(self, boosters: dict[str, lgb.Booster], schema: FeatureSchema) -> None:
        self.boosters = boosters
        self.schema = schema

    # -------------------------------------------------------------------------------------------- persistence
    @classmethod
    def load(cls, model_dir: str | Path) -> ForecastModel:
        """Load and check a model directory (``feature_schema.json`` + one booster file per model)."""
        model_dir = model_files(model_dir)
        schema = FeatureSchema.load(model_dir)
        boosters = {}
        for name, file in booster_files(schema.point_bags).items():
            path = model_dir / file
            if not path.is_file():
                raise ModelArtifactError(f"{path} is missing: the model directory {model_dir} is incomplete.")
            _check_whole(path)
            try:
                boosters[name] = lgb.Booster(model_file=str(path))
            except lgb.basic.LightGBMError as error:
                raise ModelArtifactError(f"{path} is not a readable LightGBM model: {error}") from error
            if boosters[name].num_feature() != len(schema.feature_names):
                raise ModelArtifactError(
                    f"{path} expects {boosters[name].num_feature()} features but {SCHEMA_FILE} lists "
                    f"{len(schema.feature_names)}; the files come from different trainings."
                )
        return cls(boosters, schema)

    def save(self, directory: str | Path) -> None:
        """Write the booster files and ``feature_schema.json`` into ``directory``."""
        directory = Path(directory)
        for name, file in booster_files(self.schema.point_bags).items():
            self.boosters[name].save_model(str(directory / file))
        write_json(self.schema.to_dict(), directory / SCHEMA_FILE)

    @property
    def point_boosters(self) -> list[lgb.Booster]:
        """The point boosters whose predictions the point forecast averages (``point_bags`` of them)."""
        return [self.boosters[point_bag_booster(i)] for i in range(self.schema.point_bags)]

    # -------------------------------------------------------------------------------------------- prediction
    def check_matrix(self, X: np.ndarray) -> np.ndarray:
        """Return ``X`` as a float64 matrix with the schema's column count, or raise DataValidationError."""
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != len(self.schema.feature_names):
            raise DataValidationError(
                f"Feature rows must have {len(self.schema.feature_names)} columns in feature_schema.json order. "
                f"Got shape {X.shape} instead."
            )
        return X

    def scale(self, X: np.ndarray) -> np.ndarray:
        """Per-row demand level the quantile boosters are relative to."""
        return _scale(X, self.schema)

    def predict_uncalibrated(self, X: np.ndarray) -> np.ndarray:
        """Return (n, 3) raw quantile-booster outputs in units (not calibrated, not sorted)."""
        X = self.check_matrix(X)
        scale = self.scale(X)
        return np.column_stack([self.boosters[quantile_booster(q)].predict(X) * scale for q in self.schema.quantiles])

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Return (n, 3) P10, P50, P90: calibrated, sorted per row (p10 <= p50 <= p90 always), non-negative."""
        calibrated = self.predict_uncalibrated(X) * np.asarray(self.schema.quantile_calibration)
        return np.sort(calibrated, axis=1).clip(min=0.0)

    def predict_mean(self, X: np.ndarray, quantiles: np.ndarray | None = None) -> np.ndarray:
        """Return the point forecast (the ``mean`` column): the point boosters' mean blended with the calibrated P50.

        The blend weight and the bias factor are the schema's ``point_blend`` and ``point_scale``. The point never
        exceeds the row's P90 (``quantiles``: :meth:`predict` of the same ``X``, computed when not given): the
        quantile boosters follow a series' own level, the point booster does not, and for a series that stopped
        selling it kept forecasting the item's usual sales (4-10x the P90).
        """
        X = self.check_matrix(X)
        ceiling = (self.predict(X) if quantiles is None else quantiles)[:, -1]
        point = np.mean([booster.predict(X) for booster in self.point_boosters], axis=0)
        if self.schema.point_relative:
            point = point * self.scale(X)
        blend = self.schema.point_blend
        if blend > 0:
            factor = self.schema.quantile_calibration[self.schema.quantiles.index(0.5)]
            median = self.boosters["q50"].predict(X) * self.scale(X) * factor
            point = (1.0 - blend) * point + blend * median
        return np.minimum((point * self.schema.point_scale).clip(min=0.0), ceiling)

    def contributions(self, X: np.ndarray) -> np.ndarray:
        """TreeSHAP of the point boosters in raw-score space (their mean); the last column is the expected value."""
        X = self.check_matrix(X)
        return np.mean([booster.predict(X, pred_contrib=True) for booster in self.point_boosters], axis=0)


# ------------------------------------------------------------------------------------------------ training
def _check_whole(path: Path) -> None:
    """Raise unless the booster file at ``path`` ends as LightGBM writes it (its last line ``pandas_categorical:``).

    LightGBM aborts the whole process on a model file cut short (a partial copy, a full disk): no exception to
    catch, and a server's workers would crash and restart for ever. So the file's end is checked first.
    """
    size = path.stat().st_size
    with open(path, "rb") as file:
        file.seek(max(0, size - _TAIL_BYTES))
        tail = file.read()
    last = tail.rstrip(b"\n").rsplit(b"\n", 1)[-1]
    if not (b"\nend of parameters\n" in tail and last.startswith(_LAST_LINE) and _is_json(last[len(_LAST_LINE) :])):
        raise ModelArtifactError(
            f"{path} is cut short ({size} bytes, without the 'end of parameters' and '{_LAST_LINE.decode()}' lines "
            "LightGBM ends a model file with): a partial copy or a full disk. Copy the model again, or retrain."
        )


def _is_json(text: bytes) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def booster_params(config: TrainConfig, model: str) -> dict[str, Any]:
    """LightGBM parameters of one booster: deterministic, with a fixed thread count."""
    params: dict[str, Any] = {
        "learning_rate": config.learning_rate,
        "num_leaves": config.num_leaves,
        "min_data_in_leaf": config.min_data_in_leaf,
        "feature_fraction": config.feature_fraction,
        "lambda_l2": config.lambda_l2,
        "max_bin": config.max_bin,
        "seed": config.seed,
        "deterministic": True,
        "force_row_wise": True,
        "num_threads": config.resolved_threads,
        "verbosity": -1,
    }
    if (bag := point_bag_index(model)) is not None:  # each point bag its own seed: another draw of the columns
        params["seed"] = (config.seed + bag) % 2**31
        params["objective"] = config.objective
        if config.objective == "tweedie":
            params["tweedie_variance_power"] = config.tweedie_variance_power
    else:  # quantile leaf values are re-estimated from sorted residuals: smaller trees on half the rows
        params["objective"] = "quantile"
        params["alpha"] = next(q for q in QUANTILES if quantile_booster(q) == model)
        params["num_leaves"] = config.quantile_num_leaves
        params["feature_fraction"] = config.quantile_feature_fraction
        if config.quantile_bagging_fraction < 1.0:
            params.update(bagging_fraction=config.quantile_bagging_fraction, bagging_freq=1, bagging_seed=config.seed)
    return params


def fit_boosters(
    train: TrainingSet,
    schema: FeatureSchema,
    config: TrainConfig,
    valid: TrainingSet | None = None,
    rounds: dict[str, int] | None = None,
    progress: Callable[[str, int], None] | None = None,
    network: dict[str, Any] | None = None,
    checkpoint: BoosterCheckpoint | None = None,
) -> tuple[ForecastModel, dict[str, int]]:
    """Train the four boosters; return the model and each booster's number of rounds.

    The features are binned once and shared by all boosters (only labels and weights differ). With ``valid``,
    each booster stops early on it (``early_stopping_rounds``). With ``rounds``, each booster trains exactly that
    many rounds (a refit on all data after early stopping). ``network``: LightGBM's parallel-learner parameters
    (:meth:`forecaster.distributed.Cluster.lightgbm_params`), for the Datasets and the boosters. With
    ``checkpoint``, finished boosters are loaded from it, an interrupted one resumes, and each is saved as it
    trains (:mod:`forecaster.checkpoints`).
    """
    dataset_params = {
        "max_bin": config.max_bin,
        "min_data_in_leaf": config.min_data_in_leaf,  # the bins' pre-filter; LightGBM's 20 refused a smaller value
        "verbosity": -1,
        "num_threads": config.resolved_threads,
    }
    dataset_params.update(network or {})
    power = POINT_LOSS_POWER.get(config.objective, config.tweedie_variance_power)
    train_set = _LabelledSet(train, schema, lgb.Dataset(
        train.X, train.y, weight=train.weight, categorical_feature=schema.categorical_indices,
        feature_name=list(schema.feature_names), params=dataset_params, free_raw_data=checkpoint is None,
    ).construct(), power)  # fmt: skip
    valid_set = None
    if valid is not None and rounds is None and config.early_stopping_rounds:
        valid_set = _LabelledSet(valid, schema, lgb.Dataset(
            valid.X, valid.y, reference=train_set.dataset, categorical_feature=schema.categorical_indices,
            feature_name=list(schema.feature_names), params=dataset_params, free_raw_data=checkpoint is None,
        ).construct(), power)  # fmt: skip
    boosters: dict[str, lgb.Booster] = {}
    used: dict[str, int] = {}
    for name in booster_files(schema.point_bags):
        budget = config.num_boost_round if point_bag_index(name) is not None else config.quantile_num_boost_round
        num_rounds = rounds[name] if rounds else budget
        if checkpoint is not None and (saved := checkpoint.finished(name)):
            boosters[name], used[name] = saved
            logger.info("booster %s: %d rounds (from the checkpoint)", name, used[name])
            continue
        callbacks: list[Callable[..., Any]] = []
        if valid_set is not None and checkpoint is None:
            callbacks.append(lgb.early_stopping(config.early_stopping_rounds, verbose=False))
        if progress is not None:
            callbacks.append(lambda env, name=name: progress(name, env.iteration + 1))
        params = {**booster_params(config, name), **(network or {})}
        sets = (train_set.labelled(name), [valid_set.labelled(name)] if valid_set else [])
        if checkpoint is None:
            booster = lgb.train(params, sets[0], num_rounds, valid_sets=sets[1], callbacks=callbacks)
        else:
            run = checkpoint.run(name, num_rounds, config.early_stopping_rounds if valid_set else 0)
            booster = resume_booster(params, *sets, run, callbacks)
        used[name] = booster.best_iteration if valid_set and booster.best_iteration > 0 else num_rounds
        boosters[name] = lgb.Booster(model_str=booster.model_to_string(num_iteration=used[name]))
        if checkpoint is not None:
            checkpoint.done(name, boosters[name], used[name])
        logger.info("booster %s: %d rounds", name, used[name])
    return ForecastModel(boosters, schema), used


class _LabelledSet:
    """A binned LightGBM dataset whose label and weight switch between the point and the quantile boosters.

    Quantile boosters learn target / scale with weight x scale: the pinball loss in units, relative targets. The
    point booster does the same when the schema says ``point_relative`` (series-level normalised target).
    """

    def __init__(
        self, rows: TrainingSet, schema: FeatureSchema, dataset: lgb.Dataset, point_power: float | None = None
    ) -> None:
        self.rows = rows
        self.schema = schema
        self.scale = _scale(rows.X, schema)
        self.dataset = dataset
        # a relative point target keeps the point loss in units: Tweedie deviance scales with scale^(2 - power)
        self.point_weight_power = 2.0 - point_power if point_power is not None else 1.0

    def labelled(self, booster: str) -> lgb.Dataset:
        point = point_bag_index(booster) is not None
        relative = not point or self.schema.point_relative
        self.dataset.set_label(self.rows.y / self.scale if relative else self.rows.y)
        power = self.point_weight_power if point else 1.0
        self.dataset.set_weight(self.rows.weight * self.scale**power if relative else self.rows.weight)
        return self.dataset


def calibration_factors(
    raw: np.ndarray, y: np.ndarray, quantiles: tuple[float, ...], bounds: tuple[float, float] = (0.5, 2.0)
) -> tuple[float, ...]:
    """Factor c per quantile q such that a share q of held-out actuals lies at or below c x forecast.

    ``raw`` are uncalibrated quantile forecasts of held-out rows with actuals ``y``; rows forecasting 0 carry no
    information on the factor and are left out. Factors are bounded to ``bounds`` to survive tiny windows.

    Intermittent demand: a day without sales lies below every positive forecast. While zero days are fewer than
    a share q of the rows, fitting on every day counts them in and the quantile keeps its coverage q overall.
    Where they are q or more, the overall q-quantile is 0, which no positive forecast reaches: the factor would
    shrink to its bound and the quantile would mean nothing. Such a quantile (below the median) is fitted on the
    days with sales instead: P10 is then the level a selling day falls below one time in ten. The median and the
    quantiles above it are always fitted on every day, so P90 keeps its 90 % coverage overall.
    """
    factors = []
    sold = y > 0
    for column, q in enumerate(quantiles):
        positive = raw[:, column] > 0
        if q < MEDIAN and positive.any() and (~sold[positive]).mean() >= q:
            positive &= sold
        if positive.sum() < 100:
            factors.append(1.0)
            continue
        ratio = y[positive] / raw[positive, column]
        factors.append(float(np.clip(np.quantile(ratio, q), *bounds)))
    return tuple(round(f, 6) for f in factors)


def _scale(X: np.ndarray, schema: FeatureSchema) -> np.ndarray:
    """The recent level (``mean_28``) plus the schema's floor: what quantile targets are divided by."""
    column = schema.feature_names.index(SCALE_FEATURE)
    return np.nan_to_num(X[:, column], nan=0.0).clip(min=0.0) + schema.scale_floor
