"""The sagemaker backend against moto (in-process): the provider's operator (a task of its own) starts the deployed
pipeline once per DAG run with the staged inputs and no model parameters (the deployed defaults are the model),
its sensor sees success or failure, a failed execution fails the task and delivers nothing; the delivery manifest
names the execution and the model package, and model quality checks that model after a newer approval.
moto's pipeline executions do not run steps, so a patched StartPipelineExecution plays the pipeline:
it writes the outputs of the local run of the same day where SageMaker would (``<OutputPrefix>/<id>/<step>/``).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import boto3
import pytest
from moto import mock_aws
from moto.sagemaker import models as sagemaker_models

from aws_helpers import use_fake_aws
from dags.helpers import FIRST_DAY, QUALITY_DAY, SECOND_DAY, run_dag
from forecaster.orchestration.models import MODEL_PARAMETERS
from forecaster.pipelines.catalog import INFERENCE
from forecaster.pipelines.resolve import parameters_for
from forecaster.registry.sagemaker import SageMakerRegistry

pytestmark = pytest.mark.slow
REGION = "us-east-1"
ROLE = "arn:aws:iam::123456789012:role/forecaster"
RUNS = "s3://artifacts/runs"  # the OutputPrefix the deploy pinned


def _deploy(client, name: str, pinned: dict[str, str]) -> None:
    """Upsert pipeline ``name`` with ``pinned`` as its parameters' defaults (what the deploy repository does)."""
    parameters = [{"Name": k, "Type": "String", "DefaultValue": v} for k, v in {**pinned, "OutputPrefix": RUNS}.items()]
    definition = {"Version": "2020-12-01", "Parameters": parameters, "Steps": []}
    client.create_pipeline(PipelineName=name, RoleArn=ROLE, PipelineDefinition=json.dumps(definition))


def _upload(s3, folder: Path, bucket: str, prefix: str) -> None:
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        s3.upload_file(str(path), bucket, f"{prefix}/{path.relative_to(folder)}")


@pytest.fixture
def aws(monkeypatch, flow):
    """moto with: the source drops, the approved model of the local flow, the upserted inference pipeline."""
    use_fake_aws(monkeypatch, REGION)
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        for bucket in ("drops", "artifacts"):
            s3.create_bucket(Bucket=bucket)
        tmp = flow["tmp"]
        _upload(s3, tmp / "source", "drops", "chain")
        from forecaster.registry import open_registry

        local = open_registry(f"sqlite:///{tmp / 'work' / 'registry.db'}").latest_approved("forecaster-demand")
        s3.upload_file(local.model_data_url, "artifacts", "models/v1/model.tar.gz")
        baselines = {}
        for kind, path in local.baselines.items():
            key = f"baselines/{kind}/{Path(path).name}"
            s3.upload_file(path, "artifacts", key)
            baselines[kind] = f"s3://artifacts/{key}"
        registry = SageMakerRegistry(region=REGION)
        version = registry.register("forecaster-demand", "s3://artifacts/models/v1/model.tar.gz", baselines=baselines)
        version = registry.approve("forecaster-demand", version.version)
        sagemaker = boto3.client("sagemaker", region_name=REGION)
        _deploy(sagemaker, "forecaster-daily-inference", parameters_for(version, "inference"))
        _deploy(sagemaker, "forecaster-model-quality", parameters_for(version, "model-quality"))
        # a newer approval after the deployment: production keeps what was deployed until the next deploy
        s3.copy_object(Bucket="artifacts", Key="models/v2/model.tar.gz", CopySource="artifacts/models/v1/model.tar.gz")
        newer = registry.register("forecaster-demand", "s3://artifacts/models/v2/model.tar.gz", baselines=baselines)
        newer = registry.approve("forecaster-demand", newer.version)
        yield {"s3": s3, "flow": flow, "registry": registry, "model": version, "newer": newer, "sagemaker": sagemaker}


