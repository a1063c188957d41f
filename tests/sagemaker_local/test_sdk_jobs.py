"""The images driven by the SageMaker Python SDK v3 in local mode, as a user would: training jobs (one host, a
bad hyperparameter, two hosts), a batch transform whose output ``forecaster postprocess`` reads with its
defaults, and a real-time endpoint on port 8080 (CSV, JSON Lines, a bad row -> 400).
"""

from __future__ import annotations

import io
import json
import tarfile
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from forecaster.forecasting import OUTPUT_COLUMNS
from forecaster.synth import write_dataset

from .local_mode import ROLE, download, s3_uri, upload

pytestmark = pytest.mark.docker

HYPERPARAMETERS = {"horizon": 7, "num_boost_round": 20, "quantile_num_boost_round": 10, "num_leaves": 7}


def train(image: str, data: Path, root: Path, instance_count: int = 1, **overrides: Any) -> Path:
    """``ModelTrainer(training_mode=LOCAL_CONTAINER)`` on ``file://``-style local data; the model.tar.gz."""
    from sagemaker.train import ModelTrainer
    from sagemaker.train.configs import Compute, InputData
    from sagemaker.train.model_trainer import Mode

    root = root / f"job-{uuid.uuid4().hex[:8]}"  # also docker-compose's project name: unique per job
    root.mkdir(parents=True)
    trainer = ModelTrainer(
        training_image=image,
        training_mode=Mode.LOCAL_CONTAINER,
        role=ROLE,
        compute=Compute(instance_type="local_cpu", instance_count=instance_count),
        hyperparameters={**HYPERPARAMETERS, "num_threads": 1, **overrides},
        input_data_config=[InputData(channel_name="train", data_source=str(data))],
        local_container_root=str(root),
    )
    trainer.train()
    return root / "compressed_artifacts" / "model.tar.gz"


def members(tarball: Path) -> dict[str, bytes]:
    with tarfile.open(tarball) as archive:
        return {m.name: archive.extractfile(m).read() for m in archive.getmembers() if m.isfile()}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("data") / "train", stores=2, items=3, days=60, seed=5)


@pytest.fixture(scope="module")
def model_tarball(images, sdk_env, data, tmp_path_factory) -> Path:
    return train(images[0], data, tmp_path_factory.mktemp("training"))


def test_training_job_writes_a_model_tarball(model_tarball):
    from forecaster.model import ForecastModel

    files = members(model_tarball)
    assert {"feature_schema.json", "model_mean.txt", "model_q10.txt", "model_q50.txt", "model_q90.txt"} <= set(files)
    assert json.loads(files["feature_schema.json"])["horizon"] == HYPERPARAMETERS["horizon"]
    output = members(model_tarball.parent / "output.tar.gz")
    assert "success" in output and "wape" in json.loads(output["data/validation_metrics.json"])
    with tarfile.open(model_tarball) as archive:
        archive.extractall(model_tarball.parent / "model")
    assert ForecastModel.load(model_tarball.parent / "model").schema.horizon == HYPERPARAMETERS["horizon"]


def test_bad_hyperparameter_fails_the_job_with_a_reason(images, sdk_env, data, tmp_path):
    with pytest.raises(RuntimeError, match="exited with code"):
        train(images[0], data, tmp_path, num_boost_round=-3)
    (job,) = tmp_path.iterdir()
    failure = members(job / "compressed_artifacts" / "output.tar.gz")["failure"].decode()
    assert "num_boost_round" in failure.splitlines()[0] and "-3" in failure, failure
    model = members(job / "compressed_artifacts" / "model.tar.gz")
    assert not [name for name in model if not Path(name).name.startswith(".")], f"a partial model: {sorted(model)}"


def test_local_mode_refuses_a_sharded_training_channel(images, sdk_env, tmp_path):
    # SDK 3.27 local mode accepts FullyReplicated channels only (sagemaker/train/local/local_container.py); with
    # every partition on every host, each host builds the rows of its share by index (forecaster.distributed)
    from sagemaker.core.shapes import S3DataSource
    from sagemaker.train import ModelTrainer
    from sagemaker.train.configs import Compute, InputData
    from sagemaker.train.model_trainer import Mode

    sharded = S3DataSource(
        s3_uri=s3_uri("sharded", "train"), s3_data_type="S3Prefix", s3_data_distribution_type="ShardedByS3Key"
    )
    trainer = ModelTrainer(
        training_image=images[0], training_mode=Mode.LOCAL_CONTAINER, role=ROLE,
        compute=Compute(instance_type="local_cpu", instance_count=2), hyperparameters=HYPERPARAMETERS,
        input_data_config=[InputData(channel_name="train", data_source=sharded)],
        local_container_root=str(tmp_path),
    )  # fmt: skip
    with pytest.raises(RuntimeError, match="ShardedByS3Key"):
        trainer.train()


