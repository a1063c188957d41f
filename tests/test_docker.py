"""Both images, built with a real ``docker build`` and run with ``docker run`` the way SageMaker runs them.

Marker ``docker``. Without a Docker engine these tests skip (with the reason) on a developer machine and FAIL
under ``CI=true``. ``make docker-test`` starts an engine if needed, builds the registry-free base image
``local/debian:bookworm`` and runs only these tests; the base image comes from ``$BASE_IMAGE``, else
``local/debian:bookworm`` when it exists, else ``debian:bookworm-slim``.

Measurements (build seconds, image sizes, container start to first ``/ping`` 200) are a benchmark:
``bench/docker.py`` (``make bench-docker``) writes ``bench/results/docker.json``.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from docker_helpers import give_back_files, image_mb, require_docker, sh
from forecaster.serving.environment import MODEL_LOADED_LOG, WORKER_BOOTED_LOG

INFER_SIZE_LIMIT_MB = 600
HORIZON = 7
HYPERPARAMETERS = {"horizon": str(HORIZON), "num_boost_round": "40", "quantile_num_boost_round": "30"}

docker = pytest.mark.docker


def test_missing_docker_skips_locally_but_fails_under_ci(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="docker CLI is not installed"):
        require_docker()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=r"CI=true but the docker CLI is not installed"):
        require_docker()


def test_atomic_writes_are_readable_by_other_users(tmp_path):
    # the inference image runs as a non-root user and reads a model that root wrote in the training job
    from forecaster.io import atomic_directory, write_json

    with atomic_directory(tmp_path / "model") as stage:
        write_json({"version": 1}, stage / "feature_schema.json")
    for path in (tmp_path / "model", tmp_path / "model" / "feature_schema.json"):
        assert path.stat().st_mode & 0o004, f"{path} is not world-readable: {oct(path.stat().st_mode)}"


# ---- helpers ---------------------------------------------------------------------------------------------------
def http(url: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, headers=headers or {}, method="POST" if body else "GET")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def write_job(root: Path, hyperparameters: dict[str, str]) -> Path:
    """An /opt/ml tree as SageMaker prepares it: configs, a train channel (synthetic data + spec.json)."""
    from forecaster.synth import write_dataset

    config = root / "input" / "config"
    config.mkdir(parents=True)
    (config / "hyperparameters.json").write_text(json.dumps(hyperparameters))
    (config / "inputdataconfig.json").write_text(
        json.dumps({"train": {"ContentType": "text/csv", "TrainingInputMode": "File"}})
    )
    (config / "resourceconfig.json").write_text(
        json.dumps({"current_host": "algo-1", "hosts": ["algo-1"], "current_group_name": "homogeneousCluster"})
    )
    write_dataset(root / "input" / "data" / "train", stores=3, items=4, days=120, seed=0)
    for sub in ("model", "output"):
        (root / sub).mkdir()
    return root


def run_training(image: str, root: Path, *, detach: bool = False) -> subprocess.CompletedProcess[str]:
    """``docker run IMAGE train`` with input/model/output bind-mounted like SageMaker does."""
    mounts = [arg for sub in ("input", "model", "output") for arg in ("-v", f"{root / sub}:/opt/ml/{sub}")]
    # --hostname algo-1: the toolkit resolves the hosts of resourceconfig.json before starting the script
    command = ["docker", "run", "--hostname", "algo-1", *mounts]
    command += ["-d"] if detach else ["--rm"]
    return sh(*command, image, "train", check=False)


def model_files(model_dir: Path) -> set[str]:
    return {path.name for path in model_dir.iterdir()}


# ---- fixtures: a trained model (the engine and the images: tests/conftest.py) ---------------------------------


@pytest.fixture(scope="module")
def training_job(train_image: str, tmp_path_factory) -> tuple[subprocess.CompletedProcess[str], Path]:
    root = write_job(tmp_path_factory.mktemp("job") / "opt_ml", HYPERPARAMETERS)
    result = run_training(train_image, root)
    give_back_files(train_image, root)
    return result, root


@pytest.fixture(scope="module")
def model_dir(training_job) -> Path:
    result, root = training_job
    if result.returncode != 0:
        pytest.fail(f"training failed ({result.returncode}); see test_train_image_writes_the_model")
    return root / "model"


@pytest.fixture(scope="module")
def inference_case(model_dir: Path, tmp_path_factory) -> dict:
    """History, future, host-side features and the host's predictions for the containerised model."""
    from forecaster.forecasting import build_inference_features
    from forecaster.model import ForecastModel
    from forecaster.synth import generate

    frame = generate(stores=3, items=4, days=120 + HORIZON, seed=1)
    cutoff = frame["date"].max() - pd.Timedelta(days=HORIZON)
    history = frame[frame["date"] <= cutoff]
    future = frame[frame["date"] > cutoff].drop(columns=["units_sold"])
    folder = tmp_path_factory.mktemp("inference")
    history.to_csv(folder / "history.csv", index=False)
    future.to_csv(folder / "future.csv", index=False)
    features, keys = build_inference_features(model_dir, history, future)
    model = ForecastModel.load(model_dir)
    X = features.to_numpy(dtype=np.float64)
    return {
        "folder": folder,
        "features": features,
        "keys": keys,
        "expected": model.predict(X),
        "expected_point": model.predict_mean(X),
        "csv": features.to_csv(header=False, index=False).encode(),
        "jsonlines": "".join(
            json.dumps({k: (None if pd.isna(v) else v) for k, v in row.items()}) + "\n"
            for row in features.to_dict(orient="records")
        ).encode(),
    }


