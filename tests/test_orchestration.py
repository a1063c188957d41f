"""Orchestration functions without Airflow: extract (source drops -> validated pipeline inputs), deliver, config."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pandas as pd
import pytest

from forecaster.artifact import FeatureSchema
from forecaster.errors import DataValidationError, InvalidParameterError
from forecaster.io import read_table, write_table
from forecaster.orchestration import deliver, extract
from forecaster.orchestration.config import KEYS, OrchestrationConfig, parse_config
from forecaster.orchestration.storage import Storage

HISTORY_DAYS = 30


@pytest.fixture
def source(tmp_path, synthetic_frame, trained_model_dir) -> tuple[Path, dt.date, FeatureSchema]:
    """sales/<day>.csv for the 30 days before the forecast day, plan/<day>.csv of the model's horizon."""
    schema = FeatureSchema.load(trained_model_dir)
    frame = synthetic_frame.copy()
    frame["date"] = pd.to_datetime(frame["date"])
    day = (frame["date"].max() - pd.Timedelta(days=schema.horizon - 1)).date()
    for offset in range(1, HISTORY_DAYS + 1):
        sales_day = day - dt.timedelta(days=offset)
        rows = frame[frame["date"].dt.date == sales_day]
        write_table(
            rows.assign(date=rows["date"].dt.strftime("%Y-%m-%d")), tmp_path / "src" / "sales" / f"{sales_day}.csv"
        )
    plan = frame.loc[frame["date"].dt.date >= day, ["store_id", "item_id", "date", "campaign", "discount", "holiday"]]
    write_table(plan.assign(date=plan["date"].dt.strftime("%Y-%m-%d")), tmp_path / "src" / "plan" / f"{day}.csv")
    return tmp_path / "src", day, schema


def _extract(source_dir: Path, day: dt.date, schema: FeatureSchema, target: Path) -> dict:
    return extract.extract_daily(Storage(), str(source_dir), schema, day, HISTORY_DAYS, str(target))


def test_extract_stages_validated_history_and_plan(source, tmp_path):
    source_dir, day, schema = source
    staged = _extract(source_dir, day, schema, tmp_path / "staged")
    history, future = read_table(staged["history"]), read_table(staged["future"])
    assert staged["series"] == 12 and staged["days"] == schema.horizon
    assert len(history) == 12 * HISTORY_DAYS and pd.to_datetime(history["date"]).max().date() == day - dt.timedelta(1)
    assert len(future) == 12 * schema.horizon and pd.to_datetime(future["date"]).min().date() == day


def _edit(path: Path, change) -> None:
    frame = pd.read_csv(path)
    change(frame).to_csv(path, index=False)


@pytest.mark.parametrize(
    ("name", "offset", "change", "expected"),
    [
        ("missing column", 3, lambda f: f.drop(columns="discount"), ["column 'discount' is missing"]),
        (
            "a day missing for a store",
            5,
            lambda f: f[f["store_id"] != "S002"],
            ["no row for store_id=S002", "columns ['store_id', 'item_id']"],
        ),
        ("duplicate row", 2, lambda f: pd.concat([f, f.iloc[[2]]]), ["more than one row", "row 13"]),
        (
            "text in the target",
            4,
            lambda f: f.assign(units_sold=f["units_sold"].astype(object).where(f.index != 1, "two")),
            ["'units_sold' column", "row 2"],
        ),
    ],
)
def test_a_bad_drop_fails_naming_file_row_and_column(source, tmp_path, name, offset, change, expected):
    source_dir, day, schema = source
    bad = source_dir / "sales" / f"{day - dt.timedelta(days=offset)}.csv"
    _edit(bad, change)
    with pytest.raises(DataValidationError) as caught:
        _extract(source_dir, day, schema, tmp_path / "staged")
    message = caught.value.reason
    assert str(bad) in message, message
    for text in expected:
        assert text in message, message
    assert not (tmp_path / "staged").exists()  # nothing staged


def test_a_missing_drop_and_a_short_plan_are_named(source, tmp_path):
    source_dir, day, schema = source
    gap = source_dir / "sales" / f"{day - dt.timedelta(days=9)}.csv"
    gap.unlink()
    with pytest.raises(DataValidationError, match=f"{gap.stem}.csv.*is missing"):
        _extract(source_dir, day, schema, tmp_path / "staged")
    gap.parent.joinpath(f"{day - dt.timedelta(days=1)}.csv").unlink()
    with pytest.raises(DataValidationError, match="needs every day up to yesterday"):
        _extract(source_dir, day, schema, tmp_path / "staged")


