"""SDK local-mode harness: sessions, moto S3 helpers, pipeline execution with the shims (see conftest.py)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from docker_helpers import is_ci, require_docker, sh

REGION = "eu-west-1"
BUCKET = "forecaster-local-mode"
ROLE = "arn:aws:iam::000000000000:role/forecaster-local-mode"
TELEMETRY_OPT_OUT = "SchemaVersion: '1.0'\nSageMaker:\n  PythonSDK:\n    Modules:\n      TelemetryOptOut: true\n"
#: what the SDK needs besides fake AWS (``aws_helpers.use_fake_aws``)
ENVIRONMENT = {"SAGEMAKER_VALIDATE_ROLE": "false"}
#: container names of SDK local mode: core (``<10 chars>-algo-1-<5 chars>``) and ModelTrainer (compose v1)
LOCAL_MODE_CONTAINER = re.compile(r"^([a-z0-9]{10}-algo-\d+-[a-z0-9]{5}|.+_algo-\d+_\d+)$")


def require_compose() -> None:
    """SDK local mode runs ``docker compose`` (v2) or ``docker-compose`` (v1); skip or fail (CI) without."""
    require_docker()
    v2 = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True, check=False)
    if v2.returncode == 0 or shutil.which("docker-compose"):
        return
    message = "SDK local mode needs docker compose: apt-get install docker-compose (what .ci/run installs)"
    if is_ci():
        pytest.fail(f"CI=true but {message}")
    pytest.skip(message)


def containers() -> dict[str, tuple[str, str]]:
    """Exited containers (id -> (name, image)): a running one may belong to another test session."""
    fmt = "{{.ID}} {{.Names}} {{.Image}}"
    out = sh("docker", "ps", "-a", "--no-trunc", "--filter", "status=exited", "--format", fmt).stdout
    return {line.split()[0]: tuple(line.split()[1:3]) for line in out.splitlines() if line.strip()}


def image_id(tag: str) -> str:
    return sh("docker", "image", "inspect", "-f", "{{.Id}}", tag).stdout.strip()


def local_config(session: Any, root: Path) -> Any:
    """``local_code`` (no default-bucket lookup), a container root inside the test's temporary folder, and the
    host port of local endpoints and transforms: 8080 (``FORECASTER_SDK_SERVING_PORT`` to run two sessions at once).
    """
    root.mkdir(parents=True, exist_ok=True)
    port = int(os.environ.get("FORECASTER_SDK_SERVING_PORT", "8080"))
    session.config = {"local": {"local_code": True, "container_root": str(root), "serving_port": port}}
    return session


def transform_output_where_sagemaker_writes_it(patch: pytest.MonkeyPatch) -> None:
    """Shim 4: a local transform job uploads its ``.out`` files to ``S3OutputPath/<job name>/``; SageMaker writes
    them to ``S3OutputPath/`` itself (what the Postprocess step reads). Drop the job name from that one upload.
    """
    from sagemaker.core.local import entities

    original = entities.move_to_destination

    def move(source: str, destination: str, job_name: str, sagemaker_session: Any, prefix: str = "") -> str:
        return original(source, destination, "", sagemaker_session, prefix)

    patch.setattr(entities, "move_to_destination", move)


def pipeline_session_class() -> type:
    from sagemaker.core.workflow.pipeline_context import LocalPipelineSession as StepSession
    from sagemaker.mlops.local import LocalPipelineSession as ExecutionSession

    class LocalPipelineSession(ExecutionSession, StepSession):
        """Steps record their requests (a ``PipelineSession``) and run locally; shims 1 and 2 on the client."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            import boto3

            super().__init__(*args, **kwargs)
            client = self.sagemaker_client
            client.create_pipeline = self.create_pipeline
            client.start_pipeline_execution = self.start_pipeline_execution
            client._user_agent_creator = boto3.client("sagemaker", region_name=REGION)._user_agent_creator

    return LocalPipelineSession


# ---- S3 (moto) --------------------------------------------------------------------------------------------------
def s3_uri(*parts: str) -> str:
    return "s3://" + "/".join([BUCKET, *(p.strip("/") for p in parts)])


