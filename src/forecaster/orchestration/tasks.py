"""The task callables of the three DAGs: Airflow context in, package functions called, a dict out (the XCom).

A :class:`~forecaster.errors.ForecasterError` (bad drop, failed pipeline, no approved model) fails the task at
once with its reason (``AirflowFailException``: a retry would not fix it; clear the task once the cause is
fixed). Anything else (network, throttling) is retried as the task's ``retries`` say.

The DAG files import this module when they are parsed, so it imports nothing heavy at module level: pandas,
numpy, pyarrow (and the modules that use them) are imported inside the tasks.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
from collections.abc import Callable
from typing import Any

from forecaster.checks.contract import DECISION_FILE
from forecaster.contract import FORECASTS_FILE, ORDERS_FILE
from forecaster.errors import DataValidationError, ForecasterError, InvalidParameterError, NoApprovedModelError
from forecaster.orchestration import backends, models
from forecaster.orchestration.config import (
    BACKEND_VARIABLE,
    DAG_PIPELINES,
    VARIABLE,
    OrchestrationConfig,
    parse_config,
)
from forecaster.orchestration.storage import Storage, dated_files, join
from forecaster.pipelines.catalog_steps import ORDERING_INPUTS
from forecaster.registry import ApprovalStatus, open_registry

log = logging.getLogger(__name__)
#: task ids (the same for both backends)
SALES, PLAN, EXTRACT, CHOOSE = "wait_for_sales", "wait_for_plan", "extract", "choose_backend"
RUN_LOCAL, START, WAIT, DELIVER = "run_local_pipeline", "start_pipeline", "wait_for_pipeline", "deliver"
DECISION, RETRAIN, DONE = "collect_decision", "trigger_retrain", "done"
GROUND_TRUTH, REVIEW = "wait_for_ground_truth", "review_model"
#: the XCom keys extract pushes for start_pipeline: each is the SageMakerStartPipelineOperator argument of its name
START_ARGUMENTS = ("pipeline_name", "pipeline_params", "aws_conn_id", "region_name")
PIPELINE_PARAMS = START_ARGUMENTS[1]
#: the inference pipeline parameter the staged stock drop is passed as
STOCK_PARAMETER = ORDERING_INPUTS["stock"][0]


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
    given = getattr(context.get("dag_run"), "conf", None) or {}
    declared = set(getattr(context.get("dag"), "params", None) or params)  # ``params`` holds the conf's keys too
    unknown = sorted(set(given) - declared)
    if unknown:  # Airflow checks the params' types, not the names: a typo ("redelivery") was ignored
        raise InvalidParameterError(
            f"The run's conf has no param {unknown[0]!r}. This DAG's params: {', '.join(sorted(declared)) or 'none'}."
        )
    backend = params.get("backend") or Variable.get(BACKEND_VARIABLE, default=None)
    overrides = {"backend": backend, "auto_approve": params.get("auto_approve")}
    return parse_config(Variable.get(VARIABLE, default=None), overrides)


def day_of(context: dict[str, Any]) -> dt.date:
    """The run's logical date (the day a daily run forecasts from)."""
    moment = context.get("logical_date") or context["dag_run"].run_after
    return moment.date()


def _dag(context: dict[str, Any]) -> str:
    return context["dag"].dag_id.removeprefix("forecaster_")


def _pull(context: dict[str, Any], task_id: str, key: str = "return_value") -> Any:
    value = context["ti"].xcom_pull(task_ids=task_id, key=key)
    if not value:
        raise InvalidParameterError(f"Task {task_id} left no result (XCom) for this run; clear it to run it again.")
    return value


def sagemaker_client(config: OrchestrationConfig) -> Any:
    """A boto3 SageMaker client from the Amazon provider's ``SageMakerHook`` (the Airflow connection's session)."""
    from airflow.providers.amazon.aws.hooks.sagemaker import SageMakerHook

    return SageMakerHook(aws_conn_id=config.aws_conn_id, region_name=config.region).conn