def test_a_plan_without_a_day_of_a_series_is_named(source, tmp_path):
    source_dir, day, schema = source
    plan = source_dir / "plan" / f"{day}.csv"
    last = str(day + dt.timedelta(days=schema.horizon - 1))
    _edit(
        plan, lambda f: f[~((f["store_id"] == "S003") & (f["item_id"] == f["item_id"].iloc[0]) & (f["date"] == last))]
    )
    with pytest.raises(DataValidationError) as caught:
        _extract(source_dir, day, schema, tmp_path / "staged")
    assert str(plan) in caught.value.reason and f"on {last} (column 'date')" in caught.value.reason


def test_a_row_of_another_day_is_named(source, tmp_path):
    source_dir, day, schema = source
    bad = source_dir / "sales" / f"{day - dt.timedelta(days=6)}.csv"
    _edit(bad, lambda f: f.assign(date=f["date"].where(f.index != 4, str(day - dt.timedelta(days=7)))))
    with pytest.raises(DataValidationError, match=r"row 5, column 'date'"):
        _extract(source_dir, day, schema, tmp_path / "staged")


def _pipeline_outputs(tmp_path: Path, stores: list[str], retrain: bool) -> dict[str, str]:
    out = tmp_path / "outputs"
    rows = [
        {"store_id": s, "item_id": "apple", "date": "2024-05-01", "p10": 1, "p50": 2, "p90": 3, "mean": 2}
        for s in stores
    ]
    write_table(pd.DataFrame(rows), out / "forecasts.csv")
    orders = pd.DataFrame(rows)[["store_id", "item_id", "date"]].assign(order_units=3, service_level=0.8)
    write_table(orders, out / "order_proposals.csv")
    (out / "decision.json").write_text(json.dumps({"retrain": retrain, "reasons": []}))
    return {
        "forecasts": str(out / "forecasts.csv"),
        "orders": str(out / "order_proposals.csv"),
        "decision": str(out / "decision.json"),
    }


def _deliver(tmp_path: Path, day: dt.date, stores: list[str], retrain: bool = False) -> dict:
    files = _pipeline_outputs(tmp_path, stores, retrain)
    return deliver.deliver(Storage(), str(tmp_path / "dest"), day, **files, store_column="store_id", date_column="date")


def test_deliver_is_idempotent_and_replaces_the_date_as_a_whole(tmp_path):
    day = dt.date(2024, 5, 1)
    first = _deliver(tmp_path, day, ["S001", "S002", "S003"])
    assert first["files"] == sorted(
        ["decision.json", *(f"{kind}/store_id=S00{i}.csv" for kind in ("forecasts", "orders") for i in (1, 2, 3))]
    )
    again = _deliver(tmp_path, day, ["S001", "S002"])  # rerun: S003 was closed meanwhile
    folder = tmp_path / "dest" / str(day)
    assert sorted(str(p.relative_to(folder)) for p in folder.rglob("*.csv")) == [
        f for f in again["files"] if f.endswith(".csv")
    ]
    assert json.loads((folder / "manifest.json").read_text())["stores"] == 2


def test_deliver_of_an_earlier_date_leaves_later_dates_alone(tmp_path):
    later, earlier = dt.date(2024, 5, 8), dt.date(2024, 5, 1)
    _deliver(tmp_path, later, ["S001"], retrain=True)
    before = {p: p.read_bytes() for p in (tmp_path / "dest" / str(later)).rglob("*") if p.is_file()}
    _deliver(tmp_path, earlier, ["S001", "S002"])
    assert {p: p.read_bytes() for p in (tmp_path / "dest" / str(later)).rglob("*") if p.is_file()} == before
    assert json.loads((tmp_path / "dest" / "latest.json").read_text())["date"] == str(later)
    assert deliver.read_manifest(Storage(), str(tmp_path / "dest"), earlier)["stores"] == 2
    assert len(deliver.delivered_forecasts(Storage(), str(tmp_path / "dest"), earlier)) == 2


def test_config_keys_are_documented_and_checked():
    assert set(KEYS) == set(OrchestrationConfig.__dataclass_fields__)
    config = parse_config(
        '{"source": "s3://b/src", "staging": "s3://b/stage", "history_days": "60"}',
        {"backend": "sagemaker", "auto_approve": ""},
    )
    assert config.backend == "sagemaker" and config.history_days == 60 and config.auto_approve is False
    assert config.pipeline_name("inference") == "forecaster-batch-inference"
    with pytest.raises(InvalidParameterError, match="no key 'sorce'"):
        parse_config({"sorce": "x"})
    with pytest.raises(InvalidParameterError, match="one of \\['local', 'sagemaker'\\]"):
        parse_config({}, {"backend": "lokal"})
    with pytest.raises(InvalidParameterError, match=r"'history_days' parameter .* must be an int in the range \[1"):
        parse_config({"history_days": "many"})
    with pytest.raises(InvalidParameterError, match="s3:// prefix"):
        parse_config({"backend": "sagemaker", "staging": "/tmp/x"})


