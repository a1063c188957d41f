"""Airflow DAG forecaster_daily_forecast: extract -> batch-inference pipeline -> deliver -> retrain or done."""

from forecaster.orchestration import dags, tasks

with dags.dag(
    "forecaster_daily_forecast",
    "sales + plan -> batch-inference pipeline -> per-store orders and forecasts -> retrain decision",
    schedule="@daily",
):
    extract = dags.python_task(tasks.EXTRACT, tasks.extract_daily)
    start, wait = dags.pipeline_tasks()
    deliver = dags.python_task(tasks.DELIVER, tasks.deliver_outputs)
    branch, _, _ = dags.decision_tasks(tasks.DELIVER)
    extract >> start
    wait >> deliver >> branch
