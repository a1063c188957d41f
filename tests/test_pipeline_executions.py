"""Parameter values from --param/--params-file, and `forecaster pipeline start` against moto (in-process AWS)."""

from __future__ import annotations

import json

import pytest

from aws_helpers import TEST_REGION
from forecaster.cli.main import main
from forecaster.errors import ForecasterError, InvalidParameterError
from forecaster.pipelines.definitions import pipeline_spec
from forecaster.pipelines.executions import (
    parameter_values,
    read_params_file,
    read_schedule,
    schedule,
    wait,
    with_defaults,
)

REGION = TEST_REGION  # the fake_aws fixture's


@pytest.mark.parametrize(
    ("pipeline", "name", "value", "expected"),
    [
        ("build", "MaxWape", "nan", r"must be a float\. Got 'nan'"),  # was "DefaultValue": NaN
        ("build", "MaxWape", "-1", r"must be a float in the range \[0, inf\)"),
        (
            "build",
            "ModelApprovalStatus",
            "Bogus",
            "must be a str among",
        ),  # was refused by RegisterModel, after training
        ("build", "Horizon", 0, r"must be an int in the range \[1, 366\]"),
        # these failed after training (RegisterModel, the baselines, Transform) or at the AWS call
        ("build", "ModelPackageGroupName", "bad name!", "must be a name of 1 to 63 letters, digits and hyphens"),
        ("build", "DataDriftThreshold", -1, r"must be a float in the range \[0, inf\)"),
        ("build", "ModelQualityTolerance", -1, r"must be a float in the range \[0, inf\)"),
        ("build", "ProcessingInstanceCount", 0, r"must be an int in the range \[1, inf\)"),
        ("inference", "TransformMaxPayloadInMB", 0, r"must be an int in the range \[1, 100\]"),
        ("inference", "TransformMaxConcurrent", 0, r"must be an int in the range \[1, 100\]"),
        ("inference", "ActiveDays", -5, r"must be an int in the range \[0, inf\)"),
        ("inference", "ServiceLevel", "1.5", r"must be a float in the range \(0, 1\)"),
        ("inference", "NdcgThreshold", 2, r"must be a float in the range \[0, 1\]"),
        ("inference", "OrderDate", "10/04/2024", "must be a day written YYYY-MM-DD"),  # was caught after Transform
    ],
)
def test_values_out_of_their_range_are_refused_by_every_executor(pipeline, name, value, expected, tmp_path):
    """Definition, start and the local runner read one range per parameter (the table's), before any step runs."""
    from forecaster.pipelines.local_params import resolve_parameters

    spec = pipeline_spec(pipeline)
    with pytest.raises(InvalidParameterError, match=f"'{name}' parameter of the {spec.name} pipeline {expected}"):
        parameter_values(spec, {name: value})
    with pytest.raises(InvalidParameterError, match=f"'{name}' parameter of the {spec.name} pipeline {expected}"):
        resolve_parameters(pipeline, spec, {name: value}, registry_url=f"sqlite:///{tmp_path}/r.db")
    assert parameter_values(spec, {"ServiceLevel": ""} if pipeline == "inference" else {}) is not None  # "": not given


@pytest.mark.parametrize(
    ("pipeline", "name", "value"),
    [
        ("inference", "HistoryData", "s3:/bad"),
        ("inference", "OutputPrefix", "/local/path"),
        ("inference", "StockData", "stock.csv"),
        ("build", "InputData", "history/"),
    ],
)
def test_the_locations_sagemaker_reads_and_writes_must_be_s3_uris(pipeline, name, value):
    """Definition, upsert and start send them to SageMaker (the local runner takes local paths instead)."""
    spec = pipeline_spec(pipeline)
    with pytest.raises(InvalidParameterError, match=f"'{name}' parameter of the {spec.name} pipeline must be an S3"):
        parameter_values(spec, {name: value})
    assert parameter_values(spec, {name: "s3://my-bucket/x/"}) == {name: "s3://my-bucket/x/"}


