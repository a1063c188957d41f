"""The task callables of the three DAGs: Airflow context in, package functions called, a dict out (the XCom).

A :class:`~forecaster.errors.ForecasterError` (bad drop, failed pipeline, no approved model) fails the task at
once with its reason (``AirflowFailException``: a retry would not fix it; clear the task once the cause is
fixed). Anything else (network, throttling) is retried as the task's ``retries`` say.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from forecaster.artifact import FeatureSchema
from forecaster.checks.contract import DECISION_FILE
from forecaster.contract import FORECASTS_FILE, ORDERS_FILE
from forecaster.errors import ForecasterError, InvalidParameterError, NoApprovedModelError
from forecaster.io import write_table
from forecaster.orchestration import backends, deliver, extract
from forecaster.orchestration.config import (
    BACKEND_VARIABLE,
    DAG_PIPELINES,
    VARIABLE,
    OrchestrationConfig,
    parse_config,
)
from forecaster.orchestration.storage import Storage, join
from forecaster.pipelines.resolve import approved_model_parameters
from forecaster.registry import ApprovalStatus, open_registry

log = logging.getLogger(__name__)
#: task ids (the same for both backends)
EXTRACT, START, WAIT, DELIVER = "extract", "start_pipeline", "wait_for_pipeline", "deliver"
DECISION, RETRAIN, DONE = "collect_decision", "trigger_retrain", "done"
GROUND_TRUTH, REVIEW = "wait_for_ground_truth", "review_model"


def fail_fast(function: Callable[..., Any]) -> Callable[..., Any]:
    """Turn a :class:`ForecasterError` into ``AirflowFailException`` (logged with its reason, no retry)."""

    @functools.wraps(function)
    def wrapper(*args: Any, **context: Any) -> Any:
        try:
            return function(*args, **context)
        except ForecasterError as error:
            from airflow.sdk.exceptions import AirflowFailException

            log.error("%s failed: %s", function.__name__, error.reason)
            raise AirflowFailException(error.reason) from None

    return wrapper


def config_of(context: dict[str, Any]) -> OrchestrationConfig:
    """The configuration of this run: the ``forecaster_config`` Variable, then the DAG params."""
    from airflow.sdk import Variable

    params = context.get("params") or {}
    backend = params.get("backend") or Variable.get(BACKEND_VARIABLE, default=None)
    overrides = {"backend": backend, "auto_approve": params.get("auto_approve")}
    return parse_config(Variable.get(VARIABLE, default=None), overrides)


def day_of(context: dict[str, Any]) -> dt.date:
    """The run's logical date (the day a daily run forecasts from)."""
    moment = context.get("logical_date") or context["dag_run"].run_after
    return moment.date()


def _dag(context: dict[str, Any]) -> str:
    return context["dag"].dag_id.removeprefix("forecaster_")


def _pull(context: dict[str, Any], task_id: str) -> dict[str, Any]:
    value = context["ti"].xcom_pull(task_ids=task_id)
    if not value:
        raise InvalidParameterError(f"Task {task_id} left no result (XCom) for this run; clear it to run it again.")
    return value


def _model(config: OrchestrationConfig, pipeline: str) -> tuple[dict[str, str], FeatureSchema]:
    """(the pipeline's approved-model parameters, the inference model's feature schema)."""
    registry = open_registry(config.registry_url)
    inference = approved_model_parameters(registry, config.group, "inference")
    params = inference if pipeline == "inference" else approved_model_parameters(registry, config.group, pipeline)
    return params, extract.model_contract(Storage(), inference["ModelDataUrl"])


def _spec_dict(schema: FeatureSchema, config: OrchestrationConfig) -> dict[str, Any]:
    from forecaster.spec import resolve_spec

    return (resolve_spec(config.spec) if config.spec else schema.spec).to_dict()


