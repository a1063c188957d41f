"""Pipeline parameter values from the command line and files, and pipeline executions on AWS.

CI/CD (the project template's Bitbucket pipelines) drives a pipeline in three moves: ``upsert`` with parameter
defaults for this deployment (images tagged by commit, a stage's instance types and S3 prefixes, the latest
approved model), ``start`` an execution with per-run values, and ``--wait`` for a smoke test. The values come
from ``--param NAME=VALUE`` and ``--params-file FILE`` (a JSON object); both are checked against the pipeline's
parameter table, so a typo fails in CI instead of being ignored by SageMaker.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import string
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from forecaster.errors import ForecasterError, InvalidParameterError
from forecaster.params import S3Uri, coerce
from forecaster.pipelines.table import PipelineSpec, input_params

#: execution states after which nothing changes any more
FINAL_STATES = ("Succeeded", "Failed", "Stopped")


def parse_boolean(value: Any) -> bool:
    """``True``/``False``, or the text ``true``/``false`` in any case (raises ValueError otherwise)."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text not in ("true", "false"):
        raise ValueError(value)
    return text == "true"


def cast_parameter(pipeline: str, name: str, kind: str, value: Any) -> str | int | float | bool:
    """``value`` as a pipeline parameter of ``kind`` (``string``, ``integer``, ``float``, ``boolean``).

    The one cast of both executors: ``14``, ``"14"`` and ``14.0`` are the integer 14; ``14.7``, ``true`` and
    ``"NaN"`` are no number of a pipeline.

    Raises:
        InvalidParameterError: naming the parameter, its type and the value.
    """
    try:
        if kind == "boolean":
            return parse_boolean(value)
        if kind == "string":
            return str(value)
        if isinstance(value, bool):
            raise ValueError(value)
        number = float(value)
        if not math.isfinite(number):
            raise ValueError(value)
        if kind == "float":
            return number
        if isinstance(value, int) or str(value).strip().lstrip("+-").isdigit():
            return int(str(value).strip()) if not isinstance(value, int) else value
        if not number.is_integer():
            raise ValueError(value)
        return int(number)
    except (TypeError, ValueError):
        article = "an" if kind == "integer" else "a"
        raise InvalidParameterError(
            f"The {name!r} parameter of the {pipeline} pipeline must be {article} {kind}. Got {value!r} instead."
        ) from None