def _push_params(context: dict[str, Any], config: OrchestrationConfig, dag: str, inputs: dict[str, Any]) -> dict:
    """Push what ``start_pipeline`` reads (:data:`START_ARGUMENTS`: pipeline, parameters, connection, region)."""
    key = DAG_PIPELINES[dag]
    params = {**config.pipeline_parameters(key), **{k: str(v) for k, v in inputs.items()}}
    pushed = {
        "pipeline_params": params,
        "pipeline_name": config.pipeline_name(key),
        "aws_conn_id": config.aws_conn_id or "",
        "region_name": config.region or "",
    }
    for name in START_ARGUMENTS:
        context["ti"].xcom_push(key=name, value=pushed[name])
    return params


# ---------------------------------------------------------------------------------------------- sensors
def _drop_ready(context: dict[str, Any], kind: str, day: dt.date) -> str | None:
    config = config_of(context)
    location = dated_files(Storage(), join(config.source, kind)).get(day)
    if location is None:
        log.info("waiting for the %s drop of %s in %s", kind, day, join(config.source, kind))
    return location


@fail_fast
def sales_ready(**context: Any) -> str | None:
    """The sales drop of the day before the run's date, once it is there."""
    return _drop_ready(context, "sales", day_of(context) - dt.timedelta(days=1))


@fail_fast
def plan_ready(**context: Any) -> str | None:
    """The plan drop of the run's date, once it is there."""
    return _drop_ready(context, "plan", day_of(context))


# ---------------------------------------------------------------------------------------------- extract
@fail_fast
def extract_daily(**context: Any) -> dict[str, Any]:
    """Sales up to yesterday + today's plan (+ yesterday's stock drop if any), validated against the model's spec."""
    from forecaster.orchestration import extract

    config, day, dag = config_of(context), day_of(context), _dag(context)
    model = models.run_model(config, dag)
    schema = models.schema_of(models.model_data_url(config, model, dag, lambda: sagemaker_client(config)))
    if config.spec:
        from dataclasses import replace

        from forecaster.spec import resolve_spec

        schema = replace(schema, spec=resolve_spec(config.spec))
    target = join(config.staging_root, dag, str(day))
    staged = extract.extract_daily(Storage(), config.source, schema, day, config.history_days, target)
    log.info("staged %s series, %s history rows, %s days", staged["series"], staged["history_rows"], staged["days"])
    inputs = {**model, "HistoryData": staged["history"], "FutureData": staged["future"]}
    if staged["stock"]:
        inputs[STOCK_PARAMETER] = staged["stock"]
    else:
        log.warning(
            "no stock drop of %s in %s: the orders are made without stock (stock_considered = False)",
            day - dt.timedelta(days=1),
            join(config.source, "stock"),
        )
    parameters = _push_params(context, config, dag, inputs)
    return {**staged, "spec": schema.spec.to_dict(), "parameters": parameters}


@fail_fast
def extract_training(**context: Any) -> dict[str, Any]:
    """``train_days`` of sales up to yesterday, validated, staged with the spec as the build pipeline's input."""
    from forecaster.orchestration import extract
    from forecaster.spec import resolve_spec

    config, day, dag = config_of(context), day_of(context), _dag(context)
    if config.spec:
        spec = resolve_spec(config.spec)
    else:
        from forecaster.pipelines.resolve import approved_model_parameters

        try:
            url = approved_model_parameters(open_registry(config.registry_url), config.group)["ModelDataUrl"]
        except NoApprovedModelError:
            raise InvalidParameterError(
                f"No approved model in {config.group!r} to take the dataset spec from: set 'spec' in the "
                f"{VARIABLE} Variable (a preset name or a spec JSON file) for the first training."
            ) from None
        spec = models.schema_of(url).spec
    target = join(config.staging_root, dag, str(day))
    staged = extract.extract_training(Storage(), config.source, spec, day, config.train_days, target)
    parameters = _push_params(context, config, dag, {"InputData": staged["train"]})
    return {**staged, "spec": spec.to_dict(), "parameters": parameters}


