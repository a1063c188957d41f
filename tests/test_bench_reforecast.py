"""bench/_reforecast.py: the forecasts of every origin of a fold, each made from the sales before it."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

BENCH = str(Path(__file__).resolve().parents[1] / "bench")
sys.path.insert(0, BENCH)  # only while importing: bench/docker.py would shadow the Docker SDK for later tests
try:
    from _reforecast import every_origin
finally:
    sys.path.remove(BENCH)


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
