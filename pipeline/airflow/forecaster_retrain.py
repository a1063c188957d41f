"""Airflow DAG forecaster_retrain: training data -> model-build pipeline -> the new version awaits approval."""

from forecaster.orchestration import dags, tasks

with dags.dag(
    dags.RETRAIN_DAG,
    "sales history -> model-build pipeline -> new version (PendingManualApproval unless auto_approve)",
    schedule=None,
):
    extract = dags.python_task(tasks.EXTRACT, tasks.extract_training)
    _, ran = dags.pipeline_tasks(extract, "build")
    review = dags.after_pipeline(tasks.REVIEW, tasks.review_model)
    ran >> review