@pytest.mark.parametrize(
    ("document", "match"),
    [
        ({"backend": "sagemaker"}, "s3:// prefix"),  # the default staging, <workdir>/staging, is local
        ({"history_days": -5}, r"'history_days' .* range \[1, inf\)"),  # was "no sales drop" for a drop that exists
        ({"quality_lag_days": -3}, r"'quality_lag_days' .* range \[0, inf\)"),
        ({"auto_approve": "ture"}, r"'auto_approve' .* must be a bool"),  # was False, silently
        ({"group": ""}, r"'group' .* non-empty str"),
        ({"pipeline_names": {"inferance": "prod-x"}}, "names no pipeline 'inferance'"),  # ran the default pipeline
        ({"parameters": {"inferance": {"MinDriftedFeatures": 4}}}, "names no pipeline 'inferance'"),
        ({"parameters": {"inference": 4}}, r"parameters\['inference'\] must be an object"),
        ({"parameters": {"inference": {"ServiceLevel": "1.5"}}}, r"'ServiceLevel' .* range \(0, 1\)"),
        ({"parameters": {"inference": {"NoSuchParam": 3}}}, "has no parameter NoSuchParam"),
        (
            {"backend": "sagemaker", "staging": "s3://b/s", "parameters": {"inference": {"StockData": "stock.csv"}}},
            r"'StockData' .* must be an S3 URI",
        ),
    ],
)
def test_a_configuration_error_fails_when_the_configuration_is_read(document, match):
    """Each of these passed, and failed later in a task (or never)."""
    with pytest.raises(InvalidParameterError, match=match):
        parse_config(document)
    assert parse_config({"aws_conn_id": None}).aws_conn_id is None  # typed str | None


# ---- the SageMaker side of backends (boto3 only; the DAG tests run it under Airflow) ----------------------------
def _pipeline(client, defaults: dict[str, str]) -> None:
    parameters = [{"Name": k, "Type": "String", "DefaultValue": v} for k, v in defaults.items()]
    client.create_pipeline(
        PipelineName="p",
        RoleArn="arn:aws:iam::123456789012:role/r",
        PipelineDefinition=json.dumps({"Version": "2020-12-01", "Parameters": parameters, "Steps": []}),
    )


def test_start_once_starts_one_execution_per_dag_run(fake_aws):
    import boto3
    from moto import mock_aws

    from forecaster.orchestration import backends

    with mock_aws():
        client = boto3.client("sagemaker")
        _pipeline(client, {"OutputPrefix": "s3://b/runs", "ModelDataUrl": "s3://b/v1/model.tar.gz"})
        name, token = backends.display_name("dag", "run-1"), backends.request_token("dag", "run-1")
        first = backends.start_once(client, "p", name, token, {"HistoryData": "s3://b/h"})
        again = backends.start_once(client, "p", name, token, {"HistoryData": "s3://b/h"})
        other = backends.start_once(client, "p", backends.display_name("dag", "run-2"), "x" * 32, None)
        executions = client.list_pipeline_executions(PipelineName="p")["PipelineExecutionSummaries"]
        assert first == again != other and len(executions) == 2
        # what the execution ran with: the deployed defaults, then what it was started with
        assert backends.execution_parameters(client, first) == {
            "OutputPrefix": "s3://b/runs",
            "ModelDataUrl": "s3://b/v1/model.tar.gz",
            "HistoryData": "s3://b/h",
        }
        run = backends.sagemaker_run(client, "inference", first)
        assert run["outputs"] == f"s3://b/runs/{first.rsplit('/', 1)[-1]}"
        assert backends.deployed_parameters(client, "p")["ModelDataUrl"] == "s3://b/v1/model.tar.gz"
        with pytest.raises(InvalidParameterError, match=r"No SageMaker pipeline 'prod-x' .*'pipeline_names'"):
            backends.deployed_parameters(client, "prod-x")  # was a ClientError, retried for 9 minutes


def test_display_name_and_token_are_per_dag_run_and_valid():
    import re

    from forecaster.orchestration import backends

    long_run = "scheduled__2024-04-10T00:00:00+00:00" * 4
    names = {backends.display_name(d, r) for d in ("a", "b") for r in (long_run, long_run + "x")}
    assert len(names) == 4 and all(len(n) <= 82 and re.fullmatch(r"[a-zA-Z0-9\-]+", n) for n in names)
    token = backends.request_token("a", long_run)
    assert token == backends.request_token("a", long_run) and 32 <= len(token) <= 128