@fail_fast
def ground_truth_ready(**context: Any) -> dict[str, Any] | None:
    """The forecast date and its days when it was delivered and every day's sales drop is there, else None."""
    config, day, storage = config_of(context), day_of(context), Storage()
    found = models.forecast_day(config, storage, day)
    if found is None:
        log.info("no complete delivery whose forecast ends before %s in %s yet", day, config.destination)
        return None
    first, manifest = found
    drops = dated_files(storage, join(config.source, "sales"))
    days = [first + dt.timedelta(days=i) for i in range(manifest["days"])]
    missing = [str(d) for d in days if d not in drops]
    if missing:
        log.info("waiting for the sales drops (ground truth) of %s", ", ".join(missing))
        return None
    return {"forecast_date": str(first), "days": manifest["days"], "model_package": manifest.get("model_package", "")}


@fail_fast
def extract_ground_truth(**context: Any) -> dict[str, Any]:
    """The delivered forecasts of the forecast date and the sales drops of its days, validated and staged.

    The model checked is the one that made the forecasts (the delivery manifest's ``model_package``), whatever
    was approved since.
    """
    import tempfile
    from pathlib import Path

    from forecaster.io import write_table
    from forecaster.orchestration import deliver, extract
    from forecaster.pipelines.resolve import parameters_for

    config, day, dag = config_of(context), day_of(context), _dag(context)
    ready = _pull(context, GROUND_TRUTH)
    storage, first = Storage(), dt.date.fromisoformat(ready["forecast_date"])
    if not ready.get("model_package"):
        raise DataValidationError(
            f"The delivery manifest of {first} in {config.destination} names no model_package (delivered before "
            "manifests recorded the model): the model that made those forecasts is unknown; skip this date."
        )
    version = models.model_version(config, ready["model_package"])
    model = parameters_for(version, DAG_PIPELINES[dag])
    schema = models.schema_of(version.model_data_url)
    target = join(config.staging_root, dag, str(day))
    staged = extract.extract_ground_truth(storage, config.source, schema.spec, first, ready["days"], target)
    forecasts = deliver.delivered_forecasts(storage, config.destination, first)
    with tempfile.TemporaryDirectory() as tmp:
        local = write_table(forecasts, Path(tmp) / FORECASTS_FILE)
        storage.put_file(local, join(target, "forecasts", FORECASTS_FILE))
    inputs = {**model, "ForecastsData": join(target, "forecasts"), "GroundTruthData": staged["truth"]}
    parameters = _push_params(context, config, dag, inputs)
    return {**staged, **ready, "spec": schema.spec.to_dict(), "parameters": parameters}


# ---------------------------------------------------------------------------------------------- pipeline
def choose_backend(**context: Any) -> str:
    """The branch callable: ``run_local_pipeline`` or ``start_pipeline`` (SageMaker), as the config says."""
    return RUN_LOCAL if config_of(context).backend == "local" else START


@fail_fast
def run_local_pipeline(**context: Any) -> dict[str, Any]:
    """Run this DAG's pipeline with the local runner, to its end, in the date's (resumable) work directory."""
    config, day, dag = config_of(context), day_of(context), _dag(context)
    key = DAG_PIPELINES[dag]
    workdir = join(config.workdir, dag, str(day), key)
    return backends.run_local(config, key, _pull(context, EXTRACT, PIPELINE_PARAMS), workdir=workdir)


def run_of(context: dict[str, Any]) -> dict[str, Any]:
    """The run description of this DAG run's pipeline run, whichever backend ran it."""
    config = config_of(context)
    if config.backend == "local":
        return _pull(context, RUN_LOCAL)
    return backends.sagemaker_run(sagemaker_client(config), DAG_PIPELINES[_dag(context)], _pull(context, START))


