"""The orchestration configuration: one JSON document (Airflow Variable ``forecaster_config``), read once per task.

DAG params override a few keys per run (``backend``, ``auto_approve``). Every key, its default and its meaning
is declared once, in :data:`KEYS`; the table of docs/airflow.md#config is this table.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from forecaster.errors import InvalidParameterError
from forecaster.params import Boolean, Interval, Text, coerce
from forecaster.pipelines.catalog import PIPELINES
from forecaster.pipelines.executions import parameter_values
from forecaster.pipelines.local_params import DEFAULT_GROUP
from forecaster.registry import registry_url

#: the Airflow Variable that holds the configuration (JSON); ``AIRFLOW_VAR_FORECASTER_CONFIG`` works too
VARIABLE = "forecaster_config"
#: the Airflow Variable that picks the backend when neither the DAG param nor the config does
BACKEND_VARIABLE = "forecaster_backend"
BACKENDS = ("local", "sagemaker")
#: pipeline key of each DAG's pipeline
DAG_PIPELINES = {"daily_forecast": "inference", "model_quality": "model-quality", "retrain": "build"}


_CALLER = "the forecaster configuration"
#: the keys whose values are checked (and converted) by a constraint, not only by type
_CONSTRAINTS = {
    "history_days": [Interval(int, 1, None)],
    "train_days": [Interval(int, 1, None)],
    "quality_lag_days": [Interval(int, 0, None)],
    "auto_approve": [Boolean()],
    "group": [Text()],
}
#: the keys that may be null
_OPTIONAL = ("aws_conn_id", "region")


@dataclass(frozen=True)
class OrchestrationConfig:
    """What the three DAGs read (see :data:`KEYS` for each key's meaning)."""

    backend: str = "local"
    source: str = ""
    destination: str = ""
    staging: str = ""
    workdir: str = ""
    history_days: int = 120
    train_days: int = 365
    quality_lag_days: int = 0
    spec: str = ""
    registry: str = ""
    group: str = DEFAULT_GROUP
    forecaster_cli: str = "forecaster"
    pipeline_names: dict[str, str] = field(default_factory=lambda: {k: p.name for k, p in PIPELINES.items()})
    parameters: dict[str, dict[str, Any]] = field(default_factory=dict)
    auto_approve: bool = False
    aws_conn_id: str | None = "aws_default"
    region: str | None = None

    def pipeline_name(self, key: str) -> str:
        """The SageMaker pipeline name of pipeline ``key`` (``build``, ``inference``, ``model-quality``)."""
        return self.pipeline_names.get(key) or PIPELINES[key].name

    def pipeline_parameters(self, key: str) -> dict[str, str]:
        """Extra parameters for pipeline ``key`` from the config (values as strings)."""
        return {name: str(value) for name, value in (self.parameters.get(key) or {}).items()}

    @property
    def registry_url(self) -> str:
        """The model registry: ``registry``, else ``$FORECASTER_REGISTRY``, else ``<workdir>/registry.db``."""
        return registry_url(self.registry, self.workdir)

    @property
    def staging_root(self) -> str:
        """Where extract writes the pipeline inputs: ``staging``, else ``<workdir>/staging``."""
        return self.staging or os.path.join(self.workdir, "staging")


#: key -> what it means (the table of docs/airflow.md#config)
KEYS = {
    "backend": "`local` (default: the local runner on the Airflow worker) or `sagemaker`",
    "source": "folder or `s3://` prefix of the drops: `sales/<YYYY-MM-DD>.csv|parquet` (one day's sales of every "
    "series), `plan/<YYYY-MM-DD>.csv|parquet` (the known-future plan for the horizon days from that date)",
    "destination": "folder or `s3://` prefix the deliveries go to: `<YYYY-MM-DD>/orders/<store>.csv`, "
    "`forecasts/<store>.csv`, `decision.json`, `manifest.json`",
    "staging": "folder or `s3://` prefix for the pipeline inputs written by extract (default `<workdir>/staging`; "
    "must be `s3://` for the sagemaker backend)",
    "workdir": "local folder of the local backend's pipeline work directories (`<dag>/<date>/`)",
    "history_days": "days of sales history the daily forecast sends (default 120)",
    "train_days": "days of sales history a retraining trains on (default 365)",
    "quality_lag_days": "the model-quality DAG of date D checks the forecast delivered on D minus this many days "
    "(default 0 = the model's horizon, so all its days have ground truth)",
    "spec": "dataset spec (preset or JSON path) to validate drops with; default: the spec of the model that runs "
    "(the deployed pipeline's ModelDataUrl default on SageMaker, the latest approved version with the local backend)",
    "registry": "model registry URL (`sqlite:///...`, `sagemaker://REGION`); default `$FORECASTER_REGISTRY`, "
    "else `<workdir>/registry.db`",
    "group": f"model package group (default `{DEFAULT_GROUP}`)",
    "forecaster_cli": "the `forecaster` executable the local backend runs (default: on PATH)",
    "pipeline_names": "SageMaker pipeline name per pipeline (`build`, `inference`, `model-quality`; default "
    "the names `forecaster pipeline upsert` uses)",
    "parameters": 'extra pipeline parameters per pipeline, e.g. `{"inference": {"MinDriftedFeatures": 4}}`; '
    "on SageMaker "
    "never a model parameter (the deployed pipeline's pinned defaults are the model)",
    "auto_approve": "set by the forecaster_retrain DAG param `auto_approve` (default false: the new version waits "
    "for a reviewer)",
    "aws_conn_id": "Airflow connection of the sagemaker backend (default `aws_default`)",
    "region": "AWS region of the sagemaker backend (default: the connection's)",
}


def parse_config(
    document: Mapping[str, Any] | str | None, overrides: Mapping[str, Any] | None = None
) -> OrchestrationConfig:
    """Build the configuration from its JSON document and per-run overrides (empty values are ignored).

    Raises:
        InvalidParameterError: for an unknown key, a value of the wrong type or an unknown backend.
    """
    if isinstance(document, str):
        try:
            document = json.loads(document) if document.strip() else {}
        except json.JSONDecodeError as error:
            raise InvalidParameterError(f"The Airflow Variable {VARIABLE!r} is not valid JSON: {error}.") from None
    values = {**(document or {}), **{k: v for k, v in (overrides or {}).items() if v not in (None, "")}}
    known = {f.name: f for f in fields(OrchestrationConfig)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise InvalidParameterError(
            f"The forecaster configuration has no key {unknown[0]!r}. Its keys: {', '.join(known)}."
        )
    defaults = OrchestrationConfig()
    for name, value in values.items():
        if name in _CONSTRAINTS:
            values[name] = coerce(name, value, _CONSTRAINTS[name], _CALLER)
            continue
        expected = str if name in _OPTIONAL else type(getattr(defaults, name))
        if not isinstance(value, expected) and not (value is None and name in _OPTIONAL):
            raise InvalidParameterError(
                f"The {name!r} key of the forecaster configuration must be of type {expected.__name__}. Got {value!r}."
            )
    config = OrchestrationConfig(**values)
    if config.backend not in BACKENDS:
        raise InvalidParameterError(
            f"The 'backend' of the forecaster configuration must be one of {list(BACKENDS)}. Got {config.backend!r}."
        )
    if config.backend == "sagemaker" and not config.staging.startswith("s3://"):
        raise InvalidParameterError(
            "The sagemaker backend reads its inputs from S3: set 'staging' to an s3:// prefix (the default, "
            f"<workdir>/staging, is local). Got {config.staging!r}."
        )
    _check_pipelines(config)
    return config


def _check_pipelines(config: OrchestrationConfig) -> None:
    """``pipeline_names`` and ``parameters`` name known pipelines; each parameter fits its pipeline's table."""
    for key in ("pipeline_names", "parameters"):
        unknown = sorted(set(getattr(config, key)) - set(PIPELINES))
        if unknown:
            raise InvalidParameterError(
                f"The {key!r} key of the forecaster configuration names no pipeline {unknown[0]!r}. Pipelines: "
                f"{', '.join(PIPELINES)}."
            )
    for key, name in config.pipeline_names.items():
        if not isinstance(name, str) or not name.strip():
            raise InvalidParameterError(f"pipeline_names[{key!r}] must be a pipeline name. Got {name!r}.")
    for key, values in config.parameters.items():
        if not isinstance(values, dict):
            raise InvalidParameterError(
                f'parameters[{key!r}] must be an object of pipeline parameters, e.g. {{"MinDriftedFeatures": 4}}. '
                f"Got {values!r}."
            )
        parameter_values(PIPELINES[key], values, s3=config.backend == "sagemaker")  # fails before any task
