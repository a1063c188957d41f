"""Airflow DAG forecaster_retrain: training data -> model-build pipeline -> the new version awaits approval."""

from forecaster.orchestration import dags, tasks

with dags.dag(
    "forecaster_retrain",
    "sales history -> model-build pipeline -> new version (PendingManualApproval unless auto_approve)",
    schedule=None,
):
    extract = dags.python_task(tasks.EXTRACT, tasks.extract_training)
    start, wait = dags.pipeline_tasks()
    review = dags.python_task(tasks.REVIEW, tasks.review_model)
    extract >> start
    wait >> review
