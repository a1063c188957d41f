"""Inference-side data work: history + future → feature rows (preprocess), predictions → forecasts (postprocess)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from forecaster.artifact import FeatureSchema
from forecaster.contract import ALL_QUANTILES, DEFAULT_QUANTILES_ENV, QUANTILE_COLUMNS, QUANTILES
from forecaster.errors import DataValidationError, InvalidParameterError
from forecaster.features import FeatureSet, build_features
from forecaster.io import read_table, write_table
from forecaster.model import ForecastModel
from forecaster.panel import build_panel
from forecaster.spec import DatasetSpec
from forecaster.totals import GroupTotals


def _as_model(model: ForecastModel | str | Path) -> ForecastModel:
    return model if isinstance(model, ForecastModel) else ForecastModel.load(model)


def _as_schema(model: ForecastModel | FeatureSchema | str | Path) -> FeatureSchema:
    if isinstance(model, ForecastModel):
        return model.schema
    return model if isinstance(model, FeatureSchema) else FeatureSchema.load(model)


def build_inference_features(
    model: ForecastModel | FeatureSchema | str | Path,
    history: pd.DataFrame,
    future: pd.DataFrame,
    totals: GroupTotals | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return (features, keys): one feature row per series × future day, and its keys + target date.

    The forecast origin is the last day of ``history``; ``future`` must hold every day after it, up to the
    model's horizon, for every series to forecast, with the known-future columns filled in. ``totals``: the
    group totals of the whole chain when ``history`` is one partition of it (default: of ``history``).
    """
    schema = _as_schema(model)
    spec = schema.spec
    hist = spec.validate_frame(history, kind="history")
    fut = spec.validate_frame(future, kind="future").sort_values([*spec.keys, spec.date], kind="stable")
    origin_date = hist[spec.date].max()
    _check_future(spec, hist, fut, origin_date, schema.horizon)
    panel = build_panel(spec, hist, fut)
    lookup = pd.MultiIndex.from_frame(panel.series[list(spec.keys)])
    series = lookup.get_indexer(pd.MultiIndex.from_frame(fut[list(spec.keys)]))
    horizon = (fut[spec.date] - origin_date).dt.days.to_numpy()
    origin = np.full(len(fut), panel.day_index(origin_date))
    feature_set = FeatureSet(
        names=schema.feature_names,
        kinds=schema.kinds,
        categorical=tuple(schema.categorical_features),
    )
    X = build_features(
        panel, spec, feature_set, schema.categories, series, origin, horizon, schema.horizon, totals=totals
    )
    features = pd.DataFrame(X, columns=list(schema.feature_names))
    keys = fut[[*spec.keys, spec.date]].reset_index(drop=True)
    keys[spec.date] = keys[spec.date].dt.strftime("%Y-%m-%d")
    return features, keys


