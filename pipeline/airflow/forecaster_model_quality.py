"""Airflow DAG forecaster_model_quality: ground truth arrives -> model-quality pipeline -> retrain or done."""

from forecaster.orchestration import dags, tasks

with dags.dag(
    dags.QUALITY_DAG,
    "ground truth of an earlier forecast -> model-quality pipeline (the model that made it) -> retrain decision",
    schedule="@daily",
):
    ground_truth = dags.sensor(tasks.GROUND_TRUTH, tasks.ground_truth_ready, inlets=[dags.FORECASTS_ASSET])
    extract = dags.python_task(tasks.EXTRACT, tasks.extract_ground_truth)
    _, ran = dags.pipeline_tasks(extract, "model-quality")
    decision = dags.after_pipeline(tasks.DECISION, tasks.collect_decision)
    branch, _, _ = dags.decision_tasks(tasks.DECISION)
    ground_truth >> extract
    ran >> decision >> branch