def _play_pipeline(monkeypatch, outputs: Path, *, status: str, names=("forecasts.csv", "order_proposals.csv")) -> list:
    """Patch moto's StartPipelineExecution: record the call, write the outputs (or fail) as the pipeline would."""
    calls: list[dict] = []
    original = sagemaker_models.SageMakerModelBackend.start_pipeline_execution

    def start(self, pipeline_name, pipeline_execution_display_name, pipeline_parameters, *args, **kwargs):
        result = original(self, pipeline_name, pipeline_execution_display_name, pipeline_parameters, *args, **kwargs)
        arn = result["PipelineExecutionArn"]
        params = {p["Name"]: p["Value"] for p in pipeline_parameters}
        calls.append({"pipeline": pipeline_name, "display_name": pipeline_execution_display_name, "parameters": params})
        execution = sagemaker_models.get_pipeline_execution_from_arn(self.pipelines, arn)
        if status != "Succeeded":
            execution.pipeline_execution_status = status
            return result
        bucket, _, prefix = params.get("OutputPrefix", RUNS)[len("s3://") :].partition("/")
        s3 = boto3.client("s3", region_name=REGION)
        root = f"{prefix}/{arn.rsplit('/', 1)[-1]}"
        for name in names:
            s3.upload_file(
                str(outputs / "Postprocess" / "output" / "forecasts" / name),
                bucket,
                f"{root}/Postprocess/forecasts/{name}",
            )
        decision = outputs / "DecideRetrain" / "output" / "decision" / "decision.json"
        s3.upload_file(str(decision), bucket, f"{root}/DecideRetrain/decision/decision.json")
        return result

    monkeypatch.setattr(sagemaker_models.SageMakerModelBackend, "start_pipeline_execution", start)
    return calls


def _config(flow) -> dict:
    return {
        "backend": "local",  # the DAG param picks sagemaker
        "source": "s3://drops/chain",
        "staging": "s3://artifacts/staging",
        "destination": "s3://artifacts/deliveries",
        "workdir": str(flow["tmp"] / "sm-work"),
        "registry": f"sagemaker://{REGION}",
        "region": REGION,
        "history_days": 100,
        "pipeline_names": {"inference": "forecaster-daily-inference", "model-quality": "forecaster-model-quality"},
        "parameters": {"inference": {"MinDriftedFeatures": 4}},
    }


def _keys(s3, prefix: str) -> list[str]:
    return sorted(item["Key"] for item in s3.list_objects_v2(Bucket="artifacts", Prefix=prefix).get("Contents", []))


def _manifest(s3, day) -> dict:
    return json.loads(s3.get_object(Bucket="artifacts", Key=f"deliveries/{day}/manifest.json")["Body"].read())


def _executions(aws, name: str = "forecaster-daily-inference") -> list[dict]:
    return aws["sagemaker"].list_pipeline_executions(PipelineName=name)["PipelineExecutionSummaries"]


def test_daily_forecast_runs_the_deployed_model_after_a_newer_approval(aws, monkeypatch, dagbag):
    flow = aws["flow"]
    outputs = flow["tmp"] / "work" / "daily_forecast" / str(FIRST_DAY) / "inference"
    calls = _play_pipeline(monkeypatch, outputs, status="Succeeded")
    run = run_dag(dagbag, monkeypatch, "forecaster_daily_forecast", FIRST_DAY, _config(flow), backend="sagemaker")
    assert run["deliver"] == "success", run
    assert run["run_local_pipeline"] == "skipped" and run["start_pipeline"] == run["wait_for_pipeline"] == "success"
    assert run["done"] == "success"
    (call,) = calls
    assert call["pipeline"] == "forecaster-daily-inference"
    params = call["parameters"]
    staged = f"s3://artifacts/staging/daily_forecast/{FIRST_DAY}"
    # no model parameter from Airflow: the deployed defaults (v1) are the model, not the newer approval (v2)
    assert params == {"HistoryData": f"{staged}/history", "FutureData": f"{staged}/future", "MinDriftedFeatures": "4"}
    assert not set(params) & set(MODEL_PARAMETERS) and set(params) <= {p.name for p in INFERENCE.parameters}
    (execution,) = _executions(aws)
    manifest = _manifest(aws["s3"], FIRST_DAY)
    assert manifest["execution"] == execution["PipelineExecutionArn"]
    assert manifest["model_package"] == aws["model"].identifier != aws["newer"].identifier
    assert manifest["model"] == "s3://artifacts/models/v1/model.tar.gz"
    assert _keys(aws["s3"], f"staging/daily_forecast/{FIRST_DAY}/") == [
        f"staging/daily_forecast/{FIRST_DAY}/future/future.parquet",
        f"staging/daily_forecast/{FIRST_DAY}/history/history.parquet",
    ]
    delivered = _keys(aws["s3"], f"deliveries/{FIRST_DAY}/orders/")
    assert delivered == [f"deliveries/{FIRST_DAY}/orders/store_id=S00{i}.csv" for i in (1, 2, 3)]
    local = (flow["tmp"] / "deliveries" / str(FIRST_DAY) / "orders" / "store_id=S001.csv").read_bytes()
    body = aws["s3"].get_object(Bucket="artifacts", Key=delivered[0])["Body"].read()
    assert body == local


