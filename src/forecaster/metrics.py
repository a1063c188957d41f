"""Forecast accuracy metrics on aligned arrays (flat functions, no I/O).

Conventions: ``y`` is the actual, ``yhat`` the forecast; NaN in either drops that pair. Every function returns a
plain float (NaN when nothing is left to score).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

ArrayLike = npt.ArrayLike


def _pairs(y: ArrayLike, yhat: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    y_arr = np.asarray(y, dtype=float)
    yhat_arr = np.asarray(yhat, dtype=float)
    if y_arr.shape != yhat_arr.shape:
        raise ValueError(f"y and yhat must have the same shape. Got {y_arr.shape} and {yhat_arr.shape} instead.")
    keep = ~(np.isnan(y_arr) | np.isnan(yhat_arr))
    return y_arr[keep], yhat_arr[keep]


def wape(y: ArrayLike, yhat: ArrayLike) -> float:
    """Weighted absolute percentage error: sum|y - yhat| / sum y."""
    y_arr, yhat_arr = _pairs(y, yhat)
    total = y_arr.sum()
    return float(np.abs(y_arr - yhat_arr).sum() / total) if total > 0 else float("nan")


def bias(y: ArrayLike, yhat: ArrayLike) -> float:
    """Relative bias: sum(yhat - y) / sum y (positive = over-forecast)."""
    y_arr, yhat_arr = _pairs(y, yhat)
    total = y_arr.sum()
    return float((yhat_arr - y_arr).sum() / total) if total > 0 else float("nan")


def mae(y: ArrayLike, yhat: ArrayLike) -> float:
    """Mean absolute error."""
    y_arr, yhat_arr = _pairs(y, yhat)
    return float(np.mean(np.abs(y_arr - yhat_arr))) if y_arr.size else float("nan")


def mse(y: ArrayLike, yhat: ArrayLike) -> float:
    """Mean squared error."""
    y_arr, yhat_arr = _pairs(y, yhat)
    return float(np.mean((y_arr - yhat_arr) ** 2)) if y_arr.size else float("nan")


def rmse(y: ArrayLike, yhat: ArrayLike) -> float:
    """Root mean squared error."""
    return float(np.sqrt(mse(y, yhat)))


def r2(y: ArrayLike, yhat: ArrayLike) -> float:
    """Coefficient of determination (1 - SSE/SST); NaN when y is constant."""
    y_arr, yhat_arr = _pairs(y, yhat)
    if y_arr.size == 0:
        return float("nan")
    sst = float(((y_arr - y_arr.mean()) ** 2).sum())
    return 1.0 - float(((y_arr - yhat_arr) ** 2).sum()) / sst if sst > 0 else float("nan")


def pinball(y: ArrayLike, yhat: ArrayLike, quantile: float) -> float:
    """Mean pinball (quantile) loss of ``yhat`` as the ``quantile`` forecast."""
    if not 0 < quantile < 1:
        raise ValueError(f"The 'quantile' parameter of pinball must be in (0, 1). Got {quantile!r} instead.")
    y_arr, yhat_arr = _pairs(y, yhat)
    diff = y_arr - yhat_arr
    return float(np.mean(np.maximum(quantile * diff, (quantile - 1) * diff))) if y_arr.size else float("nan")


def coverage(y: ArrayLike, upper: ArrayLike) -> float:
    """Share of actuals at or below ``upper`` (a P90 forecast should cover about 0.9)."""
    y_arr, upper_arr = _pairs(y, upper)
    return float(np.mean(y_arr <= upper_arr)) if y_arr.size else float("nan")
