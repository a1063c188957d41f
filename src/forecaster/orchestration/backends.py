"""Run a pipeline locally, or find out what a SageMaker pipeline execution ran with and registered.

``local`` runs the local runner in a subprocess (:func:`run_local`). On ``sagemaker`` the DAG's own tasks start
and watch the execution (the Amazon provider's operator and sensor, :mod:`forecaster.orchestration.operators`);
the functions here read the execution back through a boto3 SageMaker client (``SageMakerHook(...).conn``).

Both backends give the same run description (what ``deliver``, ``collect_decision`` and ``review_model`` read)::

    {"backend": "local"|"sagemaker", "pipeline": "inference", "execution": run id or execution ARN,
     "outputs": where the steps' outputs are, "parameters": {...} (what the run ran with, defaults included)}

and :func:`output` says where a step's output is, whichever backend ran it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import subprocess
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from forecaster.contract import RUN_FILE
from forecaster.errors import InvalidParameterError, PipelineStepError
from forecaster.orchestration.config import OrchestrationConfig
from forecaster.orchestration.storage import join

log = logging.getLogger(__name__)
#: the step of the model-build pipeline that registers the model package
REGISTER_STEP = "RegisterModel"
#: seconds a stopped local runner gets to stop its steps and write its run record before it is killed
STOP_GRACE_S = 60


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
    try:
        for line in process.stdout:
            log.info("%s", line.rstrip())
            tail.append(line.rstrip())
        code = process.wait()
    except BaseException:  # the task's timeout, a kill from Airflow: the runner stops too (it marks its run Stopped)
        _stop(process)
        raise
    record = _record(workdir)
    if code != 0:
        reason = record.get("failure_reason") or next((t for t in reversed(tail) if t.strip()), "")
        raise PipelineStepError(f"The local {key} pipeline failed (exit code {code}): {reason}")
    return {"execution": record.get("run_id", ""), "outputs": workdir}


def _stop(process: subprocess.Popen[str]) -> None:
    """SIGTERM, then SIGKILL after ``STOP_GRACE_S``: a runner left behind would finish (and register) unseen."""
    process.terminate()
    try:
        process.wait(timeout=STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    log.warning("stopped the local pipeline runner (pid %d, exit code %s)", process.pid, process.returncode)


def local_record(run: Mapping[str, Any]) -> dict[str, Any]:
    """The local runner's ``run.json`` of a run started by the local backend."""
    return _record(run["outputs"])


def _record(workdir: str) -> dict[str, Any]:
    try:
        return json.loads(Path(workdir, RUN_FILE).read_text())
    except (OSError, ValueError):
        return {}


def run_local(config: OrchestrationConfig, key: str, params: Mapping[str, Any], *, workdir: str) -> dict[str, Any]:
    """Run pipeline ``key`` locally to its end in ``workdir``; return the run description (see the module doc).

    Raises:
        PipelineStepError: when the runner cannot start or the run fails (with the runner's reason).
    """
    params = {name: str(value) for name, value in params.items()}
    started = _start_local(config, key, workdir, params)
    record = _record(workdir)
    if record.get("status") != "Succeeded":
        raise PipelineStepError(
            f"The local {key} run in {workdir} is {record.get('status', 'missing')}: {record.get('failure_reason', '')}"
        )
    return {"backend": "local", "pipeline": key, "parameters": params, **started}


def request_token(dag_id: str, run_id: str) -> str:
    """The ``ClientRequestToken`` of the pipeline execution of one DAG run (the same on every try)."""
    return hashlib.sha256(f"{dag_id}/{run_id}".encode()).hexdigest()[:48]


def display_name(dag_id: str, run_id: str) -> str:
    """The execution's display name: readable, and unique per DAG run (it ends with the token's first 12 hex)."""
    readable = re.sub(r"[^a-zA-Z0-9]+", "-", f"{dag_id}-{run_id}").strip("-")[:69]
    return f"{readable}-{request_token(dag_id, run_id)[:12]}"


def find_execution(client: Any, pipeline: str, name: str) -> str | None:
    """The ARN of the execution of ``pipeline`` with display name ``name`` (started by an earlier try), or None."""
    kwargs: dict[str, Any] = {"PipelineName": pipeline, "SortBy": "CreationTime", "SortOrder": "Descending"}
    while True:
        page = client.list_pipeline_executions(**kwargs)
        for summary in page.get("PipelineExecutionSummaries", []):
            if summary.get("PipelineExecutionDisplayName") == name:
                return summary["PipelineExecutionArn"]
        if not page.get("NextToken"):
            return None
        kwargs["NextToken"] = page["NextToken"]


