"""Every stage's config holds valid parameters of the pipeline it configures."""

from pathlib import Path

import pytest
from forecaster.pipelines.definitions import pipeline_spec
from forecaster.pipelines.executions import parameter_values, read_params_file, read_schedule

CONFIG = Path(__file__).resolve().parents[1] / "config"
ENVIRON = {"DATA_BUCKET": "data", "ARTIFACT_BUCKET": "artifacts"}
#: config file -> the pipeline it configures
PIPELINES = {"inference.json": "inference", "model-quality.json": "model-quality", "smoke.json": "inference"}


PARAMETER_FILES = sorted(p for p in CONFIG.glob("*/*.json") if p.name in PIPELINES)


@pytest.mark.parametrize("path", PARAMETER_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_config_files_are_pipeline_parameters(path):
    values = parameter_values(pipeline_spec(PIPELINES[path.name]), read_params_file(path, ENVIRON))
    assert values["OutputPrefix"].startswith(f"s3://artifacts/{path.parent.name}/")


def test_every_stage_configures_both_pipelines():
    for stage in ("staging", "production"):
        names = {p.name for p in (CONFIG / stage).glob("*.json")}
        assert names >= {"inference.json", "model-quality.json", "schedules.json"}
    assert (CONFIG / "staging" / "smoke.json").is_file()


@pytest.mark.parametrize("stage", ["staging", "production"])
def test_schedules_are_scheduler_expressions(stage):
    for pipeline in ("inference", "model-quality"):
        expression = read_schedule(CONFIG / stage / "schedules.json", pipeline)
        assert expression is None or expression.startswith(("cron(", "rate("))
