"""The training entry on the SageMaker contract, run through the real sagemaker-training toolkit in a subprocess."""

import errno
import json

import pytest

from forecaster.container.local_job import run_training_job, write_job_tree
from forecaster.io import write_table

#: every test runs a training job through the toolkit in a subprocess (~8 s each)
pytestmark = pytest.mark.slow

FAST = {"horizon": 7, "num_boost_round": 15, "quantile_num_boost_round": 10, "num_threads": 1}


def _job(tmp_path, frame, hyperparameters=FAST, name="sales.csv", spec=None, validation=None):
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    if frame is not None:
        write_table(frame, data / name)
    if spec is not None:
        (data / "spec.json").write_text(json.dumps(spec))
    channels = {"train": data}
    if validation is not None:
        write_table(validation, tmp_path / "validation.parquet")
        channels["validation"] = tmp_path / "validation.parquet"
    base = write_job_tree(tmp_path / "opt" / "ml", hyperparameters, channels)
    return base, run_training_job(base, timeout=300)


def _assert_failed(base, result, reason):
    failure = (base / "output" / "failure").read_text()
    assert result.returncode != 0, result.stderr
    assert reason in failure.splitlines()[0], failure
    assert list((base / "model").iterdir()) == []


def test_trains_with_the_channels_spec_json(tmp_path, history_frame, synthetic_spec):
    base, result = _job(tmp_path, history_frame, spec=synthetic_spec.to_dict())
    assert result.returncode == 0, result.stderr[-3000:]
    assert (base / "output" / "success").exists()
    assert {p.name for p in (base / "model").iterdir()} >= {"model_mean.txt", "feature_schema.json", "metadata.json"}
    schema = json.loads((base / "model" / "feature_schema.json").read_text())
    assert schema["spec"] == synthetic_spec.to_dict()
    metadata = json.loads((base / "model" / "metadata.json").read_text())
    assert metadata["hyperparameters"]["spec"] == str(base / "input" / "data" / "train" / "spec.json")  # not "default"
    assert "validation:wape=" in result.stdout
    assert json.loads((base / "output" / "data" / "validation_metrics.json").read_text())["wape"] > 0


def test_validation_channel_and_sdk_v2_json_encoded_hyperparameters(tmp_path, synthetic_frame, synthetic_spec):
    cut = synthetic_frame["date"].max() - __import__("pandas").Timedelta(days=7)
    train, valid = synthetic_frame[synthetic_frame.date <= cut], synthetic_frame[synthetic_frame.date > cut]
    v2_style = {k: json.dumps(str(v)) if isinstance(v, str) else json.dumps(v) for k, v in FAST.items()}
    v2_style["refit"] = '"false"'
    base, result = _job(
        tmp_path, train, v2_style, name="sales.parquet", spec=synthetic_spec.to_dict(), validation=valid
    )
    assert result.returncode == 0, result.stderr[-3000:]
    meta = json.loads((base / "model" / "metadata.json").read_text())
    assert meta["hyperparameters"]["refit"] is False
    assert meta["training_window"]["validation_start"] == str((cut + __import__("pandas").Timedelta(days=1)).date())


def test_invalid_hyperparameter(tmp_path, history_frame, synthetic_spec):
    base, result = _job(tmp_path, history_frame, {**FAST, "horizon": "fourteen"}, spec=synthetic_spec.to_dict())
    _assert_failed(base, result, "The 'horizon' parameter of train must be an int")


def test_missing_train_channel(tmp_path):
    base = write_job_tree(tmp_path / "opt" / "ml", FAST, {})
    result = run_training_job(base, timeout=300)
    _assert_failed(base, result, "The required input channel 'train' is missing")


def test_empty_file(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "sales.csv").write_text("")
    base = write_job_tree(tmp_path / "opt" / "ml", FAST, {"train": data})
    result = run_training_job(base, timeout=300)
    _assert_failed(base, result, "sales.csv is empty")


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda f: f.drop(columns="discount"), "has no column 'discount'"),
        (lambda f: f.assign(units_sold=f.units_sold.astype(str).where(f.index != 10, "ten")), "must be numeric"),
    ],
)
def test_missing_column_and_wrong_dtype(tmp_path, history_frame, change, reason):
    base, result = _job(tmp_path, change(history_frame), {**FAST, "spec": "default"})
    _assert_failed(base, result, reason)


def _two_hosts(base, current_host):
    (base / "input" / "config" / "resourceconfig.json").write_text(
        json.dumps(
            {"current_host": current_host, "hosts": ["algo-2", "algo-1"], "current_group_name": "homogeneousCluster"}
        )
    )


def test_the_training_host_is_the_first_sorted_host(tmp_path):
    from forecaster.container.train import JobEnvironment

    base = write_job_tree(tmp_path / "opt" / "ml", FAST, {})
    _two_hosts(base, "algo-1")
    job = JobEnvironment.from_env({"SAGEMAKER_BASE_DIR": str(base)})
    assert (job.current_host, job.hosts, job.training_host) == ("algo-1", ("algo-2", "algo-1"), "algo-1")
    toolkit = {"SAGEMAKER_BASE_DIR": str(base), "SM_CURRENT_HOST": "algo-10", "SM_HOSTS": '["algo-10", "algo-9"]'}
    job = JobEnvironment.from_env(toolkit)  # the toolkit's variables win over the file
    assert (job.current_host, job.training_host) == ("algo-10", "algo-10")


