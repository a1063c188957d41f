"""Start a pipeline and watch it, locally or on SageMaker.

``local`` runs the local runner in a subprocess; ``sagemaker`` uses the Amazon provider's
``SageMakerStartPipelineOperator`` and ``SageMakerPipelineSensor``.

Both return the same run description (the ``start_pipeline`` task's XCom)::

    {"backend": "local"|"sagemaker", "pipeline": "inference", "execution": run id or execution ARN,
     "outputs": where the steps' outputs are, "parameters": {...}}

and :func:`output` says where a step's output is, whichever backend ran it.
"""

from __future__ import annotations

import logging
import re
import subprocess
from collections import deque
from collections.abc import Mapping
from typing import Any

from forecaster.errors import ForecasterError, PipelineStepError
from forecaster.io import read_json
from forecaster.orchestration.config import OrchestrationConfig
from forecaster.orchestration.storage import join
from forecaster.pipelines.catalog import PIPELINES

log = logging.getLogger(__name__)
#: SageMaker states of a finished execution that did not succeed (the provider's sensor fails only on Failed)
_UNSUCCESSFUL = ("Failed", "Stopped")


def local_command(config: OrchestrationConfig, key: str, workdir: str, params: Mapping[str, str]) -> list[str]:
    """The ``forecaster pipeline run <key> --local`` command line the local backend runs."""
    command = [config.forecaster_cli, "pipeline", "run", key, "--local", "--workdir", workdir, "--no-progress"]
    command += ["--registry", config.registry_url, "--group", config.group]
    for name, value in params.items():
        command += ["--param", f"{name}={value}"]
    return command


def _start_local(config: OrchestrationConfig, key: str, workdir: str, params: Mapping[str, str]) -> dict[str, Any]:
    command = local_command(config, key, workdir, params)
    log.info("running %s", " ".join(command))
    tail: deque[str] = deque(maxlen=20)
    try:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    except OSError as error:
        raise PipelineStepError(
            f"Cannot run the local pipeline runner {config.forecaster_cli!r}: {error}. Set 'forecaster_cli' in the "
            "forecaster_config Variable to the forecaster executable (e.g. /opt/forecaster/.venv/bin/forecaster)."
        ) from None
    assert process.stdout is not None
    for line in process.stdout:
        log.info("%s", line.rstrip())
        tail.append(line.rstrip())
    code = process.wait()
    record = _record(workdir)
    if code != 0:
        reason = record.get("failure_reason") or next((t for t in reversed(tail) if t.strip()), "")
        raise PipelineStepError(f"The local {key} pipeline failed (exit code {code}): {reason}")
    return {"execution": record.get("run_id", ""), "outputs": workdir}


def local_record(run: Mapping[str, Any]) -> dict[str, Any]:
    """The local runner's ``run.json`` of a run started by the local backend."""
    return _record(run["outputs"])


def _record(workdir: str) -> dict[str, Any]:
    try:
        return read_json(join(workdir, "run.json"))
    except ForecasterError:
        return {}


def start(
    config: OrchestrationConfig,
    key: str,
    params: Mapping[str, str],
    *,
    workdir: str,
    label: str = "airflow",
    context: Any = None,
) -> dict[str, Any]:
    """Start pipeline ``key`` with ``params``; return the run description (see the module docstring).

    ``workdir`` is the local run's work directory (local backend), ``label`` names a SageMaker execution.
    The local backend runs the pipeline to its end here; the SageMaker backend starts an execution of the
    upserted pipeline and returns at once.
    """
    params = {name: str(value) for name, value in params.items()}
    if config.backend == "local":
        started = _start_local(config, key, workdir, params)
    else:
        from airflow.providers.amazon.aws.operators.sagemaker import SageMakerStartPipelineOperator

        params.setdefault("OutputPrefix", str(PIPELINES[key].defaults()["OutputPrefix"]))
        name = config.pipeline_name(key)
        operator = SageMakerStartPipelineOperator(
            task_id="start_pipeline_execution",
            pipeline_name=name,
            display_name=re.sub(r"[^a-zA-Z0-9]+", "-", label)[:82].strip("-") or "airflow",
            pipeline_params=params,
            aws_conn_id=config.aws_conn_id,
            region_name=config.region,
        )
        arn = operator.execute(context)
        started = {"execution": arn, "outputs": join(params["OutputPrefix"], arn.rsplit("/", 1)[-1])}
        log.info("started %s: %s", name, arn)
    return {"backend": config.backend, "pipeline": key, "parameters": params, **started}


def poke(config: OrchestrationConfig, run: Mapping[str, Any], context: Any = None) -> bool:
    """Whether the run has finished successfully; raises :class:`PipelineStepError` when it failed."""
    if run["backend"] == "local":
        record = _record(run["outputs"])
        status = record.get("status", "missing")
        if status == "Succeeded":
            return True
        raise PipelineStepError(
            f"The local {run['pipeline']} run in {run['outputs']} is {status}: {record.get('failure_reason', '')}"
        )
    from airflow.providers.amazon.aws.sensors.sagemaker import SageMakerPipelineSensor

    sensor = SageMakerPipelineSensor(
        task_id="pipeline_execution_sensor",
        pipeline_exec_arn=run["execution"],
        verbose=False,
        aws_conn_id=config.aws_conn_id,
        region_name=config.region,
    )
    try:
        if not sensor.poke(context):
            return False
    except Exception as error:  # the provider raises AirflowException with the failure reason
        raise PipelineStepError(f"SageMaker pipeline execution {run['execution']} failed: {error}") from None
    response = sensor.hook.describe_pipeline_exec(run["execution"])
    status = response.get("PipelineExecutionStatus")
    if status in _UNSUCCESSFUL:
        raise PipelineStepError(
            f"SageMaker pipeline execution {run['execution']} is {status}: {response.get('FailureReason') or ''}"
        )
    return True


def output(run: Mapping[str, Any], step: str, name: str) -> str:
    """Where output ``name`` of ``step`` of the run is (a local folder or an S3 prefix)."""
    if run["backend"] == "local":
        return join(run["outputs"], step, "output", name)
    return join(run["outputs"], step, name)
