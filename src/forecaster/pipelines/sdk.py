"""What the SageMaker SDK v3 needs around it: environment, session, and an offline (moto) AWS.

Importing ``sagemaker.mlops.workflow`` needs a region, ``ModelTrainer`` validates the role against IAM unless
``SAGEMAKER_VALIDATE_ROLE=false``, and decorated calls send telemetry unless it is opted out
(docs/sagemaker-notes.md §2).
:func:`offline_aws` sets all of that for the duration of a ``with`` block, with fake credentials and moto's
in-process AWS, and restores the caller's environment afterwards. :func:`sdk_environment` only adds what is
missing (region, telemetry opt-out) and never touches real credentials: it is what ``upsert`` runs under.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from forecaster.errors import ForecasterError, InvalidParameterError

DEFAULT_REGION = "eu-west-1"
#: role ARN written into offline definitions when none is given
PLACEHOLDER_ROLE = "arn:aws:iam::000000000000:role/forecaster-sagemaker-execution"
PLACEHOLDER_BUCKET = "forecaster-sagemaker-definitions"

_TELEMETRY_OPT_OUT = "SchemaVersion: '1.0'\nSageMaker:\n  PythonSDK:\n    Modules:\n      TelemetryOptOut: true\n"
_FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_SECURITY_TOKEN": "testing",
}

#: The SDK's own settings (client side, never in a container): its config file and its role check.
_CONFIG_OVERRIDE_ENV = "SAGEMAKER_USER_CONFIG_OVERRIDE"
_VALIDATE_ROLE_ENV = "SAGEMAKER_VALIDATE_ROLE"


def require(*modules: str) -> None:
    """Fail with an install hint when the ``[pipelines]`` extra (SageMaker SDK v3, boto3, moto) is missing."""
    import importlib.util

    missing = [name for name in modules if importlib.util.find_spec(name) is None]
    if missing:
        raise ForecasterError(
            f"Missing {', '.join(missing)}: install the pipelines extra, pip install 'forecaster[pipelines]'."
        )


@contextlib.contextmanager
def _patched_environ(values: Mapping[str, str | None]) -> Iterator[None]:
    """Set (or, for None, remove) environment variables inside the block; restore the old values after."""
    saved = {key: os.environ.get(key) for key in values}
    try:
        for key, value in values.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def _config_validated_once() -> Iterator[None]:
    """Validate each distinct SDK config once instead of on every config lookup.

    SDK 3.27.0 re-validates the whole SageMaker config against its JSON schema on every lookup
    (``get_sagemaker_config_value``: about 0.4 s each, dozens per pipeline), which makes building the build
    pipeline 4x slower. Inside the block a config that passed validation is not validated again; an invalid
    one still raises. The SDK's method is restored on exit.
    """
    from sagemaker.core.config.config_manager import SageMakerConfig

    original = SageMakerConfig.__dict__["validate_sagemaker_config"]
    valid: set[str] = set()

    def validate_once(sagemaker_config: dict | None = None) -> None:
        key = json.dumps(sagemaker_config, sort_keys=True, default=str)
        if key not in valid:
            original.__func__(sagemaker_config)
            valid.add(key)

    SageMakerConfig.validate_sagemaker_config = staticmethod(validate_once)
    try:
        yield
    finally:
        SageMakerConfig.validate_sagemaker_config = original


@contextlib.contextmanager
def _telemetry_config() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="forecaster-sagemaker-") as folder:
        path = Path(folder) / "config.yaml"
        path.write_text(_TELEMETRY_OPT_OUT)
        yield str(path)


def resolve_region(region: str | None) -> str:
    """Return ``region``, else ``AWS_REGION``/``AWS_DEFAULT_REGION``.

    Raises:
        InvalidParameterError: when no region is given or configured.
    """
    region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if not region:
        raise InvalidParameterError("No AWS region: pass --region or set AWS_DEFAULT_REGION.")
    return region


@contextlib.contextmanager
def sdk_environment(region: str | None, validate_role: bool = True) -> Iterator[str]:
    """Environment for talking to real AWS: adds a region and the telemetry opt-out, keeps credentials.

    Args:
        region: AWS region (default: the AWS configuration's).
        validate_role: let the SDK check the role's trust policy and permissions with IAM (needs
            ``iam:SimulatePrincipalPolicy``); False sets ``SAGEMAKER_VALIDATE_ROLE=false`` inside the block.

    Yields:
        The region in use (``region``, else ``AWS_REGION``/``AWS_DEFAULT_REGION``).

    Raises:
        InvalidParameterError: when no region is given or configured.
    """
    require("sagemaker.mlops", "boto3")
    region = resolve_region(region)
    with _telemetry_config() as config:
        values: dict[str, str | None] = {"AWS_DEFAULT_REGION": region}
        if _CONFIG_OVERRIDE_ENV not in os.environ:
            values[_CONFIG_OVERRIDE_ENV] = config
        if not validate_role:
            values[_VALIDATE_ROLE_ENV] = "false"
        with _patched_environ(values), _config_validated_once():
            yield region


@contextlib.contextmanager
def offline_aws(region: str = DEFAULT_REGION, bucket: str = PLACEHOLDER_BUCKET) -> Iterator[str]:
    """Fake credentials, no role validation, no telemetry, and moto's in-process AWS with ``bucket`` created.

    Anything the SDK uploads while building a definition lands in moto; nothing leaves the process.
    Any ``AWS_ENDPOINT_URL``/profile of the caller is masked inside the block.

    Yields:
        The region in use.
    """
    require("sagemaker.mlops", "boto3", "moto")
    with _telemetry_config() as config:
        values: dict[str, str | None] = {
            **_FAKE_CREDENTIALS,
            "AWS_DEFAULT_REGION": region,
            "AWS_REGION": region,
            "AWS_PROFILE": None,
            "AWS_ENDPOINT_URL": None,
            _VALIDATE_ROLE_ENV: "false",
            _CONFIG_OVERRIDE_ENV: config,
        }
        with _patched_environ(values):
            import boto3
            import moto

            with moto.mock_aws(), _config_validated_once():
                s3 = boto3.client("s3", region_name=region)
                location = (
                    {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
                )
                s3.create_bucket(Bucket=bucket, **location)
                yield region


def pipeline_session(region: str, bucket: str | None = None) -> Any:
    """Return a ``PipelineSession``: under it, SDK calls only record their request (no job starts)."""
    import boto3
    from sagemaker.core.workflow.pipeline_context import PipelineSession

    return PipelineSession(boto_session=boto3.Session(region_name=region), default_bucket=bucket)
