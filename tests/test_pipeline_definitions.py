"""The three SDK v3 pipeline definitions, built offline through the CLI (network blocked), read as JSON."""

from __future__ import annotations

import json
import os

import pytest

from forecaster.pipelines.catalog import PIPELINES
from forecaster.pipelines.table import optional_params
from pipeline_helpers import all_steps, build_offline, check_golden, references, upstream

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def defs(tmp_path_factory) -> dict[str, dict]:
    """One offline build per pipeline, shared by every test of this module."""
    before = dict(os.environ)
    out = tmp_path_factory.mktemp("definitions")
    built = {key: build_offline(out, key) for key in PIPELINES}
    assert dict(os.environ) == before  # fake credentials etc. did not leak out of the command
    return built


def _types(document: dict) -> list[tuple[str, str]]:
    return [(step["Name"], step["Type"]) for step in document["Steps"]]


def test_build_step_graph(defs):
    build = defs["build"]
    assert _types(build) == [
        ("Split", "Processing"),
        ("Train", "Training"),
        ("GroupTotals", "Processing"),
        ("Preprocess", "Processing"),
        ("CreateModel", "Model"),
        ("Transform", "Transform"),
        ("Postprocess", "Processing"),
        ("Evaluate", "Processing"),
        ("DataQualityBaseline", "Processing"),
        ("ModelQualityBaseline", "Processing"),
        ("ExplainabilityBaseline", "Processing"),
        ("CheckEvaluation", "Condition"),
    ]
    steps = all_steps(build)
    assert upstream(steps["Train"]) == {"Split"}
    assert upstream(steps["GroupTotals"]) == {"Train", "Split"}
    assert upstream(steps["Preprocess"]) == {"Train", "Split", "GroupTotals"}
    assert upstream(steps["CreateModel"]) == {"Train"}
    assert upstream(steps["Transform"]) == {"CreateModel", "Preprocess"}
    assert upstream(steps["Postprocess"]) == {"Preprocess", "Transform"}
    assert upstream(steps["Evaluate"]) == {"Postprocess", "Split", "Train"}  # the model names the spec columns
    assert upstream(steps["DataQualityBaseline"]) == {"Preprocess", "Train"}
    assert upstream(steps["ModelQualityBaseline"]) == {"Evaluate"}
    assert upstream(steps["ExplainabilityBaseline"]) == {"Train", "Preprocess"}
    assert upstream(steps["RegisterModel"]) == {
        "Train",
        "Evaluate",
        "DataQualityBaseline",
        "ModelQualityBaseline",
        "ExplainabilityBaseline",
    }


def test_build_condition_registers_or_fails_on_wape(defs):
    condition = all_steps(defs["build"])["CheckEvaluation"]["Arguments"]
    (rule,) = condition["Conditions"]
    assert rule["Type"] == "LessThanOrEqualTo"
    assert rule["LeftValue"]["Std:JsonGet"] == {
        "PropertyFile": {"Get": "Steps.Evaluate.PropertyFiles.Evaluation"},
        "Path": "regression_metrics.wape.value",
    }
    assert rule["RightValue"] == {"Get": "Parameters.MaxWape"}
    assert [(s["Name"], s["Type"]) for s in condition["IfSteps"]] == [("RegisterModel", "RegisterModel")]
    assert [(s["Name"], s["Type"]) for s in condition["ElseSteps"]] == [("EvaluationFailed", "Fail")]
    fail = condition["ElseSteps"][0]["Arguments"]["ErrorMessage"]["Std:Join"]["Values"]
    assert fail[1]["Std:JsonGet"]["Path"] == "regression_metrics.wape.value"
    assert fail[3] == {"Get": "Parameters.MaxWape"}
    evaluate = all_steps(defs["build"])["Evaluate"]
    assert evaluate["PropertyFiles"] == [
        {"PropertyFileName": "Evaluation", "OutputName": "evaluation", "FilePath": "evaluation.json"}
    ]


