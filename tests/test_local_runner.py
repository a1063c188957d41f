"""The local pipeline runner end to end on tiny data: build, resume, failures, condition, registry, inference."""

from __future__ import annotations

import fcntl
import functools
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from forecaster.cli.main import main, run_command
from forecaster.errors import ForecasterError, InvalidParameterError, NoApprovedModelError, PipelineStepError
from forecaster.io import read_json, read_table
from forecaster.pipelines.local import RUN_FILE
from forecaster.pipelines.local import run_pipeline as run_pipeline_program
from forecaster.pipelines.local_params import DEFAULT_GROUP
from forecaster.registry import ApprovalStatus, open_registry
from forecaster.synth import write_dataset
from pipeline_helpers import FAST_PIPELINE_PARAMETERS

#: processing steps in this process, through the CLI's own parser (what the CLI hands the runner)
run_pipeline = functools.partial(run_pipeline_program, command_runner=run_command)
#: end to end: every test runs a pipeline through the local runner (tens of seconds)
pytestmark = pytest.mark.slow

GROUP = DEFAULT_GROUP
FAST = FAST_PIPELINE_PARAMETERS
BUILD_STEPS = [
    "Split",
    "Train",
    "GroupTotals",
    "Preprocess",
    "CreateModel",
    "Transform",
    "Postprocess",
    "Evaluate",
    "DataQualityBaseline",
    "ModelQualityBaseline",
    "ExplainabilityBaseline",
    "CheckEvaluation",
    "RegisterModel",
    "EvaluationFailed",
]


def registry_url(path: Path) -> str:
    return f"sqlite:///{path.resolve()}"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("data") / "sales", stores=2, items=3, days=90, seed=3)


@pytest.fixture(scope="module")
def built(tmp_path_factory, data_dir) -> tuple[Path, dict]:
    workdir = tmp_path_factory.mktemp("runs") / "build"
    record = run_pipeline("build", workdir, {**FAST, "InputData": str(data_dir)}, progress=False)
    return workdir, record


def copy_workdir(source: Path, target: Path) -> Path:
    """A copy of a work directory (its run record included) without its registry."""
    shutil.copytree(source, target)
    (target / "registry.db").unlink(missing_ok=True)
    return target


def test_build_runs_every_step_and_registers_pending(built, data_dir):
    workdir, record = built
    assert record["status"] == "Succeeded"
    assert list(record["steps"]) == BUILD_STEPS
    statuses = {name: step["status"] for name, step in record["steps"].items()}
    assert statuses.pop("EvaluationFailed") == "NotExecuted"
    assert set(statuses.values()) == {"Succeeded"}
    assert read_json(workdir / RUN_FILE) == record
    # the spec.json that `forecaster synth` wrote next to the data was picked up for Split and training
    assert record["parameters"]["Spec"] == str((data_dir / "spec.json").resolve())

    # training went through the sagemaker-training toolkit and was packed as SageMaker packs /opt/ml/model
    train = record["steps"]["Train"]
    assert Path(train["model_data"]).name == "model.tar.gz" and Path(train["model_data"]).is_file()
    assert train["hyperparameters"]["num_boost_round"] == "20"
    assert "validation:wape" in train["metrics"]
    assert "sagemaker_training" in (workdir / "Train" / "log.txt").read_text()

    forecasts = read_table(workdir / "Postprocess/output/forecasts/forecasts.csv")
    truth = read_table(workdir / "Split/output/truth")
    assert len(forecasts) == len(truth) == 2 * 3 * 7
    assert (forecasts["p10"] <= forecasts["p50"]).all() and (forecasts["p50"] <= forecasts["p90"]).all()
    assert (workdir / "Postprocess/output/forecasts/order_proposals.csv").is_file()

    evaluation = read_json(workdir / "Evaluate/output/evaluation/evaluation.json")
    condition = record["steps"]["CheckEvaluation"]
    assert condition["value"] == evaluation["regression_metrics"]["wape"]["value"]
    assert condition["outcome"] is True and condition["branch"] == ["RegisterModel"]

    (version,) = open_registry(record["registry"]).list_versions(GROUP)
    assert version.status == ApprovalStatus.PENDING
    kept = Path(version.model_data_url)  # the version's own copy: a later run rewrites Train's output in place
    assert kept.read_bytes() == Path(train["model_data"]).read_bytes()
    where = (".registered", record["run_id"], "Train", "output", "model", "model.tar.gz")
    assert kept.relative_to(workdir.resolve()).parts == where
    assert version.metrics["wape"] == pytest.approx(evaluation["forecast_metrics"]["overall"]["wape"])
    assert set(version.baselines) == {
        "model_quality_statistics",
        "model_quality_constraints",
        "data_quality_statistics",
        "data_quality_constraints",
        "explainability_report",
    }
    assert all(Path(path).is_file() for path in version.baselines.values())
    assert version.lineage["parent_run"] == record["run_id"]