def parse_csv_predictions(body: bytes) -> np.ndarray:
    return np.array([[float(v) for v in row] for row in csv.reader(io.StringIO(body.decode()))])


# ---- training image -----------------------------------------------------------------------------------------------
@docker
def test_train_image_writes_the_model(training_job):
    from forecaster.model import ForecastModel

    result, root = training_job
    assert result.returncode == 0, f"training failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    assert (root / "output" / "success").exists()
    assert not (root / "output" / "failure").exists()
    assert {"feature_schema.json", "metadata.json", "model_mean.txt", "model_q50.txt"} <= model_files(root / "model")
    metrics = json.loads((root / "output" / "data" / "validation_metrics.json").read_text())
    assert "wape" in metrics
    assert f"validation:wape={metrics['wape']}" in result.stdout + result.stderr  # metric line for MetricDefinitions
    model = ForecastModel.load(root / "model")
    assert model.schema.horizon == HORIZON  # the string hyperparameter "7" reached the trainer


@docker
def test_whole_opt_ml_mounted_trains(train_image, tmp_path):
    # the classic bring-your-own-container habit: one directory over all of /opt/ml hides /opt/ml/code
    root = write_job(tmp_path / "test_dir", {**HYPERPARAMETERS, "num_boost_round": "10"})
    result = sh("docker", "run", "--rm", "--hostname", "algo-1", "-v", f"{root}:/opt/ml", train_image, "train",
                check=False)  # fmt: skip
    give_back_files(train_image, root)
    assert result.returncode == 0, f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    assert (root / "output" / "success").exists()
    assert (root / "model" / "feature_schema.json").exists()
    assert "copied the image's entry script" in result.stdout + result.stderr


@docker
def test_unresolvable_host_fails_within_seconds_with_what_to_do(train_image, tmp_path):
    root = write_job(tmp_path / "opt_ml", HYPERPARAMETERS)
    mounts = [arg for sub in ("input", "model", "output") for arg in ("-v", f"{root / sub}:/opt/ml/{sub}")]
    start = time.monotonic()
    result = sh("docker", "run", "--rm", *mounts, train_image, "train", check=False, timeout=120)  # no --hostname
    seconds = time.monotonic() - start
    give_back_files(train_image, root)
    assert result.returncode != 0
    assert seconds < 60, f"took {seconds:.0f} s"
    failure = (root / "output" / "failure").read_text()
    assert "--hostname algo-1" in failure and "--hostname algo-1" in result.stderr