# ---------------------------------------------------------------------------------------------- extract
@fail_fast
def extract_daily(**context: Any) -> dict[str, Any]:
    """Sales up to yesterday + today's plan, validated against the approved model's spec, staged."""
    config, day = config_of(context), day_of(context)
    model, schema = _model(config, "inference")
    if config.spec:
        from dataclasses import replace

        from forecaster.spec import resolve_spec

        schema = replace(schema, spec=resolve_spec(config.spec))
    target = join(config.staging_root, _dag(context), str(day))
    staged = extract.extract_daily(Storage(), config.source, schema, day, config.history_days, target)
    log.info("staged %s series, %s history rows, %s days", staged["series"], staged["history_rows"], staged["days"])
    parameters = {**model, "HistoryData": staged["history"], "FutureData": staged["future"]}
    return {**staged, "spec": schema.spec.to_dict(), "parameters": parameters}


@fail_fast
def extract_training(**context: Any) -> dict[str, Any]:
    """``train_days`` of sales up to yesterday, validated, staged with the spec as the build pipeline's input."""
    from forecaster.spec import DatasetSpec, resolve_spec

    config, day = config_of(context), day_of(context)
    if config.spec:
        spec = resolve_spec(config.spec)
    else:
        try:
            spec = DatasetSpec.from_dict(_spec_dict(_model(config, "inference")[1], config))
        except NoApprovedModelError:
            raise InvalidParameterError(
                f"No approved model in {config.group!r} to take the dataset spec from: set 'spec' in the "
                f"{VARIABLE} Variable (a preset name or a spec JSON file) for the first training."
            ) from None
    target = join(config.staging_root, _dag(context), str(day))
    staged = extract.extract_training(Storage(), config.source, spec, day, config.train_days, target)
    return {**staged, "spec": spec.to_dict(), "parameters": {"InputData": staged["train"]}}


def forecast_day(config: OrchestrationConfig, day: dt.date, horizon: int) -> dt.date:
    """The forecast date whose ground truth the model-quality run of ``day`` checks."""
    return day - dt.timedelta(days=config.quality_lag_days or horizon)


@fail_fast
def ground_truth_ready(**context: Any) -> dict[str, Any] | None:
    """The forecast date and its days when it was delivered and every day's sales drop is there, else None."""
    config, day = config_of(context), day_of(context)
    _, schema = _model(config, "model-quality")
    storage = Storage()
    first = forecast_day(config, day, schema.horizon)
    manifest = deliver.read_manifest(storage, config.destination, first)
    if manifest is None:
        log.info("no complete delivery for %s in %s yet", first, config.destination)
        return None
    drops = extract.dated_files(storage, join(config.source, "sales"))
    days = [first + dt.timedelta(days=i) for i in range(manifest["days"])]
    missing = [str(d) for d in days if d not in drops]
    if missing:
        log.info("waiting for the sales drops (ground truth) of %s", ", ".join(missing))
        return None
    return {"forecast_date": str(first), "days": manifest["days"]}


@fail_fast
def extract_ground_truth(**context: Any) -> dict[str, Any]:
    """The delivered forecasts of the forecast date and the sales drops of its days, validated and staged."""
    config, day = config_of(context), day_of(context)
    ready = _pull(context, GROUND_TRUTH)
    model, schema = _model(config, "model-quality")
    storage, first = Storage(), dt.date.fromisoformat(ready["forecast_date"])
    target = join(config.staging_root, _dag(context), str(day))
    staged = extract.extract_ground_truth(storage, config.source, schema.spec, first, ready["days"], target)
    forecasts = deliver.delivered_forecasts(storage, config.destination, first)
    with tempfile.TemporaryDirectory() as tmp:
        local = write_table(forecasts, Path(tmp) / FORECASTS_FILE)
        storage.put_file(local, join(target, "forecasts", FORECASTS_FILE))
    parameters = {**model, "ForecastsData": join(target, "forecasts"), "GroundTruthData": staged["truth"]}
    return {**staged, **ready, "spec": schema.spec.to_dict(), "parameters": parameters}


