"""Partitioned data: training rows and preprocessing partition by partition give the single-file results."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from forecaster.errors import DataValidationError
from forecaster.forecasting import postprocess
from forecaster.io import read_table, write_json, write_table
from forecaster.model import ForecastModel
from forecaster.partitioned import group_totals, preprocess
from forecaster.partitions import partitions
from forecaster.totals import GroupTotals
from forecaster.training import fit_artifact


def _hive(frame: pd.DataFrame, root, fmt: str = "parquet"):
    """One folder per store (``store_id=S001/part-0.<fmt>``)."""
    for store, rows in frame.groupby("store_id"):
        write_table(rows, root / f"store_id={store}" / f"part-0.{fmt}")
    return root


def _groups(frame: pd.DataFrame, root, groups: int = 2):
    """One CSV file per store group."""
    stores = sorted(frame["store_id"].unique())
    for g in range(groups):
        write_table(frame[frame["store_id"].isin(stores[g::groups])], root / f"group-{g}.csv")
    return root


def _forecasts(model_dir, features_dir, keys_dir, tmp_path) -> pd.DataFrame:
    """Predict every feature file in-process (as the transform would) and postprocess the lot."""
    model = ForecastModel.load(model_dir)
    predictions = tmp_path / "predictions"
    for file in sorted(features_dir.glob("features*.csv")):
        X = pd.read_csv(file, header=None).to_numpy(dtype=np.float64)
        lines = np.column_stack([model.predict(X), model.predict_mean(X)])  # p10,p50,p90,mean
        predictions.mkdir(parents=True, exist_ok=True)
        np.savetxt(predictions / f"{file.name}.out", lines, delimiter=",", fmt="%.17g")
    out = postprocess(keys_dir, predictions, tmp_path / "forecasts.csv")
    return read_table(out).sort_values(["store_id", "item_id", "date"]).reset_index(drop=True)


def _plain(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.astype({c: str for c in frame.select_dtypes("category").columns})


def test_partitions_of_a_file_a_hive_folder_and_a_folder_of_group_files(tmp_path, history_frame):
    write_table(history_frame, tmp_path / "one.csv")
    assert [p.name for p in partitions(tmp_path / "one.csv")] == [""]
    hive = [p.name for p in partitions(_hive(history_frame, tmp_path / "hive"))]
    assert hive == ["store_id=S001", "store_id=S002", "store_id=S003"]
    assert [p.name for p in partitions(_groups(history_frame, tmp_path / "groups"))] == ["group-0", "group-1"]


def test_group_totals_of_partitions_add_up_to_the_totals_of_the_whole_table(tmp_path, history_frame, synthetic_spec):
    whole = group_totals(_write(history_frame, tmp_path / "h.csv"), synthetic_spec, workers=1)
    parts = group_totals(_hive(history_frame, tmp_path / "hive"), synthetic_spec, workers=2)
    assert set(whole.stats) == {"item", "store", "item_on", "item_off"}
    for name, stat in whole.stats.items():
        assert list(parts.stats[name].labels) == list(stat.labels)
        np.testing.assert_array_equal(parts.stats[name].sums, stat.sums)
        np.testing.assert_array_equal(parts.stats[name].counts, stat.counts)
    saved = GroupTotals.load(parts.save(tmp_path / "t" / "group_totals.npz").parent)
    np.testing.assert_array_equal(saved.stats["item"].sums, whole.stats["item"].sums)
    assert saved.start == whole.start


def _write(frame, path):
    write_table(frame, path)
    return path


def test_partitioned_path_gives_the_single_file_forecasts_row_for_row(
    tmp_path, history_frame, future_frame, synthetic_spec, train_config
):
    single = tmp_path / "single"
    fit_artifact(_write(history_frame, tmp_path / "history.csv"), synthetic_spec, train_config, single / "model")
    preprocess(single / "model", tmp_path / "history.csv", _write(future_frame, tmp_path / "future.csv"), single / "f")
    assert sorted(p.name for p in (single / "f").iterdir()) == ["features.csv", "keys.csv", "skipped_series.csv"]

    parted = tmp_path / "parted"
    history = _hive(history_frame, tmp_path / "history-hive")
    fit_artifact(history, synthetic_spec, train_config, parted / "model", workers=2)
    preprocess(
        parted / "model", history, _groups(future_frame, tmp_path / "future-groups", 3), parted / "features",
        keys_dir=parted / "keys", workers=2,
    )  # fmt: skip
    names = [f"features-store_id=S00{i}.csv" for i in (1, 2, 3)]
    assert sorted(p.name for p in (parted / "features").iterdir()) == names  # one file per partition, nothing else
    keys_files = [n.replace("features", "keys") for n in names]
    assert sorted(p.name for p in (parted / "keys").iterdir()) == [*keys_files, "skipped_series-store_id=S001.csv"]

    # the same training rows -> the same model, and the same feature rows -> the same forecasts
    for booster in ("model_mean.txt", "model_q50.txt"):
        assert (single / "model" / booster).read_text() == (parted / "model" / booster).read_text()
    expected = _forecasts(single / "model", single / "f", single / "f", tmp_path / "s")
    got = _forecasts(parted / "model", parted / "features", parted / "keys", tmp_path / "p")
    assert len(got) == len(future_frame)
    pd.testing.assert_frame_equal(got, expected)


def test_future_partitions_named_like_the_history_are_paired(tmp_path, trained_model_dir, history_frame, future_frame):
    single = tmp_path / "single"
    preprocess(
        trained_model_dir, _write(history_frame, tmp_path / "h.csv"), _write(future_frame, tmp_path / "f.csv"), single
    )
    paired = tmp_path / "paired"
    preprocess(
        trained_model_dir, _hive(history_frame, tmp_path / "h"), _hive(future_frame, tmp_path / "f", "csv"), paired,
        workers=1,
    )  # fmt: skip
    whole = pd.read_csv(single / "features.csv", header=None)
    parts = pd.concat([pd.read_csv(f, header=None) for f in sorted(paired.glob("features-*.csv"))], ignore_index=True)
    pd.testing.assert_frame_equal(parts, whole)  # series are ordered by store first: the same rows, in order


def test_a_future_partitioned_otherwise_than_the_history_is_refused_not_skipped(
    tmp_path, trained_model_dir, history_frame, future_frame
):
    """Store S002's history in group-0 and its future in group-1 once skipped its series as "ended" and "new"."""
    stores = sorted(history_frame["store_id"].unique())
    history, future = tmp_path / "h", tmp_path / "f"
    write_table(history_frame[history_frame["store_id"].isin(stores[:2])], history / "group-0.csv")
    write_table(history_frame[history_frame["store_id"].isin(stores[2:])], history / "group-1.csv")
    write_table(future_frame[future_frame["store_id"].isin(stores[:1])], future / "group-0.csv")
    write_table(future_frame[future_frame["store_id"].isin(stores[1:])], future / "group-1.csv")
    message = rf"series store_id={stores[1]}, .*history in the partition group-0 and their future rows in group-1"
    with pytest.raises(DataValidationError, match=message):
        preprocess(trained_model_dir, history, future, tmp_path / "out", workers=1)
    assert not (tmp_path / "out").exists()


