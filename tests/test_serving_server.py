"""The real server: `forecaster serve` (gunicorn + flask) as a child process on 127.0.0.1."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from forecaster.serving.environment import MB
from forecaster.serving.transform import http_request
from serving_helpers import all_columns, csv_lines, repeat_to_size, slow_load_env, to_csv
from test_serving_app import ACCEPTS, ATTRIBUTES, CONTENT_TYPES, csv_bodies

pytest_plugins = ["serving_helpers"]
pytestmark = pytest.mark.slow

CSV = {"Content-Type": "text/csv"}


@pytest.fixture(scope="module")
def server(serving_model_dir):
    """One shared server (2 workers, 100 MB payload limit) for the tests that do not need their own."""
    from forecaster.serving.transform import ServerProcess

    with ServerProcess(serving_model_dir, workers=2, env={"SAGEMAKER_MAX_PAYLOAD_IN_MB": "100"}) as process:
        yield process


def invoke(port, body, headers=None):
    return http_request(port, "POST", "/invocations", body, {**CSV, **(headers or {})})


def test_ping_invocations_and_execution_parameters(server, serving_model, feature_rows):
    assert http_request(server.port, "GET", "/ping").status == 200
    answer = invoke(server.port, to_csv(feature_rows), {"X-Amzn-SageMaker-Custom-Attributes": "quantiles=all"})
    assert answer.status == 200 and answer.content_type.startswith("text/csv")
    assert np.array_equal(np.array(csv_lines(answer.body)), all_columns(serving_model, feature_rows))
    parameters = json.loads(http_request(server.port, "GET", "/execution-parameters").body)
    assert parameters == {"MaxConcurrentTransforms": 1, "BatchStrategy": "MULTI_RECORD", "MaxPayloadInMB": 100}


@pytest.mark.parametrize("size_mb", [6, 100])
def test_large_multirecord_bodies(server, serving_model, feature_rows, size_mb):
    body, index = repeat_to_size(feature_rows, size_mb * MB)
    assert size_mb * MB - 4000 <= len(body) <= size_mb * MB
    answer = invoke(server.port, body)
    assert answer.status == 200, answer.body[:300]
    assert answer.body.count(b"\n") == len(index)
    got = np.array(answer.body.split(), dtype=float)
    assert np.array_equal(got, serving_model.predict(feature_rows)[index, 1])


def test_body_over_the_limit_is_413_and_the_worker_lives_on(server, feature_rows):
    body = b"1" * (101 * MB)
    answer = invoke(server.port, body)
    assert answer.status == 413
    assert "accepts at most" in json.loads(answer.body)["message"]
    assert invoke(server.port, to_csv(feature_rows)).status == 200


def test_default_limit_is_6_mb(start_server, feature_rows):
    server = start_server(workers=1)
    assert invoke(server.port, repeat_to_size(feature_rows, 6 * MB)[0]).status == 200
    assert invoke(server.port, repeat_to_size(feature_rows, 7 * MB)[0]).status == 413


@pytest.mark.parametrize(
    ("body", "headers", "status", "match"),
    [
        (b"", {}, 400, "body is empty"),
        (b"horizon,weekday\n1,2", {}, 400, "row 1 looks like a header"),
        (b"1,2,3", {}, 400, "CSV row 1 has 3 fields; the model expects"),
        (None, {}, 400, r"row 2, column 2 \(weekday\): 'monday' is not a number"),
        (b"1", {"Content-Type": "application/octet-stream"}, 415, "not supported"),
        (b"1", {"Accept": "application/xml"}, 406, "names no type"),
    ],
)
def test_errors_through_the_real_server(server, feature_rows, body, headers, status, match):
    if body is None:
        good = to_csv(feature_rows[:1]).decode().strip().split(",")
        bad = [good[0], "monday", *good[2:]]
        body = (",".join(good) + "\n" + ",".join(bad)).encode()
    answer = invoke(server.port, body, headers)
    assert answer.status == status
    assert pytest.importorskip("re").search(match, json.loads(answer.body)["message"])


def test_concurrent_requests_each_get_their_own_answer(server, serving_model, feature_rows):
    batches = [feature_rows[i : i + 7] for i in range(0, len(feature_rows), 7)]
    bad = b"1,2\n"

    def call(index):
        body = bad if index % 4 == 3 else to_csv(batches[index % len(batches)])
        return index, invoke(server.port, body, {"X-Amzn-SageMaker-Custom-Attributes": "quantiles=all"})

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(call, range(48)))
    for index, answer in results:
        if index % 4 == 3:
            assert answer.status == 400
        else:
            rows = batches[index % len(batches)]
            assert np.array_equal(np.array(csv_lines(answer.body)), all_columns(serving_model, rows))


def test_ping_is_503_while_the_model_loads_then_200(start_server, tmp_path, serving_model, feature_rows):
    server = start_server(env=slow_load_env(tmp_path, 4.0), workers=1, wait=False)
    deadline = time.monotonic() + 60
    statuses = []
    while time.monotonic() < deadline:
        try:
            status = http_request(server.port, "GET", "/ping", timeout=2).status
        except OSError:
            time.sleep(0.05)
            continue
        statuses.append(status)
        if status == 200:
            break
        time.sleep(0.05)
    assert statuses[0] == 503 and statuses[-1] == 200, statuses
    answer = invoke(server.port, to_csv(feature_rows[:3]))
    assert np.array_equal(np.array(csv_lines(answer.body))[:, 0], serving_model.predict(feature_rows[:3])[:, 1])


@pytest.mark.parametrize("broken", ["missing", "cut-short"])
def test_a_broken_model_pings_503_and_explains_on_invocations(
    start_server, tmp_path, serving_model_dir, feature_rows, broken
):
    """A booster file cut short (a partial copy) once aborted every worker inside LightGBM, restarting for ever."""
    model_dir = tmp_path / broken
    if broken == "cut-short":
        shutil.copytree(serving_model_dir, model_dir)
        booster = model_dir / "model_mean.txt"
        booster.write_bytes(booster.read_bytes()[: booster.stat().st_size // 2])
    server = start_server(model_dir, workers=1, wait=False)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            ping = http_request(server.port, "GET", "/ping", timeout=2)
        except OSError:
            time.sleep(0.05)
            continue
        if b"failed" in ping.body:
            break
        time.sleep(0.05)
    assert ping.status == 503 and ping.body == b"model failed\n"
    answer = invoke(server.port, to_csv(feature_rows[:1]))
    message = json.loads(answer.body)["message"]
    assert answer.status == 503 and "could not be loaded" in message
    if broken == "cut-short":
        assert "model_mean.txt is cut short" in message
    assert server.process.poll() is None  # the server stays up and keeps answering
    assert "SIGSEGV" not in Path(server._log.name).read_text() and "SIGABRT" not in Path(server._log.name).read_text()


def test_sigterm_stops_gracefully_finishing_the_request_in_flight(start_server, feature_rows):
    server = start_server(workers=1, env={"SAGEMAKER_MAX_PAYLOAD_IN_MB": "100"})
    body, index = repeat_to_size(feature_rows, 20 * MB)
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(invoke, server.port, body)
        time.sleep(0.5)
        server.process.send_signal(signal.SIGTERM)
        answer = future.result(timeout=120)
    assert answer.status == 200 and answer.body.count(b"\n") == len(index)
    assert server.process.wait(timeout=30) == 0
    assert "Shutting down" in server.log_tail()


@settings(max_examples=250, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(data=st.data())
def test_fuzz_through_gunicorn_never_5xx(server, serving_model, feature_rows, data):
    body = data.draw(st.one_of(csv_bodies(feature_rows), st.binary(max_size=100)))
    headers = {"Content-Type": data.draw(CONTENT_TYPES)}
    for name, strategy in (("Accept", ACCEPTS), ("X-Amzn-SageMaker-Custom-Attributes", ATTRIBUTES)):
        value = data.draw(strategy)
        if value is not None:
            headers[name] = value
    answer = invoke(server.port, body, headers)
    assert answer.status in (200, 400, 406, 413, 415), answer.body[:300]
    good = invoke(server.port, to_csv(feature_rows[:2]))
    assert np.array_equal(np.array(csv_lines(good.body))[:, 0], serving_model.predict(feature_rows[:2])[:, 1])


def test_no_worker_died_or_restarted_during_the_module(server):
    log = server.log_tail(10**7)
    assert log.count("Booting worker with pid") == 2, log[-3000:]
    assert "Traceback" not in log and "WORKER TIMEOUT" not in log


@pytest.mark.parametrize(("variable", "value"), [("SAGEMAKER_MAX_PAYLOAD_IN_MB", "lots"), ("OMP_NUM_THREADS", "0")])
def test_invalid_environment_stops_serve_with_a_clear_message(serving_model_dir, variable, value):
    """OMP_NUM_THREADS=0 once made every worker fail to boot on a bare ValueError (gunicorn exit 3)."""
    completed = subprocess.run(
        [sys.executable, "-m", "forecaster.cli.main", "serve", "--model-dir", str(serving_model_dir)],
        env={**os.environ, variable: value},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 2
    assert f"The '{variable}' parameter of the inference server (environment) must be" in completed.stderr


def test_openmp_thread_lists_and_an_empty_value_serve(start_server, serving_model, feature_rows):
    """OpenMP's nested list '2,1' takes its first level; an empty value is unset (both once stopped the workers)."""
    for value in ("2,1", ""):
        server = start_server(env={"OMP_NUM_THREADS": value}, workers=1)
        assert invoke(server.port, to_csv(feature_rows[:2])).status == 200
        server.stop()


