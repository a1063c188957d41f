"""The DAG folder imports cleanly and each DAG has the task graph of docs/airflow.md."""

from __future__ import annotations

import datetime as dt

import pytest

EXPECTED = {
    "forecaster_daily_forecast": {
        "extract": {"start_pipeline"},
        "start_pipeline": {"wait_for_pipeline"},
        "wait_for_pipeline": {"deliver"},
        "deliver": {"branch_on_decision"},
        "branch_on_decision": {"trigger_retrain", "done"},
        "trigger_retrain": set(),
        "done": set(),
    },
    "forecaster_model_quality": {
        "wait_for_ground_truth": {"extract"},
        "extract": {"start_pipeline"},
        "start_pipeline": {"wait_for_pipeline"},
        "wait_for_pipeline": {"collect_decision"},
        "collect_decision": {"branch_on_decision"},
        "branch_on_decision": {"trigger_retrain", "done"},
        "trigger_retrain": set(),
        "done": set(),
    },
    "forecaster_retrain": {
        "extract": {"start_pipeline"},
        "start_pipeline": {"wait_for_pipeline"},
        "wait_for_pipeline": {"review_model"},
        "review_model": set(),
    },
}


def test_dag_folder_imports_without_errors(dagbag):
    assert dagbag.import_errors == {}
    assert sorted(dagbag.dag_ids) == sorted(EXPECTED)


@pytest.mark.parametrize("dag_id", sorted(EXPECTED))
def test_task_graph(dagbag, dag_id):
    dag = dagbag.get_dag(dag_id)
    graph = {task.task_id: set(task.downstream_task_ids) for task in dag.tasks}
    assert graph == EXPECTED[dag_id]


@pytest.mark.parametrize("dag_id", sorted(EXPECTED))
def test_every_task_has_retries_and_a_timeout(dagbag, dag_id):
    for task in dagbag.get_dag(dag_id).tasks:
        assert task.retries >= 1, task.task_id
        assert task.execution_timeout is not None and task.execution_timeout <= dt.timedelta(hours=3), task.task_id


def test_sensors_reschedule_and_retrain_triggers(dagbag):
    quality = dagbag.get_dag("forecaster_model_quality")
    for task_id in ("wait_for_ground_truth", "wait_for_pipeline"):
        sensor = quality.get_task(task_id)
        assert sensor.mode == "reschedule" and sensor.timeout > 0
    for dag_id in ("forecaster_daily_forecast", "forecaster_model_quality"):
        trigger = dagbag.get_dag(dag_id).get_task("trigger_retrain")
        assert trigger.trigger_dag_id == "forecaster_retrain"
        assert trigger.conf["auto_approve"] is False


def test_backend_and_auto_approve_params(dagbag):
    for dag_id in EXPECTED:
        params = dagbag.get_dag(dag_id).params
        assert params["backend"] == ""
        assert ("auto_approve" in params) == (dag_id == "forecaster_retrain")
    assert dagbag.get_dag("forecaster_retrain").params["auto_approve"] is False