@docker
def test_model_files_are_readable_by_the_unprivileged_server_user(model_dir: Path):
    # SageMaker tars /opt/ml/model as written; the inference image runs as a non-root user
    unreadable = [p.name for p in [model_dir, *model_dir.iterdir()] if not p.stat().st_mode & 0o004]
    assert not unreadable, f"not world-readable: {unreadable}"


@docker
def test_invalid_hyperparameter_writes_failure_and_exits_nonzero(train_image, tmp_path):
    root = write_job(tmp_path / "opt_ml", {**HYPERPARAMETERS, "num_boost_round": "-3"})
    result = run_training(train_image, root)
    give_back_files(train_image, root)
    assert result.returncode != 0
    failure = (root / "output" / "failure").read_text()
    assert "num_boost_round" in failure.splitlines()[0], failure
    assert "-3" in failure
    assert not (root / "output" / "success").exists()
    assert not [p for p in (root / "model").iterdir() if not p.name.startswith(".")], "no partial model"


@docker
def test_sigterm_stops_training_with_a_failure_reason(train_image, tmp_path):
    # what SageMaker does at MaxRuntimeInSeconds / StopTrainingJob: SIGTERM, SIGKILL 120 s later
    slow = {**HYPERPARAMETERS, "num_boost_round": "20000", "early_stopping_rounds": "0", "learning_rate": "0.001"}
    root = write_job(tmp_path / "opt_ml", slow)
    container = run_training(train_image, root, detach=True).stdout.strip()
    try:
        deadline = time.monotonic() + 120
        while "train.py" not in sh("docker", "top", container, check=False).stdout:  # the script has started
            assert time.monotonic() < deadline, sh("docker", "logs", container, check=False).stderr[-3000:]
            time.sleep(0.5)
        time.sleep(3)  # inside the LightGBM loop by now
        sh("docker", "stop", "-t", "60", container)
        state = json.loads(sh("docker", "inspect", "-f", "{{json .State}}", container).stdout)
    finally:
        sh("docker", "rm", "-f", container, check=False)
        give_back_files(train_image, root)
    assert state["ExitCode"] not in (0, 137), f"exit {state['ExitCode']}: 137 = SIGTERM ignored, SIGKILL needed"
    failure = (root / "output" / "failure").read_text()
    assert "SIGTERM" in failure, failure
    assert not (root / "model" / "model_mean.txt").exists()