def read_params_file(path: str | Path, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Return the JSON object of parameter values in ``path``, ``${VAR}`` in strings taken from the environment.

    ``$$`` is a literal ``$``. A variable that is not set is an error, never an empty string: a settings file
    that names a CI variable must not silently point a pipeline at ``s3:///``.

    Raises:
        InvalidParameterError: when the file is unreadable, holds no JSON object of scalars, or names a
            variable that is not set.
    """
    try:
        values = json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        raise InvalidParameterError(f"--params-file {path}: not a readable JSON file ({error}).") from None
    if not isinstance(values, dict) or any(isinstance(v, dict | list) for v in values.values()):
        raise InvalidParameterError(f"--params-file {path} must hold one JSON object {{parameter: value}}.")
    environ = os.environ if environ is None else environ
    expanded: dict[str, Any] = {}
    for name, value in values.items():
        try:
            expanded[name] = string.Template(value).substitute(environ) if isinstance(value, str) else value
        except KeyError as missing:
            raise InvalidParameterError(
                f"--params-file {path}: parameter {name} names variable ${{{missing.args[0]}}}, which is not set. "
                "Set it (a CI repository variable) or write the value into the file."
            ) from None
        except ValueError:
            raise InvalidParameterError(
                f"--params-file {path}: parameter {name} has a malformed variable in {value!r}; write ${{NAME}}, "
                "and $$ for a literal $."
            ) from None
    return expanded


def parameter_values(spec: PipelineSpec, values: Mapping[str, Any], *, s3: bool = True) -> dict[str, str | int | float]:
    """Check ``values`` against the parameters of ``spec`` and cast each to its parameter's type.

    With ``s3`` (values for SageMaker), an S3 parameter (:func:`_s3_parameters`) must hold an ``s3://`` URI.

    Raises:
        InvalidParameterError: for an unknown parameter or a value that does not fit its type.
    """
    kinds = {param.name: param.kind for param in spec.parameters}
    params = {param.name: param for param in spec.parameters}
    unknown = sorted(set(values) - set(kinds))
    if unknown:
        raise InvalidParameterError(
            f"Pipeline {spec.name} has no parameter {', '.join(unknown)}. Its parameters: {', '.join(sorted(kinds))}."
        )
    cast: dict[str, str | int | float] = {}
    s3_params = _s3_parameters(spec) if s3 else set()
    for name, value in values.items():
        cast[name] = cast_parameter(spec.name, name, kinds[name], value)
        params[name].check(cast[name], spec.name)
        if name in s3_params and cast[name] != "":  # SageMaker reads every input and writes every output in S3
            coerce(name, cast[name], [S3Uri()], f"the {spec.name} pipeline")
    return cast


def _s3_parameters(spec: PipelineSpec) -> set[str]:
    """The parameters SageMaker reads or writes as S3 locations: step inputs, and those with an ``s3://`` default."""
    return input_params(spec) | {p.name for p in spec.parameters if str(p.default).startswith("s3://")}


def with_defaults(spec: PipelineSpec, defaults: Mapping[str, Any]) -> PipelineSpec:
    """Return ``spec`` with the default values of some parameters replaced (checked and cast)."""
    values = parameter_values(spec, defaults)
    parameters = tuple(
        dataclasses.replace(param, default=values[param.name]) if param.name in values else param
        for param in spec.parameters
    )
    return dataclasses.replace(spec, parameters=parameters)


def start(
    client: Any, spec: PipelineSpec, name: str | None, values: Mapping[str, Any], display_name: str | None = None
) -> str:
    """Start an execution of pipeline ``name`` (default: the spec's) with ``values``; return its ARN."""
    request: dict[str, Any] = {
        "PipelineName": name or spec.name,
        "PipelineParameters": [
            {"Name": key, "Value": str(value)} for key, value in parameter_values(spec, values).items()
        ],
    }
    if display_name:
        request["PipelineExecutionDisplayName"] = display_name
    return client.start_pipeline_execution(**request)["PipelineExecutionArn"]


def wait(client: Any, arn: str, timeout: float, poll: float = 30.0) -> str:
    """Wait until execution ``arn`` ends; return its final status.

    Raises:
        ForecasterError: when it did not succeed, or did not end within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        described = client.describe_pipeline_execution(PipelineExecutionArn=arn)
        status = described["PipelineExecutionStatus"]
        if status == "Succeeded":
            return status
        if status in FINAL_STATES:
            reason = described.get("FailureReason", "no reason given")
            raise ForecasterError(f"Pipeline execution {arn} ended {status}: {reason}")
        if time.monotonic() >= deadline:
            raise ForecasterError(f"Pipeline execution {arn} is still {status} after {timeout:.0f} s.")
        time.sleep(min(poll, max(deadline - time.monotonic(), 0.0)))


def read_schedule(path: str | Path, pipeline: str) -> str | None:
    """Return the schedule expression of ``pipeline`` in a schedules file (``{pipeline key: expression}``).

    A pipeline the file does not name, or names with ``""``, has no schedule.

    Raises:
        InvalidParameterError: when the file is unreadable or no JSON object of strings.
    """
    try:
        schedules = json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        raise InvalidParameterError(f"--schedule-file {path}: not a readable JSON file ({error}).") from None
    if not isinstance(schedules, dict) or not all(isinstance(v, str) for v in schedules.values()):
        raise InvalidParameterError(f"--schedule-file {path} must hold {{pipeline: 'cron(...)' or 'rate(...)'}}.")
    return schedules.get(pipeline) or None


def schedule_request(name: str, pipeline_arn: str, expression: str, role_arn: str, timezone: str = "UTC") -> dict:
    """The EventBridge Scheduler schedule ``name`` that starts ``pipeline_arn`` with its parameter defaults.

    Raises:
        InvalidParameterError: for an expression that is not cron(...), rate(...) or at(...).
    """
    if not expression.startswith(("cron(", "rate(", "at(")):
        raise InvalidParameterError(
            f"A schedule must be cron(...), rate(...) or at(...) (EventBridge Scheduler). Got {expression!r} instead."
        )
    return {
        "Name": name,
        "ScheduleExpression": expression,
        "ScheduleExpressionTimezone": timezone,
        "FlexibleTimeWindow": {"Mode": "OFF"},
        "State": "ENABLED",
        "Target": {
            "Arn": pipeline_arn,
            "RoleArn": role_arn,
            "SageMakerPipelineParameters": {"PipelineParameterList": []},
        },
    }


def schedule(client: Any, name: str, pipeline_arn: str, expression: str, role_arn: str, timezone: str = "UTC") -> str:
    """Create or update the EventBridge Scheduler schedule ``name`` that starts ``pipeline_arn``; return its ARN.

    Scheduled executions use the pipeline's parameter defaults (what ``upsert`` set for this deployment).
    ``client`` is a boto3 ``scheduler`` client; ``role_arn`` a role the scheduler assumes to start the pipeline.
    """
    request = schedule_request(name, pipeline_arn, expression, role_arn, timezone)
    try:
        client.get_schedule(Name=name)
    except client.exceptions.ResourceNotFoundException:
        return client.create_schedule(**request)["ScheduleArn"]
    return client.update_schedule(**request)["ScheduleArn"]