def test_a_shard_uses_the_totals_of_the_whole_chain(tmp_path, trained_model_dir, history_frame, future_frame):
    hive = _hive(history_frame, tmp_path / "h")
    future = _write(future_frame, tmp_path / "f.csv")
    preprocess(trained_model_dir, hive, future, tmp_path / "all", workers=1)
    totals = group_totals(hive, ForecastModel.load(trained_model_dir).schema.spec).save(tmp_path / "t.npz")
    shard = tmp_path / "shard"  # what one instance of a ShardedByS3Key job sees: some partitions only
    (shard / "store_id=S002").mkdir(parents=True)
    (hive / "store_id=S002" / "part-0.parquet").rename(shard / "store_id=S002" / "part-0.parquet")
    (shard / "store_id=S001").mkdir()
    (hive / "store_id=S001" / "part-0.parquet").rename(shard / "store_id=S001" / "part-0.parquet")
    preprocess(trained_model_dir, shard, future, tmp_path / "with", totals=totals, workers=1)
    preprocess(trained_model_dir, shard, future, tmp_path / "without", workers=1)
    name = "features-store_id=S002.csv"
    expected = (tmp_path / "all" / name).read_text()
    assert (tmp_path / "with" / name).read_text() == expected
    assert (tmp_path / "without" / name).read_text() != expected  # item totals of two stores only


