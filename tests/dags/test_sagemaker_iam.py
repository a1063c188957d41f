"""The Airflow ``sagemaker`` backend against the project's Airflow role (the IAM oracle, tests/iam_oracle.py).

The daily forecast and the model quality DAGs run against moto (in process) with the names the project stack
gives: the data bucket's drops, the artifact bucket for staging, runs and deliveries, the production pipelines
``<project>-batch-inference-production`` / ``<project>-model-quality-production`` and the project's model package
group. Every AWS call of their tasks (the provider's operator and sensor, the backend's reads, the S3 drops, the
registry) is recorded by a botocore hook and must be allowed by ``AirflowRole`` of project.yml; a denial fails
naming the caller, the action, the resource and the role. The stand-in pipeline writes its outputs through
moto's backend, not boto3: SageMaker writes them as the pipeline execution role, not as Airflow.
"""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest
from moto import mock_aws
from moto.s3.models import s3_backends
from moto.sagemaker import models as sagemaker_models

import iam_oracle as oracle
from aws_helpers import use_fake_aws
from dags.helpers import FIRST_DAY, QUALITY_DAY, SECOND_DAY, run_dag
from dags.test_sagemaker_backend import _upload
from forecaster.pipelines.resolve import parameters_for
from forecaster.registry.sagemaker import SageMakerRegistry

pytestmark = pytest.mark.slow
ROLE = "AirflowRole"
DATA = oracle.PARAMETERS["DataBucketName"]
PIPELINES = {
    "inference": f"{oracle.PROJECT}-batch-inference-production",
    "model-quality": f"{oracle.PROJECT}-model-quality-production",
}


def _deploy(client, name: str, pinned: dict[str, str]) -> None:
    """Upsert pipeline ``name`` with ``pinned`` as its parameters' defaults (what the deploy repository does)."""
    parameters = [{"Name": k, "Type": "String", "DefaultValue": v} for k, v in pinned.items()]
    definition = {"Version": "2020-12-01", "Parameters": parameters, "Steps": []}
    role = f"arn:{oracle.PARTITION}:iam::{oracle.ACCOUNT}:role/forecaster-{oracle.PROJECT}-sagemaker-pipelines"
    client.create_pipeline(PipelineName=name, RoleArn=role, PipelineDefinition=json.dumps(definition))


def _artifacts() -> str:
    """The artifact bucket's name as the project stack names it."""
    template, resolver, _ = oracle.project()
    return resolver.resolve(template["Resources"]["ArtifactBucket"]["Properties"]["BucketName"])


@pytest.fixture
def project_aws(monkeypatch, flow):
    """moto with the project's buckets, the approved model of the local flow and the production pipelines."""
    use_fake_aws(monkeypatch, oracle.REGION)
    artifacts = _artifacts()
    with mock_aws():
        s3 = boto3.client("s3", region_name=oracle.REGION)
        for bucket in (DATA, artifacts):
            s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": oracle.REGION})
        tmp = flow["tmp"]
        _upload(s3, tmp / "source", DATA, "chain")
        from forecaster.registry import open_registry

        local = open_registry(f"sqlite:///{tmp / 'work' / 'registry.db'}").latest_approved("forecaster-demand")
        s3.upload_file(local.model_data_url, artifacts, "models/v1/model.tar.gz")
        baselines = {}
        for kind, path in local.baselines.items():
            key = f"baselines/{kind}/{Path(path).name}"
            s3.upload_file(path, artifacts, key)
            baselines[kind] = f"s3://{artifacts}/{key}"
        registry = SageMakerRegistry(region=oracle.REGION)
        version = registry.register(oracle.PROJECT, f"s3://{artifacts}/models/v1/model.tar.gz", baselines=baselines)
        version = registry.approve(oracle.PROJECT, version.version)
        sagemaker = boto3.client("sagemaker", region_name=oracle.REGION)
        runs = f"s3://{artifacts}/runs"
        for key, name in PIPELINES.items():
            _deploy(sagemaker, name, {**parameters_for(version, key), "OutputPrefix": runs})
        yield {"s3": s3, "flow": flow, "model": version, "artifacts": artifacts}


def _play_pipeline(monkeypatch, outputs: Path, names: tuple[str, ...]) -> None:
    """moto's StartPipelineExecution writes the outputs of the local run where SageMaker would (not as Airflow)."""
    original = sagemaker_models.SageMakerModelBackend.start_pipeline_execution

    def start(self, pipeline_name, display_name, pipeline_parameters, *args, **kwargs):
        result = original(self, pipeline_name, display_name, pipeline_parameters, *args, **kwargs)
        arn = result["PipelineExecutionArn"]
        definition = self.pipelines[pipeline_name].pipeline_definition
        definition = definition if isinstance(definition, dict) else json.loads(definition)
        defaults = {p["Name"]: p["DefaultValue"] for p in definition["Parameters"]}
        given = {p["Name"]: p["Value"] for p in pipeline_parameters}
        bucket, _, prefix = {**defaults, **given}["OutputPrefix"][len("s3://") :].partition("/")
        root = f"{prefix}/{arn.rsplit('/', 1)[-1]}"
        backend = s3_backends[oracle.ACCOUNT][oracle.PARTITION]
        files = {f"Postprocess/forecasts/{n}": outputs / "Postprocess" / "output" / "forecasts" / n for n in names}
        files["DecideRetrain/decision/decision.json"] = (
            outputs / "DecideRetrain" / "output" / "decision" / "decision.json"
        )
        for key, path in files.items():
            backend.put_object(bucket, f"{root}/{key}", path.read_bytes())
        return result

    monkeypatch.setattr(sagemaker_models.SageMakerModelBackend, "start_pipeline_execution", start)


