"""The dataset spec and the pipeline settings of this repository are valid for the forecaster release in use."""

import json
from pathlib import Path

import pytest
from forecaster.pipelines.definitions import pipeline_spec
from forecaster.pipelines.executions import parameter_values, read_params_file
from forecaster.spec import DatasetSpec

ROOT = Path(__file__).resolve().parents[1]


def test_spec_is_a_valid_dataset_spec():
    spec = DatasetSpec.from_json(ROOT / "spec.json")
    assert spec.target and spec.date and spec.keys


def test_settings_are_parameters_of_the_model_build_pipeline():
    environ = {"DATA_BUCKET": "data", "ARTIFACT_BUCKET": "artifacts"}
    values = parameter_values(pipeline_spec("build"), read_params_file(ROOT / "settings" / "build.json", environ))
    assert values["InputData"].startswith("s3://data/")
    assert values["Spec"] == "/opt/ml/code/spec.json"  # where Dockerfile.train puts spec.json
    assert 0 < values["MaxWape"] <= 1


def test_dockerfile_copies_the_spec_where_the_settings_point():
    settings = json.loads((ROOT / "settings" / "build.json").read_text())
    assert f"COPY spec.json {settings['Spec']}" in (ROOT / "Dockerfile.train").read_text()


def test_a_missing_repository_variable_is_an_error():
    with pytest.raises(ValueError, match="DATA_BUCKET"):
        read_params_file(ROOT / "settings" / "build.json", environ={"ARTIFACT_BUCKET": "bucket"})
