"""The serving environment: every variable the server reads, read once into a read-only object.

SageMaker configures the container through environment variables (``CreateModel``/``CreateTransformJob``
``Environment`` plus the batch variables ``SAGEMAKER_MAX_PAYLOAD_IN_MB``, ``SAGEMAKER_BATCH_STRATEGY`` and
``SAGEMAKER_MAX_CONCURRENT_TRANSFORMS``). :meth:`ServingEnvironment.from_env` validates them with the project's
parameter constraints, so a typo ends as a clear error at start-up instead of a surprise under load.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from forecaster.container import layout
from forecaster.container.layout import DEFAULT_MODEL_DIR, DEFAULT_PORT
from forecaster.contract import (
    ALL_QUANTILES,
    DEFAULT_MAX_PAYLOAD_MB,
    DEFAULT_QUANTILES_ENV,
    MAX_CONCURRENT_TRANSFORMS,
    MAX_PAYLOAD_CEILING_MB,
    MEDIAN_ONLY,
    QUANTILE_CHOICES,
)
from forecaster.params import Boolean, Interval, Options, coerce

#: 1 MB as SageMaker counts ``MaxPayloadInMB`` (binary megabytes).
MB = 1024 * 1024
#: the server log's line when a worker has loaded its model (``/ping`` answers per worker: 200 once its model is in)
MODEL_LOADED_LOG = "Model loaded from"
#: gunicorn's log line when it starts a worker
WORKER_BOOTED_LOG = "Booting worker with pid"
#: Extra bytes allowed on top of ``MaxPayloadInMB``: the limit counts records only, the body is slightly larger.
BODY_HEADROOM_BYTES = 256 * 1024

#: Gunicorn worker timeout: at least batch transform's default ``InvocationsTimeoutInSeconds`` (600 s).
DEFAULT_TIMEOUT_S = 600

_CALLER = "the inference server (environment)"


def _read(environ: Mapping[str, str], name: str, constraint: Any, default: Any) -> Any:
    raw = environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    return coerce(name, raw, [constraint], _CALLER)


@dataclass(frozen=True)
class ServingEnvironment:
    """Read-only serving settings.

    Attributes:
        model_dir: directory holding the model artifact (``/opt/ml/model`` in the container).
        host: address gunicorn binds to.
        port: port gunicorn binds to (8080 on SageMaker).
        workers: gunicorn worker processes (each loads its own model).
        timeout_s: gunicorn worker timeout in seconds.
        max_payload_mb: largest request body in MB (SageMaker's ``MaxPayloadInMB``); 0 means unlimited.
        max_concurrent_transforms: ``SAGEMAKER_MAX_CONCURRENT_TRANSFORMS`` when set, else None.
        batch_strategy: ``MULTI_RECORD`` or ``SINGLE_RECORD``.
        default_quantiles: ``p50`` (one column) or ``all`` (p10, p50, p90) when a request does not say;
            ``all`` in a batch transform (``SAGEMAKER_BATCH``), which cannot send custom attributes.
        cpu_count: CPUs available to this process.
        omp_threads: ``OMP_NUM_THREADS`` when set (its first level, of OpenMP's ``2,1``), else None.
    """

    model_dir: Path = Path(DEFAULT_MODEL_DIR)
    host: str = "0.0.0.0"
    port: int = DEFAULT_PORT
    workers: int = 1
    timeout_s: int = DEFAULT_TIMEOUT_S
    max_payload_mb: int = DEFAULT_MAX_PAYLOAD_MB
    max_concurrent_transforms: int | None = None
    batch_strategy: str = "MULTI_RECORD"
    default_quantiles: str = MEDIAN_ONLY
    cpu_count: int = 1
    omp_threads: int | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> ServingEnvironment:
        """Build the settings from ``environ`` (default ``os.environ``); ``overrides`` (CLI flags) win.

        Variables: ``SAGEMAKER_MODEL_SERVER_WORKERS`` (default: ``SAGEMAKER_MAX_CONCURRENT_TRANSFORMS`` when
        set, else the CPU count), ``SAGEMAKER_MODEL_SERVER_TIMEOUT`` (600), ``SAGEMAKER_MAX_PAYLOAD_IN_MB`` (6),
        ``SAGEMAKER_MAX_CONCURRENT_TRANSFORMS``, ``SAGEMAKER_BATCH_STRATEGY`` (``MULTI_RECORD``),
        ``SAGEMAKER_BIND_TO_PORT`` (8080), ``SM_MODEL_DIR`` (``/opt/ml/model``), ``OMP_NUM_THREADS`` and
        ``FORECASTER_DEFAULT_QUANTILES`` (``p50`` or ``all``; default ``all`` when ``SAGEMAKER_BATCH`` is true,
        else ``p50``).

        Raises:
            InvalidParameterError: naming the variable, what it must be and what it got.
        """
        environ = os.environ if environ is None else environ
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        concurrent = _read(
            environ, layout.MAX_CONCURRENT_TRANSFORMS_ENV, Interval(int, 1, MAX_CONCURRENT_TRANSFORMS), None
        )
        batch = _read(environ, layout.BATCH_ENV, Boolean(), False)
        first_level = {layout.OMP_THREADS_ENV: environ.get(layout.OMP_THREADS_ENV, "").split(",")[0]}  # OpenMP's 2,1
        values = {
            "model_dir": Path(environ.get(layout.MODEL_DIR_ENV) or DEFAULT_MODEL_DIR),
            "port": _read(environ, layout.BIND_TO_PORT_ENV, Interval(int, 1, 65535), DEFAULT_PORT),
            "workers": _read(environ, layout.MODEL_SERVER_WORKERS_ENV, Interval(int, 1, 256), concurrent or cpus),
            "timeout_s": _read(environ, layout.MODEL_SERVER_TIMEOUT_ENV, Interval(int, 1, 86400), DEFAULT_TIMEOUT_S),
            "max_payload_mb": _read(
                environ, layout.MAX_PAYLOAD_ENV, Interval(int, 0, MAX_PAYLOAD_CEILING_MB), DEFAULT_MAX_PAYLOAD_MB
            ),
            "max_concurrent_transforms": concurrent,
            "batch_strategy": _read(
                environ, layout.BATCH_STRATEGY_ENV, Options(("MULTI_RECORD", "SINGLE_RECORD")), "MULTI_RECORD"
            ),
            "default_quantiles": _read(
                {DEFAULT_QUANTILES_ENV: environ.get(DEFAULT_QUANTILES_ENV, "").strip().lower()},
                DEFAULT_QUANTILES_ENV,
                Options(QUANTILE_CHOICES),
                ALL_QUANTILES if batch else MEDIAN_ONLY,
            ),
            "cpu_count": cpus,
            "omp_threads": _read(first_level, layout.OMP_THREADS_ENV, Interval(int, 1, 1024), None),
        }
        overrides = {key: value for key, value in overrides.items() if value is not None}
        if "workers" in overrides:
            overrides["workers"] = coerce("--workers", overrides["workers"], [Interval(int, 1, 256)], "serve")
        if "port" in overrides:
            overrides["port"] = coerce("--port", overrides["port"], [Interval(int, 0, 65535)], "serve")
        values.update(overrides)
        values["model_dir"] = Path(values["model_dir"])
        return cls(**values)

    @property
    def body_limit_bytes(self) -> int | None:
        """Largest accepted request body: ``MaxPayloadInMB`` plus headroom; None when unlimited."""
        return None if self.max_payload_mb == 0 else self.max_payload_mb * MB + BODY_HEADROOM_BYTES

    @property
    def threads_per_worker(self) -> int:
        """LightGBM threads per worker: ``OMP_NUM_THREADS``, else so that all workers together use the CPUs once."""
        return self.omp_threads or max(1, self.cpu_count // self.workers)

    def execution_parameters(self) -> dict[str, Any]:
        """The ``/execution-parameters`` answer: what batch transform should send this server.

        ``MaxConcurrentTransforms`` is the number of workers (one request each), capped so that
        ``MaxConcurrentTransforms × MaxPayloadInMB ≤ 100`` as SageMaker requires.
        """
        concurrent = self.max_concurrent_transforms or self.workers
        if self.max_payload_mb > 0:
            concurrent = min(concurrent, max(1, MAX_PAYLOAD_CEILING_MB // self.max_payload_mb))
        return {
            "MaxConcurrentTransforms": max(1, min(concurrent, MAX_CONCURRENT_TRANSFORMS)),
            "BatchStrategy": self.batch_strategy,
            "MaxPayloadInMB": self.max_payload_mb,
        }
