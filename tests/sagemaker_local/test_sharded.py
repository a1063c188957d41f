"""Chain scale in SDK local mode: the Preprocess processing job on two instances' shares of whole partitions, and a
batch transform over its per-partition feature files (images run by the SDK v3 local client, Docker).

SDK 3.27 local mode refuses ``ShardedByS3Key`` processing inputs (``sagemaker/core/local/entities.py``:
"DataDistribution: ShardedByS3Key is not currently supported in Local Mode"), which the first test pins. So the two
instances of the sharded job are run as two local-mode jobs, each given what SageMaker's ``ShardedByS3Key`` hands
one instance: some of the history's S3 objects (whole partitions), with the model, the future and the group totals
fully replicated, both writing to one output prefix, as the instances of one job do.
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from .local_mode import ROLE, download, s3_uri, upload

pytestmark = pytest.mark.docker

HYPERPARAMETERS = ["--hp", "num_boost_round=20", "--hp", "quantile_num_boost_round=10", "--hp", "num_leaves=7"]
STORES = ("S001", "S002", "S003")


@pytest.fixture(scope="module")
def chain(tmp_path_factory) -> Path:
    """Hive-partitioned history and future of three stores, a model trained here, and the whole chain's totals."""
    from forecaster.cli.main import main
    from forecaster.io import write_table
    from forecaster.synth import generate

    root = tmp_path_factory.mktemp("chain")
    frame = generate(stores=3, items=3, days=67, seed=5)
    cutoff = frame["date"].max() - pd.Timedelta(days=7)
    for store, rows in frame.groupby("store_id"):
        write_table(rows[rows["date"] <= cutoff], root / "history" / f"store_id={store}" / "part-0.csv")
        future = rows[rows["date"] > cutoff].drop(columns=["units_sold"])
        write_table(future, root / "future" / f"store_id={store}" / "part-0.csv")
    history = str(root / "history")
    assert (
        main(["train", "--data", history, "--model-dir", str(root / "model"), "--horizon", "7", *HYPERPARAMETERS]) == 0
    )
    assert (
        main(["group-totals", "--history", history, "--model-dir", str(root / "model"), "--out", str(root / "totals")])
        == 0
    )
    return root


def _processing_input(name: str, uri: str) -> Any:
    from sagemaker.core.shapes import ProcessingInput, ProcessingS3Input

    return ProcessingInput(
        input_name=name,
        s3_input=ProcessingS3Input(
            s3_uri=uri, local_path=f"/opt/ml/processing/input/{name}", s3_data_type="S3Prefix", s3_input_mode="File"
        ),
    )


def _processing_output(name: str, uri: str) -> Any:
    from sagemaker.core.shapes import ProcessingOutput, ProcessingS3Output

    return ProcessingOutput(
        output_name=name,
        s3_output=ProcessingS3Output(
            s3_uri=uri, local_path=f"/opt/ml/processing/output/{name}", s3_upload_mode="EndOfJob"
        ),
    )


def _preprocess_args() -> list[str]:
    from forecaster.container.layout import PROCESSING_INPUT_ROOT, PROCESSING_OUTPUT_ROOT
    from forecaster.pipelines.catalog import BUILD
    from forecaster.pipelines.table import render_args

    step = BUILD.step("Preprocess")  # the arguments of the pipeline's own step
    return [
        str(a)
        for a in render_args(
            step,
            input_dir=lambda name: f"{PROCESSING_INPUT_ROOT}/{name}",
            output_root=PROCESSING_OUTPUT_ROOT,
            param=lambda name: str(BUILD.defaults()[name]),  # the pipeline parameter's default value
        )
    ]