def test_a_series_split_across_partitions_is_read_as_one_table(tmp_path, history_frame, synthetic_spec, train_config):
    cut = history_frame["date"].min() + pd.Timedelta(days=60)
    write_table(history_frame[history_frame["date"] < cut], tmp_path / "by-time" / "early.csv")
    write_table(history_frame[history_frame["date"] >= cut], tmp_path / "by-time" / "late.csv")
    fit_artifact(tmp_path / "by-time", synthetic_spec, train_config, tmp_path / "m1")
    fit_artifact(_write(history_frame, tmp_path / "h.csv"), synthetic_spec, train_config, tmp_path / "m2")
    assert (tmp_path / "m1" / "model_mean.txt").read_text() == (tmp_path / "m2" / "model_mean.txt").read_text()


def test_missing_predictions_of_a_partition_name_the_file(tmp_path, trained_model_dir, history_frame, future_frame):
    preprocess(
        trained_model_dir,
        _hive(history_frame, tmp_path / "h"),
        _write(future_frame, tmp_path / "f.csv"),
        tmp_path / "o",
    )
    (tmp_path / "pred").mkdir()
    with pytest.raises(DataValidationError, match=r"features-store_id=S001\.csv\.out does not exist"):
        postprocess(tmp_path / "o", tmp_path / "pred", tmp_path / "forecasts.csv")


def test_split_cuts_every_partition_at_the_cutoff_of_the_whole_table(tmp_path, synthetic_frame, synthetic_spec):
    from forecaster.pipelines.split import write_split

    early = synthetic_frame[~((synthetic_frame["store_id"] == "S003") & (synthetic_frame["date"] > "2024-04-20"))]
    write_split(_write(early, tmp_path / "one.csv"), synthetic_spec, 7, tmp_path / "single")
    write_split(_hive(early, tmp_path / "hive"), synthetic_spec, 7, tmp_path / "parted", workers=2)
    # Hive in, Hive out: one folder per partition, one file in it, the key in the folder name only
    history = sorted(p.relative_to(tmp_path / "parted").as_posix() for p in (tmp_path / "parted").rglob("*.parquet"))
    assert [p for p in history if p.startswith("history/")] == [
        "history/store_id=S001/part-0.parquet",
        "history/store_id=S002/part-0.parquet",
        "history/store_id=S003/part-0.parquet",
    ]
    assert "store_id" not in pd.read_parquet(tmp_path / "parted" / "history" / "store_id=S001" / "part-0.parquet")
    # S003 ended before the evaluation window: no future/truth file for it, and no day of it held out
    assert sorted(p.name for p in (tmp_path / "parted" / "future").iterdir()) == ["store_id=S001", "store_id=S002"]
    for name in ("history", "future", "truth"):
        # one file keeps categorical keys; several files of other categories read back as strings
        single = _plain(read_table(tmp_path / "single" / name)).sort_values(["store_id", "item_id", "date"])
        parted = _plain(read_table(tmp_path / "parted" / name)).sort_values(["store_id", "item_id", "date"])
        parted = parted[single.columns]  # the key read from the folder name comes last
        pd.testing.assert_frame_equal(parted.reset_index(drop=True), single.reset_index(drop=True))


def test_local_build_pipeline_on_partitioned_data_writes_and_transforms_one_file_per_partition(tmp_path):
    from forecaster.pipelines.local import run_pipeline
    from forecaster.synth import SYNTH_SPEC, generate

    frame = generate(stores=3, items=3, days=90, seed=3)
    data = tmp_path / "sales"
    frame.to_parquet(data, partition_cols=["store_id"])  # the key only in the path
    write_json(SYNTH_SPEC, tmp_path / "spec.json")
    params = {"Horizon": 7, "NumBoostRound": 20, "QuantileNumBoostRound": 10, "NumLeaves": 7, "NumThreads": 1}
    params |= {"TransformMaxConcurrent": 1, "InputData": str(data), "Spec": str(tmp_path / "spec.json")}
    record = run_pipeline("build", tmp_path / "run", params, progress=False)
    assert record["status"] == "Succeeded"
    names = ["store_id=S001", "store_id=S002", "store_id=S003"]
    history = tmp_path / "run" / "Split" / "output" / "history"  # Hive in, Hive out: what the sharded step reads
    assert sorted(p.relative_to(history).as_posix() for p in history.rglob("*.parquet")) == [
        f"{n}/part-0.parquet" for n in names
    ]
    features = tmp_path / "run" / "Preprocess" / "output" / "features"
    assert sorted(p.name for p in features.iterdir()) == [f"features-{n}.csv" for n in names]
    predictions = tmp_path / "run" / "Transform" / "output" / "predictions"
    assert sorted(p.name for p in predictions.iterdir()) == [f"features-{n}.csv.out" for n in names]
    forecasts = read_table(tmp_path / "run" / "Postprocess" / "output" / "forecasts" / "forecasts.csv")
    assert len(forecasts) == 3 * 3 * 7 and sorted(forecasts["store_id"].unique()) == ["S001", "S002", "S003"]