def _raw_exchange(port: int, request: bytes) -> tuple[int, bytes]:
    """Send ``request`` bytes as they are, half-close, and return (status, body) of the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
        connection.sendall(request)
        connection.shutdown(socket.SHUT_WR)
        answer = b""
        while data := connection.recv(65536):
            answer += data
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body


def test_a_body_that_cannot_be_read_whole_is_400_not_500_nor_scored(server, feature_rows):
    """A bad chunk size was a 500 (a bug, by the docs); a body cut short of its Content-Length was scored: 200."""
    start = b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\nConnection: close\r\n"
    status, body = _raw_exchange(server.port, start + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n")
    assert status == 400 and "could not be read (InvalidChunkSize" in json.loads(body)["message"]
    rows = to_csv(feature_rows[:3])
    first_row = rows[: rows.index(b"\n") + 1]
    status, body = _raw_exchange(server.port, start + b"Content-Length: %d\r\n\r\n" % len(rows) + first_row)
    assert status == 400 and f"has {len(first_row)} bytes, fewer than its Content-Length" in json.loads(body)["message"]


def test_a_request_past_the_worker_timeout_is_logged_naming_the_setting(start_server, tmp_path, feature_rows):
    """gunicorn's own line says 'Perhaps out of memory?'; the log now names SAGEMAKER_MODEL_SERVER_TIMEOUT."""
    env = {**slow_load_env(tmp_path, 0.0, predict_seconds=6.0), "SAGEMAKER_MODEL_SERVER_TIMEOUT": "2"}
    server = start_server(env=env, workers=1)
    assert invoke(server.port, to_csv(feature_rows[:1])).status == 500  # gunicorn stops the worker mid-request
    deadline = time.monotonic() + 10
    while "SAGEMAKER_MODEL_SERVER_TIMEOUT" not in server.log_tail() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "A request ran longer than 2 s (SAGEMAKER_MODEL_SERVER_TIMEOUT)" in server.log_tail()


def test_the_local_transforms_server_stops_when_the_process_that_started_it_is_killed(serving_model_dir, tmp_path):
    """A local runner killed with SIGKILL (an Airflow worker's OOM kill) left its inference server running."""
    script = (
        "import sys, time\n"
        "from forecaster.serving.transform import ServerProcess\n"
        f"server = ServerProcess({str(serving_model_dir)!r}, workers=1).start()\n"
        "server.wait_ready()\n"
        "print(server.process.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        server_pid = int(parent.stdout.readline())
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=30)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                os.kill(server_pid, 0)
            except ProcessLookupError:
                break
            if Path(f"/proc/{server_pid}/stat").read_text().split()[2] == "Z":  # gone, not reaped yet
                break
            time.sleep(0.2)
        else:
            os.kill(server_pid, signal.SIGKILL)
            pytest.fail("the server outlived the process that started it")
    finally:
        parent.kill()
