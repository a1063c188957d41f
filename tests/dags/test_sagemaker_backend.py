"""The sagemaker backend against moto (in-process): the provider's operator starts the upserted pipeline with the
right name and parameters, its sensor sees success or failure, a failed execution fails the task and delivers
nothing. moto's pipeline executions do not run steps, so a patched StartPipelineExecution plays the pipeline:
it writes the outputs of the local run of the same day where SageMaker would (``<OutputPrefix>/<id>/<step>/``).
"""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest
from moto import mock_aws
from moto.sagemaker import models as sagemaker_models

from aws_helpers import use_fake_aws
from dags.helpers import FIRST_DAY, run_dag
from forecaster.pipelines.catalog import INFERENCE
from forecaster.registry.sagemaker import SageMakerRegistry

pytestmark = pytest.mark.slow
REGION = "us-east-1"
ROLE = "arn:aws:iam::123456789012:role/forecaster"


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
        registry.approve("forecaster-demand", version.version)
        boto3.client("sagemaker", region_name=REGION).create_pipeline(
            PipelineName="forecaster-daily-inference",
            RoleArn=ROLE,
            PipelineDefinition=json.dumps({"Version": "2020-12-01", "Parameters": [], "Steps": []}),
        )
        yield {"s3": s3, "flow": flow, "registry": registry, "model": version}


def _play_pipeline(monkeypatch, outputs: Path, *, status: str) -> list[dict]:
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
        bucket, _, prefix = params["OutputPrefix"][len("s3://") :].partition("/")
        s3 = boto3.client("s3", region_name=REGION)
        root = f"{prefix}/{arn.rsplit('/', 1)[-1]}"
        for name in ("forecasts.csv", "order_proposals.csv"):
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
        "pipeline_names": {"inference": "forecaster-daily-inference"},
        "parameters": {"inference": {"OutputPrefix": "s3://artifacts/runs", "MinDriftedFeatures": 4}},
    }


def _keys(s3, prefix: str) -> list[str]:
    return sorted(item["Key"] for item in s3.list_objects_v2(Bucket="artifacts", Prefix=prefix).get("Contents", []))


def test_daily_forecast_on_sagemaker(aws, monkeypatch, dagbag):
    flow = aws["flow"]
    outputs = flow["tmp"] / "work" / "daily_forecast" / str(FIRST_DAY) / "inference"
    calls = _play_pipeline(monkeypatch, outputs, status="Succeeded")
    run = run_dag(dagbag, monkeypatch, "forecaster_daily_forecast", FIRST_DAY, _config(flow), backend="sagemaker")
    assert run["deliver"] == "success", run
    assert run["done"] == "success"
    (call,) = calls
    assert call["pipeline"] == "forecaster-daily-inference"
    params = call["parameters"]
    staged = f"s3://artifacts/staging/daily_forecast/{FIRST_DAY}"
    assert params["HistoryData"] == f"{staged}/history" and params["FutureData"] == f"{staged}/future"
    assert params["ModelDataUrl"] == "s3://artifacts/models/v1/model.tar.gz"
    assert params["ModelPackageArn"] == aws["model"].identifier
    assert params["DataQualityBaselineUri"] == "s3://artifacts/baselines/data_quality_constraints"
    assert params["OutputPrefix"] == "s3://artifacts/runs" and params["MinDriftedFeatures"] == "4"
    assert set(params) <= {p.name for p in INFERENCE.parameters}
    assert _keys(aws["s3"], f"staging/daily_forecast/{FIRST_DAY}/") == [
        f"staging/daily_forecast/{FIRST_DAY}/future/future.parquet",
        f"staging/daily_forecast/{FIRST_DAY}/history/history.parquet",
    ]
    delivered = _keys(aws["s3"], f"deliveries/{FIRST_DAY}/orders/")
    assert delivered == [f"deliveries/{FIRST_DAY}/orders/store_id=S00{i}.csv" for i in (1, 2, 3)]
    local = (flow["tmp"] / "deliveries" / str(FIRST_DAY) / "orders" / "store_id=S001.csv").read_bytes()
    body = aws["s3"].get_object(Bucket="artifacts", Key=delivered[0])["Body"].read()
    assert body == local


@pytest.mark.parametrize("status", ["Failed", "Stopped"])
def test_a_failed_execution_fails_the_wait_and_delivers_nothing(aws, monkeypatch, dagbag, status):
    flow = aws["flow"]
    _play_pipeline(monkeypatch, flow["tmp"], status=status)
    run = run_dag(dagbag, monkeypatch, "forecaster_daily_forecast", FIRST_DAY, _config(flow), backend="sagemaker")
    result = run
    assert result["start_pipeline"] == "success"
    assert result["wait_for_pipeline"] == "failed"
    assert result["deliver"] == "upstream_failed"
    assert _keys(aws["s3"], "deliveries/") == []