def test_values_are_checked_against_the_parameter_table_and_cast():
    spec = pipeline_spec("build")
    assert parameter_values(spec, {"Horizon": "7", "LearningRate": "0.1", "Spec": "x"}) == {
        "Horizon": 7,
        "LearningRate": 0.1,
        "Spec": "x",
    }
    with pytest.raises(InvalidParameterError, match="has no parameter Horizn"):
        parameter_values(spec, {"Horizn": 7})
    with pytest.raises(
        InvalidParameterError, match="'Horizon' parameter of the forecaster-model-build pipeline must be an integer"
    ):
        parameter_values(spec, {"Horizon": "two weeks"})
    # a params file's 14.7 or true is no integer (int() made them 14 and 1); 14.0 is 14, as in the local runner
    for value in (14.7, True, "14.7", "NaN", float("inf")):
        with pytest.raises(InvalidParameterError, match=r"must be an integer\. Got"):
            parameter_values(spec, {"Horizon": value})
    assert parameter_values(spec, {"Horizon": 14.0}) == parameter_values(spec, {"Horizon": " 14 "}) == {"Horizon": 14}
    with pytest.raises(InvalidParameterError, match=r"'LearningRate' .* must be a float\. Got 'nan'"):
        parameter_values(spec, {"LearningRate": "nan"})
    changed = with_defaults(spec, {"Horizon": 28})
    assert changed.defaults()["Horizon"] == 28 and spec.defaults()["Horizon"] == 14  # the table is untouched
    # booleans (UseSpotInstances): true/false in any case, nothing else
    assert parameter_values(spec, {"UseSpotInstances": "TRUE"}) == {"UseSpotInstances": True}
    assert parameter_values(spec, {"UseSpotInstances": False}) == {"UseSpotInstances": False}
    with pytest.raises(InvalidParameterError, match=r"'UseSpotInstances' parameter of .* must be a boolean"):
        parameter_values(spec, {"UseSpotInstances": "yes"})


def test_params_file_expands_set_variables_and_refuses_unset_ones(tmp_path):
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"OutputPrefix": "s3://${BUCKET}/x", "Horizon": 7, "Spec": "$$HOME"}))
    assert read_params_file(path, {"BUCKET": "b"}) == {"OutputPrefix": "s3://b/x", "Horizon": 7, "Spec": "$HOME"}
    with pytest.raises(InvalidParameterError, match=r"names variable \$\{BUCKET\}, which is not set"):
        read_params_file(path, {})
    path.write_text("[1, 2]")
    with pytest.raises(InvalidParameterError, match="one JSON object"):
        read_params_file(path, {})
    with pytest.raises(InvalidParameterError, match="not a readable JSON file"):
        read_params_file(tmp_path / "missing.json", {})


class _Executions:
    def __init__(self, states, reason="step Train failed"):
        self.states, self.reason = list(states), reason

    def describe_pipeline_execution(self, PipelineExecutionArn):
        return {"PipelineExecutionStatus": self.states.pop(0), "FailureReason": self.reason}


def test_wait_returns_on_success_and_raises_on_failure_or_timeout():
    assert wait(_Executions(["Executing", "Succeeded"]), "arn", timeout=5, poll=0.01) == "Succeeded"
    with pytest.raises(ForecasterError, match="ended Failed: step Train failed"):
        wait(_Executions(["Failed"]), "arn", timeout=5, poll=0.01)
    with pytest.raises(ForecasterError, match="still Executing after 0 s"):
        wait(_Executions(["Executing"] * 100), "arn", timeout=0.0, poll=0.01)


@pytest.fixture
def aws(fake_aws):
    import moto

    with moto.mock_aws():
        import boto3

        yield boto3.client("sagemaker", region_name=REGION)


