"""Which model a run uses: the deployed pipeline's (SageMaker), the latest approved (local), a manifest's.

Light: the DAG files' tasks module imports it while parsing (pandas & co. only inside the functions).
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from forecaster.contract import HORIZON_RANGE
from forecaster.errors import InvalidParameterError
from forecaster.orchestration import backends
from forecaster.orchestration.config import DAG_PIPELINES, OrchestrationConfig
from forecaster.orchestration.storage import Storage
from forecaster.registry import ModelVersion, open_registry

if TYPE_CHECKING:
    from forecaster.artifact import FeatureSchema

#: pipeline parameters that name a model: on SageMaker the deployed pipeline's pinned defaults, never Airflow's
MODEL_PARAMETERS = (
    "ModelDataUrl",
    "ModelPackageArn",
    "InferenceImage",
    "DataQualityBaselineUri",
    "ExplainabilityBaselineUri",
    "ModelQualityBaselineUri",
)


def model_version(config: OrchestrationConfig, identifier: str) -> ModelVersion:
    """The registry version of a model package ARN (or a local ``<group>/<version>``)."""
    group, _, version = identifier.rpartition("/")
    group = group.rsplit("/", 1)[-1]
    if not group or not version.isdigit():
        raise InvalidParameterError(f"{identifier!r} is no model package ARN (…:model-package/<group>/<version>).")
    return open_registry(config.registry_url).get(group, int(version))


def schema_of(model_data_url: str) -> FeatureSchema:
    """The feature schema (spec, horizon) of a model artifact, downloaded once."""
    from forecaster.orchestration.extract import model_contract

    return model_contract(Storage(), model_data_url)


def run_model(config: OrchestrationConfig, dag: str) -> dict[str, str]:
    """The model parameters of this DAG's pipeline run: local: the latest approved; SageMaker: none (pinned)."""
    key = DAG_PIPELINES[dag]
    given = sorted(set(config.pipeline_parameters(key)) & set(MODEL_PARAMETERS))
    if config.backend == "sagemaker":
        if given:
            raise InvalidParameterError(
                f"The 'parameters' of the forecaster configuration set {given} for {key!r}: on SageMaker the model is "
                "the one the deploy repository pinned as the pipeline's defaults. Remove them."
            )
        return {}
    from forecaster.pipelines.resolve import approved_model_parameters

    return approved_model_parameters(open_registry(config.registry_url), config.group, key)


def model_data_url(config: OrchestrationConfig, model: dict[str, str], dag: str, client: Any) -> str:
    """The model whose spec the drops are validated with: the local run's, or the deployed pipeline's default.

    ``client`` makes the SageMaker client (called only for a SageMaker run).
    """
    if model:
        return model["ModelDataUrl"]
    name = config.pipeline_name(DAG_PIPELINES[dag])
    url = backends.deployed_parameters(client(), name).get("ModelDataUrl")
    if not url:
        raise InvalidParameterError(
            f"The deployed SageMaker pipeline {name!r} has no default ModelDataUrl: deploy it with the approved "
            "model pinned (the deploy repository's `forecaster pipeline upsert`)."
        )
    return url


def forecast_day(config: OrchestrationConfig, storage: Storage, day: dt.date) -> tuple[dt.date, dict] | None:
    """The forecast date the model-quality run of ``day`` checks and its manifest, None while not delivered.

    ``quality_lag_days`` names it; when 0, it is the delivery whose forecast days end the day before ``day``
    (its manifest's ``days``: the horizon of the model that made it), so no model is downloaded.
    """
    from forecaster.orchestration.deliver import read_manifest

    lags = [config.quality_lag_days] if config.quality_lag_days else range(1, HORIZON_RANGE[1] + 1)
    for lag in lags:
        first = day - dt.timedelta(days=lag)
        manifest = read_manifest(storage, config.destination, first)
        if manifest is not None and (config.quality_lag_days or manifest["days"] == lag):
            return first, manifest
    return None