def test_trains_on_a_hive_channel_with_the_key_only_in_the_path(tmp_path, history_frame, synthetic_spec):
    history_frame.to_parquet(tmp_path / "data", partition_cols=["store_id"])  # as Spark / Athena / pandas write it
    base, result = _job(tmp_path, None, spec=synthetic_spec.to_dict())  # spec.json beside the partition folders
    assert result.returncode == 0, result.stderr[-3000:]
    schema = json.loads((base / "model" / "feature_schema.json").read_text())
    stores = next(f for f in schema["features"] if f["name"] == "store_id")
    assert stores["categories"] == sorted(history_frame["store_id"].unique())  # the key read from the folder names


def test_the_failure_reason_is_one_line(tmp_path):
    from forecaster.container.train import write_failure

    write_failure(tmp_path, "InternalError: LightGBMError: Check failed: (num_data) > (0) .\n\n")
    assert (tmp_path / "failure").read_text() == "InternalError: LightGBMError: Check failed: (num_data) > (0) .\n"


def test_an_environment_that_is_not_json_ends_in_a_failure_file_not_a_traceback(tmp_path, monkeypatch):
    """``docker run -e SM_HPS='{horizon: 7}'``: the job's one-line reason, as for any other error."""
    from forecaster.container import train

    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(tmp_path))
    monkeypatch.setenv("SM_HPS", "{horizon: 7}")
    monkeypatch.setattr(train.signal, "signal", lambda *args: None)
    assert train.main() == 2
    failure = (tmp_path / "output" / "failure").read_text()
    assert failure.startswith("InvalidParameterError: The training job's environment could not be read: Expecting")
    assert "SM_HPS, SM_HOSTS and SM_CHANNELS must be JSON" in failure


def test_a_failure_file_that_cannot_be_written_goes_to_stderr_and_a_short_write_says_disk(tmp_path, capsys):
    """A read-only output volume once raised a second error in the boundary (and the toolkit then exited 0)."""
    import lightgbm as lgb

    from forecaster.container.train import _short_write, write_failure

    (tmp_path / "output").write_text("a file where the folder should be")
    write_failure(tmp_path / "output", "DataValidationError: the history data has no rows.")
    assert "the failure: DataValidationError: the history data has no rows." in capsys.readouterr().err
    assert _short_write(OSError(errno.ENOSPC, "No space left on device"))
    assert _short_write(lgb.basic.LightGBMError("Cannot write binary data to /opt/ml/model/m.txt, wrote 4096 of 9"))
    assert not _short_write(OSError(errno.EACCES, "Permission denied"))
    assert not _short_write(lgb.basic.LightGBMError("Check failed: (num_data) > (0)"))


def test_the_sdks_default_channel_name_trains_and_a_missing_channel_names_what_came(
    tmp_path, history_frame, synthetic_spec
):
    """``estimator.fit("s3://...")`` names its channel ``training``: it was refused as a missing 'train'."""
    data = tmp_path / "data"
    data.mkdir()
    write_table(history_frame, data / "sales.csv")
    (data / "spec.json").write_text(json.dumps(synthetic_spec.to_dict()))
    base = write_job_tree(tmp_path / "opt" / "ml", FAST, {"training": data})
    result = run_training_job(base, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (base / "model" / "model_mean.txt").is_file()
    base = write_job_tree(tmp_path / "other" / "opt" / "ml", FAST, {"trian": data})
    result = run_training_job(base, timeout=300)
    _assert_failed(base, result, "The required input channel 'train' is missing (received: 'trian')")


def test_a_validation_channel_on_several_hosts_is_refused_before_any_host_trains(tmp_path, history_frame):
    """Each host trained a model of its own on its shard, and every host reported success."""
    data = tmp_path / "data"
    data.mkdir()
    write_table(history_frame, data / "sales.csv")
    channels = {"train": data, "validation": data}
    base = write_job_tree(tmp_path / "opt" / "ml", FAST, channels, hosts=("algo-1", "algo-2"))
    result = run_training_job(base, timeout=300)
    _assert_failed(base, result, "The 'validation' channel needs a single-host job (InstanceCount=1); this job has 2")


def test_a_gap_between_the_training_and_validation_channels_is_refused(tmp_path, synthetic_frame, synthetic_spec):
    """The days between once counted as days without a sale (validation WAPE 1.94 instead of 0.36)."""
    import pandas as pd

    last = synthetic_frame["date"].max()
    train = synthetic_frame[synthetic_frame.date <= last - pd.Timedelta(days=17)]
    valid = synthetic_frame[synthetic_frame.date > last - pd.Timedelta(days=7)]
    base, result = _job(tmp_path, train, name="sales.parquet", spec=synthetic_spec.to_dict(), validation=valid)
    _assert_failed(base, result, "10 days after the training data ends")


def test_a_relative_spec_file_is_found_in_the_train_channel(tmp_path, history_frame, synthetic_spec):
    """``spec=store.json`` was looked for in the job's working directory (code/) only."""
    base, result = _job(tmp_path, history_frame, {**FAST, "spec": "store.json"})
    _assert_failed(base, result, "store.json does not exist")
    (tmp_path / "data" / "store.json").write_text(json.dumps(synthetic_spec.to_dict()))
    hyperparameters = {**FAST, "spec": "store.json"}
    base = write_job_tree(tmp_path / "again" / "opt" / "ml", hyperparameters, {"train": tmp_path / "data"})
    result = run_training_job(base, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((base / "model" / "feature_schema.json").read_text())["spec"] == synthetic_spec.to_dict()