def start_once(client: Any, pipeline: str, name: str, token: str, params: Mapping[str, Any] | None) -> str:
    """Start ``pipeline`` unless an execution named ``name`` exists; return the execution ARN.

    Retries of a DAG run find the execution the first try started (SageMaker also dedupes on ``token``; moto,
    the offline oracle of the tests, does not, so the lookup is what makes a retry safe there too).
    """
    found = find_execution(client, pipeline, name)
    if found:
        log.info("execution %s of %s was started by an earlier try: %s", name, pipeline, found)
        return found
    parameters = [{"Name": key, "Value": str(value)} for key, value in (params or {}).items()]
    response = client.start_pipeline_execution(
        PipelineName=pipeline,
        PipelineExecutionDisplayName=name,
        PipelineParameters=parameters,
        ClientRequestToken=token,
    )
    log.info("started %s: %s", pipeline, response["PipelineExecutionArn"])
    return response["PipelineExecutionArn"]


def _defaults(definition: str | Mapping[str, Any]) -> dict[str, str]:
    document = json.loads(definition) if isinstance(definition, str) else definition
    return {p["Name"]: str(p["DefaultValue"]) for p in document.get("Parameters", []) if "DefaultValue" in p}


def deployed_parameters(client: Any, pipeline: str) -> dict[str, str]:
    """The parameter defaults of the deployed pipeline (what the deploy repository pinned).

    Raises:
        InvalidParameterError: when no pipeline of that name exists (a configuration error: no retry fixes it).
    """
    try:
        definition = client.describe_pipeline(PipelineName=pipeline)["PipelineDefinition"]
    except Exception as error:  # botocore's ClientError; not imported here (boto3 is the sagemaker backend's)
        details = getattr(error, "response", {}).get("Error", {})
        missing = details.get("Code") == "ResourceNotFound" or (  # SageMaker's code; moto's is a validation error
            details.get("Code") == "ValidationException" and "not find" in details.get("Message", "")
        )
        if missing:
            raise InvalidParameterError(
                f"No SageMaker pipeline {pipeline!r} in this account and region: deploy it (`forecaster pipeline "
                "upsert`, the deploy repository) or set its name in the forecaster_config Variable's "
                "'pipeline_names'."
            ) from None
        raise
    return _defaults(definition)


def execution_parameters(client: Any, arn: str) -> dict[str, str]:
    """What execution ``arn`` ran with: its definition's defaults, overridden by the parameters it was started with."""
    definition = client.describe_pipeline_definition_for_execution(PipelineExecutionArn=arn)["PipelineDefinition"]
    given = client.list_pipeline_parameters_for_execution(PipelineExecutionArn=arn).get("PipelineParameters", [])
    return {**_defaults(definition), **{p["Name"]: str(p["Value"]) for p in given}}


def failed_steps(client: Any, arn: str) -> str:
    """``step Train: <reason>; …`` of execution ``arn``'s failed steps (the execution's own reason is generic).

    Empty when SageMaker cannot list them: the caller's failure stands with what it has.
    """
    try:
        steps = client.list_pipeline_execution_steps(PipelineExecutionArn=arn, SortOrder="Ascending")
    except Exception:  # a listing error must not hide the execution's failure
        log.warning("could not list the steps of %s", arn, exc_info=True)
        return ""
    failed = [s for s in steps.get("PipelineExecutionSteps", []) if s.get("StepStatus") == "Failed"]
    return "; ".join(f"step {s.get('StepName')}: {s.get('FailureReason') or 'no reason given'}" for s in failed)


def sagemaker_run(client: Any, key: str, arn: str) -> dict[str, Any]:
    """The run description of SageMaker execution ``arn`` of pipeline ``key``."""
    params = execution_parameters(client, arn)
    if not params.get("OutputPrefix"):
        raise PipelineStepError(f"Execution {arn} has no OutputPrefix parameter: where its outputs are is unknown.")
    outputs = join(params["OutputPrefix"], arn.rsplit("/", 1)[-1])
    return {"backend": "sagemaker", "pipeline": key, "execution": arn, "outputs": outputs, "parameters": params}


def registered_package(client: Any, arn: str) -> str:
    """The model package ARN the ``RegisterModel`` step of build execution ``arn`` registered.

    Raises:
        PipelineStepError: when the execution has no successful RegisterModel step.
    """
    kwargs: dict[str, Any] = {"PipelineExecutionArn": arn}
    while True:
        page = client.list_pipeline_execution_steps(**kwargs)
        for step in page.get("PipelineExecutionSteps", []):
            package = step.get("Metadata", {}).get("RegisterModel", {}).get("Arn")
            if step.get("StepName") == REGISTER_STEP and package:
                return package
        if not page.get("NextToken"):
            raise PipelineStepError(
                f"Execution {arn} has no {REGISTER_STEP} step with a model package: did the build register a model?"
            )
        kwargs["NextToken"] = page["NextToken"]


def output(run: Mapping[str, Any], step: str, name: str) -> str:
    """Where output ``name`` of ``step`` of the run is (a local folder or an S3 prefix)."""
    if run["backend"] == "local":
        return join(run["outputs"], step, "output", name)
    return join(run["outputs"], step, name)
