"""The three pipeline definitions executed by the SDK's ``LocalPipelineSession`` with the project's images.

Every Processing, Training, CreateModel and Transform step runs in a container as SageMaker would run it (data
and outputs in moto's S3); ``RegisterModel`` goes to moto's SageMaker (shim 3 in conftest.py). The build
registers a model, it is approved, and the batch-inference and model-quality pipelines take the latest approved
version from that registry, as ``forecaster pipeline run`` does. The forecasts and every check output must equal
what the project's local runner writes for the same data and parameters.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from forecaster.io import read_table
from forecaster.pipelines.local import run_pipeline
from forecaster.pipelines.local_params import DEFAULT_GROUP
from forecaster.pipelines.resolve import approved_model_parameters
from forecaster.registry import ApprovalStatus, open_registry
from forecaster.registry.sagemaker import SageMakerRegistry
from forecaster.synth import write_dataset
from pipeline_helpers import FAST_PIPELINE_PARAMETERS

from .local_mode import download, execute_pipeline, s3_uri, upload

pytestmark = pytest.mark.docker

GROUP = DEFAULT_GROUP
FAST = FAST_PIPELINE_PARAMETERS
#: the synthetic data with the default preset (a preset exists in the image; a host spec.json does not)
SPEC = "default"


def local_mode(images: tuple[str, str], prefix: str) -> dict[str, Any]:
    train, infer = images
    return {
        "ProcessingImage": train,
        "ProcessingInstanceType": "local",
        "OutputPrefix": s3_uri(prefix),
        **({"InferenceImage": infer, "TransformInstanceType": "local"} if prefix != "model-quality" else {}),
    }


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("data") / "sales", stores=2, items=3, days=60, seed=3)


@pytest.fixture(scope="module")
def sdk_runs(images, pipeline_session, sagemaker_client, data) -> dict[str, Any]:
    """build -> approve -> inference -> model-quality, every step in a container."""
    (data / "spec.json").unlink(missing_ok=True)  # the Spec parameter names the preset
    build = execute_pipeline(
        pipeline_session,
        "build",
        {**local_mode(images, "build"), **FAST, "InputData": upload(data, s3_uri("data")), "Spec": SPEC,
         "TrainingInstanceType": "local"},
    )  # fmt: skip
    assert build.status == "Succeeded", build.execution.failure_reason
    assert build.registered, "the condition chose RegisterModel, so a model package was created"
    registry = SageMakerRegistry(sagemaker_client)
    (version,) = registry.list_versions(GROUP)
    registry.set_status(GROUP, version.version, ApprovalStatus.APPROVED)
    inference = execute_pipeline(
        pipeline_session,
        "inference",
        {**local_mode(images, "inference"), "TransformMaxConcurrent": 1,
         "HistoryData": build.output("Split", "history"), "FutureData": build.output("Split", "future"),
         **approved_model_parameters(registry, GROUP, "inference")},
    )  # fmt: skip
    assert inference.status == "Succeeded", inference.execution.failure_reason
    quality = execute_pipeline(
        pipeline_session,
        "model-quality",
        {**local_mode(images, "model-quality"), "ForecastsData": inference.output("Postprocess", "forecasts"),
         "GroundTruthData": build.output("Split", "truth"),
         **approved_model_parameters(registry, GROUP, "model-quality")},
    )  # fmt: skip
    assert quality.status == "Succeeded", quality.execution.failure_reason
    return {"build": build, "inference": inference, "model-quality": quality, "version": version}


@pytest.fixture(scope="module")
def runner_dirs(tmp_path_factory, data) -> dict[str, Path]:
    """The same three pipelines through the project's local runner (in this process, a SQLite registry)."""
    root = tmp_path_factory.mktemp("runner")
    registry = f"sqlite:///{root / 'registry.db'}"
    options = {"registry": registry, "progress": False}
    build = run_pipeline("build", root / "build", {**FAST, "InputData": str(data), "Spec": SPEC}, **options)
    assert build["status"] == "Succeeded"
    version = build["steps"]["RegisterModel"]["model_package"]["version"]
    open_registry(registry).set_status(GROUP, int(version), ApprovalStatus.APPROVED)
    split = root / "build" / "Split" / "output"
    inference = {
        "HistoryData": str(split / "history"),
        "FutureData": str(split / "future"),
        "TransformMaxConcurrent": 1,
    }
    run_pipeline("inference", root / "inference", inference, **options)
    forecasts = root / "inference" / "Postprocess" / "output" / "forecasts"
    quality = {"ForecastsData": str(forecasts), "GroundTruthData": str(split / "truth")}
    run_pipeline("model-quality", root / "model-quality", quality, **options)
    return {key: root / key for key in ("build", "inference", "model-quality")}


def sdk_output(run: Any, step: str, output: str, folder: Path) -> Path:
    return download(run.output(step, output), folder / step / output)


def runner_output(workdir: Path, step: str, output: str) -> Path:
    return workdir / step / "output" / output


#: keys that record when and where a step ran: wall clock (``evaluation_time``, ``seconds``...) and input paths
#: (``/opt/ml/processing/input/...`` in a container, the work directory in the local runner)
WALL_CLOCK = ("_time", "_at", "timestamp", "seconds", "inputs")