def _sharded_preprocess(images, local_session, chain: Path, history: Path, tmp_path: Path, run: str) -> dict[str, str]:
    """The Preprocess job on the two instances of a ``ShardedByS3Key`` job: each gets whole partition folders of
    ``history`` (algo-1: S001 and S003, algo-2: S002), the model, future and totals fully replicated, and both write
    to one output prefix. Returns the output prefixes (``features``, ``keys``)."""
    from sagemaker.core.processing import Processor

    replicated = {
        "model": upload(chain / "model", s3_uri(run, "model")),
        "future": upload(chain / "future", s3_uri(run, "future")),
        "totals": upload(chain / "totals", s3_uri(run, "totals")),
    }
    outputs = {name: s3_uri(run, "preprocess", name) for name in ("features", "keys")}
    shares = {"algo-1": ("S001", "S003"), "algo-2": ("S002",)}  # ShardedByS3Key: whole objects per instance
    for host, stores in shares.items():
        share = tmp_path / host
        for store in stores:
            shutil.copytree(history / f"store_id={store}", share / f"store_id={store}")
        inputs = {**replicated, "history": upload(share, s3_uri(run, host, "history"))}
        processor = Processor(
            role=ROLE, image_uri=images[0], instance_count=1, instance_type="local",
            entrypoint=["forecaster", "preprocess"], sagemaker_session=local_session,
        )  # fmt: skip
        processor.run(
            inputs=[_processing_input(name, uri) for name, uri in inputs.items()],
            outputs=[_processing_output(name, uri) for name, uri in outputs.items()],
            arguments=_preprocess_args(),
            wait=True,
            logs=False,
        )
    return outputs


def test_local_mode_refuses_sharded_processing_inputs(images, local_session, chain):
    from sagemaker.core.processing import Processor
    from sagemaker.core.shapes import ProcessingInput, ProcessingS3Input

    history = upload(chain / "history", s3_uri("refused", "history"))
    sharded = ProcessingInput(
        input_name="history",
        s3_input=ProcessingS3Input(
            s3_uri=history,
            local_path="/opt/ml/processing/input/history",
            s3_data_type="S3Prefix",
            s3_input_mode="File",
            s3_data_distribution_type="ShardedByS3Key",
        ),
    )
    processor = Processor(
        role=ROLE, image_uri=images[0], instance_count=2, instance_type="local",
        entrypoint=["forecaster", "preprocess"], sagemaker_session=local_session,
    )  # fmt: skip
    with pytest.raises(RuntimeError, match="ShardedByS3Key is not currently supported in Local Mode"):
        processor.run(inputs=[sharded], arguments=["--help"], wait=True, logs=False)


