"""Inference-side data work: history + future → feature rows (preprocess), predictions → forecasts (postprocess)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from forecaster.artifact import FeatureSchema
from forecaster.contract import (
    ALL_QUANTILES,
    DEFAULT_ACTIVE_DAYS,
    DEFAULT_QUANTILES_ENV,
    DEFAULT_SERVICE_LEVEL,
    ORDERS_FILE,
    POINT_COLUMN,
    QUANTILE_COLUMNS,
    SKIPPED_FILE,
)
from forecaster.errors import DataValidationError, InvalidParameterError, shown
from forecaster.features import FeatureSet, build_features
from forecaster.io import read_table, write_table
from forecaster.model import ForecastModel
from forecaster.order_policy import order_proposals
from forecaster.orders import order_lines
from forecaster.panel import build_panel
from forecaster.recursive import recursive_points
from forecaster.spec import DatasetSpec
from forecaster.totals import GroupTotals

logger = logging.getLogger(__name__)

OUTPUT_COLUMNS = (*QUANTILE_COLUMNS, POINT_COLUMN)  # a transform line: the quantiles, then the point forecast
#: why a series is not forecast (the ``reason`` column of ``skipped_series.csv``)
SKIP_REASONS = {
    "ended": "in the history but not in the future frame (no longer planned)",
    "new": "in the future frame but without history rows (nothing to forecast from)",
    "inactive": "no sale within the last ACTIVE_DAYS days of the history",
}


@dataclass(frozen=True)
class InferenceRows:
    """Feature rows of the forecast series, their keys + target date, and the series skipped (keys + reason).

    ``recursive``: the recursive point forecast of each row (:mod:`forecaster.recursive`), when asked for.
    """

    features: pd.DataFrame
    keys: pd.DataFrame
    skipped: pd.DataFrame
    recursive: np.ndarray | None = None

    @property
    def series_count(self) -> int:
        """How many series are forecast (``keys`` has one row per series and day)."""
        return len(self.keys.drop_duplicates(self.keys.columns[:-1].tolist()))

    def summary(self) -> str:
        """One line: how many series are forecast and how many were skipped, by reason."""
        return skip_summary(self.series_count, self.skipped)


def skip_summary(forecast_count: int, skipped: pd.DataFrame) -> str:
    """``"N series forecast, M skipped (ended: a, new: b)"``."""
    counts = skipped["reason"].value_counts()
    detail = ", ".join(f"{reason}: {counts[reason]}" for reason in SKIP_REASONS if reason in counts)
    return f"{forecast_count} series forecast, {len(skipped)} skipped" + (f" ({detail})" if detail else "")


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
    """Return (features, keys) of :func:`inference_rows` (the series it skips are logged)."""
    rows = inference_rows(model, history, future, totals=totals)
    return rows.features, rows.keys


def inference_rows(
    model: ForecastModel | FeatureSchema | str | Path,
    history: pd.DataFrame,
    future: pd.DataFrame,
    active_days: int = DEFAULT_ACTIVE_DAYS,
    totals: GroupTotals | None = None,
    require_rows: bool = True,
    recursive: bool = False,
    one_step: Callable[[np.ndarray], np.ndarray] | None = None,
) -> InferenceRows:
    """Feature rows for every *active* series × future day, and the series skipped.

    The forecast origin is the last day of ``history``; ``future`` holds the days after it (up to the model's
    horizon) with the known-future columns filled in. A series is forecast when it has history and rows in
    ``future`` (and, with ``active_days`` > 0, a sale within the last ``active_days`` history days); the others
    are returned in ``skipped`` with a reason (:data:`SKIP_REASONS`), so changing assortments never stop a run.
    ``totals``: the group totals of the whole chain when ``history`` is one partition of it (default: of
    ``history``). With ``require_rows=False`` (one partition of many) no series left gives no rows, not an error.
    With ``recursive`` (``model`` must then be a model, not a schema) the rows' recursive point forecasts too,
    fed back through ``one_step`` when given (:func:`forecaster.recursive.recursive_points`' ``predict``).

    Raises:
        DataValidationError: for frames that do not fit the spec, future days outside the horizon, totals that end
            before the history, or when no series is left to forecast.
    """
    if isinstance(active_days, bool) or not isinstance(active_days, int) or active_days < 0:
        raise InvalidParameterError(f"The 'active_days' parameter must be an int >= 0. Got {active_days!r} instead.")
    schema = _as_schema(model)
    spec = schema.spec
    keys = list(spec.keys)
    hist = spec.validate_frame(history, kind="history")
    fut = spec.validate_frame(future, kind="future").sort_values([*keys, spec.date], kind="stable")
    origin_date = hist[spec.date].max()
    _check_future(spec, fut, origin_date, schema.horizon)
    if totals is not None:  # the chain's totals of an older history would leave the hierarchy features empty
        totals.check_covers(origin_date)
    hist, fut, skipped = _active_series(spec, hist, fut, origin_date, active_days, require_rows)
    if hist.empty:  # one partition of many whose series are all skipped
        empty = np.zeros(0) if recursive else None
        return InferenceRows(pd.DataFrame(columns=list(schema.feature_names)), fut[[*keys, spec.date]], skipped, empty)
    panel = build_panel(spec, hist, fut)
    lookup = pd.MultiIndex.from_frame(panel.series[keys])
    series = lookup.get_indexer(pd.MultiIndex.from_frame(fut[keys]))
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
    key_frame = fut[[*keys, spec.date]].reset_index(drop=True)
    key_frame[keys] = key_frame[keys].astype(str)  # plain strings out, as the keys came in
    key_frame[spec.date] = key_frame[spec.date].dt.strftime("%Y-%m-%d")
    points = None
    if recursive:
        points = recursive_points(
            _as_model(model), panel, spec, feature_set, series, int(origin[0]), horizon, totals, predict=one_step
        )
    rows = InferenceRows(features, key_frame, skipped, points)
    logger.info("%s", rows.summary())
    return rows


def _active_series(
    spec: DatasetSpec, hist: pd.DataFrame, fut: pd.DataFrame, origin: pd.Timestamp, active_days: int, required: bool
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(history, future) of the series to forecast, and the skipped series' keys with a reason."""
    keys = list(spec.keys)
    merged = hist[keys].drop_duplicates().merge(fut[keys].drop_duplicates(), on=keys, how="outer", indicator=True)
    reason = merged["_merge"].map({"left_only": "ended", "right_only": "new", "both": ""}).astype(str)
    if active_days:
        recent = hist[(hist[spec.date] > origin - pd.Timedelta(days=active_days)) & (hist[spec.target] > 0)]
        sold = merged[keys].merge(recent[keys].drop_duplicates(), on=keys, how="left", indicator="_sold")
        reason = reason.where((reason != "") | (sold["_sold"] == "both").to_numpy(), "inactive")
    merged["reason"] = reason.to_numpy()
    skipped = merged.loc[merged["reason"] != "", [*keys, "reason"]].reset_index(drop=True)
    active = merged.loc[merged["reason"] == "", keys]
    if active.empty and required:
        raise DataValidationError(
            f"No series to forecast: none of the {len(merged)} series has both history rows and future rows"
            f"{f' and a sale in the last {active_days} days' if active_days else ''}. Check that the future frame "
            f"uses the same {keys} values as the history."
        )
    if not skipped.empty:
        first = skipped.iloc[0]
        logger.warning(
            "skipping %d series, e.g. %s (%s); the list is in %s", len(skipped), series_name(first, keys),
            SKIP_REASONS[first["reason"]].replace("ACTIVE_DAYS", str(active_days)), SKIPPED_FILE,
        )  # fmt: skip
    return hist.merge(active, on=keys), fut.merge(active, on=keys), skipped


def _check_future(spec: DatasetSpec, fut: pd.DataFrame, origin: pd.Timestamp, horizon: int) -> None:
    """Raise DataValidationError naming the first future day outside the horizon (logs series with missing days)."""
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
            f"The future data has {spec.date}={row[spec.date].date()} for {series_name(row, keys)}, outside the "
            f"{horizon} days after the last history day {origin.date()}. {how_to}"
        )
    counts = fut.groupby(keys, sort=False, observed=True)[spec.date].size()
    short = counts[counts < int(days.max())]
    if not short.empty:
        logger.warning(
            "%d series have future rows for fewer than %d days (e.g. %s: %d); they are forecast for the days given",
            len(short), int(days.max()), short.index[0], short.iloc[0],
        )  # fmt: skip