def test_registered_package_is_read_from_the_register_model_step():
    import boto3
    from botocore.stub import Stubber

    from forecaster.errors import PipelineStepError
    from forecaster.orchestration import backends

    client = boto3.client("sagemaker", region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="x")
    arn = "arn:aws:sagemaker:eu-west-1:123456789012:pipeline/p/execution/abc"
    package = "arn:aws:sagemaker:eu-west-1:123456789012:model-package/forecaster-demand/7"
    steps = [
        {"StepName": "Evaluate", "StepStatus": "Succeeded", "Metadata": {}},
        {"StepName": "RegisterModel", "StepStatus": "Succeeded", "Metadata": {"RegisterModel": {"Arn": package}}},
    ]
    with Stubber(client) as stub:  # moto has no ListPipelineExecutionSteps; the stub checks the API's shapes
        stub.add_response(
            "list_pipeline_execution_steps", {"PipelineExecutionSteps": steps}, {"PipelineExecutionArn": arn}
        )
        assert backends.registered_package(client, arn) == package
        stub.add_response(
            "list_pipeline_execution_steps", {"PipelineExecutionSteps": steps[:1]}, {"PipelineExecutionArn": arn}
        )
        with pytest.raises(PipelineStepError, match="no RegisterModel step"):
            backends.registered_package(client, arn)


def test_sagemaker_runs_take_no_model_parameter_from_airflow():
    from forecaster.orchestration import models

    config = parse_config(
        {"backend": "sagemaker", "staging": "s3://b/s", "parameters": {"inference": {"ModelDataUrl": "s3://bucket/v2"}}}
    )
    with pytest.raises(InvalidParameterError, match=r"\['ModelDataUrl'\] for 'inference'.*deploy repository pinned"):
        models.run_model(config, "daily_forecast")
    assert models.run_model(parse_config({"backend": "sagemaker", "staging": "s3://b/s"}), "daily_forecast") == {}


def test_a_task_stopped_while_the_local_runner_runs_stops_the_runner(tmp_path):
    """A task timeout left the runner running: the retry met its lock, and it registered a model unseen."""
    import signal
    import time

    from forecaster.orchestration import backends

    runner = tmp_path / "forecaster"
    runner.write_text(
        "#!/bin/bash\n"
        f"trap 'echo stopped > {tmp_path / 'stopped'}; exit 143' TERM\n"
        "echo running\n"
        "for i in $(seq 300); do sleep 0.1; done\n"
    )
    runner.chmod(0o755)
    config = parse_config({"forecaster_cli": str(runner), "workdir": str(tmp_path / "work")})

    def timeout(*_):
        raise TimeoutError("the task's execution_timeout")  # what Airflow raises in the task (AirflowTaskTimeout)

    previous = signal.signal(signal.SIGALRM, timeout)
    signal.setitimer(signal.ITIMER_REAL, 1.0)
    started = time.monotonic()
    try:
        with pytest.raises(TimeoutError):
            backends.run_local(config, "build", {}, workdir=str(tmp_path / "work"))
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert (tmp_path / "stopped").read_text() == "stopped\n" and time.monotonic() - started < 20


def test_a_failed_execution_names_its_failed_steps_and_their_reasons():
    """SageMaker's execution reason is generic ("Step failure: One or multiple steps failed")."""
    import boto3
    from botocore.stub import Stubber

    from forecaster.orchestration import backends

    client = boto3.client("sagemaker", region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="x")
    arn = "arn:aws:sagemaker:eu-west-1:123456789012:pipeline/p/execution/abc"
    steps = [
        {"StepName": "Preprocess", "StepStatus": "Succeeded"},
        {"StepName": "Transform", "StepStatus": "Failed", "FailureReason": "ClientError: model failed to load"},
    ]
    with Stubber(client) as stub:
        expected = {"PipelineExecutionArn": arn, "SortOrder": "Ascending"}
        stub.add_response("list_pipeline_execution_steps", {"PipelineExecutionSteps": steps}, expected)
        assert backends.failed_steps(client, arn) == "step Transform: ClientError: model failed to load"
        stub.add_client_error("list_pipeline_execution_steps", "AccessDeniedException")
        assert backends.failed_steps(client, arn) == ""  # the failure stands with what it has


def test_the_quality_sensor_finds_a_delivery_of_any_horizon_the_model_may_have(tmp_path):
    """A 90-day model: its delivery ends the day before ``day`` 90 days after it was made (the look-back was 60)."""
    import dataclasses
    import datetime as dt

    from forecaster.contract import HORIZON_RANGE
    from forecaster.orchestration.models import forecast_day

    config = dataclasses.replace(OrchestrationConfig(), destination=str(tmp_path / "dest"))
    made = dt.date(2026, 1, 1)
    folder = tmp_path / "dest" / str(made)
    folder.mkdir(parents=True)
    (folder / deliver.MANIFEST).write_text('{"days": 90}')
    assert forecast_day(config, Storage(), made + dt.timedelta(days=90)) == (made, {"days": 90})
    assert forecast_day(config, Storage(), made + dt.timedelta(days=89)) is None
    assert HORIZON_RANGE[1] > 90
