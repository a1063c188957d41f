"""Training checkpoints: saved as the boosters train, resumed after a stop, ignored when foreign or broken."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from forecaster import checkpoints
from forecaster.checkpoints import STATE_FILE, BoosterRun
from forecaster.container import layout
from forecaster.container.layout import ContainerTree
from forecaster.container.local_job import run_training_job, write_job_tree
from forecaster.errors import JobStoppedError
from forecaster.io import write_table
from forecaster.model import ForecastModel
from forecaster.training import fit_artifact


def _stop_at(monkeypatch, stage: str, booster: str, rounds: int) -> None:
    """SIGTERM as the container's handler reacts to it, once ``booster`` of ``stage`` has trained ``rounds``."""
    original = BoosterRun.__call__

    def call(self, env):
        if (self.owner.stage, self.name, env.iteration + 1) == (stage, booster, rounds):
            assert checkpoints.stop_on_signal(), "a booster loop with checkpoints listens"
        return original(self, env)

    monkeypatch.setattr(BoosterRun, "__call__", call)


def _predictions(model_dir, X) -> np.ndarray:
    model = ForecastModel.load(model_dir)
    return np.column_stack([model.predict(X), model.predict_mean(X)])


def test_checkpoints_leave_an_uninterrupted_fit_unchanged(
    tmp_path, trained_model_dir, history_frame, synthetic_spec, train_config, feature_frame
):
    scores = fit_artifact(
        history_frame, synthetic_spec, train_config, tmp_path / "model", checkpoint_dir=tmp_path / "c"
    )
    X = feature_frame.to_numpy(dtype=np.float64)
    np.testing.assert_allclose(_predictions(tmp_path / "model", X), _predictions(trained_model_dir, X), rtol=1e-9)
    assert scores == json.loads((trained_model_dir / "metadata.json").read_text())["validation_metrics"]
    state = json.loads((tmp_path / "c" / STATE_FILE).read_text())
    assert state["phase"] == "refit" and state["partial"] is None
    assert set(state["boosters"]["fit"]) == set(state["boosters"]["refit"]) == {"mean", "q10", "q50", "q90"}


def _metadata(model_dir) -> dict:
    return json.loads((model_dir / "metadata.json").read_text())


@pytest.mark.parametrize("booster", ["mean", "q50"])
def test_a_stopped_fit_resumes_from_where_it_stopped(
    tmp_path, monkeypatch, caplog, trained_model_dir, history_frame, synthetic_spec, train_config, booster
):
    folder = tmp_path / "checkpoints"
    best_q50 = _metadata(trained_model_dir)["boost_rounds"]["q50"]
    assert best_q50 + 2 < train_config.quantile_num_boost_round, "the q50 case needs rounds after its best one"
    # mean: stopped before its best round; q50: stopped two rounds after it
    stop, where = {
        "mean": (12, f"booster mean at round 12 of {train_config.num_boost_round}"),
        "q50": (
            best_q50 + 2,
            f"booster q50 at round {best_q50 + 2} of {train_config.quantile_num_boost_round} (finished: mean, q10)",
        ),
    }[booster]
    with monkeypatch.context() as patch:
        _stop_at(patch, "fit", booster, stop)
        with pytest.raises(JobStoppedError, match=re.escape(f"phase fit, {where}")):
            fit_artifact(history_frame, synthetic_spec, train_config, tmp_path / "model", checkpoint_dir=folder)
    assert not (tmp_path / "model").exists(), "no model after a stop"
    with caplog.at_level(logging.INFO, logger="forecaster"):
        scores = fit_artifact(history_frame, synthetic_spec, train_config, tmp_path / "model", checkpoint_dir=folder)
    assert f"resuming from checkpoint: phase fit, {where}" in caplog.text
    reference, resumed = _metadata(trained_model_dir), _metadata(tmp_path / "model")
    after = list(reference["boost_rounds"])[list(reference["boost_rounds"]).index(booster) + 1 :]
    # the boosters after the resumed one train exactly as without the stop (nothing of it leaks into them)
    assert {b: resumed["boost_rounds"][b] for b in after} == {b: reference["boost_rounds"][b] for b in after}
    if booster == "q50":  # stopped after its best round: the early-stopping state came back, nothing differs
        assert scores == reference["validation_metrics"]
    else:  # feature_fraction draws anew after a restart: near-identical (the 0.5 % target is for real runs)
        assert scores["wape"] == pytest.approx(reference["validation_metrics"]["wape"], rel=0.03)