def test_register_step_has_approval_metrics_baselines_and_lineage(defs):
    register = all_steps(defs["build"])["RegisterModel"]["Arguments"]
    assert register["ModelApprovalStatus"] == {"Get": "Parameters.ModelApprovalStatus"}
    approval = next(p for p in defs["build"]["Parameters"] if p["Name"] == "ModelApprovalStatus")
    assert approval["DefaultValue"] == "PendingManualApproval"
    assert register["ModelPackageGroupName"] == {"Get": "Parameters.ModelPackageGroupName"}
    container = register["InferenceSpecification"]["Containers"][0]
    assert container["Image"] == {"Get": "Parameters.InferenceImage"}
    assert container["ModelDataUrl"] == {"Get": "Steps.Train.ModelArtifacts.S3ModelArtifacts"}

    def source(node):
        join = node["S3Uri"]["Std:Join"]["Values"]
        return join[0]["Get"].split(".")[1], join[1]

    metrics, drift = register["ModelMetrics"], register["DriftCheckBaselines"]
    assert source(metrics["ModelQuality"]["Statistics"]) == ("Evaluate", "evaluation.json")
    assert source(metrics["ModelDataQuality"]["Constraints"]) == ("DataQualityBaseline", "constraints.json")
    assert source(metrics["Explainability"]["Report"]) == ("ExplainabilityBaseline", "analysis.json")
    assert source(drift["ModelQuality"]["Constraints"]) == ("ModelQualityBaseline", "constraints.json")
    assert source(drift["ModelDataQuality"]["Statistics"]) == ("DataQualityBaseline", "statistics.json")
    assert source(drift["Explainability"]["Constraints"]) == ("ExplainabilityBaseline", "analysis.json")
    lineage = register["CustomerMetadataProperties"]
    assert lineage["forecaster:code_version"] == {"Get": "Parameters.CodeVersion"}
    assert lineage["forecaster:parent_run"] == {"Get": "Execution.PipelineExecutionArn"}


def test_knobs_are_parameters_and_really_wired(defs):
    for key, document in defs.items():
        declared = {p["Name"] for p in document["Parameters"]}
        # an optional input left empty is left out of the definition, and so is its parameter
        left_out = {name for name in optional_params(PIPELINES[key]) if PIPELINES[key].defaults()[name] == ""}
        assert declared == {p.name for p in PIPELINES[key].parameters} - left_out
        used = {ref.split(".", 1)[1] for ref in references(document["Steps"], "Parameters.")}
        # MaxWaitTime is wired only into a definition built with UseSpotInstances=true (test_spot_training...)
        unused = {"MaxWaitTime"} if key == "build" else set()
        assert used == declared - unused, f"{key}: parameters declared but never used: {declared - used}"
    steps = all_steps(defs["build"])
    transform = steps["Transform"]["Arguments"]
    assert transform["TransformResources"] == {
        "InstanceType": {"Get": "Parameters.TransformInstanceType"},
        "InstanceCount": {"Get": "Parameters.TransformInstanceCount"},
    }
    assert transform["MaxPayloadInMB"] == {"Get": "Parameters.TransformMaxPayloadInMB"}
    train = steps["Train"]["Arguments"]
    assert train["ResourceConfig"]["InstanceCount"] == {"Get": "Parameters.TrainingInstanceCount"}
    assert train["StoppingCondition"]["MaxRuntimeInSeconds"] == {"Get": "Parameters.TrainingMaxRuntimeSeconds"}
    assert train["AlgorithmSpecification"]["TrainingImage"] == {"Get": "Parameters.ProcessingImage"}
    # hyperparameters are strings: integer parameters are joined into one
    assert train["HyperParameters"]["horizon"] == {"Std:Join": {"On": "", "Values": [{"Get": "Parameters.Horizon"}]}}
    assert train["HyperParameters"]["spec"] == {"Get": "Parameters.Spec"}
    for name, step in steps.items():
        if step["Type"] == "Processing":
            assert step["Arguments"]["AppSpecification"]["ImageUri"] == {"Get": "Parameters.ProcessingImage"}, name


