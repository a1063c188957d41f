"""Airflow DAG forecaster_daily_forecast: sales + plan arrive -> batch inference -> deliver -> retrain or done."""

from forecaster.orchestration import dags, tasks

with dags.dag(
    dags.DAILY_DAG,
    "sales + plan -> batch-inference pipeline -> per-store orders and forecasts -> retrain decision",
    schedule="@daily",
):
    inputs = dags.input_sensors()
    extract = dags.python_task(tasks.EXTRACT, tasks.extract_daily)
    _, ran = dags.pipeline_tasks(extract, "inference")
    deliver = dags.after_pipeline(tasks.DELIVER, tasks.deliver_outputs, outlets=[dags.FORECASTS_ASSET])
    branch, _, _ = dags.decision_tasks(tasks.DELIVER)
    inputs >> extract
    ran >> deliver >> branch