def test_two_instances_with_whole_partitions_cover_the_chain_and_the_transform_reads_every_file(
    images, local_session, chain, tmp_path
):
    from sagemaker.core.transformer import Transformer

    run = uuid.uuid4().hex[:8]
    outputs = _sharded_preprocess(images, local_session, chain, chain / "history", tmp_path, run)
    features = download(outputs["features"], tmp_path / "features")
    keys = download(outputs["keys"], tmp_path / "keys")
    names = [f"store_id={store}" for store in STORES]
    assert sorted(p.name for p in features.iterdir()) == [f"features-{n}.csv" for n in names]  # each exactly once
    skipped = ["skipped_series-store_id=S001.csv", "skipped_series-store_id=S002.csv"]  # one per shard, disjoint
    assert sorted(p.name for p in keys.iterdir()) == [*(f"keys-{n}.csv" for n in names), *skipped]

    # the same rows as one process over the whole chain (the shards read the chain's totals)
    from forecaster.cli.main import main

    whole = tmp_path / "whole"
    command = ["preprocess", "--model-dir", str(chain / "model"), "--history", str(chain / "history")]
    assert main([*command, "--future", str(chain / "future"), "--out", str(whole), "--workers", "1"]) == 0
    for name in names:
        assert (features / f"features-{name}.csv").read_text() == (whole / f"features-{name}.csv").read_text()

    # batch transform over the features prefix: one .out per partition file, then postprocess reads them all
    from forecaster.artifact import pack_model
    from forecaster.contract import TRANSFORM_ENVIRONMENT
    from forecaster.forecasting import OUTPUT_COLUMNS

    pack_model(chain / "model", tmp_path / "model-data" / "model.tar.gz")  # alone under its prefix
    model_data = upload(tmp_path / "model-data", s3_uri(run, "model-data")) + "model.tar.gz"
    container = {"Image": images[1], "ModelDataUrl": model_data, "Environment": dict(TRANSFORM_ENVIRONMENT)}
    model = local_session.create_model(f"sharded-{run}", role=ROLE, container_defs=container)
    transformer = Transformer(
        model_name=model, instance_count=1, instance_type="local", strategy="MultiRecord", assemble_with="Line",
        accept="text/csv", output_path=s3_uri(run, "transform"), sagemaker_session=local_session,
        base_transform_job_name="forecaster-sharded",  # else the SDK looks the model's image up in AWS (moto)
    )  # fmt: skip
    transformer.transform(data=outputs["features"], content_type="text/csv", split_type="Line", wait=True, logs=False)
    # local mode puts the .out files under a job-name folder; postprocess reads the folder that holds them
    outs = sorted(download(s3_uri(run, "transform"), tmp_path / "predictions").rglob("*.out"))
    assert [p.name for p in outs] == [f"features-{n}.csv.out" for n in names]
    predictions = outs[0].parent
    for name in names:  # local mode does not check HTTP status: count the lines and fields
        lines = [line for line in (predictions / f"features-{name}.csv.out").read_text().splitlines() if line]
        assert len(lines) == len((features / f"features-{name}.csv").read_text().splitlines())
        assert all(len(line.split(",")) == len(OUTPUT_COLUMNS) for line in lines), lines[:3]
    forecasts = tmp_path / "forecasts.csv"
    assert main(["postprocess", "--keys", str(keys), "--predictions", str(predictions), "--out", str(forecasts)]) == 0
    table = pd.read_csv(forecasts)
    assert len(table) == 3 * 3 * 7 and sorted(table["store_id"].unique()) == list(STORES)


def test_a_sharded_preprocess_over_a_key_only_in_path_hive_prefix_gives_the_features_of_one_file(
    images, local_session, chain, tmp_path
):
    """Issue 24: the history as Spark / Athena / pandas ``partition_cols`` write it (``store_id`` only in the folder
    names, uuid-named files); each instance of the sharded Preprocess gets whole partition folders and takes the
    key from each folder's name. The feature rows are those of one process over the history as one file."""
    from forecaster.cli.main import main
    from forecaster.io import read_table, write_table

    history = read_table(chain / "history")
    hive = tmp_path / "hive"
    history.to_parquet(hive, partition_cols=["store_id"])
    assert "store_id" not in pd.read_parquet(next((hive / "store_id=S001").glob("*.parquet"))).columns
    write_table(history, tmp_path / "one" / "history.csv")
    whole = tmp_path / "whole"
    command = ["preprocess", "--model-dir", str(chain / "model"), "--history", str(tmp_path / "one" / "history.csv")]
    assert main([*command, "--future", str(chain / "future"), "--out", str(whole), "--workers", "1"]) == 0

    outputs = _sharded_preprocess(images, local_session, chain, hive, tmp_path, uuid.uuid4().hex[:8])
    features = download(outputs["features"], tmp_path / "features")
    keys = download(outputs["keys"], tmp_path / "keys")
    names = [f"store_id={store}" for store in STORES]
    assert sorted(p.name for p in features.iterdir()) == [f"features-{n}.csv" for n in names]
    # series are ordered by store first: the partitions' rows, in partition order, are the one file's rows
    parts = pd.concat([pd.read_csv(features / f"features-{n}.csv", header=None) for n in names], ignore_index=True)
    pd.testing.assert_frame_equal(parts, pd.read_csv(whole / "features.csv", header=None))
    part_keys = pd.concat([pd.read_csv(keys / f"keys-{n}.csv", dtype=str) for n in names], ignore_index=True)
    pd.testing.assert_frame_equal(part_keys, pd.read_csv(whole / "keys.csv", dtype=str))
    assert set(part_keys["store_id"]) == set(STORES)  # the key came from the folder names