def test_starting_twice_with_the_same_run_id_gives_one_execution(aws, monkeypatch, dagbag):
    flow = aws["flow"]
    outputs = flow["tmp"] / "work" / "daily_forecast" / str(FIRST_DAY) / "inference"
    calls = _play_pipeline(monkeypatch, outputs, status="Succeeded")
    config = _config(flow)
    for _ in range(2):  # the second run has the same DAG id and run id: a retry of start_pipeline
        run = run_dag(
            dagbag, monkeypatch, "forecaster_daily_forecast", FIRST_DAY, config, same_run_id=True, backend="sagemaker"
        )
        assert run["start_pipeline"] == "success" and run["deliver"] == "success", run
    assert len(calls) == 1 and len(_executions(aws)) == 1  # moto's count: one execution
    (execution,) = _executions(aws)
    assert _manifest(aws["s3"], FIRST_DAY)["execution"] == execution["PipelineExecutionArn"]
    # another run id starts its own execution
    run_dag(dagbag, monkeypatch, "forecaster_daily_forecast", FIRST_DAY, config, backend="sagemaker")
    assert len(_executions(aws)) == 2


def test_late_sales_the_sensor_waits_then_the_run_proceeds(aws, monkeypatch, dagbag):
    import threading
    import time

    flow = aws["flow"]
    outputs = flow["tmp"] / "work" / "daily_forecast" / str(FIRST_DAY) / "inference"
    _play_pipeline(monkeypatch, outputs, status="Succeeded")
    late = f"chain/sales/{FIRST_DAY - dt.timedelta(days=1)}.csv"
    body = aws["s3"].get_object(Bucket="drops", Key=late)["Body"].read()
    aws["s3"].delete_object(Bucket="drops", Key=late)
    sensor = dagbag.get_dag("forecaster_daily_forecast").get_task("wait_for_sales")
    monkeypatch.setattr(sensor, "poke_interval", 1)
    arrives = threading.Timer(6, lambda: aws["s3"].put_object(Bucket="drops", Key=late, Body=body))
    started = time.monotonic()
    arrives.start()
    try:
        run = run_dag(dagbag, monkeypatch, "forecaster_daily_forecast", FIRST_DAY, _config(flow), backend="sagemaker")
    finally:
        arrives.cancel()
    assert time.monotonic() - started >= 6  # it waited for the drop
    assert run["wait_for_sales"] == "success" and run["deliver"] == "success", run
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.taskreschedule import TaskReschedule
    from airflow.utils.session import create_session

    with create_session() as session:
        reschedules = (
            session.query(TaskReschedule)
            .join(TaskInstance, TaskReschedule.ti_id == TaskInstance.id)
            .filter(TaskInstance.dag_id == "forecaster_daily_forecast", TaskInstance.task_id == "wait_for_sales")
            .count()
        )
    assert reschedules >= 1  # reschedule mode: no worker slot held while it waited


