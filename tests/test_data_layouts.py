"""Acceptance of issue 24: the same history as chains export it gives the same forecasts, row for row.

The history is written four ways (one Parquet file; pandas ``partition_cols``, the key only in the path; pyarrow
``write_dataset`` with Hive partitioning and two files per partition; a ``;``/decimal-comma cp1252 CSV behind a
byte-order mark), trained on and forecast from with the ``forecaster`` CLI. Bad layouts fail with the path named
and nothing written; a table partitioned by date is read as one table by every step.
"""

from __future__ import annotations

import codecs
import logging

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from forecaster.cli.main import main
from forecaster.io import read_table, write_table
from forecaster.synth import generate

FAST = ["--hp", "num_boost_round=15", "--hp", "quantile_num_boost_round=8", "--hp", "num_leaves=7"]
HORIZON = 7


@pytest.fixture(scope="module")
def sales() -> tuple[pd.DataFrame, pd.DataFrame]:
    """History (three stores, with Swedish city names) and the future frame of the next week."""
    frame = generate(stores=3, items=3, days=80, seed=11)
    cutoff = frame["date"].max() - pd.Timedelta(days=HORIZON)
    future = frame[frame["date"] > cutoff].drop(columns=["units_sold", "stockout_hours", "temperature"])
    return frame[frame["date"] <= cutoff].reset_index(drop=True), future.reset_index(drop=True)


def _one_file(history: pd.DataFrame, root):
    write_table(history, root / "history.parquet")
    return root / "history.parquet"


def _pandas_partition_cols(history: pd.DataFrame, root):
    history.to_parquet(root / "history", partition_cols=["store_id"])  # the key only in the path
    return root / "history"


def _write_dataset_two_files(history: pd.DataFrame, root):
    half = len(history) // 3 // 2 + 1  # three stores: every partition gets two files
    ds.write_dataset(
        pa.Table.from_pandas(history, preserve_index=False), root / "history", format="parquet",
        partitioning=["store_id"], partitioning_flavor="hive", max_rows_per_file=half, max_rows_per_group=half,
    )  # fmt: skip
    assert all(len(list(folder.iterdir())) == 2 for folder in (root / "history").iterdir())
    return root / "history"


def _european_csv(history: pd.DataFrame, root):
    frame = history.assign(date=history["date"].dt.strftime("%Y-%m-%d"))
    data = frame.to_csv(sep=";", decimal=",", index=False).encode("cp1252")  # Västerås, Jönköping: cp1252 bytes
    (root / "history.csv").write_bytes(codecs.BOM_UTF8 + data)
    return root / "history.csv"


LAYOUTS = {
    "one-parquet-file": _one_file,
    "pandas-partition-cols": _pandas_partition_cols,
    "write-dataset-two-files-per-partition": _write_dataset_two_files,
    "european-csv": _european_csv,
}


def _forecast(history, future, root) -> pd.DataFrame:
    model, out = root / "model", root / "forecast.csv"
    assert main(["train", "--data", str(history), "--model-dir", str(model), "--horizon", str(HORIZON), *FAST]) == 0
    argv = ["forecast", "--model-dir", str(model), "--history", str(history), "--future", str(future)]
    assert main([*argv, "--out", str(out)]) == 0
    return pd.read_csv(out)


@pytest.mark.slow
def test_the_same_history_written_four_ways_gives_the_same_forecasts_row_for_row(tmp_path, sales):
    history, future = sales
    write_table(future, tmp_path / "future.csv")
    forecasts = {}
    for name, write in LAYOUTS.items():
        (tmp_path / name).mkdir()
        forecasts[name] = _forecast(write(history, tmp_path / name), tmp_path / "future.csv", tmp_path / name)
    expected = forecasts.pop("one-parquet-file")
    assert len(expected) == len(future) and expected["p50"].notna().all()
    for name, got in forecasts.items():
        pd.testing.assert_frame_equal(got, expected, obj=name)


def _fails(argv: list[str], capsys) -> str:
    assert main(argv) == 3  # DataValidationError
    return capsys.readouterr().err