def test_shards_of_a_key_only_in_path_hive_history_give_the_features_of_one_file(
    tmp_path, trained_model_dir, history_frame, future_frame
):
    """What each instance of the sharded Preprocess does (tests/sagemaker_local/test_sharded.py runs it in the
    image): whole partition folders without the key column, the chain's totals; the one file's feature rows."""
    import shutil

    future = _write(future_frame, tmp_path / "f.csv")
    preprocess(trained_model_dir, _write(history_frame, tmp_path / "one.csv"), future, tmp_path / "whole", workers=1)
    hive = tmp_path / "hive"
    history_frame.to_parquet(hive, partition_cols=["store_id"])  # the key only in the folder names
    totals = group_totals(hive, ForecastModel.load(trained_model_dir).schema.spec).save(tmp_path / "t.npz")
    for shard, stores in {"a": ("S001", "S003"), "b": ("S002",)}.items():
        for store in stores:
            shutil.copytree(hive / f"store_id={store}", tmp_path / shard / f"store_id={store}")
        preprocess(trained_model_dir, tmp_path / shard, future, tmp_path / "out", totals=totals, workers=1)
        shutil.copytree(tmp_path / "out", tmp_path / "features", dirs_exist_ok=True)
    names = [f"store_id=S00{i}" for i in (1, 2, 3)]
    parts = [pd.read_csv(tmp_path / "features" / f"features-{n}.csv", header=None) for n in names]
    pd.testing.assert_frame_equal(
        pd.concat(parts, ignore_index=True), pd.read_csv(tmp_path / "whole" / "features.csv", header=None)
    )
    keys = pd.concat(
        [pd.read_csv(tmp_path / "features" / f"keys-{n}.csv", dtype=str) for n in names], ignore_index=True
    )
    pd.testing.assert_frame_equal(keys, pd.read_csv(tmp_path / "whole" / "keys.csv", dtype=str))


def test_a_history_partitioned_by_date_gives_the_totals_and_features_of_one_table(
    tmp_path, trained_model_dir, history_frame, future_frame, caplog
):
    spec = ForecastModel.load(trained_model_dir).schema.spec
    recent = history_frame[history_frame["date"] > history_frame["date"].max() - pd.Timedelta(days=40)]
    recent.assign(date=recent["date"].dt.strftime("%Y-%m-%d")).to_parquet(tmp_path / "by-day", partition_cols=["date"])
    one = _write(recent, tmp_path / "one.parquet")
    future = _write(future_frame, tmp_path / "f.csv")
    whole = group_totals(one, spec)
    by_day = group_totals(tmp_path / "by-day", spec, workers=2)
    for name, stat in whole.stats.items():
        np.testing.assert_array_equal(by_day.stats[name].sums, stat.sums)
        np.testing.assert_array_equal(by_day.stats[name].counts, stat.counts)
    totals = whole.save(tmp_path / "t.npz")
    preprocess(trained_model_dir, one, future, tmp_path / "expected", totals=totals, workers=1)
    # with the totals given (a shard), the series shared by the partitions show only after the first run
    preprocess(trained_model_dir, tmp_path / "by-day", future, tmp_path / "got", totals=totals, workers=2)
    assert sorted(p.name for p in (tmp_path / "got").iterdir()) == ["features.csv", "keys.csv", "skipped_series.csv"]
    assert (tmp_path / "got" / "features.csv").read_text() == (tmp_path / "expected" / "features.csv").read_text()
    assert "has rows in two files of" in caplog.text
