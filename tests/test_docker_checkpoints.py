"""Spot training in the image: a training container stopped with SIGTERM mid-training resumes from its checkpoints.

Marker ``docker`` (see tests/test_docker.py for the engine and the images). SageMaker mounts
``/opt/ml/checkpoints`` (``CheckpointConfig.LocalPath``) and syncs it to ``CheckpointS3Uri``; a spot interruption
is a SIGTERM, then the job is started again on another instance with the same checkpoints.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from docker_helpers import give_back_files, sh
from test_docker import HYPERPARAMETERS, write_job

# long enough to stop it mid-fit on 2 shared cores; early stopping on, so its state must survive the restart
#: no column or row sampling: a resumed booster restarts LightGBM's random sequence, so with sampling its later
#: rounds draw other columns than an uninterrupted run (0.05 % and 0.57 % WAPE apart in two runs with the default
#: feature_fraction 0.8); without sampling the resume itself must reproduce the uninterrupted model
SLOW = {
    **HYPERPARAMETERS,
    "num_boost_round": "1500",
    "quantile_num_boost_round": "600",
    "learning_rate": "0.01",
    "feature_fraction": "1.0",
    "quantile_feature_fraction": "1.0",
    "quantile_bagging_fraction": "1.0",
}


def train(image: str, root: Path, checkpoints: Path | None, *, detach: bool = False) -> str:
    """``docker run IMAGE train`` as SageMaker runs it, with ``checkpoints`` at ``/opt/ml/checkpoints``."""
    mounts = [arg for sub in ("input", "model", "output") for arg in ("-v", f"{root / sub}:/opt/ml/{sub}")]
    if checkpoints is not None:
        mounts += ["-v", f"{checkpoints}:/opt/ml/checkpoints"]
    command = ["docker", "run", "--hostname", "algo-1", *mounts, *(["-d"] if detach else ["--rm"])]
    result = sh(*command, image, "train", check=False, timeout=1200)
    if detach:
        return result.stdout.strip()
    assert result.returncode == 0, f"training failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout + result.stderr


def wape(root: Path) -> float:
    return json.loads((root / "output" / "data" / "validation_metrics.json").read_text())["wape"]


@pytest.mark.docker
@pytest.mark.slow
def test_a_training_container_stopped_mid_training_resumes_from_its_checkpoint(train_image, tmp_path):
    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    root = write_job(tmp_path / "interrupted", SLOW)
    container = train(train_image, root, checkpoints, detach=True)
    try:
        deadline = time.monotonic() + 600
        state = checkpoints / "checkpoint.json"
        while not (state.is_file() and json.loads(state.read_text()).get("partial")):  # a booster is half done
            assert time.monotonic() < deadline, sh("docker", "logs", container, check=False).stderr[-3000:]
            time.sleep(0.2)
        sh("docker", "stop", "-t", "60", container)  # SIGTERM, as a spot interruption
        status = json.loads(sh("docker", "inspect", "-f", "{{json .State}}", container).stdout)
        stop_log = sh("docker", "logs", container, check=False)
    finally:
        sh("docker", "rm", "-f", container, check=False)
        give_back_files(train_image, tmp_path)
    assert status["ExitCode"] not in (0, 137), f"exit {status['ExitCode']}: 137 = SIGTERM ignored"
    failure = (root / "output" / "failure").read_text()
    assert "stopped (SIGTERM" in failure and "resumes" in failure and "/opt/ml/checkpoints" in failure, failure
    assert not (root / "model" / "model_mean.txt").exists()

    try:
        (root / "output" / "failure").unlink()  # a new job attempt starts with a clean output folder
        log = train(train_image, root, checkpoints)
    finally:
        give_back_files(train_image, tmp_path)
    where = failure.split(" in phase ")[1].split(". ")[0]  # e.g. "fit, booster q50 at round 125 of 600 (...)"
    assert f"resuming from checkpoint: phase {where}" in log, f"{failure}\n{log[-3000:]}"

    reference = write_job(tmp_path / "uninterrupted", SLOW)
    try:
        train(train_image, reference, None)
    finally:
        give_back_files(train_image, tmp_path)
    resumed, uninterrupted = wape(root), wape(reference)
    print(f"stopped in phase {where}; WAPE resumed {resumed:.6f}, uninterrupted {uninterrupted:.6f}")
    assert abs(resumed - uninterrupted) <= 0.005 * uninterrupted, (resumed, uninterrupted, stop_log.stderr[-2000:])
