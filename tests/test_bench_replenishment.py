"""bench/replenishment.py end to end at smoke size on FreshRetailNet-shaped synthetic data (forecaster.synth)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]


def frn_shaped(path: Path) -> Path:
    """Synthetic sales with FreshRetailNet's column names and integer ids (what the bench reads)."""
    from forecaster.synth import generate

    frame = generate(stores=2, items=6, days=76, seed=3)
    out = pd.DataFrame(
        {
            "city_id": pd.factorize(frame["city"])[0].astype("int32"),
            "store_id": pd.factorize(frame["store_id"])[0].astype("int32"),
            "management_group_id": 0,
            "first_category_id": pd.factorize(frame["category"])[0].astype("int32"),
            "second_category_id": pd.factorize(frame["category"])[0].astype("int32"),
            "third_category_id": pd.factorize(frame["category"])[0].astype("int32"),
            "product_id": pd.factorize(frame["item_id"])[0].astype("int32"),
            "dt": frame["date"],
            "sale_amount": frame["units_sold"].astype(float),
            "stockout_hours": frame["stockout_hours"].round().astype("int32"),
            "discount": frame["discount"],
            "holiday_flag": frame["holiday"].astype("int32"),
            "activity_flag": frame["campaign"].astype("int32"),
            "precpt": 0.0,
            "avg_temperature": frame["temperature"],
            "avg_humidity": 60.0,
            "avg_wind_level": 2.0,
        }
    )
    out.to_parquet(path, index=False)
    return path