def _check_future(spec: DatasetSpec, hist: pd.DataFrame, fut: pd.DataFrame, origin: pd.Timestamp, horizon: int) -> None:
    """Raise DataValidationError naming the first series/day the future frame lacks or has too much of."""
    keys = list(spec.keys)
    how_to = (
        f"Build the future frame with one row per series and day from {(origin + pd.Timedelta(days=1)).date()} "
        f"(the day after the last history day) for up to {horizon} days, with columns {[*keys, spec.date]} + "
        f"{list(spec.known_future)}."
    )
    days = (fut[spec.date] - origin).dt.days
    outside = (days < 1) | (days > horizon)
    if outside.any():
        row = fut[outside].iloc[0]
        raise DataValidationError(
            f"The future data has {spec.date}={row[spec.date].date()} for {_series(row, keys)}, outside the "
            f"{horizon} days after the last history day {origin.date()}. {how_to}"
        )
    n_days = int(days.max())
    hist_series = hist[keys].drop_duplicates()
    fut_series = fut[keys].drop_duplicates()
    merged = hist_series.merge(fut_series, on=keys, how="outer", indicator=True)
    if (merged["_merge"] == "right_only").any():
        row = merged[merged["_merge"] == "right_only"].iloc[0]
        raise DataValidationError(f"The future data has {_series(row, keys)}, which has no history. {how_to}")
    if (merged["_merge"] == "left_only").any():
        row = merged[merged["_merge"] == "left_only"].iloc[0]
        raise DataValidationError(
            f"The future data has no rows for {_series(row, keys)}, which is in the history. {how_to} "
            "To stop forecasting a series, drop its history rows."
        )
    counts = fut.groupby(keys, sort=False)[spec.date].size()
    short = counts[counts < n_days]
    if not short.empty:
        series_key = short.index[0] if len(keys) > 1 else (short.index[0],)
        have = set(fut.loc[(fut[keys] == pd.Series(series_key, index=keys)).all(axis=1), spec.date])
        missing_day = next(
            d for d in pd.date_range(origin + pd.Timedelta(days=1), periods=n_days, freq="D") if d not in have
        )
        raise DataValidationError(
            f"The future data has no row for {_series(pd.Series(series_key, index=keys), keys)} on "
            f"{missing_day.date()} (every series needs the same {n_days} days). {how_to}"
        )


def _series(row: pd.Series, keys: list[str]) -> str:
    return "series " + ", ".join(f"{k}={row[k]}" for k in keys)


def predictions_frame(model: ForecastModel, features: pd.DataFrame, keys: pd.DataFrame) -> pd.DataFrame:
    """Keys, date, p10, p50, p90 and the point forecast ``mean`` for feature rows."""
    X = features.to_numpy(dtype=np.float64)
    out = keys.copy()
    out[list(QUANTILE_COLUMNS)] = model.predict(X)
    out["mean"] = model.predict_mean(X)
    return out


def forecast(model: ForecastModel | str | Path, history: pd.DataFrame, future: pd.DataFrame) -> pd.DataFrame:
    """Preprocess, predict in-process and postprocess: one forecast row per series × future day."""
    model = _as_model(model)
    features, keys = build_inference_features(model, history, future)
    return predictions_frame(model, features, keys)


def order_proposals(forecasts: pd.DataFrame, service_level: float = 0.8, pack_size: float = 1.0) -> pd.DataFrame:
    """Proposed order per series and day: the demand quantile at ``service_level``, rounded up to whole packs.

    The quantile is interpolated linearly between P10, P50 and P90 (the contract's quantiles), so
    ``service_level`` must be in [0.1, 0.9]:
    0.5 orders the median, 0.8 covers demand on about four days out of five (less waste than P90, fewer
    empty shelves than P50).
    """
    lowest, highest = QUANTILES[0], QUANTILES[-1]
    if not lowest <= service_level <= highest:
        raise InvalidParameterError(
            f"The 'service_level' parameter of postprocess must be a float in the range [{lowest}, {highest}]. "
            f"Got {service_level!r} instead."
        )
    if not pack_size > 0:
        raise InvalidParameterError(f"The 'pack_size' parameter of postprocess must be > 0. Got {pack_size!r} instead.")
    levels = np.array(QUANTILES)
    values = forecasts[list(QUANTILE_COLUMNS)].to_numpy(dtype=float)
    upper = int(np.clip(np.searchsorted(levels, service_level), 1, len(levels) - 1))
    weight = (service_level - levels[upper - 1]) / (levels[upper] - levels[upper - 1])
    demand = values[:, upper - 1] + weight * (values[:, upper] - values[:, upper - 1])
    out = forecasts.drop(columns=[c for c in (*QUANTILE_COLUMNS, "mean") if c in forecasts.columns])
    out["order_units"] = np.ceil(np.round(demand / pack_size, 9)) * pack_size
    out["service_level"] = service_level
    return out


def file_name(stem: str, partition: str) -> str:
    """``features.csv`` / ``features-P.csv`` (``stem``: features or keys) of partition ``P`` (preprocess output)."""
    return f"{stem}-{partition}.csv" if partition else f"{stem}.csv"