def test_start_passes_checked_parameters_and_waits(aws, capsys, tmp_path):
    aws.create_pipeline(
        PipelineName="forecaster-model-build",
        PipelineDefinition=json.dumps({"Version": "2020-12-01", "Parameters": [], "Steps": []}),
        RoleArn="arn:aws:iam::123456789012:role/r",
    )
    params = tmp_path / "p.json"
    params.write_text(json.dumps({"Horizon": 7, "CodeVersion": "from-file"}))
    args = ["pipeline", "start", "build", "--params-file", str(params), "--param", "CodeVersion=abc", "--wait"]
    assert main(args) == 0
    arn, status = capsys.readouterr().out.split()
    assert status == "Succeeded" and ":pipeline/forecaster-model-build/execution/" in arn
    sent = aws.list_pipeline_parameters_for_execution(PipelineExecutionArn=arn)["PipelineParameters"]
    assert {p["Name"]: p["Value"] for p in sent} == {"Horizon": "7", "CodeVersion": "abc"}
    assert main(["pipeline", "start", "build", "--param", "Horizn=7"]) == 2
    assert "has no parameter Horizn" in capsys.readouterr().err


def test_schedule_is_created_then_updated(aws, tmp_path):
    import boto3

    scheduler = boto3.client("scheduler", region_name=REGION)
    pipeline = f"arn:aws:sagemaker:{REGION}:123456789012:pipeline/p"
    role = "arn:aws:iam::123456789012:role/scheduler"
    arn = schedule(scheduler, "p", pipeline, "cron(0 3 * * ? *)", role)
    assert schedule(scheduler, "p", pipeline, "rate(1 day)", role, "Europe/Helsinki") == arn
    (listed,) = scheduler.list_schedules()["Schedules"]
    described = scheduler.get_schedule(Name="p")
    assert listed["Arn"] == arn and described["ScheduleExpression"] == "rate(1 day)"
    assert described["ScheduleExpressionTimezone"] == "Europe/Helsinki" and described["Target"]["Arn"] == pipeline
    with pytest.raises(InvalidParameterError, match="cron"):
        schedule(scheduler, "p", pipeline, "every day", role)
    path = tmp_path / "schedules.json"
    path.write_text(json.dumps({"inference": "rate(1 day)", "model-quality": ""}))
    assert read_schedule(path, "inference") == "rate(1 day)"
    assert read_schedule(path, "model-quality") is None and read_schedule(path, "build") is None


def test_a_model_without_its_baselines_is_refused_by_the_local_runner(tmp_path):
    """ModelDataUrl alone once ran with the latest approved version's baselines and package ARN (another model's)."""
    from forecaster.pipelines.local_params import resolve_parameters

    model = tmp_path / "model.tar.gz"
    model.write_bytes(b"x")
    with pytest.raises(InvalidParameterError, match="give ModelPackageArn, DataQualityBaselineUri, Explainabil"):
        resolve_parameters(
            "inference",
            pipeline_spec("inference"),
            {"ModelDataUrl": str(model)},
            registry_url=f"sqlite:///{tmp_path}/r",
        )


def test_a_spec_file_named_by_a_parameter_is_in_the_cache_key_by_its_content(tmp_path):
    """Editing a Spec JSON outside InputData re-ran nothing: every step was reused with the old spec."""
    from forecaster.pipelines.local import LocalRun

    data, spec = tmp_path / "sales.csv", tmp_path / "mine.json"
    data.write_text("store_id,item_id,date,units_sold\n")
    spec.write_text('{"target": "units_sold"}')
    params = {"InputData": str(data), "Spec": str(spec)}
    step = pipeline_spec("build").step("Train")

    def train_key() -> str:
        run = LocalRun("build", tmp_path / "w", params, progress=False)
        for upstream in run.spec.steps[: run.spec.steps.index(step)]:
            run.keys[upstream.name] = run.cache_key(upstream)
        return run.cache_key(step)

    before = train_key()
    assert train_key() == before
    spec.write_text('{"target": "units"}')
    assert train_key() != before
