"""bench/_reforecast.py: the forecasts of every origin of a fold, and the policy that orders from the day's one."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from _reforecast import daily_policy, every_origin
from forecaster.replenishment import Day


def test_every_origin_reads_the_days_before_it_and_forecasts_the_rest():
    days = pd.date_range("2024-05-01", periods=5)
    history = pd.DataFrame({"store_id": 1, "product_id": 7, "dt": pd.date_range("2024-04-01", periods=30),
                            "sale_amount": 1.0})  # fmt: skip
    test = pd.DataFrame({"store_id": 1, "product_id": 7, "dt": days, "sale_amount": [2.0, 3.0, 4.0, 5.0, 6.0]})
    future = test[["store_id", "product_id", "dt"]]
    seen = []

    def forecast(known: pd.DataFrame, ahead: pd.DataFrame) -> pd.DataFrame:
        seen.append((known["dt"].max(), known["sale_amount"].sum(), ahead["dt"].min(), len(ahead)))
        return ahead.assign(mean=known["sale_amount"].iloc[-1])

    out = every_origin(history, test, future, forecast)
    assert [s[0] for s in seen] == list(days[:4])  # origin k knows the fold's first k days
    assert [s[1] for s in seen] == [32.0, 35.0, 39.0, 44.0]
    assert [s[2] for s in seen] == list(days[1:]) and [s[3] for s in seen] == [4, 3, 2, 1]
    assert out.groupby("origin").size().to_dict() == {1: 4, 2: 3, 3: 2, 4: 1}
    assert out.loc[out["origin"] == 3, "mean"].tolist() == [4.0, 4.0]  # made from the sales up to day 3


def test_daily_policy_orders_on_day_t_from_origin_t_plus_one():
    calls = []
    policies = [lambda day, k=k: calls.append(k) or np.full(day.rows.size, float(k)) for k in range(3)]
    policy = daily_policy(policies)
    empty = np.zeros(1)

    def day(t: int) -> Day:
        return Day(t, np.array([0]), empty + 1, empty + 3, np.zeros((1, 3)), empty, empty + 1)

    assert [policy(day(t))[0] for t in (-1, 0, 1, 2)] == [0.0, 1.0, 2.0, 2.0]  # the first fill: origin 0
    assert calls == [0, 1, 2, 2]