# ---------------------------------------------------------------------------------------------- pipeline
@fail_fast
def start_pipeline(**context: Any) -> dict[str, Any]:
    """Start this DAG's pipeline with the extract's inputs and the configured parameters."""
    config, day, dag = config_of(context), day_of(context), _dag(context)
    key = DAG_PIPELINES[dag]
    params = {**config.pipeline_parameters(key), **_pull(context, EXTRACT)["parameters"]}
    workdir = join(config.workdir, dag, str(day), key)
    return backends.start(config, key, params, workdir=workdir, label=f"{dag}-{day}", context=context)


@fail_fast
def pipeline_done(**context: Any) -> dict[str, Any] | None:
    """The run's status once it succeeded, None while it runs; a failed run fails the task with its reason."""
    run = _pull(context, START)
    if not backends.poke(config_of(context), run, context):
        return None
    return {"execution": run["execution"], "status": "Succeeded"}


# ---------------------------------------------------------------------------------------------- after
@fail_fast
def deliver_outputs(**context: Any) -> dict[str, Any]:
    """Per-store order proposals and forecasts + the decision to the destination (idempotent per date)."""
    config, day = config_of(context), day_of(context)
    run, spec = _pull(context, START), _pull(context, EXTRACT)["spec"]
    forecasts = backends.output(run, "Postprocess", "forecasts")
    manifest = deliver.deliver(
        Storage(),
        config.destination,
        day,
        forecasts=join(forecasts, FORECASTS_FILE),
        orders=join(forecasts, ORDERS_FILE),
        decision=join(backends.output(run, "DecideRetrain", "decision"), DECISION_FILE),
        store_column=spec["keys"][0],
        date_column=spec["date"],
        execution=run["execution"],
    )
    log.info("delivered %s files for %s stores to %s", len(manifest["files"]), manifest["stores"], config.destination)
    return manifest


@fail_fast
def collect_decision(**context: Any) -> dict[str, Any]:
    """The model-quality decision, kept at ``<destination>/quality/<date>/decision.json``."""
    config, day = config_of(context), day_of(context)
    run, storage = _pull(context, START), Storage()
    decision = json.loads(storage.read_bytes(join(backends.output(run, "DecideRetrain", "decision"), DECISION_FILE)))
    location = storage.put_bytes(
        json.dumps(decision, indent=2).encode(), join(config.destination, "quality", str(day), DECISION_FILE)
    )
    return {"decision": decision, "location": location, "forecast_date": _pull(context, GROUND_TRUTH)["forecast_date"]}


def branch_on_decision(decision_task: str) -> Callable[..., str]:
    """The branch callable: ``trigger_retrain`` when the decision says retrain, else ``done``."""

    def choose(**context: Any) -> str:
        decision = _pull(context, decision_task)["decision"]
        reasons = "; ".join(decision.get("reasons", [])) or "no violation"
        log.info("retrain decision: %s (%s)", decision.get("retrain"), reasons)
        return RETRAIN if decision.get("retrain") else DONE

    return choose


@fail_fast
def review_model(**context: Any) -> dict[str, Any]:
    """The version the build registered: left for a reviewer, or approved when the run's auto_approve says so."""
    config = config_of(context)
    run, registry = _pull(context, START), open_registry(config.registry_url)
    if run["backend"] == "local":
        package = backends.local_record(run)["steps"]["RegisterModel"]["model_package"]
        version = registry.get(package["group"], int(package["version"]))
    else:
        version = registry.list_versions(config.group)[0]
    if config.auto_approve and version.status != ApprovalStatus.APPROVED:
        note = f"auto-approved by Airflow {context['dag'].dag_id} run {context['run_id']} (DAG param auto_approve)"
        version = registry.approve(version.group, version.version, note=note)
    elif version.status == ApprovalStatus.PENDING:
        log.info(
            "version %s of %s waits for approval: forecaster registry approve --registry %s --group %s --version %s",
            version.version,
            version.group,
            config.registry_url,
            version.group,
            version.version,
        )
    return {"group": version.group, "version": version.version, "status": str(version.status)}
