"""Airflow DAG forecaster_model_quality: ground truth arrives -> model-quality pipeline -> retrain or done."""

import datetime as dt

from forecaster.orchestration import dags, tasks

with dags.dag(
    "forecaster_model_quality",
    "ground truth of an earlier forecast -> model-quality pipeline -> retrain decision",
    schedule="@daily",
):
    half_hour, three_days = dt.timedelta(minutes=30), dt.timedelta(days=3)
    ground_truth = dags.sensor(
        tasks.GROUND_TRUTH, tasks.ground_truth_ready, poke_interval=half_hour, timeout=three_days
    )
    extract = dags.python_task(tasks.EXTRACT, tasks.extract_ground_truth)
    start, wait = dags.pipeline_tasks()
    decision = dags.python_task(tasks.DECISION, tasks.collect_decision)
    branch, _, _ = dags.decision_tasks(tasks.DECISION)
    ground_truth >> extract >> start
    wait >> decision >> branch