def series_name(row: pd.Series, keys: list[str]) -> str:
    """``series store_id=S001, item_id=banana`` of a row (for messages)."""
    return "series " + ", ".join(f"{k}={row[k]}" for k in keys)


def predictions_frame(model: ForecastModel, features: pd.DataFrame, keys: pd.DataFrame) -> pd.DataFrame:
    """Keys, date, p10, p50, p90 and the point forecast ``mean`` for feature rows."""
    X = features.to_numpy(dtype=np.float64)
    out = keys.copy()
    quantiles = model.predict(X)
    out[list(QUANTILE_COLUMNS)] = quantiles
    out[POINT_COLUMN] = model.predict_mean(X, quantiles)
    return out


def forecast(
    model: ForecastModel | str | Path,
    history: pd.DataFrame,
    future: pd.DataFrame,
    active_days: int = DEFAULT_ACTIVE_DAYS,
) -> pd.DataFrame:
    """Preprocess, predict in-process and postprocess: one forecast row per active series × future day."""
    return forecast_rows(model, history, future, active_days)[0]


def forecast_rows(
    model: ForecastModel | str | Path,
    history: pd.DataFrame,
    future: pd.DataFrame,
    active_days: int = DEFAULT_ACTIVE_DAYS,
) -> tuple[pd.DataFrame, InferenceRows]:
    """(forecasts, the inference rows with the skipped series) of :func:`forecast`."""
    model = _as_model(model)
    rows = inference_rows(model, history, future, active_days)
    return predictions_frame(model, rows.features, rows.keys), rows


