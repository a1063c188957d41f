"""Build, write and upsert the pipeline definitions.

``definition`` builds a pipeline fully offline (moto in-process for what the SDK uploads, fake credentials),
so ``forecaster pipeline definition`` needs no AWS account and no network. ``upsert`` creates or updates the
pipeline on AWS with the caller's credentials.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from forecaster.errors import InvalidParameterError
from forecaster.io import atomic_path
from forecaster.pipelines import sdk
from forecaster.pipelines.catalog import PIPELINES
from forecaster.pipelines.executions import with_defaults
from forecaster.pipelines.table import PipelineSpec


def pipeline_spec(key: str) -> PipelineSpec:
    """Return the spec of pipeline ``key`` (``build``, ``inference`` or ``model-quality``)."""
    try:
        return PIPELINES[key]
    except KeyError:
        raise InvalidParameterError(
            f"The 'pipeline' parameter must be one of {sorted(PIPELINES)}. Got {key!r} instead."
        ) from None


def build_pipeline(
    key: str,
    *,
    role: str,
    region: str,
    bucket: str | None,
    managed_checks: bool = False,
    name: str | None = None,
    defaults: Mapping[str, Any] | None = None,
) -> Any:
    """Return the SDK ``Pipeline`` object of ``key``; call inside an SDK environment (see :mod:`.sdk`).

    ``defaults`` replaces the default values of some parameters (checked against the parameter table).
    """
    from forecaster.pipelines.builder import PipelineBuilder

    session = sdk.pipeline_session(region, bucket)
    spec = with_defaults(pipeline_spec(key), defaults or {})
    builder = PipelineBuilder(spec, role=role, session=session, managed_checks=managed_checks, name=name)
    return builder.build()


def definition(
    key: str,
    *,
    role: str = sdk.PLACEHOLDER_ROLE,
    region: str = sdk.DEFAULT_REGION,
    bucket: str = sdk.PLACEHOLDER_BUCKET,
    managed_checks: bool = False,
    name: str | None = None,
    defaults: Mapping[str, Any] | None = None,
) -> dict:
    """Build the definition of pipeline ``key`` offline and return it as a dict (``defaults``: see build_pipeline)."""
    pipeline_spec(key)
    with sdk.offline_aws(region, bucket):
        pipeline = build_pipeline(
            key, role=role, region=region, bucket=bucket, managed_checks=managed_checks, name=name, defaults=defaults
        )
        return json.loads(pipeline.definition())


def write_definition(document: dict, out: str | Path) -> Path:
    """Write a definition as indented JSON, atomically."""
    with atomic_path(out) as tmp:
        tmp.write_text(json.dumps(document, indent=2, sort_keys=False) + "\n")
    return Path(out)


def upsert(
    key: str,
    *,
    role: str,
    region: str | None,
    bucket: str | None = None,
    managed_checks: bool = False,
    name: str | None = None,
    tags: dict[str, str] | None = None,
    validate_role: bool = True,
    defaults: Mapping[str, Any] | None = None,
) -> str:
    """Create or update pipeline ``key`` in the account of the caller's credentials; return its ARN.

    ``defaults`` replaces parameter defaults (the values scheduled and parameter-less executions use).

    Raises:
        InvalidParameterError: for a role that is no ARN, no region, an unknown parameter, or a role the SDK's
            IAM check rejects.
    """
    if not role.startswith("arn:"):
        raise InvalidParameterError(f"The 'role' parameter must be an IAM role ARN (arn:aws:iam::...). Got {role!r}.")
    with sdk.sdk_environment(region, validate_role) as resolved:
        try:
            pipeline = build_pipeline(
                key,
                role=role,
                region=resolved,
                bucket=bucket,
                managed_checks=managed_checks,
                name=name,
                defaults=defaults,
            )
            tag_list = [{"Key": k, "Value": v} for k, v in (tags or {}).items()] or None
            response = pipeline.upsert(role_arn=role, description=pipeline_spec(key).description, tags=tag_list)
        except Exception as error:
            if type(error).__name__ != "RoleValidationError":
                raise
            raise InvalidParameterError(
                f"The SageMaker SDK rejected role {role}: {' '.join(str(error).split())} "
                "(pass --skip-role-validation if IAM simulation is not allowed for you)."
            ) from None
        return response["PipelineArn"]


_VOLATILE = (
    # ClarifyCheckStep's monitoring config: timestamp + uuid4 on every build (docs/sagemaker-notes.md §5)
    (
        re.compile(r"model-explainability-monitoring-config-[0-9-]+/[0-9a-f-]{36}/"),
        "model-explainability-monitoring-config-<TIMESTAMP>/<UUID>/",
    ),
    # uploaded code keys carry the sha256 of path + content
    (re.compile(r"/code/[0-9a-f]{64}/"), "/code/<SHA256>/"),
)


def normalise(document: dict) -> dict:
    """Replace the random parts of a definition (timestamps, uuids, content hashes) with placeholders."""
    text = json.dumps(document, sort_keys=True)
    for pattern, placeholder in _VOLATILE:
        text = pattern.sub(placeholder, text)
    return json.loads(text)