@docker
def test_two_training_hosts_train_one_model_together(train_image, tmp_path):
    # InstanceCount=2 as SageMaker (and SDK local mode) runs it: one container per host on one network,
    # hostnames algo-1/algo-2, resourceconfig.json naming both; SageMaker merges both hosts' /opt/ml/model.
    # Each host builds the rows of half the stores (one partition each) and LightGBM's network joins them.
    from forecaster.io import write_table
    from forecaster.synth import generate

    network = f"forecaster-hosts-{os.environ.get('FORECASTER_TEST_TAG', 'test')}-{os.getpid()}"
    sh("docker", "network", "create", network)
    containers = []
    try:
        for host in ("algo-1", "algo-2"):
            root = write_job(tmp_path / host, {**HYPERPARAMETERS, "num_threads": "1"})  # one CPU per host
            train = root / "input" / "data" / "train"
            (train / "sales.csv").unlink()  # the same history, one partition per store
            for store, rows in generate(stores=3, items=4, days=120, seed=0).groupby("store_id", observed=True):
                write_table(rows, train / f"store_id={store}" / "part-0.csv")
            (root / "input" / "config" / "resourceconfig.json").write_text(
                json.dumps({"current_host": host, "hosts": ["algo-1", "algo-2"], "current_group_name": "g"})
            )
            mounts = [arg for sub in ("input", "model", "output") for arg in ("-v", f"{root / sub}:/opt/ml/{sub}")]
            network_args = ["--network", network, "--network-alias", host, "--hostname", host]
            containers.append(sh("docker", "run", "-d", *network_args, *mounts, train_image, "train").stdout.strip())
        exit_codes = [int(sh("docker", "wait", c, timeout=900).stdout) for c in containers]
        states = [json.loads(sh("docker", "inspect", "-f", "{{json .State}}", c).stdout) for c in containers]
        logs = [sh("docker", "logs", c).stderr + sh("docker", "logs", c).stdout for c in containers]
    finally:
        for container in containers:
            sh("docker", "rm", "-f", container, check=False)
        sh("docker", "network", "rm", network, check=False)
        for host in ("algo-1", "algo-2"):
            give_back_files(train_image, tmp_path / host)
    assert exit_codes == [0, 0], logs[1][-3000:]
    assert {"feature_schema.json", "model_mean.txt"} <= model_files(tmp_path / "algo-1" / "model")
    assert model_files(tmp_path / "algo-2" / "model") == set()
    for rank, (host, stores) in enumerate((("algo-1", "S001, store_id=S003"), ("algo-2", "S002"))):
        assert f"host {host} builds the rows of {2 - rank} partitions: store_id={stores}" in logs[rank], logs[rank]
        assert f"host {host} joined the LightGBM network: rank {rank} of 2 machines" in logs[rank], logs[rank]
    # compose (SDK local mode) stops every container when the first exits: algo-2 waits until algo-1 has ended
    finished = [pd.Timestamp(state["FinishedAt"]) for state in states]
    assert finished[1] >= finished[0], states


@docker
def test_train_image_runs_processing_commands(train_image, model_dir, inference_case):
    # processing steps (a Processor with this image) run `forecaster <command>` in this image
    folder = inference_case["folder"]
    result = sh(
        "docker", "run", "--rm", "--network", "none",
        "-v", f"{model_dir}:/opt/ml/processing/model:ro",
        "-v", f"{folder}:/opt/ml/processing/input:ro",
        "-v", f"{folder / 'out'}:/opt/ml/processing/output",
        train_image, "forecaster", "preprocess", "--model-dir", "/opt/ml/processing/model",
        "--history", "/opt/ml/processing/input/history.csv", "--future", "/opt/ml/processing/input/future.csv",
        "--out", "/opt/ml/processing/output",
    )  # fmt: skip
    give_back_files(train_image, folder / "out")
    assert result.returncode == 0
    in_container = pd.read_csv(folder / "out" / "features.csv", header=None)
    expected = inference_case["features"]
    assert in_container.shape == expected.shape
    np.testing.assert_allclose(in_container.to_numpy(np.float64), expected.to_numpy(np.float64), equal_nan=True)


@docker
def test_processing_reads_a_model_tar_gz_with_the_images_python(train_image, model_dir, inference_case, tmp_path):
    # a processing job gets the training job's model.tar.gz as it is (not unpacked); the image's Python is
    # Debian's 3.11.2, whose tarfile has no extractall(filter=...)
    from forecaster.artifact import pack_model

    pack_model(model_dir, tmp_path / "model" / "model.tar.gz")
    folder = inference_case["folder"]
    (tmp_path / "out").mkdir()
    result = sh(
        "docker", "run", "--rm", "--network", "none",
        "-v", f"{tmp_path / 'model'}:/opt/ml/processing/input/model:ro",
        "-v", f"{folder}:/opt/ml/processing/input/data:ro",
        "-v", f"{tmp_path / 'out'}:/opt/ml/processing/output/features",
        train_image, "sh", "-c", "python3 --version && forecaster preprocess"
        " --model-dir /opt/ml/processing/input/model --history /opt/ml/processing/input/data/history.csv"
        " --future /opt/ml/processing/input/data/future.csv --out /opt/ml/processing/output/features",
    )  # fmt: skip
    give_back_files(train_image, tmp_path / "out")
    assert "Python 3.11" in result.stdout
    in_container = pd.read_csv(tmp_path / "out" / "features.csv", header=None)
    np.testing.assert_allclose(
        in_container.to_numpy(np.float64), inference_case["features"].to_numpy(np.float64), equal_nan=True
    )


