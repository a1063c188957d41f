"""Forecasts made every day of a fold, as a store's daily batch forecast makes them (replenishment.py).

The fold's model is trained once, on the days before the fold. A store then forecasts every day from the latest
sales: the forecast of origin k (k = 0 … test_days - 1) reads the history plus the fold's first k days (every
column: sales, stockout hours, weather) and forecasts the fold's days k … end. Origin 0 is the fold's own forecast.
The child of ``accuracy.py`` (``--reforecast``) writes them as ``<model>-fold<K>-daily.parquet`` with a column
``origin``; ``replenishment.py --daily-forecasts`` stamps origin k with the day it was made (the fold's day k - 1)
and orders on day t from origin t + 1 (the sales of day t known) through
:func:`forecaster.simulation.forecasts_by_order_day`, the function behind ``forecaster orders simulate
--origin-column``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from _scoring import DATE

ORIGIN = "origin"

#: (history, future) -> forecast frame: keys, date and the forecast columns
Forecast = Callable[[pd.DataFrame, pd.DataFrame], pd.DataFrame]


def every_origin(history: pd.DataFrame, test: pd.DataFrame, future: pd.DataFrame, forecast: Forecast) -> pd.DataFrame:
    """The forecasts of origins 1 … (the fold's days - 1), stacked with a column ``origin``.

    ``test``: every column of the fold's days (what becomes history as the days pass); ``future``: the fold's
    known-future frame. Origin 0 is the caller's own forecast.
    """
    days = np.sort(future[DATE].unique())
    frames = []
    for k in range(1, len(days)):
        seen = pd.concat([history, test[test[DATE] < days[k]]], ignore_index=True)
        frame = forecast(seen, future[future[DATE] >= days[k]].reset_index(drop=True))
        frames.append(frame.assign(**{ORIGIN: k}))
    return pd.concat(frames, ignore_index=True)
