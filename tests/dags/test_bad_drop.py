"""A bad source drop fails extract with the file, row and column; nothing downstream runs, nothing is delivered."""

from __future__ import annotations

import datetime as dt
import shutil

import pandas as pd
import pytest

from dags.helpers import FIRST_DAY, run_dag

pytestmark = pytest.mark.slow


def test_duplicate_row_fails_extract_and_nothing_runs_after_it(flow, dagbag, monkeypatch, tmp_path, capfd, caplog):
    source = tmp_path / "source"
    shutil.copytree(flow["tmp"] / "source", source)
    bad = source / "sales" / f"{FIRST_DAY - dt.timedelta(days=2)}.csv"
    frame = pd.read_csv(bad)
    pd.concat([frame, frame.iloc[[4]]]).to_csv(bad, index=False)
    config = {**flow["config"], "source": str(source), "destination": str(tmp_path / "deliveries")}
    config["staging"] = str(tmp_path / "staging")
    result = run_dag(dagbag, monkeypatch, "forecaster_daily_forecast", FIRST_DAY, config)
    assert result == {
        "wait_for_sales": "success",
        "wait_for_plan": "success",
        "extract": "failed",
        "choose_backend": "upstream_failed",
        "run_local_pipeline": "upstream_failed",
        "start_pipeline": "upstream_failed",
        "wait_for_pipeline": "upstream_failed",
        "deliver": "upstream_failed",
        "branch_on_decision": "upstream_failed",
        "trigger_retrain": "upstream_failed",
        "done": "upstream_failed",
    }
    assert not (tmp_path / "deliveries").exists() and not (tmp_path / "staging").exists()
    log = capfd.readouterr()
    text = log.out + log.err
    callback = caplog.text  # the failure callback logs one line naming the DAG, the run and the task
    assert "forecaster task failed: dag=forecaster_daily_forecast" in callback and "task=extract" in callback
    assert f"Bad drop {bad}" in text and "more than one row for store_id=" in text and "(row 13)" in text


def test_a_misspelt_run_conf_key_fails_the_first_task_naming_it(flow, dagbag, monkeypatch, tmp_path, capfd):
    """{"redelivery": true} ran, and 'deliver' kept the delivered files: the redeliver request was lost."""
    config = {**flow["config"], "destination": str(tmp_path / "deliveries"), "staging": str(tmp_path / "staging")}
    result = run_dag(dagbag, monkeypatch, "forecaster_daily_forecast", FIRST_DAY, config, redelivery=True)
    assert result["wait_for_sales"] == "failed" and result["deliver"] == "upstream_failed"
    log = capfd.readouterr()
    assert "The run's conf has no param 'redelivery'. This DAG's params: backend, redeliver." in log.out + log.err
    assert not (tmp_path / "deliveries").exists()
