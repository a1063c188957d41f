"""Local batch transform: what SageMaker's ``CreateTransformJob`` does, against the real server process.

:func:`run_transform` starts ``forecaster serve`` on 127.0.0.1, asks ``/execution-parameters``, splits each input
file by line into MultiRecord mini-batches of at most ``MaxPayloadInMB``, posts them concurrently and writes
``<file>.out`` with one output line per input line, in input order (``SplitType=Line``, ``AssembleWith=Line``),
optionally joined with the input line (``JoinSource=Input``). As on SageMaker, a failed request fails its input
file (no ``.out`` is written for it) while the other files go on; failed files are reported at the end.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import mmap
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from forecaster import contract
from forecaster.container import layout
from forecaster.errors import DataValidationError, ForecasterError, ModelNotReadyError
from forecaster.io import atomic_path
from forecaster.params import Interval, Options, coerce
from forecaster.serving.environment import MB, MODEL_LOADED_LOG, WORKER_BOOTED_LOG
from forecaster.serving.media import CSV, JSONLINES

logger = logging.getLogger(__name__)

JOIN_CHOICES = ("none", "input")
#: Retries of a mini-batch after a connection error or a 5xx answer (``InvocationsMaxRetries`` default).
MAX_RETRIES = 3
_CALLER = "run_transform"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class HttpAnswer:
    """Status, body and content type of one HTTP answer."""

    status: int
    body: bytes
    content_type: str = ""


def http_request(
    port: int, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None, timeout=600.0
) -> HttpAnswer:
    """One HTTP request to 127.0.0.1:``port`` (a fresh connection: the sync workers close each one)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return HttpAnswer(response.status, response.read(), response.getheader("Content-Type", ""))
    finally:
        connection.close()