@pytest.mark.slow
def test_bench_replays_four_policies_and_reports_calibration(tmp_path):
    data = frn_shaped(tmp_path / "frn.parquet")
    out, plot = tmp_path / "replenishment.json", tmp_path / "plot.png"
    command = [sys.executable, str(ROOT / "bench" / "replenishment.py"), "--data", str(data), "--folds", "1"]
    command += ["--threads", "1", "--correlations", "0", "1", "--log-shifts", "0.6"]
    command += ["--out", str(out), "--plot", str(plot)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    completed = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert completed.returncode == 0, completed.stderr[-3000:]
    results = json.loads(out.read_text())
    names = [row["name"] for row in results["policies"]]
    assert names == ["forecaster", "mlforecast_normal", "rule_of_thumb", "daily_quantile"]
    for row in results["policies"]:
        assert 0 < row["fill_rate"] <= 1 and row["sold_units"] <= row["demand_units"]
        assert row["total_cost"] == pytest.approx(row["waste_value"] + row["lost_margin"])
    assert results["data"]["series"] == 12
    assert results["correlation"]["chosen"] in ("log 0.0 0.6", "log 1.0 0.6", "normal 0.0 0.6", "normal 1.0 0.6")
    assert set(results["correlation"]["worst_gap"]) == set(results["correlation"]["grid"])
    cells = {f"k={k} P{p}" for k in (1, 2, 3) for p in (50, 80, 95)}
    assert set(results["calibration"][0]) == {"fold", *cells, *(f"in-stock {cell}" for cell in cells)}
    assert "(a) forecaster" in completed.stdout and "3-day P95" in completed.stdout
    assert plot.stat().st_size > 10_000
    grid = tmp_path / "grid.json"
    command = [sys.executable, str(ROOT / "bench" / "calibration_grid.py"), "--out", str(out), "--data", str(data)]
    command += ["--folds", "1", "--sample", "0", "--correlations", "0", "0.5", "--log-shifts", "0.6"]
    command += ["--grid-out", str(grid)]
    completed = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert completed.returncode == 0, completed.stderr[-3000:]
    scored = json.loads(grid.read_text())["grid"]
    assert set(scored) == {"log 0.0 0.6", "log 0.5 0.6"}
    assert set(scored["log 0.0 0.6"]["1"]) == cells


@pytest.mark.slow
def test_bench_orders_from_a_forecast_made_every_day(tmp_path):
    """--daily-forecasts: the fold's models forecast again from every day of the fold, and the orders use them."""
    data = frn_shaped(tmp_path / "frn.parquet")
    out = tmp_path / "daily.json"
    command = [sys.executable, str(ROOT / "bench" / "replenishment.py"), "--data", str(data), "--folds", "1"]
    command += ["--threads", "1", "--correlations", "0.1", "--shapes", "log", "--log-shifts", "0.6"]
    command += ["--service-levels", "0.8", "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    once = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert once.returncode == 0, once.stderr[-3000:]
    first = json.loads(out.read_text())
    assert first["data"]["forecasts"] == "the fold's origin"
    daily_run = subprocess.run([*command, "--daily-forecasts"], cwd=ROOT, env=env, capture_output=True, text=True,
                               timeout=900)  # fmt: skip
    assert daily_run.returncode == 0, daily_run.stderr[-3000:]
    daily = json.loads(out.read_text())
    assert daily["data"]["forecasts"].startswith("daily") and "calibration_daily" not in first
    assert [row["fold"] for row in daily["calibration_daily"]] == [1] and "k=3 P95" in daily["calibration_daily"][0]
    kept = tmp_path / "daily-predictions"
    fold_days = pd.read_parquet(kept / "forecaster-fold1.parquet")["dt"].sort_values().unique()
    for model in ("forecaster", "mlforecast"):
        later = pd.read_parquet(kept / f"{model}-fold1-daily.parquet")
        assert sorted(later["origin"].unique()) == list(range(1, len(fold_days)))
        for origin, rows in later.groupby("origin"):  # origin k forecasts the fold's days k, k + 1, …
            assert rows["dt"].min() == fold_days[origin] and rows["dt"].max() == fold_days[-1]
            assert len(rows) == 12 * (len(fold_days) - origin)
    # the rule of thumb reads the sales alone: the same orders either way; the forecast policies see new forecasts
    by = {name: {row["name"]: row for row in run["policies"]} for name, run in (("first", first), ("daily", daily))}
    for row in daily["policies"]:  # every policy ordered from real numbers (no day before an origin leaks a NaN)
        assert 0 < row["fill_rate"] <= 1 and row["sold_units"] <= row["demand_units"]
        assert row["total_cost"] == pytest.approx(row["waste_value"] + row["lost_margin"])
    assert by["daily"]["rule_of_thumb"]["total_cost"] == by["first"]["rule_of_thumb"]["total_cost"]
    assert by["daily"]["forecaster"]["delivered_units"] != by["first"]["forecaster"]["delivered_units"]
    assert by["daily"]["mlforecast_normal"]["delivered_units"] != by["first"]["mlforecast_normal"]["delivered_units"]


@pytest.mark.slow
def test_bench_holding_cost_replays_every_share_and_calendar(tmp_path):
    """bench/holding_cost.py: (a) and (b) per share, the share chosen on the choosing folds, three calendars."""
    data = frn_shaped(tmp_path / "frn.parquet")
    out = tmp_path / "holding.json"
    command = [sys.executable, str(ROOT / "bench" / "holding_cost.py"), "--shares", "0.1", "0.6", "--data", str(data)]
    command += ["--folds", "1", "--threads", "1", "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    completed = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert completed.returncode == 0, completed.stderr[-3000:]
    results = json.loads(out.read_text())
    rows = results["rows"]
    assert results["chosen_share"] in (0.1, 0.6) and results["choosing_folds"] == [1]
    assert {row["calendar"] for row in rows} == {"daily, lead 1", "Mon/Wed/Fri, lead 1", "daily, lead 2"}
    for row in rows:
        assert 0 < row["a_fill_rate"] <= 1 and 0 < row["b_fill_rate"] <= 1 and row["a_total_cost"] > 0
    daily = {row["share"]: row for row in rows if row["calendar"] == "daily, lead 1"}
    assert daily[0.6]["a_fill_rate"] < daily[0.1]["a_fill_rate"]  # a dearer carry-over orders less
    assert daily[0.6]["a_delivered_units"] < daily[0.1]["a_delivered_units"]
