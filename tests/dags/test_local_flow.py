"""The three DAGs with the local backend, for real: dag.test() runs every task, the pipelines run locally.

One flow on 3 stores x 4 items (tiny, fast training): forecaster_retrain (auto_approve) builds the first model,
forecaster_daily_forecast on the day after training (no retraining needed) and two weeks later, after
campaigns got much deeper (the retrain branch), forecaster_model_quality on that second forecast's ground truth,
then a rerun of the first date.
"""

from __future__ import annotations

import json
import os

import pandas as pd
import pytest

from dags.helpers import FIRST_DAY, HORIZON, QUALITY_DAY, SECOND_DAY, run_dag
from forecaster.registry import ApprovalStatus, open_registry

pytestmark = pytest.mark.slow


def test_retrain_builds_and_auto_approves_when_the_param_says_so(flow):
    assert flow["retrain"] == {
        "extract": "success",
        "choose_backend": "success",
        "run_local_pipeline": "success",
        "start_pipeline": "skipped",
        "wait_for_pipeline": "skipped",
        "review_model": "success",
    }
    registry = open_registry(f"sqlite:///{flow['tmp'] / 'work' / 'registry.db'}")
    (version,) = registry.list_versions("forecaster-demand")
    assert version.status == ApprovalStatus.APPROVED
    assert "auto_approve" in version.approval_description


def test_first_day_delivers_per_store_files_and_needs_no_retraining(flow):
    assert flow["first"] == {
        "wait_for_sales": "success",
        "wait_for_plan": "success",
        "extract": "success",
        "choose_backend": "success",
        "run_local_pipeline": "success",
        "start_pipeline": "skipped",
        "wait_for_pipeline": "skipped",
        "deliver": "success",
        "branch_on_decision": "success",
        "trigger_retrain": "skipped",
        "done": "success",
    }
    day = flow["tmp"] / "deliveries" / str(FIRST_DAY)
    orders = sorted(p.name for p in (day / "orders").iterdir())
    assert orders == ["store_id=S001.csv", "store_id=S002.csv", "store_id=S003.csv"]
    frame = pd.read_csv(day / "orders" / "store_id=S002.csv")
    assert set(frame["store_id"]) == {"S002"} and len(frame) == 4 * HORIZON
    assert (frame["order_units"] >= 0).all()
    assert str(frame["date"].min()) == str(FIRST_DAY)
    forecasts = pd.read_csv(day / "forecasts" / "store_id=S001.csv")
    assert {"p10", "p50", "p90"} <= set(forecasts.columns) and (forecasts["p10"] <= forecasts["p90"]).all()
    decision = json.loads((day / "decision.json").read_text())
    assert decision["retrain"] is False, decision["reasons"]
    manifest = json.loads((day / "manifest.json").read_text())
    assert manifest["stores"] == 3 and manifest["days"] == HORIZON and manifest["execution"].startswith("local-")
    assert manifest["model_package"] == "forecaster-demand/1" and manifest["model"].endswith("model.tar.gz")


def test_deeper_campaigns_take_the_retrain_branch(flow, dagbag):
    result = flow["second"]
    assert result["trigger_retrain"] == "success" and result["done"] == "skipped"
    decision = json.loads((flow["tmp"] / "deliveries" / str(SECOND_DAY) / "decision.json").read_text())
    assert decision["retrain"] is True and decision["reasons"]
    from airflow.models.dagrun import DagRun

    triggered = DagRun.find(dag_id="forecaster_retrain", run_id=f"triggered__forecaster_daily_forecast__{SECOND_DAY}")
    assert len(triggered) == 1 and triggered[0].conf["auto_approve"] is False


def test_model_quality_on_the_ground_truth_takes_the_retrain_branch(flow):
    assert flow["quality"] == {
        "wait_for_ground_truth": "success",
        "extract": "success",
        "choose_backend": "success",
        "run_local_pipeline": "success",
        "start_pipeline": "skipped",
        "wait_for_pipeline": "skipped",
        "collect_decision": "success",
        "branch_on_decision": "success",
        "trigger_retrain": "success",
        "done": "skipped",
    }
    decision = json.loads((flow["tmp"] / "deliveries" / "quality" / str(QUALITY_DAY) / "decision.json").read_text())
    assert decision["retrain"] is True
    assert any(reason.startswith("model quality") for reason in decision["reasons"])


def test_rerun_of_an_earlier_date_overwrites_nothing_a_later_date_wrote(flow):
    assert flow["rerun"]["deliver"] == "success"
    first = flow["tmp"] / "deliveries" / str(FIRST_DAY)  # delivered already: kept as it was (no redeliver)
    assert {p: p.stat().st_mtime_ns for p in first.rglob("*") if p.is_file()} == flow["first_files"]
    deliveries = flow["tmp"] / "deliveries"
    assert json.loads((deliveries / "latest.json").read_text())["date"] == str(SECOND_DAY)
    now = {p: p.stat().st_mtime_ns for p in (deliveries / str(SECOND_DAY)).rglob("*") if p.is_file()}
    assert now == flow["second_files"]
    assert len(list((deliveries / str(FIRST_DAY) / "orders").iterdir())) == 3
    assert not [p for p in deliveries.rglob("*") if ".staging-" in p.name or p.name.endswith(".tmp")]
    assert os.listdir(deliveries / str(FIRST_DAY)) != []


def test_a_forced_rerun_redelivers_the_date(flow, dagbag, monkeypatch):
    manifest = flow["tmp"] / "deliveries" / str(FIRST_DAY) / "manifest.json"
    before = json.loads(manifest.read_text())
    result = run_dag(dagbag, monkeypatch, "forecaster_daily_forecast", FIRST_DAY, flow["config"], redeliver=True)
    assert result["deliver"] == "success"
    after = json.loads(manifest.read_text())
    assert after["delivered_at"] >= before["delivered_at"] and manifest.stat().st_mtime_ns > max(
        flow["first_files"].values()
    )
    assert after["model_package"] == "forecaster-demand/1" and after["files"] == before["files"]
