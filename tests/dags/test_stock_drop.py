"""The daily DAG with a stock drop: extract validates and stages it, the orders count it, per store.

``<source>/stock/<order day>.csv`` is the stock counted at the close of the day before the first forecast day.
Without it (the flow of test_local_flow.py) the orders say ``stock_considered`` False; with it the delivered
per-store order files are the ordering policy's lines; a bad drop fails extract and nothing is delivered.
"""

from __future__ import annotations

import datetime as dt
import shutil

import pandas as pd
import pytest

from dags.helpers import FIRST_DAY, run_dag

pytestmark = pytest.mark.slow

ORDER_DAY = FIRST_DAY - dt.timedelta(days=1)


def _with_stock(flow, tmp_path, **first_row) -> dict:
    """A copy of the flow's source with a stock drop of every series; the config writes under ``tmp_path``."""
    source = tmp_path / "source"
    shutil.copytree(flow["tmp"] / "source", source)
    series = pd.read_csv(source / "plan" / f"{FIRST_DAY}.csv")[["store_id", "item_id"]].drop_duplicates()
    stock = series.assign(stock_date=str(ORDER_DAY), on_hand_units=[i % 5 for i in range(len(series))])
    for column, value in first_row.items():
        stock.iloc[0, stock.columns.get_loc(column)] = value
    (source / "stock").mkdir()
    stock.to_csv(source / "stock" / f"{ORDER_DAY}.csv", index=False)
    config = {**flow["config"], "source": str(source), "destination": str(tmp_path / "deliveries")}
    return {**config, "staging": str(tmp_path / "staging")}


def test_without_a_stock_drop_the_orders_say_stock_was_not_considered(flow):
    orders = pd.read_csv(flow["tmp"] / "deliveries" / str(FIRST_DAY) / "orders" / "store_id=S001.csv")
    assert not orders["stock_considered"].any()


def test_the_stock_drop_is_validated_staged_and_counted_in_the_delivered_orders(flow, dagbag, monkeypatch, tmp_path):
    config = _with_stock(flow, tmp_path)
    result = run_dag(
        dagbag, monkeypatch, "forecaster_daily_forecast", FIRST_DAY, config, backend="local", redeliver=True
    )
    assert result["extract"] == "success" and result["deliver"] == "success", result
    staged = list((tmp_path / "staging").rglob(f"stock/{ORDER_DAY}.csv"))
    assert len(staged) == 1
    stock = pd.read_csv(tmp_path / "source" / "stock" / f"{ORDER_DAY}.csv")
    orders = sorted((tmp_path / "deliveries" / str(FIRST_DAY) / "orders").iterdir())
    assert [p.name for p in orders] == ["store_id=S001.csv", "store_id=S002.csv", "store_id=S003.csv"]
    lines = pd.concat([pd.read_csv(p) for p in orders], ignore_index=True)
    assert lines["stock_considered"].all() and (lines["order_date"] == str(ORDER_DAY)).all()
    assert len(lines) == len(stock)  # one order line per series that orders today (daily by default)
    joined = lines.merge(stock, on=["store_id", "item_id"])
    assert (joined["stock_counted"] <= joined["on_hand_units"]).all() and joined["stock_counted"].sum() > 0


@pytest.mark.parametrize(
    ("first_row", "message"),
    [
        ({"on_hand_units": -3}, "row 1, column 'on_hand_units': must be a finite number >= 0. Got -3"),
        ({"item_id": "durian"}, "which is not among the forecast series"),
        ({"stock_date": str(ORDER_DAY - dt.timedelta(days=1))}, f"not on the order day {ORDER_DAY}"),
    ],
)
def test_a_bad_stock_drop_fails_extract_and_nothing_is_delivered(
    flow, dagbag, monkeypatch, tmp_path, capfd, first_row, message
):
    config = _with_stock(flow, tmp_path, **first_row)
    result = run_dag(dagbag, monkeypatch, "forecaster_daily_forecast", FIRST_DAY, config, backend="local")
    assert result["extract"] == "failed" and result["deliver"] == "upstream_failed", result
    assert not (tmp_path / "deliveries").exists() and not (tmp_path / "staging").exists()
    log = capfd.readouterr()
    text = log.out + log.err
    assert f"Bad drop {tmp_path / 'source' / 'stock' / f'{ORDER_DAY}.csv'}" in text and message in text, text[-3000:]