def test_second_run_reuses_every_step_and_registers_nothing_new(built, data_dir):
    workdir, first = built
    before = (workdir / "Train/output/model/model.tar.gz").stat().st_mtime_ns
    again = run_pipeline("build", workdir, {**FAST, "InputData": str(data_dir)}, progress=False)
    assert again["status"] == "Succeeded"
    executed = [name for name, step in again["steps"].items() if step["status"] == "Succeeded"]
    assert executed == BUILD_STEPS[:-1]
    assert all(again["steps"][name].get("cache_hit") for name in executed)
    assert (workdir / "Train/output/model/model.tar.gz").stat().st_mtime_ns == before
    assert len(open_registry(first["registry"]).list_versions(GROUP)) == 1
    assert again["previous_runs"][-1]["run_id"] == first["run_id"]


def test_changed_parameter_reruns_only_the_steps_that_use_it(built, data_dir, tmp_path):
    workdir = copy_workdir(built[0], tmp_path / "build")
    record = run_pipeline(
        "build", workdir, {**FAST, "InputData": str(data_dir), "DataDriftThreshold": 0.2}, progress=False
    )
    rerun = {
        name for name, step in record["steps"].items() if step["status"] == "Succeeded" and not step.get("cache_hit")
    }
    assert rerun == {"DataQualityBaseline", "RegisterModel"}  # registration reads the new baseline
    constraints = read_json(workdir / "DataQualityBaseline/output/baseline/constraints.json")
    assert constraints["monitoring_config"]["distribution_constraints"]["comparison_threshold"] == 0.2


def test_a_version_keeps_the_model_it_was_registered_with_when_a_later_run_retrains(built, tmp_path):
    """Approving v1 and rejecting v2 of the same workdir once served v2's model: both pointed at Train's output."""
    workdir = copy_workdir(built[0], tmp_path / "build")
    first = run_pipeline(
        "build", workdir, {**FAST, "InputData": str(built[1]["parameters"]["InputData"])}, progress=False
    )
    other = write_dataset(tmp_path / "other", stores=2, items=3, days=90, seed=4)
    second = run_pipeline("build", workdir, {**FAST, "InputData": str(other)}, progress=False)
    assert not second["steps"]["Train"].get("cache_hit") and first["registry"] == second["registry"]
    registry = open_registry(second["registry"])
    old, new = sorted(registry.list_versions(GROUP), key=lambda version: version.version)
    assert Path(old.model_data_url).read_bytes() != Path(new.model_data_url).read_bytes()
    assert Path(new.model_data_url).read_bytes() == (workdir / "Train/output/model/model.tar.gz").read_bytes()
    for kind, path in old.baselines.items():
        assert Path(path).is_file() and path != new.baselines[kind]


def test_failing_step_stops_with_its_reason_and_the_next_run_resumes_there(
    built, data_dir, tmp_path, capsys, monkeypatch
):
    from forecaster.pipelines import local_steps

    workdir = copy_workdir(built[0], tmp_path / "build")
    argv = ["pipeline", "run", "build", "--local", "--workdir", str(workdir), "--no-progress"]
    argv += [f"--param={k}={v}" for k, v in {**FAST, "InputData": data_dir}.items()]

    def failing_transform(context):  # every parameter value is checked up front now: the step itself fails
        raise PipelineStepError("the batch transform refused max_payload_mb=0")

    with monkeypatch.context() as patched:
        patched.setitem(local_steps.EXECUTORS, "transform", failing_transform)
        assert main([*argv, "--param", "TransformMaxPayloadInMB=5"]) == PipelineStepError.exit_code  # re-runs it
    error = capsys.readouterr().err
    assert "Step Transform of the build pipeline failed" in error and "max_payload_mb" in error
    record = read_json(workdir / RUN_FILE)
    assert record["status"] == "Failed" and record["failure_reason"].startswith("Transform: ")
    assert list(record["steps"]) == BUILD_STEPS[:6]  # nothing after the failed step ran
    assert record["steps"]["Transform"]["status"] == "Failed"
    assert not (workdir / "Transform/output/predictions").exists()
    report = tmp_path / "report.html"
    assert main(["report", "--workdir", str(workdir), "--out", str(report)]) == 0
    runs = report.read_text().split("<h2>Pipeline runs</h2>")[1].split("<h2>")[0]
    assert '<span class="bad">Failed</span>' in runs and "max_payload_mb" in runs  # the reason, in the report
    assert runs.count("<td>reused</td>") == 5 and runs.count("<td>Failed</td>") == 1

    assert main(argv) == 0
    record = read_json(workdir / RUN_FILE)
    assert record["status"] == "Succeeded"
    reused = [name for name, step in record["steps"].items() if step.get("cache_hit")]
    assert reused == BUILD_STEPS[:5]  # resumed at the step that failed
    # the history of Split is one file (history/history.parquet): one partition named after it
    assert (workdir / "Transform/output/predictions/features-history.csv.out").is_file()


