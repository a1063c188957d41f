"""The replay: arrival, FIFO sales, expiry and the summary on hand-made days; calibration; orders simulate."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from forecaster.cli.main import main
from forecaster.errors import DataValidationError
from forecaster.order_defaults import OrderDefaults
from forecaster.order_items import ItemNumbers
from forecaster.order_policy import copula_normals, daily_quantile
from forecaster.replenishment import Day, Replay, daily_quantile_policy, per_order_day, period_coverage, simulate
from forecaster.simulation import simulate_files


def items(n: int = 1, shelf: int = 2, pack: float = 1.0) -> ItemNumbers:
    return ItemNumbers(
        pack_size=np.full(n, pack),
        shelf_life_days=np.full(n, shelf, dtype=np.int64),
        unit_cost=np.full(n, 0.6),
        unit_price=np.full(n, 1.0),
        min_display_units=np.zeros(n),
    )


def replay(demand, shelf=2, leads=None) -> Replay:
    demand = np.atleast_2d(np.asarray(demand, dtype=float))
    n, days = demand.shape
    return Replay(
        demand,
        np.ones_like(demand, dtype=bool),
        items(n, shelf),
        leads if leads is not None else np.ones((n, 7)),
        np.arange(days) % 7,
    )


def constant(units: float):
    return lambda day: np.full(day.rows.size, units)


def test_fifo_sales_and_expiry_day_by_day():
    # 5 units arrive every day (first fill included), 2-day shelf life; demand 3, 3, 0, 12
    result = simulate(replay([3, 3, 0, 12]), constant(5))
    # day 0: 5 in, sell 3 (2 left, expire end of day 1); day 1: +5, sell the older 2 + 1 -> 4 left;
    # day 2: +5, sell 0, the 4 of day 1 expire -> 5 left; day 3: +5, sell 10 of 12, sold out
    assert result["sold_units"] == 16 and result["waste_units"] == 4 and result["delivered_units"] == 20
    assert result["lost_units"] == 2 and result["fill_rate"] == pytest.approx(16 / 18)
    assert result["empty_shelf_share"] == pytest.approx(1 / 4)  # day 3 ended sold out
    assert result["waste_value"] == pytest.approx(4 * 0.6) and result["lost_margin"] == pytest.approx(2 * 0.4)
    assert result["total_cost"] == pytest.approx(3.2)
    assert result["waste_share_of_delivered"] == pytest.approx(4 / 20)
    assert result["mean_days_of_cover"] == pytest.approx((2 + 4 + 5 + 0) / 18)


def test_orders_follow_the_calendar_and_its_lead_time():
    leads = np.full((1, 7), np.nan)
    leads[0, [0, 3]] = 2  # orders on day 0 and 3 (weekdays 0 and 3), on the shelf two days later
    seen = []

    def policy(day):
        seen.append((day.t, int(day.days_covered[0]), int(day.lead[0])))
        return np.full(1, 10.0)

    result = simulate(replay([1] * 10, shelf=30, leads=leads), policy)
    # the first fill (day -1), then orders on day 0 (covers days 1..4: next order on 3 arrives on 5), day 3, and
    # day 7 (on the shelf on day 9, the last: its days covered run past the replay, and it is placed all the same)
    assert [s[0] for s in seen] == [-1, 0, 3, 7] and seen[1][1:] == (4, 2) and seen[2][1:] == (5, 2)
    assert result["delivered_units"] == 40 and result["sold_units"] == 10


def test_daily_quantile_policy_orders_the_arrival_days_quantile():
    quantiles = np.array([[[1.0, 1.0, 1.0], [2.0, 2.0, 2.0], [4.0, 4.0, 4.0]]])  # p10, p50, p90 over 3 days
    result = simulate(replay([0, 0, 0], shelf=1), daily_quantile_policy(quantiles, 0.8))
    assert result["delivered_units"] == 3 * 4 - 4 + 4  # ceil(2 + 0.75 x 2) = 4 per day, no stock netted
    assert result["waste_units"] == result["delivered_units"]


def test_period_sum_coverage_is_calibrated_when_the_model_is_true():
    rng = np.random.default_rng(1)
    n, days, rho = 6000, 6, 0.4
    p50 = rng.uniform(2, 8, (n, 1)).repeat(days, axis=1)
    quantiles = np.stack([p50 * 0.6, p50, p50 * 1.6], axis=1)
    common = rng.standard_normal((n, 1))
    z = np.sqrt(rho) * common + np.sqrt(1 - rho) * rng.standard_normal((n, days))
    actual = daily_quantile(quantiles[:, 0], quantiles[:, 1], quantiles[:, 2], z)
    right = period_coverage(quantiles, actual, OrderDefaults(correlation=rho))
    assert max(abs(v - float(k.split("P")[1]) / 100) for k, v in right.items()) < 0.025, right
    wrong = period_coverage(quantiles, actual, OrderDefaults(correlation=0.0))
    assert wrong["k=3 P95"] < right["k=3 P95"] - 0.02  # independence understates the spread of a sum


def test_copula_normals_have_the_asked_correlation():
    z = copula_normals(4000, 3, 0.6)
    assert np.corrcoef(z.T)[0, 1] == pytest.approx(0.6, abs=0.05) and z.std() == pytest.approx(1, abs=0.05)


def test_cli_orders_simulate_on_synthetic_data(tmp_path, capsys):
    from forecaster.synth import generate

    frame = generate(stores=2, items=4, days=50, seed=0)
    history, test = frame.iloc[:0], frame[frame["date"] >= frame["date"].max() - pd.Timedelta(days=9)]
    history = frame[frame["date"] < test["date"].min()]
    level = history.groupby(["store_id", "item_id"])["units_sold"].agg(["mean"]).reset_index()
    forecasts = test[["store_id", "item_id", "date"]].merge(level, on=["store_id", "item_id"])
    forecasts = forecasts.assign(p10=forecasts["mean"] * 0.5, p50=forecasts["mean"], p90=forecasts["mean"] * 1.6)
    forecasts = forecasts[["store_id", "item_id", "date", "p10", "p50", "p90", "mean"]]
    forecasts.to_csv(tmp_path / "forecasts.csv", index=False)
    frame.to_csv(tmp_path / "actuals.csv", index=False)
    out = tmp_path / "sim.json"
    args = ["orders", "simulate", "--forecasts", tmp_path / "forecasts.csv", "--actuals", tmp_path / "actuals.csv"]
    assert main([*map(str, args), "--stockout", "stockout_hours", "--out", str(out)]) == 0
    results = json.loads(out.read_text())
    assert set(results["policies"]) == {"forecaster", "daily_quantile", "rule_of_thumb"}
    for summary in results["policies"].values():
        assert summary["series"] == 8 and summary["days"] == 10 and 0 < summary["fill_rate"] <= 1
        assert summary["sold_units"] <= summary["demand_units"] and summary["waste_units"] >= 0
    assert results["policies"]["forecaster"]["waste_units"] < results["policies"]["daily_quantile"]["waste_units"]
    assert set(results["calibration"]) == {f"k={k} P{p}" for k in (1, 2, 3) for p in (50, 80, 95)}


def test_each_order_day_uses_its_own_policy():
    calls = []
    policy = per_order_day([lambda day, k=k: calls.append(k) or np.full(day.rows.size, float(k)) for k in range(3)])
    one = np.ones(1)

    def day(t: int) -> Day:
        return Day(t, np.array([0]), one, one * 3, np.zeros((1, 3)), one * 0, one)

    assert [policy(day(t))[0] for t in (-1, 0, 1, 2)] == [0.0, 1.0, 2.0, 2.0]  # t = -1: the first fill
    assert calls == [0, 1, 2, 2]


def daily_runs(days: int = 8, horizon: int = 3):
    """Actual sales of 3 series, and forecasts made every day: a useless first one, then exact ones."""
    dates = pd.date_range("2024-05-01", periods=40)
    rng = np.random.default_rng(0)
    actuals = pd.DataFrame(
        [(f"S{s}", "I1", d, float(rng.integers(1, 9))) for s in range(3) for d in dates],
        columns=["store_id", "item_id", "date", "units_sold"],
    )
    first = dates[-days]
    runs = []
    for k in range(days):
        made = first - pd.Timedelta(days=1) + pd.Timedelta(days=k)
        ahead = actuals[(actuals["date"] > made) & (actuals["date"] <= made + pd.Timedelta(days=horizon))]
        value = ahead["units_sold"] if k > 0 else ahead["units_sold"] * 0 + 20.0
        runs.append(ahead[["store_id", "item_id", "date"]].assign(p10=value, p50=value, p90=value, mean=value,
                                                                  forecast_date=made))  # fmt: skip
    return actuals, pd.concat(runs, ignore_index=True)


def test_simulate_orders_each_day_from_the_newest_forecast():
    actuals, forecasts = daily_runs()
    results = simulate_files(forecasts, actuals, target="units_sold", origin="forecast_date")
    assert results["forecasts"] == {"origin_column": "forecast_date", "forecasts_used": 8, "days": 8}
    ours = results["policies"]["forecaster"]
    # the first fill comes from the useless forecast (20 units a day); every later order from an exact one
    assert ours["days"] == 8 and ours["fill_rate"] == 1.0 and 0 < ours["waste_units"] < 3 * 20
    # the first fill's 20 units sell for 3 days (the shelf life), the rest is thrown away; no later order wastes
    replayed = actuals[actuals["date"] >= forecasts["date"].min()].groupby("store_id")["units_sold"]
    assert ours["waste_units"] == pytest.approx(sum(max(20 - s.iloc[:3].sum(), 0) for _, s in replayed))
    assert ours["delivered_units"] == ours["sold_units"] + ours["waste_units"]  # exact orders: nothing left over
    assert results["calibration"]["k=1 P50"] == 1.0  # exact forecasts: every sum at or below its quantile
    assert "rule_of_thumb" in results["policies"]


def test_simulate_rejects_forecasts_that_cannot_have_been_made_by_the_order_day():
    actuals, forecasts = daily_runs()
    with pytest.raises(DataValidationError, match="no column 'made'"):
        simulate_files(forecasts, actuals, target="units_sold", origin="made")
    late = forecasts.assign(forecast_date=forecasts["forecast_date"] + pd.Timedelta(days=1))
    with pytest.raises(DataValidationError, match=r"Row 1 of the forecasts .* come after the day it was made"):
        simulate_files(late, actuals, target="units_sold", origin="forecast_date")
    gap = forecasts[~((forecasts["forecast_date"] == forecasts["forecast_date"].min() + pd.Timedelta(days=2))
                      & (forecasts["store_id"] == "S1"))]  # fmt: skip
    with pytest.raises(DataValidationError, match="made on 2024-06-03 has no row for 1 of the 3 series on 2024-06-04"):
        simulate_files(gap, actuals, target="units_sold", origin="forecast_date")


def test_cli_orders_simulate_with_an_origin_column(tmp_path, capsys):
    actuals, forecasts = daily_runs()
    forecasts.to_csv(tmp_path / "forecasts.csv", index=False)
    actuals.to_csv(tmp_path / "actuals.csv", index=False)
    args = ["orders", "simulate", "--forecasts", tmp_path / "forecasts.csv", "--actuals", tmp_path / "actuals.csv"]
    args += ["--target", "units_sold", "--out", tmp_path / "sim.json"]
    assert main([*map(str, args), "--origin-column", "forecast_date"]) == 0
    results = json.loads((tmp_path / "sim.json").read_text())
    assert results["forecasts"]["forecasts_used"] == 8 and results["policies"]["forecaster"]["fill_rate"] == 1.0
    assert main([*map(str, args), "--origin-column", "made_on"]) != 0
    assert "The forecasts have no column 'made_on'" in capsys.readouterr().err


def test_cli_orders_simulate_keeps_codes_as_written(tmp_path):
    """Store 007 and the articles 1.1 and 1.10 of the forecasts meet the item master's 007, 1.1 and 1.10."""
    dates = pd.date_range("2024-05-01", periods=40)
    rng = np.random.default_rng(1)
    actuals = pd.DataFrame(
        [("007", item, d, float(rng.integers(2, 9))) for item in ("1.1", "1.10") for d in dates],
        columns=["store_id", "item_id", "date", "units_sold"],
    )
    ahead = actuals[actuals["date"] >= dates[-7]]
    forecasts = ahead[["store_id", "item_id", "date"]].assign(p10=2.0, p50=5.0, p90=8.0, mean=5.0)
    forecasts.to_csv(tmp_path / "forecasts.csv", index=False)
    actuals.to_csv(tmp_path / "actuals.csv", index=False)
    pd.DataFrame({"item_id": ["1.1", "1.10"], "shelf_life_days": [2, 9]}).to_csv(tmp_path / "items.csv", index=False)
    out = tmp_path / "sim.json"
    args = ["orders", "simulate", "--forecasts", tmp_path / "forecasts.csv", "--actuals", tmp_path / "actuals.csv"]
    assert main([*map(str, args), "--item-master", str(tmp_path / "items.csv"), "--out", str(out)]) == 0
    assert json.loads(out.read_text())["policies"]["forecaster"]["series"] == 2