def upload(folder: Path, uri: str) -> str:
    """Upload every file under ``folder`` to the prefix ``uri``; return ``uri`` with a trailing slash."""
    import boto3

    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    s3 = boto3.client("s3", region_name=REGION)
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        s3.upload_file(str(path), bucket, f"{prefix.rstrip('/')}/{path.relative_to(folder)}")
    return uri.rstrip("/") + "/"


def download(uri: str, folder: Path) -> Path:
    """Download every object under the prefix ``uri`` into ``folder`` (relative names kept)."""
    import boto3

    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    s3 = boto3.client("s3", region_name=REGION)
    prefix = prefix.rstrip("/") + "/"
    keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            for o in page.get("Contents", [])]  # fmt: skip
    assert keys, f"nothing under {uri}"
    for key in keys:
        target = folder / key[len(prefix) :]
        target.parent.mkdir(parents=True, exist_ok=True)
        s3.download_file(bucket, key, str(target))
    return folder


# ---- pipelines --------------------------------------------------------------------------------------------------
@dataclass
class PipelineRun:
    """One local execution: its status, the step records, and where each step wrote (S3 URIs in moto)."""

    execution: Any
    builder: Any
    registered: str | None = None

    @property
    def status(self) -> str:
        return self.execution.status

    @property
    def steps(self) -> dict[str, str]:
        """Step name -> status (``Succeeded``, ``Failed``; steps that did not run are absent)."""
        return {name: step.status for name, step in self.execution.step_execution.items() if step.status}

    def properties(self, step: str) -> dict:
        return self.execution.step_execution[step].properties

    def output(self, step: str, name: str) -> str:
        """S3 URI of processing output ``name`` of ``step``."""
        return self.properties(step)["ProcessingOutputConfig"]["Outputs"][name]["S3Output"]["S3Uri"]


def execute_pipeline(
    session: Any, key: str, parameters: dict[str, Any], defaults: dict[str, Any] | None = None
) -> PipelineRun:
    """Build pipeline ``key`` from the product's step table with ``session`` and execute it locally.

    ``defaults`` are the definition's parameter defaults (as ``pipeline upsert --param``): an optional input
    (``StockData``, …) is in the definition only when its default is not empty.

    ``RegisterModel`` (shim 3): taken out of its condition before the run; when the condition chose it, its
    request goes to moto's SageMaker ``create_model_package`` (``PipelineRun.registered``: the package ARN).
    """
    import boto3
    from sagemaker.mlops.local.pipeline import LocalPipelineExecutor
    from sagemaker.mlops.workflow.condition_step import ConditionStep

    from forecaster.pipelines.builder import PipelineBuilder
    from forecaster.pipelines.definitions import pipeline_spec
    from forecaster.pipelines.executions import with_defaults

    spec = with_defaults(pipeline_spec(key), defaults or {})
    builder = PipelineBuilder(spec, role=ROLE, session=session)
    pipeline = builder.build()
    registers = {s.name for s in spec.steps if s.kind == "register"}
    removed: dict[str, Any] = {}
    for step in builder.steps.values():
        if isinstance(step, ConditionStep):
            for branch in (step.if_steps, step.else_steps):
                for item in [s for s in branch if s.name in registers]:
                    branch.remove(item)
                    removed[item.name] = (step.name, branch is step.if_steps, item)
    pipeline.create(role_arn=ROLE, description=spec.description)
    execution = pipeline.start(parameters=parameters)
    run = PipelineRun(execution, builder)
    for name, (condition, if_branch, step) in removed.items():
        outcome = execution.step_execution[condition].properties.get("Outcome")
        if execution.status == "Succeeded" and outcome == if_branch:
            request = LocalPipelineExecutor(execution, session)._parse_arguments(step.arguments, name)
            client = boto3.client("sagemaker", region_name=REGION)
            group = request["ModelPackageGroupName"]
            if not client.list_model_package_groups(NameContains=group)["ModelPackageGroupSummaryList"]:
                client.create_model_package_group(ModelPackageGroupName=group)
            run.registered = client.create_model_package(**request)["ModelPackageArn"]
    return run
