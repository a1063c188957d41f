"""Forecast evaluation: join predictions with ground truth and score them (``evaluation.json``).

``evaluation.json`` has the Model Monitor model-quality shape (``regression_metrics`` with ``mae``, ``mse``,
``rmse``, ``r2``, each ``{"value", "standard_deviation"}``) so a ConditionStep can read
``regression_metrics.mae.value`` and the registry can use it as model-quality statistics, plus
``forecast_metrics`` (WAPE, bias, pinball loss per quantile, coverage) overall and split by campaign days.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from forecaster import metrics
from forecaster.contract import MEDIAN_COLUMN, ORDERS_FILE, POINT_COLUMN, QUANTILE_COLUMNS, SKIPPED_FILE
from forecaster.days import parse_days
from forecaster.errors import DataValidationError, shown
from forecaster.io import read_table, table_files
from forecaster.tables import check_unique

#: Rows needed before ``standard_deviation`` is estimated (as Model Monitor does); below it is the string "NaN".
MIN_ROWS_FOR_STD = 200
#: Repeated random subsamples (80 % of the rows each) used for ``standard_deviation``.
STD_REPEATS = 20
STD_FRACTION = 0.8
_QUANTILE_COLUMN = re.compile(r"^p(\d{1,2})$")

logger = logging.getLogger(__name__)


def quantile_columns(columns: pd.Index | list[str]) -> dict[str, float]:
    """Map the quantile forecast columns (``p10``, ``p50``, ``p90`` ...) to their quantile level."""
    found = {}
    for column in columns:
        match = _QUANTILE_COLUMN.match(str(column))
        if match and 0 < int(match.group(1)) < 100:
            found[str(column)] = int(match.group(1)) / 100
    return dict(sorted(found.items(), key=lambda item: item[1]))


def read_forecasts(path: Path, text: tuple[str, ...] = ()) -> pd.DataFrame:
    """The forecasts at ``path``: a file, or the table files of a folder but the order proposals beside them.

    ``text``: columns read as text, as written (the keys: ``007`` must meet the truth's ``007``).
    """
    if not Path(path).is_dir():
        return read_table(path, text=text)
    skipped = Path(SKIPPED_FILE).stem  # skipped_series.csv, or skipped_series-P.csv of a partition
    files = [file for file in table_files(path) if file.name != ORDERS_FILE and not file.stem.startswith(skipped)]
    if not files:
        raise DataValidationError(
            f"{path} holds no forecast table (only {ORDERS_FILE} or {SKIPPED_FILE}); point at the forecasts' folder."
        )
    return pd.concat([read_table(file, text=text) for file in files], ignore_index=True)


def join_predictions(
    predictions: pd.DataFrame,
    truth: pd.DataFrame,
    *,
    id_cols: list[str],
    time_col: str,
    target_col: str,
    campaign_col: str | None = None,
    date_format: str | None = None,
    negative_target: str = "clip",
) -> pd.DataFrame:
    """Inner-join predictions with the ground truth on ``id_cols`` + ``time_col``.

    Returns the prediction columns plus ``y`` (the actual) and, when ``campaign_col`` is in ``truth``,
    ``campaign`` (bool). Keys are compared as strings and dates at day precision, so a CSV and a Parquet file
    join. Dates are read in the spec's ``date_format`` (the user's ground truth), else as ISO dates (what the
    forecaster writes). Negative actuals (returns) count as 0, as in training, or are refused with
    ``negative_target="error"`` (the spec's ``negative_target``).

    Raises:
        DataValidationError: for a missing column or when no prediction has an actual.
    """
    for name, frame, needed in (
        ("predictions", predictions, [*id_cols, time_col]),
        ("truth", truth, [*id_cols, time_col, target_col]),
    ):
        missing = [c for c in needed if c not in frame.columns]
        if missing:
            raise DataValidationError(
                f"The {name} have no column {missing[0]!r} (columns: {list(frame.columns)}). Pass the dataset spec "
                "that names the key, date and target columns (--spec or --model-dir)."
            )
    if not quantile_columns(predictions.columns) and POINT_COLUMN not in predictions.columns:
        raise DataValidationError(
            f"The predictions have no forecast column ({'/'.join(QUANTILE_COLUMNS)} or {POINT_COLUMN}); columns: "
            f"{list(predictions.columns)}."
        )
    predictions = _finite_forecasts(predictions)
    keep = [*id_cols, time_col, target_col]
    if campaign_col and campaign_col in truth.columns:
        keep.append(campaign_col)
    right = _normalise_keys(truth[keep], id_cols, time_col, date_format, "truth").rename(columns={target_col: "y"})
    if campaign_col and campaign_col in right.columns:
        right = right.rename(columns={campaign_col: "campaign"})
        right["campaign"] = pd.to_numeric(right["campaign"], errors="coerce").fillna(0).to_numpy() > 0
    right["y"] = _actuals(right["y"], negative_target)
    right = right[right["y"].notna()].drop_duplicates()  # a day exported twice with the same actual: one row
    check_unique(right, [*id_cols, time_col], "truth", "keep one actual per series and day (they differ)")
    predicted = predictions.drop(columns=[target_col, "y", "campaign"], errors="ignore")
    left = _normalise_keys(predicted, id_cols, time_col, date_format, "predictions")
    fix = "keep one forecast per series and day (scoring a row twice would weigh it twice)"
    check_unique(left, [*id_cols, time_col], "predictions", fix)
    joined = left.merge(right, on=[*id_cols, time_col], how="inner", validate="many_to_one").reset_index(drop=True)
    if joined.empty:
        raise DataValidationError(
            f"None of the {len(predictions)} predictions has an actual in the truth data (joined on "
            f"{[*id_cols, time_col]}). Check that the truth covers the forecast dates and uses the same keys."
        )
    if len(joined) < len(left):
        logger.log(
            logging.WARNING if len(joined) < len(left) / 2 else logging.INFO,
            "%d of %d predictions have an actual in the truth data (%.0f %%): the metrics describe those rows only.",
            len(joined), len(left), 100 * len(joined) / len(left),
        )  # fmt: skip
    return joined


def _actuals(values: pd.Series, negative_target: str) -> pd.Series:
    """The actuals as floats (missing: NaN, not scored; negative: 0, as training counts returns).

    Raises:
        DataValidationError: for a value that is text, not a number, or a negative one with
            ``negative_target="error"``, naming its row.
    """
    numbers = pd.to_numeric(values, errors="coerce")
    bad = np.flatnonzero((numbers.isna() & values.notna()).to_numpy())
    if bad.size:
        raise DataValidationError(
            f"The truth's row {bad[0] + 1}: the actual {values.iat[bad[0]]!r} is not a number. Give a number, or "
            "leave the cell empty where the actual is not known yet."
        )
    negative = np.flatnonzero((numbers < 0).to_numpy())
    if negative.size and negative_target == "error":
        raise DataValidationError(
            f"The truth's row {negative[0] + 1}: the actual {shown(values.iat[negative[0]])} is negative (returns). "
            'Record returns separately, or set "negative_target": "clip" in the spec to count them as 0.'
        )
    if negative.size:
        logger.warning(
            "%d of %d actuals are negative (returns); counted as 0, as in training (negative_target=clip)",
            negative.size, len(numbers),
        )  # fmt: skip
    return numbers.astype(float).clip(lower=0)


def _finite_forecasts(predictions: pd.DataFrame) -> pd.DataFrame:
    """The forecast columns as floats; a value that is not a finite number raises naming its row and column.

    A gate must not pass on forecasts it cannot score: NaN would make every metric NaN and every check silent.
    """
    columns = [*quantile_columns(predictions.columns), *([POINT_COLUMN] if POINT_COLUMN in predictions else [])]
    converted = {}
    for column in columns:
        values = pd.to_numeric(predictions[column], errors="coerce").to_numpy(dtype=float)
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            raise DataValidationError(
                f"The predictions' row {bad[0] + 1}, column {column!r}: {predictions[column].iat[bad[0]]} is not a "
                "finite number. Every forecast must be one; leave out the rows of a series the model could not "
                "forecast."
            )
        converted[column] = values
    return predictions.assign(**converted)


def _normalise_keys(
    frame: pd.DataFrame, id_cols: list[str], time_col: str, date_format: str | None, what: str
) -> pd.DataFrame:
    out = frame.copy()
    for column in id_cols:
        out[column] = out[column].astype(str)
    values = out[time_col]
    dates = parse_days(values)  # ISO, as the forecaster writes; the spec's format for the user's ground truth
    if date_format and not pd.api.types.is_datetime64_any_dtype(values):
        dates = parse_days(values, date_format).fillna(dates)
    if dates.isna().any():
        row = int(np.flatnonzero(dates.isna().to_numpy())[0])
        expected = f"dates in the format {date_format!r} or" if date_format else "dates like"
        raise DataValidationError(
            f"The {time_col!r} column of the {what} must hold {expected} 2024-05-31. Got "
            f"{shown(frame[time_col].iat[row])} in row {row + 1} instead."
        )
    out[time_col] = dates
    return out


def point_column(frame: pd.DataFrame) -> str:
    """The point forecast scored by the regression metrics: ``mean`` when present, else ``p50``."""
    for name in (POINT_COLUMN, MEDIAN_COLUMN):
        if name in frame.columns:
            return name
    raise DataValidationError(
        f"The predictions need a {POINT_COLUMN!r} or {MEDIAN_COLUMN!r} column for the point forecast."
    )


def regression_metrics(y: np.ndarray, yhat: np.ndarray, *, seed: int = 0) -> dict[str, dict[str, Any]]:
    """Return mae, mse, rmse, r2 (and wape) as ``{"value", "standard_deviation"}`` (Model Monitor's layout).

    ``wape`` is an extra next to Model Monitor's four: the build pipeline's condition step reads
    ``regression_metrics.wape.value``.

    ``standard_deviation`` is the spread over ``STD_REPEATS`` random 80 % subsamples; with fewer than
    ``MIN_ROWS_FOR_STD`` rows it is the string ``"NaN"``, as in Model Monitor's output.
    """
    funcs = {"mae": metrics.mae, "mse": metrics.mse, "rmse": metrics.rmse, "r2": metrics.r2, "wape": metrics.wape}
    result: dict[str, dict[str, Any]] = {}
    samples = _subsamples(len(y), seed) if len(y) >= MIN_ROWS_FOR_STD else None
    for name, func in funcs.items():
        value = func(y, yhat)
        std: Any = "NaN"
        if samples is not None:
            std = float(np.std([func(y[idx], yhat[idx]) for idx in samples], ddof=1))
        result[name] = {"value": _finite(value), "standard_deviation": std}
    return result


def _subsamples(n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    size = max(1, round(n * STD_FRACTION))
    return [rng.choice(n, size=size, replace=False) for _ in range(STD_REPEATS)]


def _finite(value: float) -> float | str:
    return float(value) if np.isfinite(value) else "NaN"


def forecast_metrics(frame: pd.DataFrame, point: str) -> dict[str, Any]:
    """WAPE, bias, MAE, RMSE, pinball loss per quantile column and coverage on one joined frame."""
    y = frame["y"].to_numpy(dtype=float)
    yhat = frame[point].to_numpy(dtype=float)
    quantiles = quantile_columns(frame.columns)
    out: dict[str, Any] = {
        "rows": len(frame),
        "actual_total": float(np.nansum(y)),
        "forecast_total": float(np.nansum(yhat)),
        "wape": _finite(metrics.wape(y, yhat)),
        "bias": _finite(metrics.bias(y, yhat)),
        "mae": _finite(metrics.mae(y, yhat)),
        "rmse": _finite(metrics.rmse(y, yhat)),
        "pinball": {c: _finite(metrics.pinball(y, frame[c].to_numpy(dtype=float), q)) for c, q in quantiles.items()},
        "coverage": {c: _finite(metrics.coverage(y, frame[c].to_numpy(dtype=float))) for c in quantiles},
    }
    lowest, highest = QUANTILE_COLUMNS[0], QUANTILE_COLUMNS[-1]
    if lowest in quantiles and highest in quantiles:
        low, high = frame[lowest].to_numpy(dtype=float), frame[highest].to_numpy(dtype=float)
        inside = (y >= low) & (y <= high)
        out["coverage"][f"{lowest}_{highest}"] = float(inside.mean()) if len(y) else "NaN"
    sold = y > 0  # intermittent demand: a zero sale is at or below every quantile, so coverage counts it as hit
    for column in quantiles:
        out["coverage"][f"{column}_sold"] = _finite(
            metrics.coverage(y[sold], frame[column].to_numpy(dtype=float)[sold])
        )
    return out


def evaluate_joined(joined: pd.DataFrame, *, seed: int = 0) -> dict[str, Any]:
    """Build the ``evaluation.json`` document from a frame made by :func:`join_predictions`."""
    point = point_column(joined)
    y = joined["y"].to_numpy(dtype=float)
    yhat = joined[point].to_numpy(dtype=float)
    splits: dict[str, Any] = {"overall": forecast_metrics(joined, point)}
    if "campaign" in joined.columns:
        mask = joined["campaign"].to_numpy(dtype=bool)
        for name, rows in (("campaign", mask), ("non_campaign", ~mask)):
            if rows.any():
                splits[name] = forecast_metrics(joined[rows], point)
    return {
        "version": 0.0,
        "dataset": {"item_count": len(joined), "evaluation_time": _now()},
        "regression_metrics": regression_metrics(y, yhat, seed=seed),
        "point_forecast": point,
        "forecast_metrics": splits,
    }


def evaluate(
    predictions: pd.DataFrame,
    truth: pd.DataFrame,
    *,
    id_cols: list[str],
    time_col: str,
    target_col: str,
    campaign_col: str | None = None,
    date_format: str | None = None,
    negative_target: str = "clip",
    seed: int = 0,
) -> dict[str, Any]:
    """Join ``predictions`` with ``truth`` and return the ``evaluation.json`` document.

    Also reports how many predictions had no actual (``dataset.unmatched_predictions``).
    """
    joined = join_predictions(
        predictions,
        truth,
        id_cols=id_cols,
        time_col=time_col,
        target_col=target_col,
        campaign_col=campaign_col,
        date_format=date_format,
        negative_target=negative_target,
    )
    document = evaluate_joined(joined, seed=seed)
    document["dataset"]["unmatched_predictions"] = len(predictions) - len(joined)
    return document


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
