"""The inference pipeline's Postprocess with the ordering inputs: one step table, both executors.

The SDK definition (built offline, under moto) and the local runner render the same ``forecaster postprocess``
command line from the table: optional inputs left out when their parameter is empty, the order date and the
service level passed as ``--flag=VALUE``. Bad ordering inputs fail the Postprocess step with the reason and leave
no forecasts and no orders behind.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from forecaster.cli.main import run_command
from forecaster.container.layout import PROCESSING_INPUT_ROOT, PROCESSING_OUTPUT_ROOT
from forecaster.errors import PipelineStepError
from forecaster.io import read_table
from forecaster.pipelines.catalog import INFERENCE
from forecaster.pipelines.catalog_steps import ORDERING_INPUTS, ORDERING_VALUES
from forecaster.pipelines.local_steps import StepContext, processing_argv, run_processing

POSTPROCESS = INFERENCE.step("Postprocess")
GIVEN = {
    "StockData": "s3://orders/stock/",
    "ItemMasterData": "s3://orders/items/",
    "DeliveryCalendarData": "s3://orders/calendar/",
    "OrderDate": "2024-06-03",
}


def _sdk_postprocess(defaults: dict[str, str]) -> tuple[dict, dict[str, Any]]:
    """(the Postprocess step, {parameter: default}) of the inference definition built with ``defaults``."""
    from forecaster.pipelines import sdk
    from forecaster.pipelines.definitions import build_pipeline

    with sdk.offline_aws():
        pipeline = build_pipeline(
            "inference", role=sdk.PLACEHOLDER_ROLE, region=sdk.DEFAULT_REGION, bucket=None, defaults=defaults
        )
        document = json.loads(pipeline.definition())
    (step,) = [s for s in document["Steps"] if s["Name"] == "Postprocess"]
    return step, {p["Name"]: p.get("DefaultValue") for p in document["Parameters"]}


def _resolved(argument: Any, values: dict[str, Any]) -> str:
    """A container argument with its parameters replaced by ``values`` (what SageMaker passes)."""
    if isinstance(argument, str):
        return argument
    if "Get" in argument:
        return str(values[argument["Get"].removeprefix("Parameters.")])
    join = argument["Std:Join"]
    return join["On"].join(_resolved(value, values) for value in join["Values"])


def _local_argv(values: dict[str, str], folder: Path = Path(PROCESSING_OUTPUT_ROOT).parent) -> list[str]:
    inputs = {name: Path(f"{PROCESSING_INPUT_ROOT}/{name}") for name in POSTPROCESS.inputs}
    params = {**{k: str(v) for k, v in INFERENCE.defaults().items()}, **values}
    ctx = StepContext(INFERENCE, POSTPROCESS, folder, inputs, params, output_of=lambda step, output: Path())
    return processing_argv(ctx)


@pytest.mark.slow
@pytest.mark.parametrize("given", [{}, GIVEN], ids=["without stock", "with stock"])
def test_the_sdk_and_the_runner_render_the_same_postprocess(given):
    step, defaults = _sdk_postprocess(given)
    arguments = step["Arguments"]
    inputs = {i["InputName"]: i["S3Input"] for i in arguments["ProcessingInputs"]}
    optional = {name for name, (param, _, _) in ORDERING_INPUTS.items() if param in given}
    assert set(inputs) == {"keys", "predictions", *optional}
    for name in optional:
        param = ORDERING_INPUTS[name][0]
        assert inputs[name]["S3Uri"] == {"Get": f"Parameters.{param}"} and defaults[param] == given[param]
        assert inputs[name]["LocalPath"] == f"{PROCESSING_INPUT_ROOT}/{name}"
    # an input left out is not a parameter of the definition either: an execution cannot pass it by mistake
    assert {param for param, _, _ in ORDERING_INPUTS.values()} & set(defaults) == set(given) - set(ORDERING_VALUES)
    assert set(ORDERING_VALUES) <= set(defaults)
    values = {**defaults, "ServiceLevel": "0.9"}
    sdk_argv = [_resolved(a, values) for a in arguments["AppSpecification"]["ContainerArguments"]]
    absent = {param: "" for param, _, _ in ORDERING_INPUTS.values()}
    local = _local_argv({**absent, **{k: v for k, v in values.items() if k in INFERENCE.defaults()}})
    assert [*POSTPROCESS.command, *sdk_argv] == local
    assert ("--order-date=2024-06-03" in local) == bool(given) and "--service-level=0.9" in local
    assert ("--stock=/opt/ml/processing/input/stock" in local) == bool(given)
    assert not any(token.startswith("--open-orders") for token in local)


def _postprocess_folder(tmp_path: Path) -> dict[str, Path]:
    """keys + transform output of two series (S1 x a, S1 x b) over two days from 2024-06-04, and the stock."""
    keys = tmp_path / "keys"
    predictions = tmp_path / "predictions"
    keys.mkdir()
    predictions.mkdir()
    frame = pd.DataFrame(
        [{"store_id": "S1", "item_id": i, "date": d} for i in ("a", "b") for d in ("2024-06-04", "2024-06-05")]
    )
    frame.to_csv(keys / "keys.csv", index=False)
    (predictions / "features.csv.out").write_text("8,10,12,10\n" * 4)
    stock = tmp_path / "stock"
    stock.mkdir()
    return {"keys": keys, "predictions": predictions, "stock": stock}


def _write_stock(folder: Path, **first_row: Any) -> None:
    rows = [{"store_id": "S1", "item_id": i, "stock_date": "2024-06-03", "on_hand_units": 5} for i in ("a", "b")]
    rows[0].update(first_row)
    pd.DataFrame(rows).to_csv(folder / "stock.csv", index=False)


def _run_step(tmp_path: Path, inputs: dict[str, Path], **params: str) -> StepContext:
    values = {k: str(v) for k, v in INFERENCE.defaults().items()}
    values.update({param: str(inputs[name]) for name, (param, _, _) in ORDERING_INPUTS.items() if name in inputs})
    values.update(params)
    folder = tmp_path / "Postprocess"
    ctx = StepContext(
        INFERENCE,
        POSTPROCESS,
        folder,
        inputs={name: inputs[name] for name in POSTPROCESS.inputs if name in inputs},
        params=values,
        output_of=lambda step, output: Path(),
        run_command=run_command,
    )
    ctx.output("forecasts").mkdir(parents=True)
    run_processing(ctx)
    return ctx


def test_the_pipeline_step_orders_with_stock_and_without(tmp_path):
    inputs = _postprocess_folder(tmp_path)
    _write_stock(inputs["stock"])
    ctx = _run_step(tmp_path, inputs)
    orders = read_table(ctx.output("forecasts") / "order_proposals.csv")
    assert orders["stock_considered"].all() and orders["stock_counted"].tolist() == [5, 5]
    assert orders["order_date"].tolist() == ["2024-06-03"] * 2
    del inputs["stock"]
    inputs["calendar"] = tmp_path / "calendar"
    inputs["calendar"].mkdir()
    pd.DataFrame({"weekday": ["mon"], "lead_time_days": [2]}).to_csv(inputs["calendar"] / "c.csv", index=False)
    ctx = _run_step(tmp_path / "without", inputs, ServiceLevel="0.5")
    orders = read_table(ctx.output("forecasts") / "order_proposals.csv")
    assert len(orders) == 4 and not orders["stock_considered"].any()
    assert orders["order_units"].tolist() == [10] * 4  # the override: the median of each day
    assert "--calendar given without --stock: not used" in ctx.log.read_text()


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("negative stock", "row 1, column 'on_hand_units': must be a finite number >= 0. Got -2"),
        ("unknown series", "the stock names store_id='S1', item_id='z', which is not among the forecast series"),
        ("other day", "the stock was counted on 2024-06-02, not on the order day 2024-06-03"),
        ("calendar without the day", "no order on 2024-06-03 (Monday)"),
        ("pack size 0", "items.csv row 2, column 'pack_size': must be a finite number > 0. Got 0"),
    ],
)
def test_bad_ordering_inputs_fail_the_step_and_leave_nothing(tmp_path, case, message):
    inputs = _postprocess_folder(tmp_path)
    params: dict[str, str] = {}
    first_row = {"negative stock": {"on_hand_units": -2}, "unknown series": {"item_id": "z"}}.get(case, {})
    _write_stock(inputs["stock"], **first_row)
    if case == "other day":
        params["OrderDate"] = "2024-06-03"
        _write_stock(inputs["stock"], stock_date="2024-06-02")
    elif case == "calendar without the day":
        inputs["calendar"] = tmp_path / "calendar"
        inputs["calendar"].mkdir()
        pd.DataFrame({"weekday": ["tue", "thu"]}).to_csv(inputs["calendar"] / "calendar.csv", index=False)
    elif case == "pack size 0":
        inputs["item_master"] = tmp_path / "items"
        inputs["item_master"].mkdir()
        pd.DataFrame({"item_id": ["a", "b"], "pack_size": [6, 0]}).to_csv(
            inputs["item_master"] / "items.csv", index=False
        )
    with pytest.raises(PipelineStepError) as error:
        _run_step(tmp_path, inputs, **params)
    assert message in error.value.reason, error.value.reason
    assert list((tmp_path / "Postprocess" / "output" / "forecasts").iterdir()) == []


@pytest.mark.slow
def test_the_definition_command_takes_parameter_defaults(tmp_path):
    from pipeline_helpers import build_offline

    document = build_offline(tmp_path, "inference", "--param", "StockData=s3://orders/stock/")
    (step,) = [s for s in document["Steps"] if s["Name"] == "Postprocess"]
    assert [i["InputName"] for i in step["Arguments"]["ProcessingInputs"]] == ["keys", "predictions", "stock"]
    assert {"Name": "StockData", "Type": "String", "DefaultValue": "s3://orders/stock/"} in document["Parameters"]
