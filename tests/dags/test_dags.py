"""The DAG folder imports cleanly, lean, and each DAG has the task graph of docs/airflow.md."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys

import pytest

from dags.conftest import DAGS

# choose_backend: the local runner, or the SageMaker operator and sensor (their arguments are XComs of extract)
PIPELINE = {
    "extract": {"choose_backend", "start_pipeline", "wait_for_pipeline"},
    "choose_backend": {"run_local_pipeline", "start_pipeline"},
    "start_pipeline": {"wait_for_pipeline"},
}
DECISION = {"branch_on_decision": {"trigger_retrain", "done"}, "trigger_retrain": set(), "done": set()}
EXPECTED = {
    "forecaster_daily_forecast": {
        "wait_for_sales": {"extract"},
        "wait_for_plan": {"extract"},
        **PIPELINE,
        "run_local_pipeline": {"deliver"},
        "wait_for_pipeline": {"deliver"},
        "deliver": {"branch_on_decision"},
        **DECISION,
    },
    "forecaster_model_quality": {
        "wait_for_ground_truth": {"extract"},
        **PIPELINE,
        "run_local_pipeline": {"collect_decision"},
        "wait_for_pipeline": {"collect_decision"},
        "collect_decision": {"branch_on_decision"},
        **DECISION,
    },
    "forecaster_retrain": {
        **PIPELINE,
        "run_local_pipeline": {"review_model"},
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
        # start_pipeline's try includes its deferral (the wait for the execution) when a triggerer runs
        longest = dt.timedelta(hours=12 if task.task_id == "start_pipeline" else 3)
        assert task.execution_timeout is not None and task.execution_timeout <= longest, task.task_id


def test_sensors_reschedule_and_retrain_triggers(dagbag):
    sensors = {"forecaster_daily_forecast": ("wait_for_sales", "wait_for_plan", "wait_for_pipeline")}
    sensors["forecaster_model_quality"] = ("wait_for_ground_truth", "wait_for_pipeline")
    for dag_id, task_ids in sensors.items():
        for task_id in task_ids:
            sensor = dagbag.get_dag(dag_id).get_task(task_id)
            assert sensor.mode == "reschedule" and 0 < sensor.timeout <= 3 * 24 * 3600, (dag_id, task_id)
    for dag_id in ("forecaster_daily_forecast", "forecaster_model_quality"):
        trigger = dagbag.get_dag(dag_id).get_task("trigger_retrain")
        assert trigger.trigger_dag_id == "forecaster_retrain"
        assert trigger.conf["auto_approve"] is False


def test_backend_and_auto_approve_params(dagbag):
    for dag_id in EXPECTED:
        params = dagbag.get_dag(dag_id).params
        assert params["backend"] == ""
        assert ("auto_approve" in params) == (dag_id == "forecaster_retrain")
        assert ("redeliver" in params) == (dag_id == "forecaster_daily_forecast")
    assert dagbag.get_dag("forecaster_retrain").params["auto_approve"] is False


@pytest.mark.parametrize("dag_id", sorted(EXPECTED))
def test_sagemaker_tasks_are_the_providers_operator_and_sensor(dagbag, dag_id):
    from airflow.providers.amazon.aws.operators.sagemaker import SageMakerStartPipelineOperator
    from airflow.providers.amazon.aws.sensors.sagemaker import SageMakerPipelineSensor

    from forecaster.orchestration.dags import DEFERRABLE, SAGEMAKER_POOL

    dag = dagbag.get_dag(dag_id)
    start, wait = dag.get_task("start_pipeline"), dag.get_task("wait_for_pipeline")
    assert isinstance(start, SageMakerStartPipelineOperator) and isinstance(wait, SageMakerPipelineSensor)
    assert start.deferrable is DEFERRABLE is False  # no triggerer in this config: [operators] default_deferrable off
    assert start.wait_for_completion is False and start.pool == wait.pool == SAGEMAKER_POOL
    assert dag.get_task("trigger_retrain").deferrable is False if dag_id != "forecaster_retrain" else True


def test_dag_ids_come_from_constants(dagbag):
    from forecaster.orchestration import dags

    assert {dags.DAILY_DAG, dags.QUALITY_DAG, dags.RETRAIN_DAG} == set(EXPECTED)


def test_assets_tie_the_sales_to_the_daily_dag_and_the_forecasts_to_model_quality(dagbag):
    from forecaster.orchestration import dags

    daily, quality = dagbag.get_dag(dags.DAILY_DAG), dagbag.get_dag(dags.QUALITY_DAG)
    assert daily.get_task("wait_for_sales").inlets == [dags.SALES_ASSET]
    assert daily.get_task("deliver").outlets == [dags.FORECASTS_ASSET]
    assert quality.get_task("wait_for_ground_truth").inlets == [dags.FORECASTS_ASSET]


@pytest.mark.parametrize("dag_file", sorted(p.name for p in DAGS.glob("*.py")))
def test_parsing_a_dag_file_imports_no_pandas_numpy_or_pyarrow(dag_file):
    code = (
        "import runpy, sys; runpy.run_path(sys.argv[1]); "
        "print(sorted(m for m in ('pandas', 'numpy', 'pyarrow') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(DAGS / dag_file)], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "[]", result.stdout


def test_dagbag_import_time_is_reported(record_property):
    """Reports (never asserts) how long a fresh process takes to parse the DAG folder: `pytest -s` prints it."""
    code = (
        "import sys, time\n"
        "from airflow.dag_processing.dagbag import DagBag\n"
        "started = time.perf_counter(); bag = DagBag(dag_folder=sys.argv[1]); total = time.perf_counter() - started\n"
        "assert not bag.import_errors, bag.import_errors\n"
        "for s in bag.dagbag_stats: print('file', s.file, getattr(s.duration, 'total_seconds', lambda: s.duration)())\n"
        "print('total', total)\n"
    )
    result = subprocess.run([sys.executable, "-c", code, str(DAGS)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [line.split() for line in result.stdout.splitlines() if line.startswith(("file ", "total "))]
    for line in lines:
        record_property(f"parse_seconds[{line[1] if line[0] == 'file' else 'DagBag'}]", float(line[-1]))
        print(f"DagBag parse (fresh process) {' '.join(line[1:-1]) or 'all files'}: {float(line[-1]):.3f} s")
    assert sorted(line[1] for line in lines if line[0] == "file") == sorted(p.name for p in DAGS.glob("*.py"))