@pytest.mark.parametrize("step", ["train", "split"])
def test_bad_layouts_fail_naming_the_path_and_write_nothing(tmp_path, sales, capsys, step):
    history = sales[0]
    contradicting = tmp_path / "contradicting"
    for store, rows in history.groupby("store_id"):
        write_table(rows, contradicting / f"store_id={store}" / "part-0.parquet")
    (contradicting / "store_id=S002" / "part-0.parquet").rename(contradicting / "store_id=S001" / "part-1.parquet")
    (contradicting / "store_id=S002").rmdir()  # S002's rows now lie in S001's folder
    empty = _pandas_partition_cols(history, tmp_path / "empty")
    (empty / "store_id=S004").mkdir()
    mixed = _pandas_partition_cols(history, tmp_path / "mixed")
    write_table(history.head(5), mixed / "extra.csv")
    renamed = _write_dataset_two_files(history, tmp_path / "renamed")  # one part's target renamed: was read as NaN
    part = sorted((renamed / "store_id=S002").iterdir())[1]
    write_table(pd.read_parquet(part).rename(columns={"units_sold": "qty"}), part)
    other_format = _pandas_partition_cols(history, tmp_path / "other-format")  # a .tsv part: was skipped
    (other_format / "store_id=S002" / "late.tsv").write_text("item_id\tdate\tunits_sold\nbanana\t2024-03-01\t3\n")
    expected = {
        contradicting: r"contradicting/store_id=S001/part-1\.parquet lies in the partition folder store_id=S001 but",
        empty: r"Partition folder .*empty/history/store_id=S004 holds no CSV, Parquet or Excel",
        mixed: r"mixed/history mixes files \(extra\.csv, \.\.\.\) and partition folders",
        renamed: rf"File .*renamed/history/store_id=S002/{part.name} has no column 'units_sold', which .* have",
        other_format: r"other-format/history/store_id=S002/late\.tsv, which is not a CSV, Parquet or Excel",
    }
    for data, message in expected.items():
        out = tmp_path / f"out-{data.parent.name}-{data.name}"
        if step == "train":
            argv = ["train", "--data", str(data), "--model-dir", str(out), "--horizon", str(HORIZON), *FAST]
        else:
            argv = ["split", "--input", f"data={data}", "--horizon", str(HORIZON), "--out", str(out)]
        err = _fails(argv, capsys)
        assert pd.Series([err]).str.contains(message).all(), err
        assert not out.exists()  # nothing written


@pytest.mark.slow
def test_a_table_partitioned_by_date_is_read_as_one_table(tmp_path, sales, caplog):
    history, future = sales
    by_day = history.assign(date=history["date"].dt.strftime("%Y-%m-%d"))
    by_day.to_parquet(tmp_path / "by-day", partition_cols=["date"])  # date=2024-01-01/…: the date only in the path
    write_table(history, tmp_path / "one.parquet")
    write_table(future, tmp_path / "future.csv")
    with caplog.at_level(logging.WARNING):
        for data in ("one.parquet", "by-day"):
            argv = ["train", "--data", str(tmp_path / data), "--model-dir", str(tmp_path / f"model-{data}")]
            assert main([*argv, "--horizon", str(HORIZON), *FAST]) == 0
            argv = ["split", "--input", f"data={tmp_path / data}", "--horizon", str(HORIZON)]
            assert main([*argv, "--out", str(tmp_path / f"split-{data}")]) == 0
            argv = ["preprocess", "--model-dir", str(tmp_path / "model-one.parquet"), "--history", str(tmp_path / data)]
            assert main([*argv, "--future", str(tmp_path / "future.csv"), "--out", str(tmp_path / f"pre-{data}")]) == 0
    shared = [r for r in caplog.records if "has rows in two files of" in r.getMessage()]
    assert {r.name for r in shared} >= {"forecaster.training", "forecaster.pipelines.split", "forecaster.partitioned"}
    booster = "model_mean.txt"
    assert (tmp_path / "model-by-day" / booster).read_text() == (tmp_path / "model-one.parquet" / booster).read_text()
    for split in ("history", "future", "truth"):
        got, expected = (  # the same rows, in the order of the files read
            read_table(tmp_path / f"split-{data}" / split).sort_values(
                ["store_id", "item_id", "date"], ignore_index=True
            )
            for data in ("by-day", "one.parquet")
        )
        pd.testing.assert_frame_equal(got, expected)
    for name in ("features.csv", "keys.csv"):  # one table: one feature file, the same rows
        assert (tmp_path / "pre-by-day" / name).read_text() == (tmp_path / "pre-one.parquet" / name).read_text()
