"""forecaster_retrain: training data -> model-build pipeline -> the new version awaits approval (see README)."""

from airflow.sdk import DAG

from forecaster.orchestration import dags, tasks

with DAG(
    dag_id="forecaster_retrain",
    description="sales history -> model-build pipeline -> new version (PendingManualApproval unless auto_approve)",
    schedule=None,
    start_date=dags.START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=dags.default_args(),
    params=dags.params(retrain=True),
    tags=["forecaster"],
):
    extract = dags.python_task(tasks.EXTRACT, tasks.extract_training)
    start, wait = dags.pipeline_tasks()
    review = dags.python_task(tasks.REVIEW, tasks.review_model)
    extract >> start
    wait >> review