def test_training_failure_reason_comes_from_the_failure_file(built, data_dir, tmp_path):
    workdir = copy_workdir(built[0], tmp_path / "build")
    # invalid training parameters are refused before any step runs (nothing is recorded)
    with pytest.raises(InvalidParameterError, match=r"'learning_rate' parameter of the Train step"):
        run_pipeline("build", workdir, {**FAST, "InputData": str(data_dir), "LearningRate": 5}, progress=False)
    # a failure only the training job sees (the reused Split output spoiled): its reason is the failure file's
    train_file = workdir / "Split/output/train/train.parquet"
    read_table(train_file).drop(columns="units_sold").to_parquet(train_file)
    with pytest.raises(PipelineStepError, match=r"Step Train .*units_sold") as caught:
        run_pipeline("build", workdir, {**FAST, "InputData": str(data_dir), "NumLeaves": 9}, progress=False)
    assert "Fix the cause and run the same command again" in caught.value.reason
    record = read_json(workdir / RUN_FILE)
    assert record["steps"]["Split"]["cache_hit"] is True
    assert "units_sold" in record["steps"]["Train"]["reason"]


def test_condition_failing_stops_at_the_fail_step_and_registers_nothing(built, data_dir, tmp_path):
    workdir = copy_workdir(built[0], tmp_path / "build")
    registry = registry_url(tmp_path / "fresh.db")
    params = {**FAST, "InputData": str(data_dir), "MaxWape": 0.0001}
    with pytest.raises(PipelineStepError, match=r"Not registered: evaluation WAPE 0\.\d+ is above MaxWape 0\.0001"):
        run_pipeline("build", workdir, params, registry=registry, progress=False)
    record = read_json(workdir / RUN_FILE)
    assert record["steps"]["CheckEvaluation"]["outcome"] is False
    assert record["steps"]["RegisterModel"]["status"] == "NotExecuted"
    assert record["steps"]["EvaluationFailed"]["status"] == "Failed"
    assert record["steps"]["Train"]["cache_hit"] is True
    assert open_registry(registry).list_groups() == []


def test_inference_needs_an_approved_model_then_forecasts_and_decides(built, tmp_path, capsys):
    workdir, record = built
    registry = record["registry"]
    split = workdir / "Split/output"
    params = {"HistoryData": split / "history", "FutureData": split / "future", "TransformMaxConcurrent": 1}
    inference = tmp_path / "inference"
    with pytest.raises(NoApprovedModelError, match=r"forecaster registry approve --registry .* --group"):
        run_pipeline("inference", inference, params, registry=registry, progress=False)
    argv = ["pipeline", "run", "inference", "--local", "--workdir", str(inference), "--registry", registry]
    argv += [f"--param={k}={v}" for k, v in params.items()]
    assert main(argv) == NoApprovedModelError.exit_code
    assert "forecaster registry approve" in capsys.readouterr().err
    assert not (inference / RUN_FILE).exists()

    open_registry(registry).approve(GROUP, 1, "tested")
    result = run_pipeline("inference", inference, params, registry=registry, progress=False)
    assert result["status"] == "Succeeded"
    assert result["parameters"]["ModelDataUrl"] == open_registry(registry).get(GROUP, 1).model_data_url
    assert (
        Path(result["parameters"]["ModelDataUrl"]).read_bytes()
        == Path(record["steps"]["Train"]["model_data"]).read_bytes()
    )
    assert result["parameters"]["ModelPackageArn"] == f"{GROUP}/1"
    forecasts = read_table(inference / "Postprocess/output/forecasts/forecasts.csv")
    assert len(forecasts) == 2 * 3 * 7
    orders = read_table(inference / "Postprocess/output/forecasts/order_proposals.csv")
    assert (orders["order_units"] >= 0).all()
    decision = read_json(inference / "DecideRetrain/output/decision/decision.json")
    assert decision["retrain"] is False  # the same window the baselines were made on: nothing drifted


