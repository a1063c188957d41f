"""Building blocks of the three DAGs (``pipeline/airflow/*.py`` put them together); imports Airflow.

Every task gets retries (transient errors only: a :class:`~forecaster.errors.ForecasterError` fails at once, see
:mod:`forecaster.orchestration.tasks`) and an execution timeout; the sensors run in reschedule mode (no worker
slot is held between pokes) with a total timeout. The pipeline runs on one of two branches: ``run_local_pipeline``
(the local runner) or ``start_pipeline`` >> ``wait_for_pipeline`` (the Amazon provider's SageMaker operator and
sensor, tasks of their own, in the ``forecaster_sagemaker`` pool). ``start_pipeline`` defers to the triggerer when
``[operators] default_deferrable`` is true (a triggerer runs), else returns at once and the sensor polls.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from airflow.configuration import conf
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.providers.standard.operators.python import BranchPythonOperator, PythonOperator
from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.providers.standard.sensors.python import PythonSensor
from airflow.sdk import DAG, Asset, Param, PokeReturnValue, XComArg

from forecaster.orchestration import tasks
from forecaster.orchestration.config import BACKENDS
from forecaster.orchestration.operators import PipelineSucceeded, StartPipelineOnce

#: the DAG ids (the DAG files and the retrain trigger read them from here)
DAILY_DAG, QUALITY_DAG, RETRAIN_DAG = "forecaster_daily_forecast", "forecaster_model_quality", "forecaster_retrain"
#: Airflow 3 Assets: the sales drops feed the daily DAG; its forecasts feed the model-quality DAG
SALES_ASSET = Asset("forecaster_sales_drops")
FORECASTS_ASSET = Asset("forecaster_forecasts")
#: the pool that caps concurrent SageMaker pipeline starts and waits (create it: docs/airflow.md#pools)
SAGEMAKER_POOL = "forecaster_sagemaker"
#: True where a triggerer runs: then start_pipeline defers until the execution ends (set explicitly on each task)
DEFERRABLE = conf.getboolean("operators", "default_deferrable", fallback=False)
#: called with the context when a task fails (add a notifier here, e.g. the Slack or SNS provider's)
FAILURE_CALLBACKS: list[Callable[[dict[str, Any]], None]] = [tasks.on_failure]
#: poke interval and total timeout of each sensor
SENSING = {
    tasks.SALES: (dt.timedelta(minutes=15), dt.timedelta(hours=6)),
    tasks.PLAN: (dt.timedelta(minutes=15), dt.timedelta(hours=6)),
    tasks.GROUND_TRUTH: (dt.timedelta(minutes=30), dt.timedelta(days=3)),
    tasks.WAIT: (dt.timedelta(minutes=1), dt.timedelta(hours=12)),
}
START_DATE = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
#: how long one try of a task may run (the pipeline wait and the sensors have their own totals)
TIMEOUTS = {
    tasks.EXTRACT: dt.timedelta(minutes=30),
    tasks.RUN_LOCAL: dt.timedelta(hours=3),  # the local backend runs the whole pipeline in this task
    tasks.START: dt.timedelta(hours=12),  # deferred, it waits for the execution to end
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
        "on_failure_callback": list(FAILURE_CALLBACKS),
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
        params=params(retrain=dag_id == RETRAIN_DAG, daily=dag_id == DAILY_DAG),
        tags=["forecaster"],
    )


def params(*, retrain: bool = False, daily: bool = False) -> dict[str, Param]:
    """DAG params: ``backend`` (empty: the ``forecaster_backend`` Variable, the config), auto_approve, redeliver."""
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
    if daily:
        found["redeliver"] = Param(
            False, type="boolean", description="replace the date's delivered files (default: a delivered date is kept)"
        )
    return found


def _poke(check: Any) -> Any:
    def poke(**context: Any) -> PokeReturnValue:
        value = check(**context)
        return PokeReturnValue(is_done=value is not None, xcom_value=value)

    poke.__name__ = check.__name__
    return poke


def python_task(task_id: str, callable_: Any, **kwargs: Any) -> PythonOperator:
    """A task that runs ``callable_(**context)`` and pushes its result."""
    return PythonOperator(
        task_id=task_id,
        python_callable=callable_,
        execution_timeout=TIMEOUTS.get(task_id, DEFAULT_TIMEOUT),
        **kwargs,
    )


def sensor(task_id: str, check: Any, **kwargs: Any) -> PythonSensor:
    """A reschedule-mode sensor: done when ``check(**context)`` returns a value (pushed as its XCom)."""
    poke_interval, timeout = SENSING[task_id]
    return PythonSensor(
        task_id=task_id,
        python_callable=_poke(check),
        mode="reschedule",
        poke_interval=poke_interval,
        timeout=timeout,
        execution_timeout=TIMEOUTS.get(task_id, DEFAULT_TIMEOUT),
        **kwargs,
    )


def input_sensors() -> list[PythonSensor]:
    """``wait_for_sales`` (the drop of D-1) and ``wait_for_plan`` (the plan of D)."""
    return [
        sensor(tasks.SALES, tasks.sales_ready, inlets=[SALES_ASSET]),
        sensor(tasks.PLAN, tasks.plan_ready),
    ]


def pipeline_tasks(extract: PythonOperator, key: str) -> tuple[BranchPythonOperator, list[Any]]:
    """``choose_backend`` >> [``run_local_pipeline``, ``start_pipeline`` >> ``wait_for_pipeline``].

    Returns the branch and the two last tasks (what runs after the pipeline joins them with
    ``none_failed_min_one_success``).
    """
    choose = BranchPythonOperator(
        task_id=tasks.CHOOSE, python_callable=tasks.choose_backend, execution_timeout=DEFAULT_TIMEOUT
    )
    local = python_task(tasks.RUN_LOCAL, tasks.run_local_pipeline)
    # the SageMaker arguments are the extract's XComs: the configuration is read once, at run time, not at parsing
    aws = {name: XComArg(extract, key=name) for name in ("aws_conn_id", "region_name")}
    start = StartPipelineOnce(
        task_id=tasks.START,
        pipeline_name=XComArg(extract, key="pipeline_name"),
        pipeline_params=XComArg(extract, key=tasks.PIPELINE_PARAMS),
        wait_for_completion=False,
        deferrable=DEFERRABLE,
        check_interval=60,
        verbose=False,
        pool=SAGEMAKER_POOL,
        execution_timeout=TIMEOUTS[tasks.START],
        **aws,
    )
    poke_interval, timeout = SENSING[tasks.WAIT]
    wait = PipelineSucceeded(
        task_id=tasks.WAIT,
        pipeline_exec_arn=XComArg(start),
        verbose=False,
        mode="reschedule",
        poke_interval=poke_interval,
        timeout=timeout,
        pool=SAGEMAKER_POOL,
        execution_timeout=TIMEOUTS[tasks.WAIT],
        **aws,
    )
    extract >> choose >> [local, start]
    start >> wait
    return choose, [local, wait]


def after_pipeline(task_id: str, callable_: Any, **kwargs: Any) -> PythonOperator:
    """The task that reads the pipeline's outputs, whichever branch ran it."""
    return python_task(task_id, callable_, trigger_rule="none_failed_min_one_success", **kwargs)


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
        deferrable=False,  # it does not wait for the retraining
        execution_timeout=DEFAULT_TIMEOUT,
    )
    done = EmptyOperator(task_id=tasks.DONE)
    branch >> [trigger, done]
    return branch, trigger, done