def test_model_quality_checks_the_model_in_the_manifest_after_a_newer_approval(aws, monkeypatch, dagbag):
    flow = aws["flow"]
    local = flow["tmp"] / "deliveries" / str(SECOND_DAY)
    manifest = json.loads((local / "manifest.json").read_text())
    manifest.update(model_package=aws["model"].identifier, model=aws["model"].model_data_url)
    for path in sorted(p for p in local.rglob("*") if p.is_file() and p.name != "manifest.json"):
        aws["s3"].upload_file(str(path), "artifacts", f"deliveries/{SECOND_DAY}/{path.relative_to(local)}")
    aws["s3"].put_object(Bucket="artifacts", Key=f"deliveries/{SECOND_DAY}/manifest.json", Body=json.dumps(manifest))
    outputs = flow["tmp"] / "work" / "model_quality" / str(QUALITY_DAY) / "model-quality"
    calls = _play_pipeline(monkeypatch, outputs, status="Succeeded", names=())
    run = run_dag(dagbag, monkeypatch, "forecaster_model_quality", QUALITY_DAY, _config(flow), backend="sagemaker")
    assert run["collect_decision"] == "success", run
    (call,) = calls
    assert call["pipeline"] == "forecaster-model-quality"
    assert aws["registry"].latest_approved("forecaster-demand").identifier == aws["newer"].identifier
    assert call["parameters"]["ModelDataUrl"] == "s3://artifacts/models/v1/model.tar.gz"
    assert (
        call["parameters"]["ModelQualityBaselineUri"]
        == parameters_for(aws["model"], "model-quality")["ModelQualityBaselineUri"]
    )
    decision = aws["s3"].get_object(Bucket="artifacts", Key=f"deliveries/quality/{QUALITY_DAY}/decision.json")
    assert json.loads(decision["Body"].read())["retrain"] is True


@pytest.mark.parametrize("status", ["Failed", "Stopped"])
def test_a_failed_execution_fails_the_wait_and_delivers_nothing(aws, monkeypatch, dagbag, status):
    flow = aws["flow"]
    _play_pipeline(monkeypatch, flow["tmp"], status=status)
    run = run_dag(dagbag, monkeypatch, "forecaster_daily_forecast", FIRST_DAY, _config(flow), backend="sagemaker")
    result = run
    assert result["start_pipeline"] == "success" and result["run_local_pipeline"] == "skipped"
    assert result["wait_for_pipeline"] == "failed"
    assert result["deliver"] == "upstream_failed"
    assert _keys(aws["s3"], "deliveries/") == []


def test_the_deferrable_path_defers_on_the_one_execution_of_the_run(monkeypatch, dagbag):
    """With a triggerer (``deferrable=True``) start_pipeline defers to the provider's SageMakerPipelineTrigger.

    Up to the deferral this is the DAG's own task, run against moto; the trigger's wait is not run here: it needs
    aiobotocore (the provider's async client), which is not in constraints-airflow.txt, and moto's in-process mock
    does not answer aiobotocore's aiohttp requests (that needs moto's server, not installed either). Under
    ``dag.test()`` the inline trigger therefore fails with ``No module named 'aiobotocore'``.
    """
    from airflow.providers.amazon.aws.triggers.sagemaker import SageMakerPipelineTrigger
    from airflow.sdk.exceptions import TaskDeferred

    use_fake_aws(monkeypatch, REGION)
    dag = dagbag.get_dag("forecaster_daily_forecast")
    task = dag.get_task("start_pipeline")
    with mock_aws():
        client = boto3.client("sagemaker", region_name=REGION)
        _deploy(client, "forecaster-daily-inference", {"ModelDataUrl": "s3://artifacts/models/v1/model.tar.gz"})
        arns = []
        for _ in range(2):  # the try, then a retry of the same run
            operator = task.__class__(
                task_id="start_pipeline",
                pipeline_name="forecaster-daily-inference",
                pipeline_params={"HistoryData": "s3://artifacts/h"},
                deferrable=True,
                aws_conn_id=None,
                region_name=REGION,
            )
            with pytest.raises(TaskDeferred) as deferred:
                operator.execute({"dag": dag, "run_id": "scheduled__2024-04-10T00:00:00+00:00"})
            trigger = deferred.value.trigger
            assert isinstance(trigger, SageMakerPipelineTrigger) and deferred.value.method_name == "execute_complete"
            arns.append(trigger.pipeline_execution_arn)
            event = {"status": "success", "value": trigger.pipeline_execution_arn}
            assert operator.execute_complete({}, event=event) == trigger.pipeline_execution_arn
        executions = client.list_pipeline_executions(PipelineName="forecaster-daily-inference")
        assert arns[0] == arns[1] and len(executions["PipelineExecutionSummaries"]) == 1