def postprocess(
    keys: str | Path,
    predictions: str | Path,
    out: str | Path,
    orders: str | Path | None = None,
    service_level: float = 0.8,
    pack_size: float = 1.0,
) -> Path:
    """Join keys with batch-transform output lines (``p10,p50,p90``) into one forecast table.

    ``keys`` is a ``keys.csv`` (its predictions: a ``.out`` file or a folder of them) or a folder of per-partition
    ``keys-P.csv`` files, each paired with ``features-P.csv.out`` in the ``predictions`` folder. Also writes order
    proposals (:func:`order_proposals`) to ``orders`` (default: ``order_proposals.csv`` next to ``out``).
    """
    keys, predictions = Path(keys), Path(predictions)
    if keys.is_dir():
        names = sorted(p.name for p in keys.glob("keys*.csv"))
        if not names:
            raise DataValidationError(f"No keys file (keys.csv or keys-<partition>.csv) in {keys}.")
        pairs = [
            (keys / name, predictions / f"{file_name('features', name[len('keys-') : -4] if '-' in name else '')}.out")
            for name in names
        ]
    else:
        pairs = [(keys, predictions)]
    out_frame = pd.concat([_joined(*pair) for pair in pairs], ignore_index=True)
    proposals = order_proposals(out_frame, service_level, pack_size)
    write_table(out_frame, out)
    write_table(proposals, orders or Path(out).with_name("order_proposals.csv"))
    return Path(out)


def _joined(keys: Path, predictions: Path) -> pd.DataFrame:
    if not predictions.exists():
        raise DataValidationError(
            f"{predictions} does not exist: the batch transform wrote no predictions for {keys} (check its log)."
        )
    key_frame = read_table(keys, dtype=str)
    predicted = _read_predictions(predictions)
    if len(predicted) != len(key_frame):
        raise DataValidationError(
            f"{predictions} has {len(predicted)} prediction lines but {keys} has {len(key_frame)} rows; they must "
            "align line by line (use the .out files of the same features file)."
        )
    return pd.concat([key_frame.reset_index(drop=True), predicted], axis=1)


def _read_predictions(path: Path) -> pd.DataFrame:
    files = sorted(path.glob("*.out")) if path.is_dir() else [path]
    if not files:
        raise DataValidationError(f"No .out file in {path}; point --predictions at the batch transform output.")
    frames = []
    for file in files:
        if file.stat().st_size == 0:
            raise DataValidationError(f"Prediction file {file} is empty.")
        first = file.open().readline().lstrip()
        if first.startswith("{"):
            frame = pd.read_json(file, lines=True)
        else:
            frame = pd.read_csv(file, header=None)
            if frame.shape[1] != len(QUANTILE_COLUMNS):
                raise DataValidationError(
                    f"{file} has {frame.shape[1]} columns per line; expected {len(QUANTILE_COLUMNS)} "
                    f"({','.join(QUANTILE_COLUMNS)}). Run the transform with every quantile: give the model the "
                    f"environment {DEFAULT_QUANTILES_ENV}={ALL_QUANTILES} (the pipelines do), or send "
                    f"X-Amzn-SageMaker-Custom-Attributes: quantiles={ALL_QUANTILES}."
                )
            frame.columns = list(QUANTILE_COLUMNS)
            numeric = frame.apply(pd.to_numeric, errors="coerce")
            bad = numeric.isna() & frame.notna()
            if bad.to_numpy().any():
                line, column = np.argwhere(bad.to_numpy())[0]
                raise DataValidationError(
                    f"{file} line {line + 1} has the non-numeric {QUANTILE_COLUMNS[column]} value "
                    f"{frame.iat[line, column]!r}; prediction lines must be numbers."
                )
            frame = numeric
        missing = [c for c in QUANTILE_COLUMNS if c not in frame.columns]
        if missing:
            raise DataValidationError(f"{file} lacks the prediction field {missing[0]!r}.")
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)