@docker
def test_split_writes_into_output_directories_that_are_mount_points(train_image, tmp_path):
    # SageMaker and the SDK's local mode bind-mount each processing output: /opt/ml/processing/output/<name>
    # can be written into, never removed or renamed (EBUSY)
    from forecaster.synth import generate

    splits = ("train", "history", "future", "truth")  # the outputs of `forecaster split`

    generate(stores=2, items=3, days=40, seed=1).to_csv(tmp_path / "sales.csv", index=False)
    mounts = []
    for name in splits:
        (tmp_path / name).mkdir()
        mounts += ["-v", f"{tmp_path / name}:/opt/ml/processing/output/{name}"]
    sh(
        "docker", "run", "--rm", "--network", "none", *mounts,
        "-v", f"{tmp_path / 'sales.csv'}:/opt/ml/processing/input/data/sales.csv:ro",
        train_image, "forecaster", "split", "--input", "data=/opt/ml/processing/input/data", "--horizon", "5",
        "--out", "/opt/ml/processing/output",
    )  # fmt: skip
    for name in splits:
        give_back_files(train_image, tmp_path / name)
        bundled = ["spec.json"] if name == "train" else []  # the training split carries its spec
        assert sorted(p.name for p in (tmp_path / name).iterdir()) == sorted([f"{name}.parquet", *bundled])
    assert len(pd.read_parquet(tmp_path / "truth" / "truth.parquet")) == 2 * 3 * 5


# ---- inference image ------------------------------------------------------------------------------------------
@docker
def test_inference_image_is_small_and_has_only_the_server(infer_image):
    assert image_mb(infer_image) <= INFER_SIZE_LIMIT_MB
    probe = sh(
        "docker", "run", "--rm", "--entrypoint", "sh", infer_image, "-c",
        "command -v gcc cc pip pip3 || true; echo $FORECASTER_SERVER_UID;"
        " python3 -c 'import importlib.util as u; print([m for m in (\"sagemaker\", \"sagemaker_training\","
        " \"shap\", \"boto3\", \"flask\", \"gunicorn\", \"lightgbm\") if u.find_spec(m)])'",
    )  # fmt: skip
    lines = probe.stdout.split()
    assert lines[0] not in ("0", "$FORECASTER_SERVER_UID"), "the server must not run as root (entry point: setpriv)"
    assert "['flask', 'gunicorn', 'lightgbm']" in probe.stdout, probe.stdout
    assert not [line for line in lines if line.startswith("/")], f"tools that should not be there: {probe.stdout}"


def start_server(image: str, model_dir: Path, *extra: str) -> str:
    return sh("docker", "run", "-d", *extra, "-v", f"{model_dir}:/opt/ml/model:ro", image, "serve").stdout.strip()


def stop_and_exit_code(container: str) -> int:
    sh("docker", "stop", "-t", "30", container)
    return int(sh("docker", "inspect", "-f", "{{.State.ExitCode}}", container).stdout)


