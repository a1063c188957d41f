"""The models of the accuracy benchmark: baselines, mlforecast (the peer) and forecaster.

Each runner takes the history (every column, before the fold's origin), the future frame (keys, date and the
known-future columns of the forecast days only) and the options, and returns keys, date and the forecast columns
``mean`` (the point forecast), ``p10``, ``p50`` and ``p90``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from _common import stopwatch
from _onestep import ONE_STEP_COLUMN, train_one_step
from _reforecast import every_origin
from _scoring import DATE, KEYS, TARGET
from forecaster.contract import QUANTILES, quantile_column

if TYPE_CHECKING:
    from forecaster.config import TrainConfig
    from forecaster.model import ForecastModel
    from forecaster.spec import DatasetSpec

KNOWN_FUTURE = ["activity_flag", "discount", "holiday_flag"]
STATIC = ["city_id", "management_group_id", "first_category_id", "second_category_id", "third_category_id"]
QUANTILE_COLUMNS = {quantile_column(q): q for q in QUANTILES}
PREDICTION_COLUMNS = ["p10", "p50", "p90", "mean"]
RECURSIVE_COLUMN = "recursive"  # forecaster's kept predictions with --recursive: its recursive point (bench/levers.py)

# mlforecast's LGBMRegressor arguments: forecaster's TrainConfig defaults translated (min_data_in_leaf,
# lambda_l2, max_bin, tweedie_variance_power). colsample_bytree stays at 0.8, forecaster's feature_fraction
# before issue 21's third round (forecaster's 0.4 was chosen on its own 40-odd feature columns, not on
# mlforecast's), so that the peer's figures match every earlier run. mlforecast has no validation split for early
# stopping, so every model gets a fixed 300 rounds. Override with --lgb / --lgb-quantile KEY=VALUE.
LGB_SHARED = {
    "learning_rate": 0.05,
    "num_leaves": 127,
    "min_child_samples": 100,
    "colsample_bytree": 0.8,
    "reg_lambda": 1.0,
    "max_bin": 255,
}
LGB_MEAN = {"objective": "tweedie", "tweedie_variance_power": 1.2, "n_estimators": 300}
LGB_QUANTILE = {"objective": "quantile", "n_estimators": 300}


def _grid(history: pd.DataFrame, future: pd.DataFrame) -> tuple[np.ndarray, int]:
    """History target as an (n_series, n_days) matrix; checks the grid is complete (every series every day)."""
    n_series = history.groupby(KEYS, sort=False).ngroups
    n_days = history[DATE].nunique()
    if len(history) != n_series * n_days or len(future) != n_series * future[DATE].nunique():
        raise ValueError("The baselines need every series on every day (a complete grid); fill the gaps first.")
    return history[TARGET].to_numpy(dtype=float).reshape(n_series, n_days), n_series


def run_seasonal_naive(history: pd.DataFrame, future: pd.DataFrame, options: argparse.Namespace) -> pd.DataFrame:
    """Repeat each series' last 7 days."""
    values, _ = _grid(history, future)
    horizon = future[DATE].nunique()
    last_week = values[:, -7:]
    point = np.tile(last_week, (1, -(-horizon // 7)))[:, :horizon]
    out = future[[*KEYS, DATE]].copy()
    out["p50"] = out["mean"] = point.ravel()
    return out


def run_mean28(history: pd.DataFrame, future: pd.DataFrame, options: argparse.Namespace) -> pd.DataFrame:
    """Mean of each series' last 28 days; P10/P90 are the empirical quantiles of those 28 days."""
    values, _ = _grid(history, future)
    horizon = future[DATE].nunique()
    window = values[:, -28:]
    out = future[[*KEYS, DATE]].copy()
    out["mean"] = out["p50"] = np.repeat(window.mean(axis=1), horizon)
    out["p10"] = np.repeat(np.quantile(window, 0.1, axis=1), horizon)
    out["p90"] = np.repeat(np.quantile(window, 0.9, axis=1), horizon)
    return out


def _series_id(frame: pd.DataFrame) -> pd.Series:
    return frame["store_id"].astype(np.int64) * 1000 + frame["product_id"].astype(np.int64)


def run_mlforecast(history: pd.DataFrame, future: pd.DataFrame, options: argparse.Namespace) -> pd.DataFrame:
    """mlforecast 1.1.0, recursive LightGBM: one Tweedie model (mean) and three quantile models (P10/P50/P90)."""
    import lightgbm as lgb
    from mlforecast import MLForecast
    from mlforecast.lag_transforms import RollingMean

    shared = {**LGB_SHARED, "n_jobs": options.threads, "verbosity": -1, "random_state": 0}
    models = {"mean": lgb.LGBMRegressor(**{**shared, **LGB_MEAN, **options.lgb})}
    for name, alpha in QUANTILE_COLUMNS.items():
        models[name] = lgb.LGBMRegressor(**{**shared, **LGB_QUANTILE, **options.lgb_quantile, "alpha": alpha})
    fcst = MLForecast(
        models=models,
        freq="D",
        lags=[7, 14, 21, 28],
        lag_transforms={1: [RollingMean(window_size=7), RollingMean(window_size=28)], 7: [RollingMean(window_size=7)]},
        date_features=["dayofweek"],
        num_threads=options.threads,
    )
    fcst.fit(_mlforecast_frame(history), static_features=STATIC_FEATURES, fitted=getattr(options, "residuals", False))
    if getattr(options, "residuals", False):  # in-sample residual std of the point model per series (replenishment)
        fitted = fcst.forecast_fitted_values()
        spread = (fitted["y"] - fitted["mean"]).groupby(fitted["unique_id"]).std().rename("residual_std")
        options.residual_std = spread.reset_index()
    predictions = _mlforecast_predict(fcst, None, future, history)
    if getattr(options, "reforecast", False):  # every later origin of the fold, from the same models
        with stopwatch() as reforecast_time:
            options.reforecasts = every_origin(
                history, options.test_frame, future, lambda seen, ahead: _mlforecast_predict(fcst, seen, ahead, history)
            )
        options.untimed_s = getattr(options, "untimed_s", 0.0) + reforecast_time["seconds"]
    return predictions


STATIC_FEATURES = [*KEYS, *STATIC]  # the same categoricals forecaster uses (keys_as_features=True)


def _mlforecast_frame(history: pd.DataFrame) -> pd.DataFrame:
    """mlforecast's long frame (unique_id, ds, y, the known-future and static columns) of a history frame."""
    train = history[[DATE, TARGET, *KNOWN_FUTURE, *STATIC_FEATURES]].rename(columns={DATE: "ds", TARGET: "y"})
    train.insert(0, "unique_id", _series_id(history))
    for column in STATIC_FEATURES:
        train[column] = train[column].astype("category")
    return train


def _mlforecast_predict(
    fcst: object, seen: pd.DataFrame | None, future: pd.DataFrame, history: pd.DataFrame
) -> pd.DataFrame:
    """mlforecast's forecast of ``future`` from the fit's history, or from ``seen`` (its ``new_df``) when given."""
    x_df = future[[DATE, *KNOWN_FUTURE]].rename(columns={DATE: "ds"})
    x_df.insert(0, "unique_id", _series_id(future))
    new_df = None if seen is None else _mlforecast_frame(seen)
    predictions = fcst.predict(future[DATE].nunique(), X_df=x_df, new_df=new_df)
    predictions["store_id"] = (predictions["unique_id"] // 1000).astype(history["store_id"].dtype)
    predictions["product_id"] = (predictions["unique_id"] % 1000).astype(history["product_id"].dtype)
    predictions[PREDICTION_COLUMNS] = predictions[PREDICTION_COLUMNS].clip(lower=0.0)  # sales are never negative
    return predictions.rename(columns={"ds": DATE})[[*KEYS, DATE, *PREDICTION_COLUMNS]]


def run_forecaster(history: pd.DataFrame, future: pd.DataFrame, options: argparse.Namespace) -> pd.DataFrame:
    """Forecaster: train the artifact on the history, then forecast the future frame (known-future columns only)."""
    from forecaster.config import TrainConfig
    from forecaster.forecasting import inference_rows, predictions_frame
    from forecaster.model import ForecastModel
    from forecaster.spec import DatasetSpec
    from forecaster.training import fit_artifact

    spec = DatasetSpec.preset("freshretailnet")
    hyperparameters = {"horizon": future[DATE].nunique(), "num_threads": options.threads, **options.params}
    config = TrainConfig.from_hyperparameters(hyperparameters)
    with tempfile.TemporaryDirectory(prefix="forecaster-bench-") as tmp:
        model_dir = Path(tmp) / "model"
        fit_artifact(history, spec, config, model_dir)
        model = ForecastModel.load(model_dir)
        with stopwatch() as rows_time:  # the direct forecast, as `forecast` makes it
            rows = inference_rows(model, history, future)
        with stopwatch() as predict_time:
            predictions = predictions_frame(model, rows.features, rows.keys)
        del rows
        options.model_info = _model_info(model_dir)
        seconds = {"rows_s": rows_time["seconds"], "predict_s": predict_time["seconds"]}
        options.untimed_s = 0.0  # the bench's extras below are not part of the product's fit+predict
        if getattr(options, "recursive", False):  # the same rows with the recursive point (forecaster.recursive)
            with stopwatch() as recursive_time:
                predictions[RECURSIVE_COLUMN] = inference_rows(model, history, future, recursive=True).recursive
            options.untimed_s += recursive_time["seconds"]
            seconds["recursive_s"] = recursive_time["seconds"] - rows_time["seconds"]  # the recursion alone, roughly
        if getattr(options, "one_step", False):  # a one-step booster of its own, recursive (bench/_onestep.py)
            predictions[ONE_STEP_COLUMN] = _one_step(model, history, future, spec, config, options, seconds)
        if getattr(options, "reforecast", False):  # every later origin of the fold, from the same model
            with stopwatch() as reforecast_time:
                options.reforecasts = every_origin(
                    history, options.test_frame, future, lambda seen, ahead: _forecaster_predict(model, seen, ahead)
                )
            options.untimed_s += reforecast_time["seconds"]
        options.model_info["inference_seconds"] = seconds
    predictions = _input_dtypes(predictions, history)
    extras = [column for column in (RECURSIVE_COLUMN, ONE_STEP_COLUMN) if column in predictions]
    return predictions[[*KEYS, DATE, *PREDICTION_COLUMNS, *extras]]


def _forecaster_predict(model: ForecastModel, history: pd.DataFrame, future: pd.DataFrame) -> pd.DataFrame:
    """forecaster's forecast of ``future`` from ``history`` with a trained model, in the input's dtypes."""
    from forecaster.forecasting import inference_rows, predictions_frame

    rows = inference_rows(model, history, future)
    predictions = _input_dtypes(predictions_frame(model, rows.features, rows.keys), history)
    return predictions[[*KEYS, DATE, *PREDICTION_COLUMNS]]


def _input_dtypes(predictions: pd.DataFrame, history: pd.DataFrame) -> pd.DataFrame:
    """forecaster returns keys and dates as strings (its vocabularies are strings): back to the input's dtypes."""
    for key in KEYS:
        predictions[key] = predictions[key].astype(history[key].dtype)
    predictions[DATE] = pd.to_datetime(predictions[DATE]).astype(history[DATE].dtype)
    return predictions


def _one_step(
    model: ForecastModel,
    history: pd.DataFrame,
    future: pd.DataFrame,
    spec: DatasetSpec,
    config: TrainConfig,
    options: argparse.Namespace,
    seconds: dict[str, float],
) -> np.ndarray:
    """The one-step booster's recursive point per row of the direct forecast; its times into ``seconds``."""
    from forecaster.forecasting import inference_rows

    with stopwatch() as fit_time:
        predict, info = train_one_step(history, spec, config, model)
    with stopwatch() as recursive_time:
        points = inference_rows(model, history, future, recursive=True, one_step=predict).recursive
    options.untimed_s += fit_time["seconds"] + recursive_time["seconds"]
    seconds["one_step_fit_s"] = fit_time["seconds"]
    seconds["one_step_recursive_s"] = recursive_time["seconds"] - seconds["rows_s"]  # the recursion alone, roughly
    options.model_info["one_step"] = info
    return points


def _model_info(model_dir: Path) -> dict[str, object]:
    """What the trained artifact chose (point blend and bias factor, rounds, phase seconds): kept in the stats."""
    schema = json.loads((model_dir / "feature_schema.json").read_text())
    metadata = json.loads((model_dir / "metadata.json").read_text())
    keys = ("boost_rounds", "training_rows", "phase_seconds", "validation_metrics")
    return {
        **{key: schema.get(key) for key in ("point_blend", "point_scale", "quantile_calibration")},
        **{key: metadata.get(key) for key in keys},
    }


def _forecaster_none(history: pd.DataFrame, future: pd.DataFrame, options: argparse.Namespace) -> pd.DataFrame:
    options.params = {**options.params, "stockout_handling": "none"}
    return run_forecaster(history, future, options)


MODELS: dict[str, tuple[str, Callable[[pd.DataFrame, pd.DataFrame, argparse.Namespace], pd.DataFrame]]] = {
    "seasonal_naive_7": ("seasonal naive 7", run_seasonal_naive),
    "mean_28": ("mean 28 (P10/P90: empirical)", run_mean28),
    "forecaster": ("forecaster", run_forecaster),
    "mlforecast": ("mlforecast 1.1.0 (LightGBM, recursive)", run_mlforecast),
    "forecaster_no_stockout_handling": ("forecaster, stockout_handling=none", _forecaster_none),
}
LEARNED = ("mlforecast", "forecaster", "forecaster_no_stockout_handling")