def test_preprocess_is_sharded_and_the_transform_splits_its_per_partition_files(defs):
    for key in ("build", "inference"):
        steps = all_steps(defs[key])
        for name, step in steps.items():
            if step["Type"] != "Processing":
                continue
            count = step["Arguments"]["ProcessingResources"]["ClusterConfig"]["InstanceCount"]
            distribution = {
                i["InputName"]: i["S3Input"]["S3DataDistributionType"] for i in step["Arguments"]["ProcessingInputs"]
            }
            if name == "Preprocess":  # several instances, each with whole history partitions
                assert count == {"Get": "Parameters.ProcessingInstanceCount"}
                assert distribution == {
                    "model": "FullyReplicated",
                    "history": "ShardedByS3Key",
                    "future": "FullyReplicated",
                    "totals": "FullyReplicated",
                }
            else:  # every instance would read all of a FullyReplicated input and redo the job: one instance
                assert count == 1, f"{key}/{name}"
                assert set(distribution.values()) == {"FullyReplicated"}, f"{key}/{name}"
        outputs = {
            o["OutputName"]: o["S3Output"]["LocalPath"]
            for o in steps["Preprocess"]["Arguments"]["ProcessingOutputConfig"]["Outputs"]
        }
        assert outputs == {"features": "/opt/ml/processing/output/features", "keys": "/opt/ml/processing/output/keys"}
        transform = steps["Transform"]["Arguments"]
        assert transform["TransformResources"]["InstanceCount"] == {"Get": "Parameters.TransformInstanceCount"}
        source = transform["TransformInput"]["DataSource"]["S3DataSource"]
        # the whole features prefix (one file per partition, nothing else): SageMaker gives each instance whole files
        assert source == {
            "S3DataType": "S3Prefix",
            "S3Uri": {"Get": "Steps.Preprocess.ProcessingOutputConfig.Outputs['features'].S3Output.S3Uri"},
        }
        assert transform["TransformInput"]["SplitType"] == "Line"
        post = steps["Postprocess"]["Arguments"]
        inputs = {i["InputName"]: i["S3Input"]["S3Uri"] for i in post["ProcessingInputs"]}
        assert inputs["keys"] == {"Get": "Steps.Preprocess.ProcessingOutputConfig.Outputs['keys'].S3Output.S3Uri"}
        assert inputs["predictions"] == {"Get": "Steps.Transform.TransformOutput.S3OutputPath"}


def test_processing_steps_run_forecaster_with_mounted_inputs_and_outputs(defs):
    for key, document in defs.items():
        spec = PIPELINES[key]
        for name, step in all_steps(document).items():
            if step["Type"] != "Processing":
                continue
            app = step["Arguments"]["AppSpecification"]
            assert app["ContainerEntrypoint"] == ["forecaster", *spec.step(name).command]
            inputs = {i["InputName"]: i["S3Input"]["LocalPath"] for i in step["Arguments"]["ProcessingInputs"]}
            outputs = {
                o["OutputName"]: o["S3Output"]["LocalPath"]
                for o in step["Arguments"]["ProcessingOutputConfig"]["Outputs"]
            }
            assert all(path == f"/opt/ml/processing/input/{n}" for n, path in inputs.items())
            assert all(path == f"/opt/ml/processing/output/{n}" for n, path in outputs.items())
            text = " ".join(a if isinstance(a, str) else "<param>" for a in app["ContainerArguments"])
            for input_name, path in inputs.items():
                assert path in text, f"{key}/{name}: input {input_name} is mounted but never passed"
            for token in text.split():
                if token.startswith("/opt/ml/processing/") or "=/opt/ml/processing/" in token:
                    path = token.split("=", 1)[-1]
                    assert any(path.startswith(p) for p in [*inputs.values(), *outputs.values()]) or (
                        path == "/opt/ml/processing/output"
                    ), f"{key}/{name}: argument {token} points at nothing mounted"
            for output in outputs.values():
                assert output in text or "/opt/ml/processing/output" in text.split()