class ServerProcess:
    """``forecaster serve`` as a child process on 127.0.0.1 (a context manager: started, then SIGTERM'd)."""

    def __init__(
        self,
        model_dir: str | os.PathLike[str],
        *,
        port: int | None = None,
        workers: int | None = None,
        env: dict[str, str] | None = None,
        startup_timeout_s: float = 120.0,
    ) -> None:
        self.model_dir = Path(model_dir)
        self.port = port or free_port()
        self.workers = workers
        self.env = {**os.environ, **(env or {})}
        self.startup_timeout_s = startup_timeout_s
        self.process: subprocess.Popen[bytes] | None = None
        self._log = tempfile.NamedTemporaryFile(prefix="forecaster-serve-", suffix=".log", delete=False)  # noqa: SIM115

    def start(self) -> ServerProcess:
        """Start the server process (returns at once; see :meth:`wait_ready`)."""
        command = [sys.executable, "-m", "forecaster.cli.main", "serve", "--model-dir", str(self.model_dir)]
        command += ["--host", "127.0.0.1", "--port", str(self.port)]
        if self.workers:
            command += ["--workers", str(self.workers)]
        env = {**self.env, contract.SERVE_PARENT_PID_ENV: str(os.getpid())}  # it stops if this process dies
        self.process = subprocess.Popen(command, env=env, stdout=self._log, stderr=subprocess.STDOUT)
        return self

    def log_tail(self, n_chars: int = 3000) -> str:
        """The end of the server's log."""
        return Path(self._log.name).read_text(errors="replace")[-n_chars:]

    def wait_ready(self) -> float:
        """Poll ``/ping`` until it answers 200 and every worker started so far has loaded its model.

        ``/ping`` is answered by one worker at a time: a 200 from one worker says nothing of the others, so the
        server is ready when its log shows a loaded model per booted worker. Returns the seconds waited.

        Raises:
            ModelNotReadyError: when the server exits, its model fails to load, or it is not ready in time.
        """
        start = time.perf_counter()
        while time.perf_counter() - start < self.startup_timeout_s:
            if self.process is None or self.process.poll() is not None:
                raise ModelNotReadyError(f"The inference server exited during start-up. Its log:\n{self.log_tail()}")
            with contextlib.suppress(OSError):
                answer = http_request(self.port, "GET", "/ping", timeout=2.0)
                if answer.status == 200 and self._workers_loaded():
                    return time.perf_counter() - start
                if b"failed" in answer.body:
                    raise ModelNotReadyError(f"The server could not load the model. Its log:\n{self.log_tail()}")
            time.sleep(0.02)
        raise ModelNotReadyError(
            f"The inference server was not ready within {self.startup_timeout_s:.0f} s. Its log:\n{self.log_tail()}"
        )

    def _workers_loaded(self) -> bool:
        """Every worker the log says was booted has logged its loaded model."""
        log = Path(self._log.name).read_text(errors="replace")
        return log.count(MODEL_LOADED_LOG) >= log.count(WORKER_BOOTED_LOG)

    def stop(self, timeout_s: float = 30.0) -> int | None:
        """SIGTERM the server (graceful stop), SIGKILL it after ``timeout_s``; return its exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def __enter__(self) -> ServerProcess:
        self.start()
        try:
            self.wait_ready()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()
        self._log.close()
        Path(self._log.name).unlink(missing_ok=True)


def iter_batches(data: bytes | mmap.mmap, limit: int) -> Iterator[tuple[int, bytes]]:
    """Split ``data`` by line into MultiRecord mini-batches of at most ``limit`` bytes.

    Yields ``(first_line_number, batch)``; a batch is newline-joined records without a final newline. A final
    newline of the file ends the last record, it does not start an empty one.

    Raises:
        DataValidationError: when a single record is larger than ``limit``.
    """
    size, start, line = len(data), 0, 1
    if size and data[size - 1 : size] == b"\n":
        size -= 1
    while start < size:
        end = min(start + limit, size)
        if end < size:
            cut = data.rfind(b"\n", start, end + 1)
            if cut < 0:
                raise DataValidationError(
                    f"Line {line} is longer than the payload limit of {limit} bytes; a single record must fit in "
                    f"MaxPayloadInMB. Raise --max-payload-mb (at most {contract.MAX_PAYLOAD_CEILING_MB})."
                )
            end = cut
        batch = bytes(data[start:end])
        yield line, batch
        line += batch.count(b"\n") + 1
        start = end + 1


def _lines(body: bytes) -> list[bytes]:
    if body.endswith(b"\n"):
        body = body[:-1]
    return [line.rstrip(b"\r") for line in body.split(b"\n")]


def join_lines(inputs: list[bytes], outputs: list[bytes], accept: str) -> list[bytes]:
    """``JoinSource=Input``: CSV appends the output columns to the input row; JSON Lines adds ``SageMakerOutput``."""
    if accept == CSV:
        return [source + b"," + result for source, result in zip(inputs, outputs, strict=True)]
    joined = []
    for source, result in zip(inputs, outputs, strict=True):
        try:
            record = json.loads(source)
        except ValueError:
            record = source.decode("utf-8", errors="replace")
        output = json.loads(result)
        if isinstance(record, dict):
            joined.append(json.dumps({**record, "SageMakerOutput": output}).encode())
        else:
            joined.append(json.dumps({"SageMakerInput": record, "SageMakerOutput": output}).encode())
    return joined


@dataclass(frozen=True)
class _MiniBatchSender:
    """Posts the mini-batches of one transform to the local server (one instance shared by the worker threads)."""

    port: int
    content_type: str
    accept: str
    join_source: str

    def send(self, first_line: int, batch: bytes) -> bytes:
        """Post one mini-batch (retrying connection errors and 5xx); return its assembled output lines."""
        headers = {"Content-Type": self.content_type, "Accept": self.accept}
        for attempt in range(MAX_RETRIES + 1):
            try:
                answer = http_request(self.port, "POST", "/invocations", batch, headers)
            except OSError as error:
                answer = HttpAnswer(0, str(error).encode())
            if answer.status == 200 or 400 <= answer.status < 500 or attempt == MAX_RETRIES:
                break
            time.sleep(0.2 * 2**attempt)
        inputs = _lines(batch)
        if answer.status != 200:
            reason = answer.body.decode("utf-8", errors="replace").strip()
            with contextlib.suppress(ValueError, AttributeError):
                reason = json.loads(reason)["message"]
            error_class = DataValidationError if 400 <= answer.status < 500 else ForecasterError
            raise error_class(
                f"lines {first_line}-{first_line + len(inputs) - 1}: HTTP {answer.status or 'connection error'}: "
                f"{reason}"
            )
        outputs = _lines(answer.body)
        if len(outputs) != len(inputs):
            raise ForecasterError(
                f"lines {first_line}-{first_line + len(inputs) - 1}: the server answered {len(outputs)} lines for "
                f"{len(inputs)} records."
            )
        if self.join_source == "input":
            outputs = join_lines(inputs, outputs, self.accept)
        return b"\n".join(outputs) + b"\n"


def transform_file(
    source: Path, target: Path, sender: _MiniBatchSender, limit: int, executor: ThreadPoolExecutor, depth: int
) -> None:
    """Transform one input file into ``target`` (written atomically: nothing is left on failure)."""
    with open(source, "rb") as handle, atomic_path(target) as tmp, open(tmp, "wb") as out:
        if os.fstat(handle.fileno()).st_size == 0:
            return
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
            pending: deque[Future[bytes]] = deque()
            try:
                for first_line, batch in iter_batches(data, limit):
                    pending.append(executor.submit(sender.send, first_line, batch))
                    while len(pending) >= depth:
                        out.write(pending.popleft().result())
                while pending:
                    out.write(pending.popleft().result())
            finally:
                for future in pending:
                    future.cancel()


def input_files(path: Path) -> list[tuple[Path, Path]]:
    """(file, path relative to the input) for a file, or for every non-hidden file under a directory."""
    if path.is_file():
        return [(path, Path(path.name))]
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
        return [(file, file.relative_to(path)) for file in files]
    raise DataValidationError(f"Transform input {path} does not exist. Pass a file or a directory of files.")


def run_transform(
    model_dir: str | os.PathLike[str],
    input: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    max_payload_mb: int = contract.DEFAULT_MAX_PAYLOAD_MB,
    concurrency: int | None = None,
    join_source: str = "none",
    content_type: str = CSV,
    accept: str = CSV,
    quantiles: str | None = None,
    workers: int | None = None,
    environment: Mapping[str, str] | None = None,
) -> list[Path]:
    """Run a local batch transform and return the ``.out`` files written, in input order.

    Args:
        model_dir: the model artifact directory the server loads.
        input: a file or a directory of files (each file is one input object).
        output: directory for ``<relative path>.out`` files.
        max_payload_mb: ``MaxPayloadInMB`` (1 to the ceiling, 100): mini-batch size limit, also set on the server.
        concurrency: ``MaxConcurrentTransforms``; default: the server's ``/execution-parameters`` answer.
        join_source: ``none`` or ``input`` (``JoinSource=Input``).
        content_type: ``text/csv`` or ``application/jsonlines``.
        accept: ``text/csv`` or ``application/jsonlines``.
        quantiles: ``all`` (p10, p50, p90) or ``p50``: the server's default for these requests (default: the
            container's batch default, every quantile).
        workers: server worker processes (default: the concurrency, else the server's default).
        environment: the container environment of the model and the transform job (``CreateModel`` /
            ``CreateTransformJob`` ``Environment``); the batch variables are set on top, as SageMaker does.

    Raises:
        InvalidParameterError: for an invalid argument.
        DataValidationError: when input files failed (their requests got 4xx); the other files are written.
        ForecasterError: when the server failed to start or answered 5xx.
    """
    max_payload_mb = coerce(
        "max_payload_mb", max_payload_mb, [Interval(int, 1, contract.MAX_PAYLOAD_CEILING_MB)], _CALLER
    )
    if concurrency is not None:
        concurrency = coerce(
            "concurrency", concurrency, [Interval(int, 1, contract.MAX_CONCURRENT_TRANSFORMS)], _CALLER
        )
    join_source = coerce("join_source", join_source, [Options(JOIN_CHOICES)], _CALLER)
    content_type = coerce("content_type", content_type, [Options((CSV, JSONLINES))], _CALLER)
    accept = coerce("accept", accept, [Options((CSV, JSONLINES))], _CALLER)
    files = input_files(Path(input))
    env = {
        **(environment or {}),
        layout.BATCH_ENV: "true",
        layout.MAX_PAYLOAD_ENV: str(max_payload_mb),
        layout.BATCH_STRATEGY_ENV: "MULTI_RECORD",
    }
    if quantiles is not None:
        env[contract.DEFAULT_QUANTILES_ENV] = coerce(
            "quantiles", quantiles, [Options(contract.QUANTILE_CHOICES)], _CALLER
        )
    if concurrency is not None:
        env[layout.MAX_CONCURRENT_TRANSFORMS_ENV] = str(concurrency)
    written, failures = [], []
    with ServerProcess(model_dir, workers=workers or concurrency, env=env) as server:
        parameters = json.loads(http_request(server.port, "GET", "/execution-parameters").body)
        concurrency = concurrency or int(parameters["MaxConcurrentTransforms"])
        sender = _MiniBatchSender(server.port, content_type, accept, join_source)
        with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="transform") as executor:
            for source, relative in files:
                target = Path(output) / relative.with_name(relative.name + ".out")
                try:
                    transform_file(source, target, sender, max_payload_mb * MB, executor, depth=2 * concurrency)
                except ForecasterError as error:
                    logger.error("Batch transform of %s failed: %s", source, error.reason)
                    failures.append((source, error))
                    continue
                written.append(target)
    if failures:
        message = "; ".join(f"{source}: {error.reason}" for source, error in failures)
        error_class = (
            DataValidationError if all(isinstance(e, DataValidationError) for _, e in failures) else ForecasterError
        )
        raise error_class(f"Batch transform failed for {len(failures)} of {len(files)} input files: {message}")
    return written
