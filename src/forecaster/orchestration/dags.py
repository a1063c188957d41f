"""Building blocks of the three DAGs (``pipeline/airflow/*.py`` put them together); imports Airflow.

Every task gets retries (transient errors only: a :class:`~forecaster.errors.ForecasterError` fails at once, see
:mod:`forecaster.orchestration.tasks`) and an execution timeout; the sensors run in reschedule mode (no worker
slot is held between pokes) with a total timeout.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.providers.standard.operators.python import BranchPythonOperator, PythonOperator
from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.providers.standard.sensors.python import PythonSensor
from airflow.sdk import DAG, Param, PokeReturnValue

from forecaster.orchestration import tasks
from forecaster.orchestration.config import BACKENDS

RETRAIN_DAG = "forecaster_retrain"
START_DATE = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
#: how long one try of a task may run (the pipeline wait and the sensors have their own totals)
TIMEOUTS = {
    tasks.EXTRACT: dt.timedelta(minutes=30),
    tasks.START: dt.timedelta(hours=3),  # the local backend runs the whole pipeline in this task
    tasks.WAIT: dt.timedelta(minutes=10),
    tasks.DELIVER: dt.timedelta(minutes=30),
    tasks.DECISION: dt.timedelta(minutes=10),
    tasks.REVIEW: dt.timedelta(minutes=10),
    tasks.GROUND_TRUTH: dt.timedelta(minutes=10),
}
DEFAULT_TIMEOUT = dt.timedelta(minutes=10)


def default_args() -> dict[str, Any]:
    """Retries with exponential back-off and an execution timeout for every task."""
    return {
        "owner": "forecaster",
        "retries": 2,
        "retry_delay": dt.timedelta(minutes=2),
        "retry_exponential_backoff": True,
        "execution_timeout": DEFAULT_TIMEOUT,
    }


def dag(dag_id: str, description: str, schedule: str | None) -> DAG:
    """A forecaster DAG: no catch-up, one run at a time, the default args and params, tag ``forecaster``."""
    return DAG(
        dag_id=dag_id,
        description=description,
        schedule=schedule,
        start_date=START_DATE,
        catchup=False,
        max_active_runs=1,
        default_args=default_args(),
        params=params(retrain=dag_id == RETRAIN_DAG),
        tags=["forecaster"],
    )


def params(*, retrain: bool = False) -> dict[str, Param]:
    """DAG params: the backend (empty = the ``forecaster_backend`` Variable, then the config) and auto_approve."""
    found: dict[str, Param] = {
        "backend": Param(
            "",
            type="string",
            enum=["", *BACKENDS],
            description="local or sagemaker; empty: the forecaster_backend Variable, else the config, else local",
        )
    }
    if retrain:
        found["auto_approve"] = Param(
            False, type="boolean", description="approve the new version at once instead of waiting for a reviewer"
        )
    return found


def _poke(check: Any) -> Any:
    def poke(**context: Any) -> PokeReturnValue:
        value = check(**context)
        return PokeReturnValue(is_done=value is not None, xcom_value=value)

    poke.__name__ = check.__name__
    return poke


def python_task(task_id: str, callable_: Any) -> PythonOperator:
    """A task that runs ``callable_(**context)`` and pushes its result."""
    return PythonOperator(
        task_id=task_id, python_callable=callable_, execution_timeout=TIMEOUTS.get(task_id, DEFAULT_TIMEOUT)
    )


def sensor(task_id: str, check: Any, *, poke_interval: dt.timedelta, timeout: dt.timedelta) -> PythonSensor:
    """A reschedule-mode sensor: done when ``check(**context)`` returns a value (pushed as its XCom)."""
    return PythonSensor(
        task_id=task_id,
        python_callable=_poke(check),
        mode="reschedule",
        poke_interval=poke_interval,
        timeout=timeout,
        execution_timeout=TIMEOUTS.get(task_id, DEFAULT_TIMEOUT),
    )


def pipeline_tasks() -> tuple[PythonOperator, PythonSensor]:
    """``start_pipeline`` >> ``wait_for_pipeline`` (same task ids and XComs for both backends)."""
    start = python_task(tasks.START, tasks.start_pipeline)
    every_minute, half_a_day = dt.timedelta(minutes=1), dt.timedelta(hours=12)
    wait = sensor(tasks.WAIT, tasks.pipeline_done, poke_interval=every_minute, timeout=half_a_day)
    start >> wait
    return start, wait


def decision_tasks(decision_task: str) -> tuple[BranchPythonOperator, TriggerDagRunOperator, EmptyOperator]:
    """``branch_on_decision`` >> [``trigger_retrain``, ``done``]."""
    branch = BranchPythonOperator(
        task_id="branch_on_decision",
        python_callable=tasks.branch_on_decision(decision_task),
        execution_timeout=DEFAULT_TIMEOUT,
    )
    trigger = TriggerDagRunOperator(
        task_id=tasks.RETRAIN,
        trigger_dag_id=RETRAIN_DAG,
        trigger_run_id="triggered__{{ dag.dag_id }}__{{ ds }}",
        conf={"backend": "{{ params.backend }}", "auto_approve": False},
        skip_when_already_exists=True,
        execution_timeout=DEFAULT_TIMEOUT,
    )
    done = EmptyOperator(task_id=tasks.DONE)
    branch >> [trigger, done]
    return branch, trigger, done