def test_inference_uses_the_approved_model_parameters(defs):
    inference = defs["inference"]
    assert _types(inference) == [
        ("GroupTotals", "Processing"),
        ("Preprocess", "Processing"),
        ("DataQualityCheck", "Processing"),
        ("CreateModel", "Model"),
        ("Transform", "Transform"),
        ("Postprocess", "Processing"),
        ("Explain", "Processing"),
        ("AttributionDriftCheck", "Processing"),
        ("DecideRetrain", "Processing"),
    ]
    steps = all_steps(inference)
    assert steps["CreateModel"]["Arguments"]["PrimaryContainer"]["ModelDataUrl"] == {"Get": "Parameters.ModelDataUrl"}

    def input_uri(step, name):
        return next(
            i["S3Input"]["S3Uri"] for i in steps[step]["Arguments"]["ProcessingInputs"] if i["InputName"] == name
        )

    assert input_uri("Preprocess", "model") == {"Get": "Parameters.ModelDataUrl"}
    assert input_uri("DataQualityCheck", "baseline") == {"Get": "Parameters.DataQualityBaselineUri"}
    assert input_uri("AttributionDriftCheck", "baseline") == {"Get": "Parameters.ExplainabilityBaselineUri"}
    assert upstream(steps["DecideRetrain"]) == {"DataQualityCheck", "AttributionDriftCheck"}
    assert upstream(steps["Transform"]) == {"CreateModel", "Preprocess"}
    drift_args = steps["AttributionDriftCheck"]["Arguments"]["AppSpecification"]["ContainerArguments"]
    assert {"Std:Join": {"On": "", "Values": [{"Get": "Parameters.NdcgThreshold"}]}} in drift_args


def test_model_quality_pipeline(defs):
    document = defs["model-quality"]
    assert _types(document) == [("ModelQualityCheck", "Processing"), ("DecideRetrain", "Processing")]
    steps = all_steps(document)
    assert upstream(steps["DecideRetrain"]) == {"ModelQualityCheck"}
    check = steps["ModelQualityCheck"]["Arguments"]
    assert check["AppSpecification"]["ContainerEntrypoint"] == ["forecaster", "check", "model-quality"]
    sources = {i["InputName"]: i["S3Input"]["S3Uri"]["Get"] for i in check["ProcessingInputs"]}
    assert sources == {
        "baseline": "Parameters.ModelQualityBaselineUri",
        "predictions": "Parameters.ForecastsData",
        "truth": "Parameters.GroundTruthData",
        "model": "Parameters.ModelDataUrl",  # the model's dataset spec names the key, date and target columns
    }
    arguments = check["AppSpecification"]["ContainerArguments"]
    assert arguments[arguments.index("--model-dir") + 1] == "/opt/ml/processing/input/model"


@pytest.mark.parametrize("key", ["build", "inference"])
def test_preprocess_takes_the_active_days_parameter(defs, key):
    from forecaster.contract import DEFAULT_ACTIVE_DAYS

    parameters = {p["Name"]: p for p in defs[key]["Parameters"]}
    assert parameters["ActiveDays"] == {"Name": "ActiveDays", "Type": "Integer", "DefaultValue": DEFAULT_ACTIVE_DAYS}
    arguments = all_steps(defs[key])["Preprocess"]["Arguments"]["AppSpecification"]["ContainerArguments"]
    value = arguments[arguments.index("--active-days") + 1]
    assert value == {"Std:Join": {"On": "", "Values": [{"Get": "Parameters.ActiveDays"}]}}


def test_outputs_go_under_the_prefix_and_execution(defs):
    step = all_steps(defs["build"])["Evaluate"]
    (output,) = step["Arguments"]["ProcessingOutputConfig"]["Outputs"]
    assert output["S3Output"]["S3Uri"]["Std:Join"] == {
        "On": "/",
        "Values": [
            {"Get": "Parameters.OutputPrefix"},
            {"Get": "Execution.PipelineExecutionId"},
            "Evaluate",
            "evaluation",
        ],
    }


@pytest.mark.parametrize("key", list(PIPELINES))
def test_golden(defs, key):
    check_golden(defs[key], key)