def assert_same_json(got: Any, expected: Any, where: str = "$") -> None:
    """Equal JSON documents; numbers equal to 1e-9 relative (LightGBM on the same versions is deterministic)."""
    if isinstance(expected, dict):
        assert isinstance(got, dict) and set(got) == set(expected), f"{where}: keys {sorted(got)} != {sorted(expected)}"
        for key in (k for k in expected if not k.endswith(WALL_CLOCK)):  # when it ran differs, nothing else
            assert_same_json(got[key], expected[key], f"{where}.{key}")
    elif isinstance(expected, list):
        assert isinstance(got, list) and len(got) == len(expected), f"{where}: {got!r} != {expected!r}"
        for index, (a, b) in enumerate(zip(got, expected, strict=True)):
            assert_same_json(a, b, f"{where}[{index}]")
    elif isinstance(expected, float) and isinstance(got, int | float) and not isinstance(got, bool):
        assert math.isclose(got, expected, rel_tol=1e-9, abs_tol=1e-12) or (math.isnan(got) and math.isnan(expected)), (
            f"{where}: {got!r} != {expected!r}"
        )
    else:
        assert got == expected, f"{where}: {got!r} != {expected!r}"


def assert_same_files(got: Path, expected: Path) -> None:
    """Same file names; JSON compared as documents, CSV as tables, anything else byte for byte."""
    names = sorted(p.relative_to(expected).as_posix() for p in expected.rglob("*") if p.is_file())
    assert sorted(p.relative_to(got).as_posix() for p in got.rglob("*") if p.is_file()) == names
    for name in names:
        if name.endswith(".json"):
            assert_same_json(json.loads((got / name).read_text()), json.loads((expected / name).read_text()), name)
        elif name.endswith(".csv"):
            pd.testing.assert_frame_equal(pd.read_csv(got / name), pd.read_csv(expected / name), rtol=1e-9)
        else:
            assert (got / name).read_bytes() == (expected / name).read_bytes(), name


BUILD_STEPS = {
    "Split", "Train", "GroupTotals", "Preprocess", "CreateModel", "Transform", "Postprocess", "Evaluate",
    "DataQualityBaseline", "ModelQualityBaseline", "ExplainabilityBaseline", "CheckEvaluation",
}  # fmt: skip


def test_build_pipeline_runs_every_step_in_containers_and_registers(sdk_runs):
    build = sdk_runs["build"]
    assert build.steps == dict.fromkeys(BUILD_STEPS, "Succeeded")  # EvaluationFailed did not run
    model_data = build.properties("Train")["ModelArtifacts"]["S3ModelArtifacts"]
    assert model_data.startswith(s3_uri("build")) and model_data.endswith("model.tar.gz")
    version = sdk_runs["version"]
    assert version.model_data_url == model_data
    assert set(version.baselines) == {
        "model_quality_statistics", "model_quality_constraints", "data_quality_statistics",
        "data_quality_constraints", "explainability_report",
    }  # fmt: skip
    # CreateModel and Transform carry the environment postprocess needs (a transform cannot send attributes)
    from forecaster.contract import TRANSFORM_ENVIRONMENT

    model = build.properties("CreateModel")
    assert dict(TRANSFORM_ENVIRONMENT).items() <= model["PrimaryContainer"].get("Environment", {}).items()


@pytest.mark.parametrize(
    ("pipeline", "step", "output"),
    [
        ("build", "Split", "truth"),
        ("build", "Preprocess", "features"),
        ("build", "Postprocess", "forecasts"),
        ("build", "Evaluate", "evaluation"),
        ("build", "DataQualityBaseline", "baseline"),
        ("build", "ModelQualityBaseline", "baseline"),
        ("build", "ExplainabilityBaseline", "baseline"),
        ("inference", "Preprocess", "features"),
        ("inference", "DataQualityCheck", "violations"),
        ("inference", "Postprocess", "forecasts"),
        ("inference", "Explain", "attributions"),
        ("inference", "AttributionDriftCheck", "violations"),
        ("inference", "DecideRetrain", "decision"),
        ("model-quality", "ModelQualityCheck", "violations"),
        ("model-quality", "DecideRetrain", "decision"),
    ],
)
def test_outputs_equal_the_local_runners(sdk_runs, runner_dirs, tmp_path, pipeline, step, output):
    got = sdk_output(sdk_runs[pipeline], step, output, tmp_path)
    assert_same_files(got, runner_output(runner_dirs[pipeline], step, output))


def test_batch_inference_forecasts_every_quantile_for_every_series_day(sdk_runs, tmp_path):
    forecasts = read_table(sdk_output(sdk_runs["inference"], "Postprocess", "forecasts", tmp_path) / "forecasts.csv")
    assert len(forecasts) == 2 * 3 * FAST["Horizon"]
    quantiles = forecasts[["p10", "p50", "p90"]].to_numpy()
    assert np.isfinite(quantiles).all() and (np.diff(quantiles, axis=1) >= 0).all()
    assert sdk_runs["model-quality"].steps == {"ModelQualityCheck": "Succeeded", "DecideRetrain": "Succeeded"}