@pytest.fixture(scope="module")
def server(infer_image, model_dir):
    """The inference container, port 8080 published on 127.0.0.1 (random host port)."""
    start = time.monotonic()
    container = start_server(infer_image, model_dir, "-p", "127.0.0.1::8080")
    try:
        port = sh("docker", "port", container, "8080/tcp").stdout.split(":")[-1].strip()
        url = f"http://127.0.0.1:{port}"
        deadline = start + 120
        status = 0
        while time.monotonic() < deadline:
            try:
                status, _ = http(f"{url}/ping")
            except OSError:
                status = 0
            if status == 200:
                break
            time.sleep(0.1)
        if status != 200:
            pytest.fail(f"/ping never answered 200:\n{sh('docker', 'logs', container, check=False).stderr[-4000:]}")
        # /ping is per worker: the first 200 may come from one worker while another still loads (a 503 there)
        while time.monotonic() < deadline:
            log = sh("docker", "logs", container, check=False).stderr
            if log.count(MODEL_LOADED_LOG) >= log.count(WORKER_BOOTED_LOG) > 0:
                break
            time.sleep(0.2)
        yield {"url": url, "container": container}
    finally:
        sh("docker", "rm", "-f", container, check=False)


@docker
def test_serve_ping_and_execution_parameters(server):
    status, body = http(f"{server['url']}/ping")
    assert (status, body) == (200, b"")
    status, body = http(f"{server['url']}/execution-parameters")
    assert status == 200
    params = json.loads(body)
    assert params["BatchStrategy"] == "MULTI_RECORD"
    assert 1 <= params["MaxConcurrentTransforms"] <= 100
    assert 1 <= params["MaxPayloadInMB"] <= 100


@docker
def test_serve_invocations_csv_matches_the_model(server, inference_case):
    status, body = http(
        f"{server['url']}/invocations", inference_case["csv"], {"Content-Type": "text/csv", "Accept": "text/csv"}
    )
    assert status == 200, body[:500]
    predictions = parse_csv_predictions(body)  # default: one column, the median
    np.testing.assert_allclose(predictions, inference_case["expected"][:, [1]], rtol=1e-9, atol=1e-9)


@docker
def test_serve_invocations_jsonlines_matches_the_model(server, inference_case):
    headers = {
        "Content-Type": "application/jsonlines",
        "Accept": "application/jsonlines",
        "X-Amzn-SageMaker-Custom-Attributes": "quantiles=all",
    }
    status, body = http(f"{server['url']}/invocations", inference_case["jsonlines"], headers)
    assert status == 200, body[:500]
    records = [json.loads(line) for line in body.decode().splitlines()]
    got = np.array([[record["p10"], record["p50"], record["p90"]] for record in records])
    np.testing.assert_allclose(got, inference_case["expected"], rtol=1e-9, atol=1e-9)


@docker
def test_serve_bad_rows_get_a_4xx_naming_the_row(server, inference_case):
    lines = inference_case["csv"].decode().splitlines()
    lines[2] = lines[2] + ",1.0"  # one field too many on row 3
    status, body = http(f"{server['url']}/invocations", "\n".join(lines).encode(), {"Content-Type": "text/csv"})
    assert status == 400, body[:500]
    assert b"CSV row 3 has" in body, body[:500]


EXEC_HTTP = """
import sys, urllib.request, urllib.error
path, body, ctype = sys.argv[1], sys.stdin.buffer.read() or None, sys.argv[2] if len(sys.argv) > 2 else "text/csv"
req = urllib.request.Request("http://127.0.0.1:8080" + path, data=body, headers={"Content-Type": ctype})
try:
    with urllib.request.urlopen(req, timeout=30) as r:
        status, out = r.status, r.read()
except urllib.error.HTTPError as e:
    status, out = e.code, e.read()
except OSError:
    status, out = 0, b""
sys.stdout.write(str(status) + "\\n")
sys.stdout.flush()
sys.stdout.buffer.write(out)
"""


def exec_http(container: str, path: str, body: bytes = b"", content_type: str = "text/csv") -> tuple[int, bytes]:
    """HTTP request from inside the container (``--network none`` leaves nothing to publish)."""
    result = subprocess.run(
        ["docker", "exec", "-i", container, "python3", "-c", EXEC_HTTP, path, content_type],
        input=body,
        capture_output=True,
        timeout=60,
    )
    status, _, out = result.stdout.partition(b"\n")
    return int(status or 0), out


