"""`forecaster pipeline upsert` and the approved-model resolver against moto (in-process AWS)."""

from __future__ import annotations

import json

import pytest

from aws_helpers import use_fake_aws
from forecaster.cli.main import main
from forecaster.errors import NoApprovedModelError, RegistryError
from forecaster.pipelines.resolve import approved_model_parameters
from forecaster.registry import open_registry

REGION = "eu-west-1"
ROLE = "arn:aws:iam::123456789012:role/forecaster-pipelines"
GROUP = "demand"

pytestmark = pytest.mark.slow


@pytest.fixture
def aws(monkeypatch):
    import moto

    use_fake_aws(monkeypatch, region=None)  # the commands name their region (--region, sagemaker://REGION)
    with moto.mock_aws():
        import boto3

        yield boto3.client("sagemaker", region_name=REGION)


def _register(registry, n: int, approve: bool):
    base = f"s3://artifacts/run-{n}"
    version = registry.register(
        GROUP,
        f"{base}/Train/model.tar.gz",
        image_uri="123456789012.dkr.ecr.eu-west-1.amazonaws.com/forecaster-infer:1",
        baselines={
            "data_quality_statistics": f"{base}/DataQualityBaseline/baseline/statistics.json",
            "data_quality_constraints": f"{base}/DataQualityBaseline/baseline/constraints.json",
            "model_quality_statistics": f"{base}/Evaluate/evaluation/evaluation.json",
            "model_quality_constraints": f"{base}/ModelQualityBaseline/baseline/constraints.json",
            "explainability_report": f"{base}/ExplainabilityBaseline/baseline/analysis.json",
        },
    )
    if approve:
        registry.approve(GROUP, version.version)
    return version


def test_upsert_creates_then_updates_and_runs_with_the_latest_approved_model(aws, capsys):
    args = ["pipeline", "upsert", "model-quality", "--role", ROLE, "--region", REGION, "--tag", "team=forecasting"]
    args.append("--skip-role-validation")  # moto's IAM has no such role
    assert main(args) == 0
    arn = capsys.readouterr().out.strip()
    assert arn.endswith(":pipeline/forecaster-model-quality")
    described = aws.describe_pipeline(PipelineName="forecaster-model-quality")
    assert described["RoleArn"] == ROLE
    definition = json.loads(described["PipelineDefinition"])
    assert [s["Name"] for s in definition["Steps"]] == ["ModelQualityCheck", "DecideRetrain"]
    assert definition["Steps"][0]["Arguments"]["RoleArn"] == ROLE

    assert main(args) == 0  # the update path
    assert capsys.readouterr().out.strip() == arn
    assert len(aws.list_pipelines()["PipelineSummaries"]) == 1

    registry = open_registry(f"sagemaker://{REGION}")
    _register(registry, 1, approve=True)
    _register(registry, 2, approve=True)
    _register(registry, 3, approve=False)
    parameters = approved_model_parameters(registry, GROUP, "model-quality")
    assert parameters == {
        "ModelDataUrl": "s3://artifacts/run-2/Train/model.tar.gz",  # its spec names the forecasts' columns
        "ModelQualityBaselineUri": "s3://artifacts/run-2/ModelQualityBaseline/baseline",
    }
    inference = approved_model_parameters(registry, GROUP, "inference")
    assert inference["ModelDataUrl"] == "s3://artifacts/run-2/Train/model.tar.gz"
    assert inference["DataQualityBaselineUri"] == "s3://artifacts/run-2/DataQualityBaseline/baseline"
    assert inference["ExplainabilityBaselineUri"] == "s3://artifacts/run-2/ExplainabilityBaseline/baseline"
    assert inference["ModelPackageArn"].endswith("model-package/demand/2")
    aws.start_pipeline_execution(
        PipelineName="forecaster-model-quality",
        PipelineParameters=[{"Name": k, "Value": v} for k, v in parameters.items()],
    )
    (execution,) = aws.list_pipeline_executions(PipelineName="forecaster-model-quality")["PipelineExecutionSummaries"]
    assert execution["PipelineExecutionStatus"] == "Succeeded"  # moto runs no step; the call was accepted


def test_cli_latest_parameters_and_errors(aws, capsys):
    url = f"sagemaker://{REGION}"
    registry = open_registry(url)
    _register(registry, 1, approve=False)
    assert main(["registry", "latest", "--registry", url, "--group", GROUP]) == NoApprovedModelError.exit_code
    assert "has no approved version" in capsys.readouterr().err
    assert main(["registry", "approve", "--registry", url, "--group", GROUP, "--version", "1"]) == 0
    capsys.readouterr()
    assert main(["registry", "latest", "--registry", url, "--group", GROUP, "--parameters", "inference"]) == 0
    assert json.loads(capsys.readouterr().out)["ModelDataUrl"] == "s3://artifacts/run-1/Train/model.tar.gz"
    registry.register(GROUP, "s3://artifacts/run-9/model.tar.gz")  # no baselines
    registry.approve(GROUP, 2)
    with pytest.raises(RegistryError, match="no data_quality_constraints baseline"):
        approved_model_parameters(registry, GROUP, "inference")


def test_upsert_role_validation_error_is_clear(aws, capsys):
    assert main(["pipeline", "upsert", "model-quality", "--role", ROLE, "--region", REGION]) == 2
    err = capsys.readouterr().err
    assert "rejected role" in err and "--skip-role-validation" in err
    assert aws.list_pipelines()["PipelineSummaries"] == []


def test_upsert_needs_a_role_arn_and_a_region(aws, capsys):
    assert main(["pipeline", "upsert", "model-quality", "--role", "MyRole", "--region", REGION]) == 2
    assert "IAM role ARN" in capsys.readouterr().err
    assert main(["pipeline", "upsert", "model-quality", "--role", ROLE]) == 2
    assert "No AWS region" in capsys.readouterr().err