def test_model_quality_pipeline_decides_retraining_from_ground_truth(built, tmp_path):
    workdir = built[0]
    params = {
        "ForecastsData": workdir / "Postprocess/output/forecasts/forecasts.csv",
        "GroundTruthData": workdir / "Split/output/truth",
        "ModelQualityBaselineUri": workdir / "ModelQualityBaseline/output/baseline",
        "ModelDataUrl": built[1]["steps"]["Train"]["model_data"],
    }
    # the runner's default: each processing step runs the `forecaster` program, as the processing image does
    result = run_pipeline_program("model-quality", tmp_path / "mq", {**params, "RetrainWape": 0.0001}, progress=False)
    assert result["status"] == "Succeeded"
    assert "model-quality check: 0 violation(s)" in (tmp_path / "mq/ModelQualityCheck/log.txt").read_text()
    # the forecast file was staged into the step's input folder, as a processing job mounts it
    assert (tmp_path / "mq/ModelQualityCheck/input/predictions/forecasts.csv").is_file()
    decision = read_json(tmp_path / "mq/DecideRetrain/output/decision/decision.json")
    assert decision["retrain"] is True
    assert any("above the limit 0.0001" in reason for reason in decision["reasons"])


def test_parameters_are_validated(data_dir, tmp_path, capsys):
    with pytest.raises(InvalidParameterError, match="has no parameter 'Horizn'"):
        run_pipeline("build", tmp_path, {"Horizn": 7, "InputData": str(data_dir)}, progress=False)
    with pytest.raises(InvalidParameterError, match=r"'Horizon' parameter .* must be an integer\. Got 'x'"):
        run_pipeline("build", tmp_path, {"Horizon": "x", "InputData": str(data_dir)}, progress=False)
    with pytest.raises(InvalidParameterError, match="'InputData' parameter must name an existing local"):
        run_pipeline("build", tmp_path, {}, progress=False)  # the default is an S3 prefix
    with pytest.raises(InvalidParameterError, match=r"'InputData' parameter must name an existing local.*Got ''"):
        run_pipeline("build", tmp_path, {"InputData": ""}, progress=False)  # was the cwd: Path("") is "."
    assert main(["pipeline", "run", "build", "--workdir", str(tmp_path)]) == InvalidParameterError.exit_code
    assert "needs --local" in capsys.readouterr().err
    assert main(["pipeline", "run", "build", "--local", "--workdir", str(tmp_path), "--param", "Horizon"]) == 2
    assert not (tmp_path / RUN_FILE).exists()