@docker
def test_serve_read_only_no_network_non_root_and_graceful_sigterm(infer_image, model_dir, inference_case):
    start = time.monotonic()
    hardened = ["--read-only", "--tmpfs", "/tmp", "--network", "none"]
    # every quantile by default, set the way a SageMaker model's Environment would set it
    container = start_server(infer_image, model_dir, *hardened, "-e", "FORECASTER_DEFAULT_QUANTILES=all")
    try:
        status = 0
        while status != 200 and time.monotonic() < start + 120:
            status, _ = exec_http(container, "/ping")
            if status != 200:
                time.sleep(0.2)
        logs = sh("docker", "logs", container, check=False).stderr[-4000:]
        assert status == 200, f"/ping never answered 200 with --read-only --network none:\n{logs}"
        # the image starts as root and the entry point drops to FORECASTER_SERVER_UID; look as that user, so
        # the `docker exec` shell itself is not counted as a root process
        server_uid = sh("docker", "exec", container, "sh", "-c", "echo $FORECASTER_SERVER_UID").stdout.strip()
        assert server_uid not in ("", "0"), "the inference image must name an unprivileged FORECASTER_SERVER_UID"
        listing = "stat -c %u /proc/[0-9]*/ | sort -u"
        uids = sh("docker", "exec", "--user", server_uid, container, "sh", "-c", listing).stdout.split()
        assert uids == [server_uid], f"processes running as another user (root?): {uids}"
        status, body = exec_http(container, "/invocations", inference_case["csv"])
        assert status == 200, body[:500]
        expected = np.column_stack([inference_case["expected"], inference_case["expected_point"]])  # p10,p50,p90,mean
        np.testing.assert_allclose(parse_csv_predictions(body), expected, rtol=1e-9, atol=1e-9)
        # SIGTERM → gunicorn shuts down gracefully; exit 137 would mean it was ignored and SIGKILL was needed
        assert stop_and_exit_code(container) == 0
    finally:
        sh("docker", "rm", "-f", container, check=False)


@docker
def test_batch_transform_defaults_to_every_quantile_and_postprocess_takes_it(infer_image, model_dir, inference_case):
    # what SageMaker's CreateTransformJob sets in the container, and no custom attributes (a transform job
    # cannot send them): the answer must be p10,p50,p90,mean, which `forecaster postprocess` needs
    from forecaster.cli.main import main

    batch = ["-e", "SAGEMAKER_BATCH=True", "-e", "SAGEMAKER_BATCH_STRATEGY=MULTI_RECORD"]
    container = start_server(infer_image, model_dir, "--network", "none", *batch, "-e", "SAGEMAKER_MAX_PAYLOAD_IN_MB=6")
    try:
        deadline, status = time.monotonic() + 120, 0
        while status != 200 and time.monotonic() < deadline:
            status, _ = exec_http(container, "/ping")
            time.sleep(0.2)
        assert status == 200, sh("docker", "logs", container, check=False).stderr[-3000:]
        status, body = exec_http(container, "/invocations", inference_case["csv"])
    finally:
        sh("docker", "rm", "-f", container, check=False)
    assert status == 200, body[:500]
    folder = inference_case["folder"] / "batch"
    folder.mkdir()
    (folder / "features.csv.out").write_bytes(body)
    inference_case["keys"].to_csv(folder / "keys.csv", index=False)
    args = ["--keys", str(folder / "keys.csv"), "--predictions", str(folder / "features.csv.out")]
    assert main(["postprocess", *args, "--out", str(folder / "forecasts.csv")]) == 0
    forecasts = pd.read_csv(folder / "forecasts.csv")
    np.testing.assert_allclose(forecasts[["p10", "p50", "p90"]].to_numpy(), inference_case["expected"], rtol=1e-9)