def test_the_transform_container_gets_every_quantile_from_its_environment(defs):
    # a transform job cannot send custom attributes: Postprocess needs p10,p50,p90, so the model and the
    # transform job carry the contract's environment
    from forecaster.contract import DEFAULT_QUANTILES_ENV, TRANSFORM_ENVIRONMENT

    assert TRANSFORM_ENVIRONMENT[DEFAULT_QUANTILES_ENV] == "all"
    for key in ("build", "inference"):
        steps = all_steps(defs[key])
        model_environment = steps["CreateModel"]["Arguments"]["PrimaryContainer"]["Environment"]
        assert model_environment == dict(TRANSFORM_ENVIRONMENT), key
        transform_environment = steps["Transform"]["Arguments"]["Environment"]
        assert transform_environment.items() >= TRANSFORM_ENVIRONMENT.items(), key
    lineage = all_steps(defs["inference"])["Transform"]["Arguments"]["Environment"]["FORECASTER_MODEL_PACKAGE"]
    assert lineage == {"Get": "Parameters.ModelPackageArn"}


def test_parameter_defaults_are_the_training_configs_and_the_contracts(defs):
    from forecaster.config import TrainConfig
    from forecaster.contract import DEFAULT_HORIZON, DEFAULT_MAX_PAYLOAD_MB

    training = TrainConfig()
    expected = {
        "Horizon": training.horizon,
        "NumBoostRound": training.num_boost_round,
        "QuantileNumBoostRound": training.quantile_num_boost_round,
        "NumLeaves": training.num_leaves,
        "LearningRate": training.learning_rate,
        "TransformMaxPayloadInMB": DEFAULT_MAX_PAYLOAD_MB,
    }
    assert training.horizon == DEFAULT_HORIZON
    for key in ("build", "inference"):
        defaults = {p["Name"]: p.get("DefaultValue") for p in defs[key]["Parameters"]}
        for name, value in expected.items():
            if name in defaults:
                assert defaults[name] == value, f"{key}: {name} defaults to {defaults[name]}, training to {value}"
    # the hyperparameter a parameter feeds is the TrainConfig field of the same default
    hyperparameters = PIPELINES["build"].step("Train").settings["hyperparameters"]
    defaults = {p.name: p.default for p in PIPELINES["build"].parameters}
    for field, parameter in hyperparameters.items():
        assert defaults[parameter] == getattr(training, field), f"{parameter} vs TrainConfig.{field}"


def test_spot_training_and_checkpoints_are_parameters(defs):
    train = all_steps(defs["build"])["Train"]["Arguments"]
    assert train["EnableManagedSpotTraining"] == {"Get": "Parameters.UseSpotInstances"}
    assert train["CheckpointConfig"] == {
        "LocalPath": "/opt/ml/checkpoints",
        "S3Uri": {
            "Std:Join": {
                "On": "/",
                "Values": [{"Get": "Parameters.CheckpointS3Uri"}, {"Get": "Execution.PipelineExecutionId"}, "Train"],
            }
        },
    }
    # SageMaker rejects MaxWaitTimeInSeconds without spot: not in a definition whose spot default is off
    assert "MaxWaitTimeInSeconds" not in train["StoppingCondition"]
    parameters = {p["Name"]: p for p in defs["build"]["Parameters"]}
    assert parameters["UseSpotInstances"] == {"Name": "UseSpotInstances", "Type": "Boolean", "DefaultValue": False}


def test_a_definition_built_for_spot_carries_the_max_wait_time():
    from forecaster.pipelines import sdk
    from forecaster.pipelines.definitions import build_pipeline

    with sdk.offline_aws():
        pipeline = build_pipeline(
            "build", role=sdk.PLACEHOLDER_ROLE, region=sdk.DEFAULT_REGION, bucket=sdk.PLACEHOLDER_BUCKET,
            defaults={"UseSpotInstances": "true", "MaxWaitTime": 100000},
        )  # fmt: skip
        document = json.loads(pipeline.definition())
    train = all_steps(document)["Train"]["Arguments"]
    assert train["EnableManagedSpotTraining"] == {"Get": "Parameters.UseSpotInstances"}
    assert train["StoppingCondition"] == {
        "MaxRuntimeInSeconds": {"Get": "Parameters.TrainingMaxRuntimeSeconds"},
        "MaxWaitTimeInSeconds": {"Get": "Parameters.MaxWaitTime"},
    }
    parameters = {p["Name"]: p["DefaultValue"] for p in document["Parameters"]}
    assert parameters["UseSpotInstances"] is True and parameters["MaxWaitTime"] == 100000