def test_two_instances_train_one_model_together(images, sdk_env, tmp_path, capfd):
    from forecaster.config import TrainConfig
    from forecaster.io import write_table
    from forecaster.spec import DatasetSpec
    from forecaster.synth import SYNTH_SPEC, generate
    from forecaster.training import fit_artifact

    chain = tmp_path / "chain"  # 4 stores, one partition each: each host builds the rows of two
    for store, rows in generate(stores=4, items=5, days=150, seed=1).groupby("store_id", observed=True):
        write_table(rows, chain / f"store_id={store}" / "part-0.parquet")
    (chain / "spec.json").write_text(json.dumps(SYNTH_SPEC))
    hyperparameters = {"num_boost_round": 40, "quantile_num_boost_round": 25, "num_leaves": 15}
    tarball = train(images[0], chain, tmp_path / "jobs", instance_count=2, **hyperparameters)
    assert {"feature_schema.json", "model_mean.txt", "model_q90.txt"} <= set(members(tarball))
    log = capfd.readouterr().out
    for rank, host in enumerate(("algo-1", "algo-2")):
        assert f"host {host} builds the rows of 2 partitions" in log, log[-3000:]
        assert f"host {host} joined the LightGBM network: rank {rank} of 2 machines" in log, log[-3000:]
        assert f"host {host}: training rows" in log, log[-3000:]
    scores = json.loads(members(tarball.parent / "output.tar.gz")["data/validation_metrics.json"])
    config = TrainConfig.from_hyperparameters({**HYPERPARAMETERS, **hyperparameters, "num_threads": 1})
    single = fit_artifact(chain, DatasetSpec.from_dict(SYNTH_SPEC), config, tmp_path / "single")
    assert abs(scores["wape"] - single["wape"]) <= 0.01, (scores["wape"], single["wape"])


# ---- batch transform -> postprocess -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def features(model_tarball, data, tmp_path_factory) -> Path:
    """``forecaster preprocess`` of a future week: features.csv (header-less) and keys.csv."""
    from forecaster.cli.main import main
    from forecaster.synth import generate

    folder = tmp_path_factory.mktemp("features")
    frame = generate(stores=2, items=3, days=67, seed=5)
    cutoff = frame["date"].max() - pd.Timedelta(days=7)
    frame[frame["date"] <= cutoff].to_csv(folder / "history.csv", index=False)
    frame[frame["date"] > cutoff].drop(columns=["units_sold"]).to_csv(folder / "future.csv", index=False)
    model_dir = model_tarball.parent / "model"
    if not model_dir.exists():
        with tarfile.open(model_tarball) as archive:
            archive.extractall(model_dir)
    argv = ["preprocess", "--model-dir", str(model_dir), "--history", str(folder / "history.csv")]
    assert main([*argv, "--future", str(folder / "future.csv"), "--out", str(folder / "out")]) == 0
    return folder / "out"


def create_model(session: Any, image: str, model_tarball: Path, name: str, environment: dict | None = None) -> str:
    """A SageMaker model of the inference image and model data in (moto) S3, alone under its prefix."""
    folder = model_tarball.parent / f"upload-{name}"
    folder.mkdir()
    (folder / "model.tar.gz").write_bytes(model_tarball.read_bytes())
    model_data = upload(folder, s3_uri("models", name)) + "model.tar.gz"
    container = {"Image": image, "ModelDataUrl": model_data, "Environment": environment or {}}
    session.create_model(name, role=ROLE, container_defs=container)
    return name