def _config(flow, artifacts: str) -> dict:
    return {
        "backend": "local",  # the DAG param picks sagemaker
        "source": f"s3://{DATA}/chain",
        "staging": f"s3://{artifacts}/staging",
        "destination": f"s3://{artifacts}/deliveries",
        "workdir": str(flow["tmp"] / "iam-work"),
        "registry": f"sagemaker://{oracle.REGION}",
        "region": oracle.REGION,
        "group": oracle.PROJECT,
        "history_days": 100,
        "pipeline_names": PIPELINES,
        "parameters": {"inference": {"MinDriftedFeatures": 4}},
    }


def _denials(calls: list[dict], dag: str) -> list[str]:
    template, resolver, _ = oracle.project()
    statements = oracle.role_statements(template, ROLE, resolver)
    return oracle.denials(calls, statements, f"Airflow sagemaker backend ({dag})", ROLE)


def test_every_call_of_the_sagemaker_backend_is_allowed_by_the_airflow_role(project_aws, monkeypatch, dagbag):
    flow, artifacts, s3 = project_aws["flow"], project_aws["artifacts"], project_aws["s3"]
    config = _config(flow, artifacts)
    _play_pipeline(
        monkeypatch,
        flow["tmp"] / "work" / "daily_forecast" / str(FIRST_DAY) / "inference",
        ("forecasts.csv", "order_proposals.csv"),
    )
    with oracle.recording() as forecast_calls:
        for _ in range(2):  # the second run is a retry of the same DAG run: it finds the execution (start once)
            run = run_dag(
                dagbag,
                monkeypatch,
                "forecaster_daily_forecast",
                FIRST_DAY,
                config,
                same_run_id=True,
                backend="sagemaker",
            )
            assert run["start_pipeline"] == run["wait_for_pipeline"] == run["deliver"] == "success", run

    local = flow["tmp"] / "deliveries" / str(SECOND_DAY)
    manifest = json.loads((local / "manifest.json").read_text())
    manifest.update(model_package=project_aws["model"].identifier, model=project_aws["model"].model_data_url)
    for path in sorted(p for p in local.rglob("*") if p.is_file() and p.name != "manifest.json"):
        s3.upload_file(str(path), artifacts, f"deliveries/{SECOND_DAY}/{path.relative_to(local)}")
    s3.put_object(Bucket=artifacts, Key=f"deliveries/{SECOND_DAY}/manifest.json", Body=json.dumps(manifest))
    _play_pipeline(monkeypatch, flow["tmp"] / "work" / "model_quality" / str(QUALITY_DAY) / "model-quality", ())
    with oracle.recording() as quality_calls:
        run = run_dag(dagbag, monkeypatch, "forecaster_model_quality", QUALITY_DAY, config, backend="sagemaker")
        assert run["collect_decision"] == "success", run

    operations = {c["operation"] for c in forecast_calls + quality_calls}
    assert {
        "ListPipelineExecutions",
        "StartPipelineExecution",
        "DescribePipelineExecution",
        "DescribePipelineDefinitionForExecution",
        "ListPipelineParametersForExecution",
        "GetObject",
        "PutObject",
        "ListObjectsV2",
    } <= operations, operations
    assert sum(c["operation"] == "StartPipelineExecution" for c in forecast_calls) == 1
    denied = _denials(forecast_calls, "forecaster_daily_forecast") + _denials(quality_calls, "forecaster_model_quality")
    assert not denied, "\n".join(denied)
    # the same calls against the role without the look-up that makes a retry safe: denied, by name
    template, resolver, _ = oracle.project()
    statements = oracle.role_statements(template, ROLE, resolver)
    for statement in statements:
        statement["Action"] = [a for a in oracle._list(statement["Action"]) if a != "sagemaker:ListPipelineExecutions"]
    pipeline = f"arn:aws:sagemaker:{oracle.REGION}:{oracle.ACCOUNT}:pipeline/{PIPELINES['inference']}"
    assert oracle.denials(forecast_calls, statements, "Airflow", ROLE) == [
        f"Airflow: sagemaker:ListPipelineExecutions on {pipeline} is not allowed by role {ROLE}"
    ]


def test_the_airflow_role_refuses_what_is_not_the_projects():
    """The oracle denies: another project's pipeline, the staging stage, a write to the data bucket, approving."""
    template, resolver, _ = oracle.project()
    statements = oracle.role_statements(template, ROLE, resolver)

    def arn(resource: str) -> str:
        return f"arn:{oracle.PARTITION}:sagemaker:{oracle.REGION}:{oracle.ACCOUNT}:{resource}"

    assert oracle.allowed(statements, "sagemaker:StartPipelineExecution", arn(f"pipeline/{PIPELINES['inference']}"))
    for action, resource in (
        ("sagemaker:StartPipelineExecution", arn("pipeline/other-project-batch-inference-production")),
        ("sagemaker:StartPipelineExecution", arn(f"pipeline/{oracle.PROJECT}-batch-inference-staging")),
        ("sagemaker:UpdatePipeline", arn(f"pipeline/{PIPELINES['inference']}")),
        ("sagemaker:UpdateModelPackage", arn(f"model-package/{oracle.PROJECT}/1")),
        ("s3:PutObject", f"arn:{oracle.PARTITION}:s3:::{DATA}/chain/sales/x.csv"),
        ("s3:DeleteObject", f"arn:{oracle.PARTITION}:s3:::{_artifacts()}/deliveries/x"),
    ):
        assert not oracle.allowed(statements, action, resource), (action, resource)
    trust = template["Resources"][ROLE]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert resolver.resolve(trust) == [
        {
            "Effect": "Allow",
            "Principal": {"AWS": oracle.PARAMETERS["AirflowExecutionRoleArn"]},
            "Action": "sts:AssumeRole",
        }
    ]
