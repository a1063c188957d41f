"""forecaster_daily_forecast: extract -> batch-inference pipeline -> deliver -> retrain or done (see README)."""

from airflow.sdk import DAG

from forecaster.orchestration import dags, tasks

with DAG(
    dag_id="forecaster_daily_forecast",
    description="sales + plan -> batch-inference pipeline -> per-store orders and forecasts -> retrain decision",
    schedule="@daily",
    start_date=dags.START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=dags.default_args(),
    params=dags.params(),
    tags=["forecaster"],
):
    extract = dags.python_task(tasks.EXTRACT, tasks.extract_daily)
    start, wait = dags.pipeline_tasks()
    deliver = dags.python_task(tasks.DELIVER, tasks.deliver_outputs)
    branch, _, _ = dags.decision_tasks(tasks.DELIVER)
    extract >> start
    wait >> deliver >> branch