# ---------------------------------------------------------------------------------------------- after
@fail_fast
def deliver_outputs(**context: Any) -> dict[str, Any]:
    """Per-store order proposals and forecasts + the decision to the destination (idempotent per date).

    A date already delivered is kept as it is (a rerun with a newer model does not replace what stores may
    have ordered from) unless the run's param ``redeliver`` is true.
    """
    from forecaster.orchestration import deliver

    config, day, storage = config_of(context), day_of(context), Storage()
    run, spec = run_of(context), _pull(context, EXTRACT)["spec"]
    model = {
        "model_package": run["parameters"].get("ModelPackageArn", ""),
        "model": run["parameters"].get("ModelDataUrl", ""),
    }
    existing = deliver.read_manifest(storage, config.destination, day)
    if existing is not None and not (context.get("params") or {}).get("redeliver"):
        log.warning(
            "%s was delivered already (execution %s, model %s): kept. This run (execution %s, model %s) delivers "
            "nothing; trigger with redeliver=true to replace it.",
            day,
            existing.get("execution"),
            existing.get("model_package"),
            run["execution"],
            model["model_package"],
        )
        return {**existing, "kept": True}
    forecasts = backends.output(run, "Postprocess", "forecasts")
    manifest = deliver.deliver(
        storage,
        config.destination,
        day,
        forecasts=join(forecasts, FORECASTS_FILE),
        orders=join(forecasts, ORDERS_FILE),
        decision=join(backends.output(run, "DecideRetrain", "decision"), DECISION_FILE),
        store_column=spec["keys"][0],
        date_column=spec["date"],
        execution=run["execution"],
        model=model,
    )
    log.info("delivered %s files for %s stores to %s", len(manifest["files"]), manifest["stores"], config.destination)
    return manifest


@fail_fast
def collect_decision(**context: Any) -> dict[str, Any]:
    """The model-quality decision, kept at ``<destination>/quality/<date>/decision.json``."""
    config, day = config_of(context), day_of(context)
    run, storage = run_of(context), Storage()
    decision = json.loads(storage.read_bytes(join(backends.output(run, "DecideRetrain", "decision"), DECISION_FILE)))
    location = storage.put_bytes(
        json.dumps(decision, indent=2).encode(), join(config.destination, "quality", str(day), DECISION_FILE)
    )
    ready = _pull(context, GROUND_TRUTH)
    return {
        "decision": decision,
        "location": location,
        "forecast_date": ready["forecast_date"],
        "model_package": ready["model_package"],
        "execution": run["execution"],
    }


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
    """The version this build registered: left for a reviewer, or approved when the run's auto_approve says so."""
    config = config_of(context)
    registry = open_registry(config.registry_url)
    if config.backend == "local":
        package = backends.local_record(_pull(context, RUN_LOCAL))["steps"]["RegisterModel"]["model_package"]
        version = registry.get(package["group"], int(package["version"]))
    else:
        version = models.model_version(
            config, backends.registered_package(sagemaker_client(config), _pull(context, START))
        )
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
    return {
        "group": version.group,
        "version": version.version,
        "status": str(version.status),
        "model_package": version.identifier,
    }


def on_failure(context: dict[str, Any]) -> None:
    """The DAGs' failure callback: one log line naming the DAG, the run, the task and the reason.

    Replace it (``dags.FAILURE_CALLBACKS``) or add a notifier there, e.g. the Slack or SNS provider's.
    """
    ti = context.get("ti")
    log.error(
        "forecaster task failed: dag=%s run=%s task=%s try=%s: %s",
        context["dag"].dag_id if context.get("dag") else "?",
        context.get("run_id"),
        getattr(ti, "task_id", "?"),
        getattr(ti, "try_number", "?"),
        context.get("exception"),
    )