def test_a_stopped_refit_resumes_with_the_fit_boosters_loaded(
    tmp_path, monkeypatch, caplog, trained_model_dir, history_frame, synthetic_spec, train_config
):
    folder = tmp_path / "checkpoints"
    with monkeypatch.context() as patch:
        _stop_at(patch, "refit", "mean", 5)
        with pytest.raises(JobStoppedError, match="phase refit, booster mean at round 5"):
            fit_artifact(history_frame, synthetic_spec, train_config, tmp_path / "model", checkpoint_dir=folder)
    with caplog.at_level(logging.INFO, logger="forecaster"):
        scores = fit_artifact(history_frame, synthetic_spec, train_config, tmp_path / "model", checkpoint_dir=folder)
    assert "resuming from checkpoint: phase refit, booster mean at round 5" in caplog.text
    reference = json.loads((trained_model_dir / "metadata.json").read_text())["validation_metrics"]
    assert scores == reference  # the fit boosters came back exactly: the same validation scores


def test_a_checkpoint_of_other_data_is_ignored(
    tmp_path, monkeypatch, caplog, history_frame, synthetic_spec, train_config
):
    folder = tmp_path / "checkpoints"
    with monkeypatch.context() as patch:
        _stop_at(patch, "fit", "mean", 10)
        with pytest.raises(JobStoppedError):
            fit_artifact(history_frame, synthetic_spec, train_config, tmp_path / "model", checkpoint_dir=folder)
    other = history_frame.assign(units_sold=history_frame["units_sold"] * 2)
    with caplog.at_level(logging.INFO, logger="forecaster"):
        fit_artifact(other, synthetic_spec, train_config, tmp_path / "model", checkpoint_dir=folder)
    assert "ignoring the checkpoint" in caplog.text and "another training" in caplog.text
    assert "resuming" not in caplog.text


def test_a_corrupt_checkpoint_is_ignored(tmp_path, monkeypatch, caplog, history_frame, synthetic_spec, train_config):
    folder = tmp_path / "checkpoints"
    with monkeypatch.context() as patch:
        _stop_at(patch, "fit", "q10", 10)
        with pytest.raises(JobStoppedError):
            fit_artifact(history_frame, synthetic_spec, train_config, tmp_path / "model", checkpoint_dir=folder)
    partial = folder / "fit-q10.partial.txt"
    partial.write_text(partial.read_text()[:1000])  # a half-written booster file
    with caplog.at_level(logging.INFO, logger="forecaster"):
        fit_artifact(history_frame, synthetic_spec, train_config, tmp_path / "model", checkpoint_dir=folder)
    assert "unreadable or incomplete" in caplog.text and "does not match its sha256" in caplog.text
    assert "resuming" not in caplog.text
    (folder / STATE_FILE).write_text('{"version": 1, "fingerp')  # a half-written state file
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="forecaster"):
        checkpoints.Checkpoints.open(folder, "any")
    assert "unreadable or incomplete" in caplog.text


@pytest.mark.slow
def test_a_training_job_sent_sigterm_resumes_after_a_restart(tmp_path, history_frame, synthetic_spec):
    # the container path in a real process: the toolkit runs the entry script; SIGTERM goes to its process group
    data = tmp_path / "data"
    data.mkdir()
    write_table(history_frame, data / "sales.csv")
    (data / "spec.json").write_text(json.dumps(synthetic_spec.to_dict()))
    slow = {"horizon": 7, "num_boost_round": 400, "learning_rate": 0.02, "quantile_num_boost_round": 20}
    tree = ContainerTree(write_job_tree(tmp_path / "opt" / "ml", {**slow, "num_threads": 1}, {"train": data}))
    tree.checkpoint_dir.mkdir()  # what SageMaker does for a job with a CheckpointConfig
    env = {**os.environ, layout.BASE_DIR_ENV: str(tree.base), layout.PROGRAM_ENV: layout.DEFAULT_PROGRAM}
    env[layout.LOCAL_MODE_ENV] = "true"
    command = [sys.executable, "-c", "from sagemaker_training.cli.train import main; main()"]
    process = subprocess.Popen(
        command, env=env, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        state, deadline = tree.checkpoint_dir / STATE_FILE, time.monotonic() + 300
        while not (state.is_file() and json.loads(state.read_text()).get("partial")):
            assert process.poll() is None and time.monotonic() < deadline, process.stdout.read().decode()[-3000:]
            time.sleep(0.1)
        os.killpg(process.pid, signal.SIGTERM)  # what the image's entrypoint passes on
        log = process.communicate(timeout=120)[0].decode()
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode != 0, log[-3000:]
    failure = tree.failure_file.read_text()
    assert "JobStoppedError: Training was stopped (SIGTERM" in failure and "phase fit, booster mean at round" in failure
    assert "resumes from there" in failure
    tree.failure_file.unlink()
    result = run_training_job(tree.base, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    where = failure.split(" in phase ")[1].split(". ")[0]
    assert f"resuming from checkpoint: phase {where}" in result.stderr
    assert (tree.model_dir / "model_mean.txt").is_file()
