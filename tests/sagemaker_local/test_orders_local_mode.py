"""The batch-inference pipeline with the ordering inputs under ``LocalPipelineSession``: the same orders as the runner.

A model is built and approved with the project's local runner (in this process); the inference pipeline then
runs twice with the same stock drop, item master and delivery calendar: every step in a container under the
SDK's local mode (the optional inputs given as definition defaults, as ``pipeline upsert --param`` gives them),
and through the local runner. ``Postprocess`` must write the same forecasts and the same order lines.
"""

from __future__ import annotations

from pathlib import Path

import boto3
import pandas as pd
import pytest

from forecaster.io import read_table
from forecaster.pipelines.local import run_pipeline
from forecaster.pipelines.local_params import DEFAULT_GROUP
from forecaster.pipelines.resolve import approved_model_parameters
from forecaster.registry import ApprovalStatus, open_registry
from forecaster.synth import write_dataset
from pipeline_helpers import FAST_PIPELINE_PARAMETERS

from .local_mode import BUCKET, REGION, download, execute_pipeline, s3_uri, upload
from .test_pipelines_local_mode import assert_same_files, local_mode

pytestmark = pytest.mark.docker


def _ordering_inputs(split: Path, root: Path) -> dict[str, Path]:
    """Stock counted at the close of the order day (the day before the first forecast day), items, calendar."""
    future = read_table(split / "future", dtype={"store_id": str, "item_id": str})
    order_day = (pd.to_datetime(future["date"]).min() - pd.Timedelta(days=1)).strftime("%Y-%m-%d")
    series = future[["store_id", "item_id"]].drop_duplicates().reset_index(drop=True)
    folders = {name: root / name for name in ("stock", "items", "calendar")}
    for folder in folders.values():
        folder.mkdir(parents=True)
    stock = series.assign(stock_date=order_day, on_hand_units=[(3 * i) % 7 for i in range(len(series))])
    stock.to_csv(folders["stock"] / "stock.csv", index=False)
    items = series[["item_id"]].drop_duplicates().assign(pack_size=4, shelf_life_days=2, unit_price=2.0)
    items.to_csv(folders["items"] / "items.csv", index=False)
    weekdays = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
    pd.DataFrame({"weekday": weekdays, "lead_time_days": 1}).to_csv(folders["calendar"] / "calendar.csv", index=False)
    return folders


def _to_s3(path: str, name: str) -> str:
    """A local file or folder of the registry, uploaded to moto's S3 (a file alone under its own prefix)."""
    local = Path(path)
    if local.is_dir():
        return upload(local, s3_uri("approved", name))
    key = f"approved/{name}/{local.name}"
    boto3.client("s3", region_name=REGION).upload_file(str(local), BUCKET, key)
    return f"s3://{BUCKET}/{key}"


def test_inference_with_stock_writes_the_runners_orders(images, pipeline_session, tmp_path_factory):
    root = tmp_path_factory.mktemp("orders")
    data = write_dataset(root / "sales", stores=2, items=3, days=60, seed=3)
    registry = f"sqlite:///{root / 'registry.db'}"
    options = {"registry": registry, "progress": False}
    build = run_pipeline("build", root / "build", {**FAST_PIPELINE_PARAMETERS, "InputData": str(data)}, **options)
    assert build["status"] == "Succeeded"
    version = int(build["steps"]["RegisterModel"]["model_package"]["version"])
    open_registry(registry).set_status(DEFAULT_GROUP, version, ApprovalStatus.APPROVED)
    split = root / "build" / "Split" / "output"
    inputs = _ordering_inputs(split, root / "ordering")
    ordering = {"StockData": "stock", "ItemMasterData": "items", "DeliveryCalendarData": "calendar"}

    runner = run_pipeline(
        "inference",
        root / "runner",
        {"HistoryData": str(split / "history"), "FutureData": str(split / "future"), "TransformMaxConcurrent": 1,
         **{param: str(inputs[name]) for param, name in ordering.items()}},
        **options,
    )  # fmt: skip
    assert runner["status"] == "Succeeded", runner
    expected = root / "runner" / "Postprocess" / "output" / "forecasts"

    approved = approved_model_parameters(open_registry(registry), DEFAULT_GROUP, "inference")
    # the model data and baselines are local paths of the runner's registry: uploaded (the images: local_mode's)
    model = {name: _to_s3(value, name) for name, value in approved.items() if Path(value).exists()}
    given = {param: upload(inputs[name], s3_uri("ordering", name)) for param, name in ordering.items()}
    sdk = execute_pipeline(
        pipeline_session,
        "inference",
        {**local_mode(images, "inference"), "TransformMaxConcurrent": 1, **model,
         "HistoryData": upload(split / "history", s3_uri("history")),
         "FutureData": upload(split / "future", s3_uri("future"))},
        defaults=given,
    )  # fmt: skip
    assert sdk.status == "Succeeded", sdk.execution.failure_reason
    got = download(sdk.output("Postprocess", "forecasts"), root / "sdk")
    assert_same_files(got, expected)
    orders = read_table(got / "order_proposals.csv")
    assert orders["stock_considered"].all() and len(orders) == 6
    assert (orders["order_units"] % 4 == 0).all() and orders["stock_counted"].sum() > 0