def test_a_work_directory_is_used_by_one_run_at_a_time(data_dir, tmp_path):
    with open(tmp_path / ".run.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        with pytest.raises(ForecasterError, match="Another run is using work directory"):
            run_pipeline("build", tmp_path, {"InputData": str(data_dir)}, progress=False)


def test_run_record_is_json_with_inputs_outputs_and_timing(built):
    workdir = built[0]
    document = json.loads((workdir / RUN_FILE).read_text())
    split = document["steps"]["Split"]
    assert split["argv"][:2] == ["forecaster", "split"]
    assert Path(split["inputs"]["data"]) == Path(document["parameters"]["InputData"])
    assert set(split["outputs"]) == {"train", "history", "future", "truth"}
    assert split["seconds"] >= 0 and split["started_at"] <= split["finished_at"]
    assert pd.Timestamp(document["started_at"]) <= pd.Timestamp(document["finished_at"])


def test_registration_is_repeated_when_the_registry_lost_it(built, data_dir, tmp_path):
    workdir = copy_workdir(built[0], tmp_path / "build")
    params = {**FAST, "InputData": str(data_dir)}
    first = run_pipeline("build", workdir, params, progress=False)  # a new registry: only RegisterModel runs
    assert [n for n, s in first["steps"].items() if s["status"] == "Succeeded" and not s.get("cache_hit")] == [
        "RegisterModel"
    ]
    assert run_pipeline("build", workdir, params, progress=False)["steps"]["RegisterModel"]["cache_hit"] is True
    (workdir / "registry.db").unlink()
    again = run_pipeline("build", workdir, params, progress=False)
    assert not again["steps"]["RegisterModel"].get("cache_hit")
    assert [v.version for v in open_registry(again["registry"]).list_versions(GROUP)] == [1]


def test_one_work_directory_holds_one_pipeline(built, tmp_path):
    workdir = built[0]
    with pytest.raises(InvalidParameterError, match="holds a run of the build pipeline"):
        run_pipeline(
            "model-quality",
            workdir,
            {
                "ForecastsData": workdir / "Postprocess/output/forecasts",
                "GroundTruthData": workdir / "Split/output/truth",
                "ModelQualityBaselineUri": workdir / "ModelQualityBaseline/output/baseline",
                "ModelDataUrl": built[1]["steps"]["Train"]["model_data"],
            },
            progress=False,
        )


def test_report_over_a_build_work_directory_plots_the_evaluation_window(built, tmp_path):
    workdir = built[0]
    out = tmp_path / "report.html"
    assert main(["report", "--workdir", str(workdir), "--out", str(out)]) == 0
    html = out.read_text()
    forecast_section = html.split("<h2>Forecast vs actual</h2>")[1].split("<h2>")[0]
    assert "<img" in forecast_section  # Postprocess forecasts joined with Split's truth
    runs = html.split("<h2>Pipeline runs</h2>")[1].split("<h2>")[0]
    assert '<span class="ok">Succeeded</span>' in runs and "<td>RegisterModel</td>" in runs


def _processes_with(text: str) -> list[int]:
    """PIDs whose environment mentions ``text`` (a training job's SAGEMAKER_BASE_DIR)."""
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if text.encode() in environ.read_bytes():
                found.append(int(environ.parent.name))
        except OSError:  # gone, or not ours
            continue
    return found


def test_sigterm_stops_the_run_and_its_training_job_as_ctrl_c_does(data_dir, tmp_path):
    """SIGTERM (timeout, a CI cancel) once killed the runner alone: the toolkit and train.py ran on, orphaned."""
    import signal
    import subprocess
    import sys
    import time

    workdir = tmp_path / "build"
    slow = {**FAST, "NumBoostRound": 20000, "LearningRate": 0.001, "InputData": str(data_dir)}
    argv = [sys.executable, "-m", "forecaster.cli.main", "pipeline", "run", "build", "--local", "--no-progress"]
    argv += ["--workdir", str(workdir), *(f"--param={k}={v}" for k, v in slow.items())]
    runner = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    job = str(workdir / "Train" / "job")
    deadline = time.monotonic() + 120
    while not _processes_with(job) and time.monotonic() < deadline and runner.poll() is None:
        time.sleep(0.1)
    assert _processes_with(job), "the training job never started"
    time.sleep(1.0)  # the toolkit has started train.py
    runner.send_signal(signal.SIGTERM)
    assert runner.wait(timeout=90) == 130
    stderr = runner.stderr.read()
    assert "forecaster pipeline: stopped (signal SIGTERM)" in stderr and "Traceback" not in stderr  # was 67 lines
    record = read_json(workdir / RUN_FILE)
    assert record["status"] == "Stopped" and record["steps"]["Train"]["status"] == "Stopped"
    deadline = time.monotonic() + 10
    while _processes_with(job) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _processes_with(job), "the training job ran on after the run was stopped"


def test_group_names_the_group_a_build_registers_in(built, data_dir, tmp_path):
    """``pipeline run build --group`` was ignored: the build registered in its parameter's group."""
    workdir = copy_workdir(built[0], tmp_path / "build")
    params = {**FAST, "InputData": str(data_dir)}
    record = run_pipeline("build", workdir, params, group="produce-north", progress=False)
    assert record["parameters"]["ModelPackageGroupName"] == "produce-north"
    assert [v.version for v in open_registry(record["registry"]).list_versions("produce-north")] == [1]
    with pytest.raises(InvalidParameterError, match=r"--group 'a' and --param ModelPackageGroupName=b name two"):
        run_pipeline("build", workdir, {**params, "ModelPackageGroupName": "b"}, group="a", progress=False)
