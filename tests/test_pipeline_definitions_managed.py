"""The managed-checks variant (QualityCheckStep / ClarifyCheckStep), built offline: Clarify uploads into moto."""

from __future__ import annotations

import pytest

from pipeline_helpers import all_steps, build_offline, check_golden, references, upstream

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def managed(tmp_path_factory) -> dict[str, dict]:
    out = tmp_path_factory.mktemp("managed")
    return {key: build_offline(out, key, "--managed-checks") for key in ("build", "inference")}


def test_build_baselines_are_managed_check_steps(managed):
    steps = all_steps(managed["build"])
    kinds = {name: (s["Type"], s.get("CheckType")) for name, s in steps.items() if "Baseline" in name}
    assert kinds == {
        "DataQualityBaseline": ("QualityCheck", "DATA_QUALITY"),
        "ModelQualityBaseline": ("QualityCheck", "MODEL_QUALITY"),
        "ExplainabilityBaseline": ("ClarifyCheck", "MODEL_EXPLAINABILITY"),
    }
    for name in kinds:
        step = steps[name]
        # baseline run: skip the check, register the new baseline in the model package group
        assert (step["SkipCheck"], step["RegisterNewBaseline"]) == (True, True), name
        assert step["ModelPackageGroupName"] == {"Get": "Parameters.ModelPackageGroupName"}, name
    quality = steps["DataQualityBaseline"]["Arguments"]
    assert quality["ProcessingResources"]["ClusterConfig"]["InstanceCount"] == 1
    assert "Steps.Preprocess.ProcessingOutputConfig.Outputs['features'].S3Output.S3Uri" in references(quality, "Steps.")
    model_quality_env = steps["ModelQualityBaseline"]["Arguments"]["Environment"]
    assert model_quality_env["analysis_type"] == "MODEL_QUALITY"
    assert model_quality_env["problem_type"] == "Regression"
    assert upstream(steps["ExplainabilityBaseline"]) >= {"CreateModel", "Preprocess"}


def test_register_uses_the_calculated_baselines(managed):
    register = all_steps(managed["build"])["RegisterModel"]["Arguments"]
    drift = register["DriftCheckBaselines"]
    assert drift["ModelDataQuality"]["Statistics"]["S3Uri"] == {
        "Get": "Steps.DataQualityBaseline.CalculatedBaselineStatistics"
    }
    assert drift["ModelQuality"]["Constraints"]["S3Uri"] == {
        "Get": "Steps.ModelQualityBaseline.CalculatedBaselineConstraints"
    }
    assert drift["Explainability"]["Constraints"]["S3Uri"] == {
        "Get": "Steps.ExplainabilityBaseline.CalculatedBaselineConstraints"
    }
    config = drift["Explainability"]["ConfigFile"]["S3Uri"]
    assert "model-explainability-monitoring-config" in config and config.endswith("analysis_config.json")
    # model-quality statistics still come from the evaluation
    assert register["ModelMetrics"]["ModelQuality"]["Statistics"]["S3Uri"]["Std:Join"]["Values"][1] == (
        "evaluation.json"
    )


def test_inference_checks_against_supplied_baselines(managed):
    steps = all_steps(managed["inference"])
    quality, drift = steps["DataQualityCheck"], steps["AttributionDriftCheck"]
    assert (quality["Type"], drift["Type"]) == ("QualityCheck", "ClarifyCheck")
    for step in (quality, drift):
        assert (step["SkipCheck"], step["RegisterNewBaseline"], step["FailOnViolation"]) == (False, False, False)
    assert references(quality["SuppliedBaselineConstraints"], "Parameters.") == {"Parameters.DataQualityBaselineUri"}
    assert references(drift["SuppliedBaselineConstraints"], "Parameters.") == {"Parameters.ExplainabilityBaselineUri"}
    # the decision waits for the managed checks it reads
    assert set(steps["DecideRetrain"]["DependsOn"]) == {"DataQualityCheck", "AttributionDriftCheck"}


@pytest.mark.parametrize("key", ["build", "inference"])
def test_golden_managed(managed, key):
    check_golden(managed[key], f"{key}-managed")