def test_batch_transform_output_is_what_postprocess_reads_by_default(images, local_session, model_tarball, features):
    from sagemaker.core.transformer import Transformer

    name = create_model(local_session, images[1], model_tarball, "transform")  # no environment: plain defaults
    transformer = Transformer(
        model_name=name,
        instance_count=1,
        instance_type="local",
        strategy="MultiRecord",
        assemble_with="Line",
        accept="text/csv",
        output_path=s3_uri("transform", "out"),
        base_transform_job_name="forecaster-transform",  # else the SDK asks the (real) API for the model's image
        sagemaker_session=local_session,
    )
    data = upload(features, s3_uri("transform", "in")) + "features.csv"
    transformer.transform(data=data, content_type="text/csv", split_type="Line", wait=True, logs=False)
    out = download(s3_uri("transform", "out"), features.parent / "transform")
    lines = [line for line in (out / "features.csv.out").read_text().splitlines() if line]
    rows = len((features / "features.csv").read_text().splitlines())
    width = len(OUTPUT_COLUMNS)  # p10,p50,p90,mean: what postprocess reads
    assert len(lines) == rows and all(len(line.split(",")) == width for line in lines), lines[:3]  # no status check
    forecasts = features.parent / "forecasts.csv"
    from forecaster.cli.main import main

    argv = ["postprocess", "--keys", str(features / "keys.csv"), "--predictions", str(out / "features.csv.out")]
    assert main([*argv, "--out", str(forecasts)]) == 0  # its defaults: every quantile expected
    table = pd.read_csv(forecasts)
    assert len(table) == rows and (table["p10"] <= table["p50"]).all() and (table["p50"] <= table["p90"]).all()


# ---- real-time endpoint -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def endpoint(images, local_session, model_tarball):
    """A local endpoint of the inference image (host port 8080, the SDK's ``local.serving_port``)."""
    from sagemaker.core.helper.session_helper import production_variant

    name = create_model(local_session, images[1], model_tarball, "endpoint")
    variant = production_variant(model_name=name, instance_type="local", initial_instance_count=1)
    config = local_session.create_endpoint_config(name, [variant])
    local_session.create_endpoint(name, config, wait=True)
    try:
        yield name
    finally:
        local_session.delete_endpoint(name)


def invoke(session: Any, endpoint: str, body: bytes, content_type: str, accept: str, **extra: str) -> tuple[int, str]:
    response = session.sagemaker_runtime_client.invoke_endpoint(
        EndpointName=endpoint, Body=body, ContentType=content_type, Accept=accept, **extra
    )
    return response["ResponseMetadata"]["HTTPStatusCode"], response["Body"].read().decode()


def expected_predictions(model_tarball: Path, features: Path) -> np.ndarray:
    from forecaster.model import ForecastModel

    rows = pd.read_csv(features / "features.csv", header=None).to_numpy(np.float64)
    return ForecastModel.load(model_tarball.parent / "model").predict(rows)


def test_endpoint_answers_csv_with_the_median(local_session, endpoint, model_tarball, features):
    status, body = invoke(local_session, endpoint, (features / "features.csv").read_bytes(), "text/csv", "text/csv")
    assert status == 200, body[:500]
    got = pd.read_csv(io.StringIO(body), header=None).to_numpy()
    np.testing.assert_allclose(got[:, 0], expected_predictions(model_tarball, features)[:, 1], rtol=1e-9)


def test_endpoint_answers_json_lines_with_every_quantile(local_session, endpoint, model_tarball, features):
    from forecaster.artifact import FeatureSchema

    names = list(FeatureSchema.load(model_tarball.parent / "model").feature_names)
    rows = pd.read_csv(features / "features.csv", header=None, names=names).to_dict("records")
    body = "".join(json.dumps({k: (None if pd.isna(v) else v) for k, v in r.items()}) + "\n" for r in rows)
    status, answer = invoke(
        local_session, endpoint, body.encode(), "application/jsonlines", "application/jsonlines",
        CustomAttributes="quantiles=all",
    )  # fmt: skip
    assert status == 200, answer[:500]
    got = np.array([[r["p10"], r["p50"], r["p90"]] for r in map(json.loads, answer.splitlines())])
    np.testing.assert_allclose(got, expected_predictions(model_tarball, features), rtol=1e-9)


def test_endpoint_answers_a_bad_row_with_400_naming_it(local_session, endpoint, features):
    lines = (features / "features.csv").read_text().splitlines()
    lines[1] += ",1.0"
    status, body = invoke(local_session, endpoint, "\n".join(lines).encode(), "text/csv", "text/csv")
    assert status == 400, body[:500]
    assert "row 2" in body, body[:500]