def file_name(stem: str, partition: str) -> str:
    """``features.csv`` / ``features-P.csv`` (``stem``: features or keys) of partition ``P`` (preprocess output)."""
    return f"{stem}-{partition}.csv" if partition else f"{stem}.csv"


def postprocess(
    keys: str | Path,
    predictions: str | Path,
    out: str | Path,
    orders: str | Path | None = None,
    service_level: float | None = None,
    pack_size: float = 1.0,
    ordering: dict[str, Any] | None = None,
) -> Path:
    """Join keys with batch-transform output lines (``p10,p50,p90,mean``) into one forecast table.

    ``keys`` is a ``keys.csv`` (its predictions: a ``.out`` file or a folder of them) or a folder of per-partition
    ``keys-P.csv`` files, each paired with ``features-P.csv.out`` in the ``predictions`` folder. Also writes orders
    to ``orders`` (default: ``order_proposals.csv`` next to ``out``): with ``ordering`` (the keyword arguments of
    :func:`forecaster.orders.order_lines`: stock, open orders, calendar, item master, defaults, order date) the
    order lines of the ordering policy, else today's per-day proposals (:func:`order_proposals`, at
    ``service_level``, default 0.8) with ``stock_considered`` False.
    """
    keys, predictions = Path(keys), Path(predictions)
    orders_path = Path(orders) if orders is not None else Path(out).with_name(ORDERS_FILE)
    if orders_path.resolve() == Path(out).resolve():
        raise InvalidParameterError(
            f"The orders file {orders_path} is the forecasts file {out}: the orders would replace the forecasts. "
            "Name two files."
        )
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
    if ordering:
        proposals = order_lines(out_frame, **ordering, service_level=service_level)
    else:
        logger.warning("no stock given: the order proposals are per-day demand quantiles (stock_considered = False)")
        proposals = order_proposals(
            out_frame, DEFAULT_SERVICE_LEVEL if service_level is None else service_level, pack_size
        )
        proposals["stock_considered"] = False
    write_table(out_frame, out)
    write_table(proposals, orders_path)
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
        with file.open() as handle:
            first = handle.readline().lstrip()
        if first.startswith("{"):
            frame = pd.read_json(file, lines=True, dtype=False, precise_float=True)
        else:
            frame = _csv_lines(file)
        missing = [c for c in OUTPUT_COLUMNS if c not in frame.columns]
        if missing:
            raise DataValidationError(
                f"{file} lacks the prediction field {missing[0]!r}; rerun the transform with quantiles=all on this "
                "forecaster version's image."
            )
        frames.append(_prediction_numbers(frame[list(OUTPUT_COLUMNS)], file))
    return pd.concat(frames, ignore_index=True)


def _csv_lines(file: Path) -> pd.DataFrame:
    """The CSV lines of a transform output as text, one column per field (a missing field reads as '')."""
    try:
        frame = pd.read_csv(file, header=None, dtype=str, keep_default_na=False)
    except pd.errors.ParserError as error:
        raise DataValidationError(
            f"{file}: the prediction lines do not all have the same number of fields ({str(error).strip()}); "
            f"every line must hold {len(OUTPUT_COLUMNS)} numbers ({','.join(OUTPUT_COLUMNS)})."
        ) from None
    if frame.shape[1] != len(OUTPUT_COLUMNS):
        raise DataValidationError(
            f"{file} has {frame.shape[1]} columns per line; expected {len(OUTPUT_COLUMNS)} "
            f"({','.join(OUTPUT_COLUMNS)}). Run the transform with every quantile: give the model the "
            f"environment {DEFAULT_QUANTILES_ENV}={ALL_QUANTILES} (the pipelines do), or send "
            f"X-Amzn-SageMaker-Custom-Attributes: quantiles={ALL_QUANTILES}; images before the point "
            "forecast was added wrote p10,p50,p90 only."
        )
    frame.columns = list(OUTPUT_COLUMNS)
    return frame


def _prediction_numbers(frame: pd.DataFrame, file: Path) -> pd.DataFrame:
    """``frame`` as floats; a value that is no finite number >= 0 raises naming the file, line and field."""
    try:  # Python's float(): correctly rounded, the server's shortest round-trip text back to the same double
        numeric = frame.astype(float)
    except (TypeError, ValueError):  # a value that is no number: coerced to NaN, then named below
        numeric = frame.apply(pd.to_numeric, errors="coerce").astype(float)
    bad = ~np.isfinite(numeric.to_numpy()) | (numeric.to_numpy() < 0)
    if bad.any():
        line, column = np.argwhere(bad)[0]
        raise DataValidationError(
            f"{file} line {line + 1} has the {OUTPUT_COLUMNS[column]} value {shown(frame.iat[line, column])}; "
            "prediction lines must be finite numbers >= 0 (as the forecaster's server writes them)."
        )
    return numeric
