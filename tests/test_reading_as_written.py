"""Values are read as their files write them: text keys stay text, grouped thousands and local dates are read right.

CSV readers guess types: ``007`` becomes 7 and ``1.10`` becomes the same number as ``1.1`` unless the keys are read
as text. Decimal-comma locales group thousands with dots (``4.800``), and local timestamps change their UTC offset
at a daylight-saving change. Each case below once gave a wrong result or a traceback.
"""

from __future__ import annotations

import json
import logging

import pandas as pd
import pytest

from forecaster.cli.main import main
from forecaster.days import parse_days
from forecaster.dialect import CsvDialect
from forecaster.errors import DataValidationError
from forecaster.io import read_table
from forecaster.spec import DatasetSpec
from forecaster.synth import generate

FAST = ["--hp", "num_boost_round=10", "--hp", "quantile_num_boost_round=5", "--hp", "num_leaves=7"]
HORIZON = 7
STORES = {"S001": "001", "S002": "002"}
ITEMS = {"apple": "1.1", "banana": "1.10"}


@pytest.fixture(scope="module")
def coded() -> tuple[pd.DataFrame, pd.DataFrame]:
    """History and future whose store and item codes a type guess would change (``001``; ``1.1`` / ``1.10``)."""
    frame = generate(stores=2, items=2, days=60, seed=3)
    frame = frame.assign(
        store_id=frame["store_id"].map(STORES),
        item_id=frame["item_id"].map(dict(zip(sorted(frame["item_id"].unique()), ITEMS.values(), strict=True))),
    )
    cutoff = frame["date"].max() - pd.Timedelta(days=HORIZON)
    future = frame[frame["date"] > cutoff].drop(columns=["units_sold", "stockout_hours", "temperature"])
    return frame[frame["date"] <= cutoff].reset_index(drop=True), future.reset_index(drop=True)


def test_csv_keys_are_read_as_written(tmp_path, coded):
    history, _ = coded
    history.to_csv(tmp_path / "history.csv", index=False)
    spec = DatasetSpec.preset("default")
    read = spec.validate_frame(read_table(tmp_path / "history.csv", text=spec.text_columns))
    assert set(read["store_id"]) == {"001", "002"}
    assert set(read["item_id"]) == {"1.1", "1.10"}  # two articles, not one number
    assert read.groupby(["store_id", "item_id"], observed=True).ngroups == 4


def test_a_model_trained_and_run_on_csv_keeps_the_codes_in_its_forecasts(tmp_path, coded):
    history, future = coded
    history.to_csv(tmp_path / "history.csv", index=False)
    future.to_csv(tmp_path / "future.csv", index=False)
    model = tmp_path / "model"
    assert (
        main(
            [
                "train",
                "--data",
                str(tmp_path / "history.csv"),
                "--model-dir",
                str(model),
                "--horizon",
                str(HORIZON),
                *FAST,
            ]
        )
        == 0
    )
    out = tmp_path / "forecasts.csv"
    argv = ["forecast", "--model-dir", str(model), "--history", str(tmp_path / "history.csv")]
    assert main([*argv, "--future", str(tmp_path / "future.csv"), "--out", str(out)]) == 0
    forecasts = pd.read_csv(out, dtype={"store_id": str, "item_id": str})
    assert set(zip(forecasts["store_id"], forecasts["item_id"], strict=True)) == {
        (s, i) for s in STORES.values() for i in ITEMS.values()
    }


def test_dots_that_group_thousands_in_a_decimal_comma_file_are_read_as_thousands(tmp_path):
    text = "store_id;units_sold;discount\n001;4.800;0,5\n002;1.234.567,5;0,25\n003;12;0\n"
    (tmp_path / "t.csv").write_text(text, encoding="utf-8")
    frame = read_table(tmp_path / "t.csv", text=("store_id",))
    assert frame["units_sold"].astype(float).tolist() == [4800.0, 1234567.5, 12.0]
    assert frame["discount"].astype(float).tolist() == [0.5, 0.25, 0.0]
    assert frame["store_id"].tolist() == ["001", "002", "003"]


def test_text_columns_do_not_vote_for_the_decimal_mark(tmp_path):
    """Article codes ``1.1`` / ``2.2`` once voted for a decimal point: every sale of 1,000 or more read as ~1 unit."""
    rows = [
        f"S1;{code};2024-06-0{day};{units}" for day in range(1, 8) for code, units in (("1.1", "1.365"), ("2.2", "842"))
    ]
    (tmp_path / "plu.csv").write_text("store;item;date;units\n" + "\n".join(rows) + "\n", encoding="utf-8")
    frame = read_table(tmp_path / "plu.csv", text=("store", "item"))
    assert sorted(frame["units"].astype(float).unique()) == [842.0, 1365.0]
    assert sorted(frame["item"].unique()) == ["1.1", "2.2"]


def test_a_thousands_dot_after_the_sample_is_read_by_the_whole_file(tmp_path, caplog):
    """Whole numbers in the first 64 KiB, a campaign day's ``1.200`` further on: was read as 1.2 without a word."""
    lines = [f"S{n % 7};item{n % 13};2024-01-01;{100 + n % 800}" for n in range(4000)]  # > 64 KiB
    (tmp_path / "late.csv").write_text("store;item;date;units\n" + "\n".join([*lines, "S1;item1;2024-01-02;1.200"]))
    units = read_table(tmp_path / "late.csv", text=("store", "item"))["units"].astype(float)
    assert units.iloc[-1] == 1200 and units.iloc[0] == 100
    lines = [f"S{n % 7};item{n % 13};2024-01-01;{n % 50}" for n in range(6000)]  # no three-digit number
    (tmp_path / "small.csv").write_text("store;item;date;units\n" + "\n".join([*lines, "S1;a;d;1.200"]))
    with caplog.at_level(logging.WARNING, logger="forecaster.dialect"):
        assert read_table(tmp_path / "small.csv", text=("store", "item"))["units"].astype(float).iloc[-1] == 1.2
    assert "could be 1200 (a thousands dot) or 1.2" in caplog.text  # said, as in a short file


def test_a_dot_thousand_does_not_outvote_a_decimal_comma_and_alone_is_read_with_a_warning(tmp_path, caplog):
    """``1.200`` in a ``;`` file is 1200 to a decimal-comma locale and 1.2 to a decimal-point one."""
    (tmp_path / "mixed.csv").write_text("item_id;units\nbanana;1.200\napple;3,5\n", encoding="utf-8")
    frame = read_table(tmp_path / "mixed.csv", text=("item_id",))  # a tie once chose the point, then refused 3,5
    assert frame["units"].astype(float).tolist() == [1200.0, 3.5]
    (tmp_path / "alone.csv").write_text("item_id;units\nbanana;1.200\napple;2.500\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="forecaster.dialect"):
        frame = read_table(tmp_path / "alone.csv", text=("item_id",))
    assert frame["units"].astype(float).tolist() == [1.2, 2.5]
    assert "could be 1200 (a thousands dot) or 1.2" in caplog.text and '"csv": {"decimal": ","}' in caplog.text
    (tmp_path / "whole.csv").write_text("item_id;units\nbanana;1.031\napple;724\npear;2.005\n", encoding="utf-8")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="forecaster.dialect"):  # 724 beside 1.031: a thousands dot
        assert read_table(tmp_path / "whole.csv")["units"].astype(float).tolist() == [1031.0, 724.0, 2005.0]
    assert "thousands dot" not in caplog.text
    (tmp_path / "kilos.csv").write_text("item_id;units\nbanana;1.200\napple;0.25\n", encoding="utf-8")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="forecaster.dialect"):
        assert read_table(tmp_path / "kilos.csv")["units"].tolist() == [1.2, 0.25]  # 0.25 settles it: no warning
    assert "thousands dot" not in caplog.text


def test_local_timestamps_across_a_daylight_saving_change_give_each_rows_local_date():
    spec = DatasetSpec.preset("default")
    dates = pd.date_range("2024-03-29", "2024-04-02", tz="Europe/Stockholm")  # +01:00, then +02:00 from 03-31
    frame = pd.DataFrame({
        "store_id": "001", "item_id": "1.1", "date": [d.isoformat() for d in dates], "units_sold": 1.0,
        "campaign": 0, "discount": 0.0, "holiday": 0,
    })  # fmt: skip
    parsed = spec.validate_frame(frame)["date"]
    assert parsed.tolist() == list(pd.date_range("2024-03-29", "2024-04-02"))
    # UTC instants count on the nearest midnight: Spark in Stockholm stores local midnight as 23:00Z / 22:00Z
    instants = frame.assign(date=[d.tz_convert("UTC").isoformat().replace("+00:00", "Z") for d in dates])
    assert instants["date"].iat[0] == "2024-03-28T23:00:00Z" and instants["date"].iat[-1] == "2024-04-01T22:00:00Z"
    assert spec.validate_frame(instants)["date"].tolist() == list(pd.date_range("2024-03-29", "2024-04-02"))
    typed = frame.assign(date=dates.tz_convert("UTC"))  # a Parquet timestamp in UTC, the same instants
    assert spec.validate_frame(typed)["date"].tolist() == list(pd.date_range("2024-03-29", "2024-04-02"))
    midnight = frame.assign(date=[f"{d.date()}T00:00:00Z" for d in dates])  # midnight UTC: the day as written
    assert spec.validate_frame(midnight)["date"].tolist() == list(pd.date_range("2024-03-29", "2024-04-02"))


@pytest.mark.parametrize(
    ("zone", "dates"),
    [
        ("Pacific/Auckland", pd.date_range("2024-01-01", periods=6)),  # summer, UTC+13: 11:00Z the day before
        ("Pacific/Auckland", pd.date_range("2024-06-01", periods=6)),  # winter, UTC+12: 12:00Z the day before
        ("Pacific/Auckland", pd.date_range("2024-03-28", periods=10)),  # across the change: 11:00Z, then 12:00Z
        ("America/New_York", pd.date_range("2024-03-08", periods=6)),  # 05:00Z, then 04:00Z: the same date
        ("Pacific/Honolulu", pd.date_range("2024-01-01", periods=6)),  # UTC-10: 10:00Z, the same date
        ("Europe/London", pd.date_range("2024-03-28", periods=6)),  # 00:00Z, then 23:00Z the day before
    ],
)
def test_local_midnights_stored_in_utc_keep_their_local_day(zone, dates):
    instants = pd.Series(dates).dt.tz_localize(zone).dt.tz_convert("UTC")
    assert parse_days(instants).tolist() == list(dates)  # a Parquet timestamp in UTC
    text = instants.dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert parse_days(text).tolist() == list(dates)  # the same instants written as text


def test_utc_instants_at_noon_or_at_varying_times_keep_one_day_each():
    noon = pd.Series(pd.date_range("2024-01-01", periods=6).strftime("%Y-%m-%dT12:00:00Z"))
    read = parse_days(noon)
    assert read.is_unique and (read.diff().dropna() == pd.Timedelta(days=1)).all()  # was rounded 1, 2, 2, 4, 4, 6
    events = pd.Series(["2024-01-01T15:30:00Z", "2024-01-02T09:10:00Z", "2024-01-03T23:59:00Z"])
    assert parse_days(events).tolist() == list(pd.date_range("2024-01-01", periods=3))  # events: the UTC date


def test_a_bad_value_in_a_folder_of_files_is_reported_with_its_file_and_row_there(tmp_path, coded):
    history, _ = coded
    folder = tmp_path / "sales"
    folder.mkdir()
    for number, (_, rows) in enumerate(history.groupby("store_id"), start=1):
        rows.to_csv(folder / f"group-{number:02d}.csv", index=False)
    second = pd.read_csv(folder / "group-02.csv", dtype=str)
    second.loc[2, "units_sold"] = "abc"
    second.to_csv(folder / "group-02.csv", index=False)
    spec = DatasetSpec.preset("default")
    with pytest.raises(DataValidationError, match=r"'abc' in row \d+; .*\(row 3 of .*group-02\.csv\.\)"):
        spec.validate_frame(read_table(folder, text=spec.text_columns))


def test_empty_part_files_in_a_folder_are_skipped(tmp_path, coded, caplog):
    history, _ = coded
    folder = tmp_path / "spark"
    folder.mkdir()
    history.to_csv(folder / "part-00000.csv", index=False)
    history.head(0).to_csv(folder / "part-00001.csv", index=False)  # a header alone: an empty Spark task
    (folder / "part-00002.csv").write_bytes(b"")
    history.head(0).to_parquet(folder / "part-00003.parquet")
    with caplog.at_level(logging.INFO, logger="forecaster.tables"):
        read = read_table(folder, text=("store_id", "item_id"))
    assert len(read) == len(history)
    assert "skipped 3 file(s) without data rows" in caplog.text
    model = tmp_path / "model"
    assert main(["train", "--data", str(folder), "--model-dir", str(model), "--horizon", str(HORIZON), *FAST]) == 0


def test_a_null_hive_partition_is_named_as_a_missing_key(tmp_path, coded):
    history, _ = coded
    folder = tmp_path / "sales"
    for store, rows in history.groupby("store_id"):
        part = folder / f"store_id={'__HIVE_DEFAULT_PARTITION__' if store == '002' else store}"
        part.mkdir(parents=True)
        rows.drop(columns="store_id").to_parquet(part / "part-0.parquet")
    with pytest.raises(DataValidationError, match=r"'store_id' is missing .*Fill the key"):
        read_table(folder)


def test_an_excel_book_with_several_sheets_says_which_it_ignores(tmp_path, coded, caplog):
    history, _ = coded
    with pd.ExcelWriter(tmp_path / "sales.xlsx") as book:
        for store, rows in history.groupby("store_id"):
            rows.to_excel(book, sheet_name=f"store {store}", index=False)
    with caplog.at_level(logging.WARNING, logger="forecaster.tables"):
        read = read_table(tmp_path / "sales.xlsx", text=("store_id", "item_id"))
    assert set(read["store_id"]) == {"001"}
    assert "1 other sheet(s) ignored (store 002)" in caplog.text


def test_a_decimal_comma_the_detection_missed_is_named_with_the_setting_that_reads_it(tmp_path, coded):
    history, _ = coded
    frame = history.assign(discount=history["discount"].astype(str))
    frame.loc[len(frame) - 1, "discount"] = "0,8"  # after the first lines the detection reads: a dot file so far
    with pytest.raises(DataValidationError, match=r"'0,8' in row .*decimal comma: .*\"csv\": \{\"decimal\": \",\"\}"):
        DatasetSpec.preset("default").validate_frame(frame)


def test_excels_sep_line_names_the_separator_and_is_not_the_header(tmp_path, coded):
    history, _ = coded
    text = history.head(20).to_csv(sep=";", decimal=",", index=False)
    (tmp_path / "excel.csv").write_bytes(("sep=;\r\n" + text).encode("cp1252"))
    read = read_table(tmp_path / "excel.csv", text=("store_id", "item_id"))
    assert list(read.columns) == list(history.columns)
    assert read["units_sold"].astype(float).tolist() == history.head(20)["units_sold"].tolist()


def test_a_comma_separated_file_with_quoted_decimal_commas_is_read(tmp_path):
    """Spreadsheets in decimal-comma locales export ``,`` separated files with ``"1,5"`` quoted."""
    text = 'store_id,units_sold,discount\n001,"4,5","0,25"\n002,3,"0,5"\n003,"12,75",0\n'
    (tmp_path / "sheet.csv").write_text(text, encoding="utf-8")
    frame = read_table(tmp_path / "sheet.csv", text=("store_id",))
    assert frame["units_sold"].tolist() == [4.5, 3.0, 12.75] and frame["discount"].tolist() == [0.25, 0.5, 0.0]
    us = 'store_id,units_sold\n001,"1,234"\n002,"2,500"\n003,7.5\n'  # quoted thousands: no decimal comma
    (tmp_path / "us.csv").write_text(us, encoding="utf-8")
    assert read_table(tmp_path / "us.csv", text=("store_id",))["units_sold"].tolist() == ["1,234", "2,500", "7.5"]


def test_training_data_that_cannot_teach_a_model_is_refused_clearly(coded, tmp_path):
    from forecaster.config import TrainConfig
    from forecaster.training import fit_artifact

    history, _ = coded
    spec = DatasetSpec.preset("default")
    config = TrainConfig(horizon=HORIZON, num_boost_round=5, quantile_num_boost_round=3)
    with pytest.raises(
        DataValidationError, match=r"No 'units_sold' value of the training data is above 0 \(all are 0 or missing\)"
    ):
        fit_artifact(history.assign(units_sold=0.0), spec, config, tmp_path / "zero")
    infinite = history.assign(units_sold=history["units_sold"].where(history.index != 4, float("inf")))
    with pytest.raises(
        DataValidationError, match=r"'units_sold' column \(target\) .* finite numbers within .*Got inf in row 5"
    ):
        fit_artifact(infinite, spec, config, tmp_path / "inf")
    with pytest.raises(DataValidationError, match=r"In the validation data \(validation channel\): .*no column"):
        fit_artifact(history, spec, config, tmp_path / "v", validation=history.drop(columns="discount"))
    assert not any((tmp_path / name).exists() for name in ("zero", "inf", "v"))


def test_quotes_escaped_as_spark_writes_them_keep_the_value_whole(tmp_path):
    lines = ["store_id,item_id,date,units_sold", 'S1,"Tomaten \\"Cherry\\", rot",2024-01-01,3', "S1,apple,2024-01-01,4"]
    (tmp_path / "part-00000-c000.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    frame = read_table(tmp_path / "part-00000-c000.csv", text=("store_id", "item_id"))
    assert frame["item_id"].tolist() == ['Tomaten "Cherry", rot', "apple"]  # was read with S1 gone, columns shifted
    assert frame["store_id"].tolist() == ["S1", "S1"] and frame["units_sold"].tolist() == [3, 4]
    # no separator inside the quotes: the field count holds either way, and the value was read 'Gurka \\Eko\\""'
    lines = ["store_id,item_id,date,units_sold", 'S1,"Gurka \\"Eko\\"",2024-01-01,3', "S1,Morot,2024-01-01,4"]
    (tmp_path / "future.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    frame = read_table(tmp_path / "future.csv", text=("store_id", "item_id"))
    assert frame["item_id"].tolist() == ['Gurka "Eko"', "Morot"]
    # a backslash ending a value of a standard CSV (quotes doubled) stays a backslash
    lines = ["store_id,path,date,units_sold", 'S1,"C:\\dir\\",2024-01-01,3', 'S1,"say ""hi""",2024-01-01,4']
    (tmp_path / "windows.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    frame = read_table(tmp_path / "windows.csv", text=("store_id", "path"))
    assert frame["path"].tolist() == ["C:\\dir\\", 'say "hi"']


def test_a_separator_at_the_end_of_each_line_is_read_and_a_field_too_many_is_refused(tmp_path):
    text = "store_id;item_id;date;units_sold\nS1;apple;2024-01-01;3;\nS1;pear;2024-01-01;4;\n"
    (tmp_path / "erp.csv").write_text(text, encoding="utf-8")
    frame = read_table(tmp_path / "erp.csv", text=("store_id", "item_id"))
    assert list(frame.columns) == ["store_id", "item_id", "date", "units_sold"]
    assert frame["units_sold"].tolist() == [3, 4] and frame["store_id"].tolist() == ["S1", "S1"]
    text = "store_id,item_id,date,units_sold\nS1,apple,2024-01-01,3,9\nS1,pear,2024-01-01,4\n"
    (tmp_path / "shifted.csv").write_text(text, encoding="utf-8")
    with pytest.raises(DataValidationError, match=r"shifted\.csv .*line 2 has 5 fields, the header 4 .*'9'"):
        read_table(tmp_path / "shifted.csv", text=("store_id", "item_id"))


def test_a_key_that_is_double_in_one_parquet_file_and_int_in_the_next_names_one_series(tmp_path):
    frame = generate(stores=1, items=2, days=60, seed=0)
    frame["item_id"] = pd.factorize(frame["item_id"])[0] + 1
    folder = tmp_path / "sales"
    folder.mkdir()
    first = frame["date"] < frame["date"].min() + pd.Timedelta(days=30)
    frame[first].astype({"item_id": float}).to_parquet(folder / "2024-01.parquet")  # 1.0 after a merge with NaN
    frame[~first].to_parquet(folder / "2024-02.parquet")
    model = tmp_path / "model"
    assert main(["train", "--data", str(folder), "--spec", "default", "--model-dir", str(model), *FAST]) == 0
    report = json.loads((model / "metadata.json").read_text())["data_report"]
    assert report["series"] == 2 and report["days"] == 60  # was 4 series of 30 days: '1.0' and '1'
    spec = DatasetSpec.preset("default")
    assert set(spec.validate_frame(read_table(folder, text=spec.text_columns))["item_id"]) == {"1", "2"}
    truth = read_table(folder / "2024-01.parquet", text=("item_id",))  # every reader of keys: truth, stock, …
    assert set(truth["item_id"].astype(str)) == {"1", "2"}


def test_typed_dates_are_dates_whatever_the_specs_date_format_says(tmp_path):
    frame = pd.DataFrame({"date": pd.date_range("2024-01-01", periods=3).date, "units": [1, 2, 3]})
    frame.to_parquet(tmp_path / "dates.parquet")  # date32: pandas reads datetime.date objects
    read = read_table(tmp_path / "dates.parquet")
    assert parse_days(read["date"], "%d.%m.%Y").tolist() == list(pd.date_range("2024-01-01", periods=3))
    assert parse_days(pd.Series(["02.01.2024"]), "%d.%m.%Y").tolist() == [pd.Timestamp("2024-01-02")]  # text


@pytest.mark.parametrize("suffix", ["csv", "xlsx"])
def test_key_codes_like_na_or_none_stay_text_and_numbers_keep_their_missing_markers(tmp_path, suffix):
    frame = pd.DataFrame({
        "store_id": ["NA", "None", "EU"], "item_id": ["n/a", "null", "NaN"], "date": ["2024-01-01"] * 3,
        "units_sold": ["1", "NA", ""],
    })  # fmt: skip
    path = tmp_path / f"sales.{suffix}"
    frame.to_csv(path, index=False) if suffix == "csv" else frame.to_excel(path, index=False)
    read = read_table(path, text=("store_id", "item_id"))
    assert read["store_id"].tolist() == ["NA", "None", "EU"] and read["item_id"].tolist() == ["n/a", "null", "NaN"]
    assert read["units_sold"].iloc[0] == 1 and read["units_sold"].iloc[1:].isna().all()  # NA: a missing number


def test_a_file_of_a_folder_with_its_target_renamed_is_named_when_training(tmp_path, capsys):
    frame = generate(stores=2, items=2, days=60, seed=0)
    folder = tmp_path / "sales"
    folder.mkdir()
    for number, (_, rows) in enumerate(frame.groupby("store_id", observed=True), start=1):
        rows = rows.rename(columns={"units_sold": "qty"}) if number == 2 else rows
        rows.to_csv(folder / f"group-{number:02d}.csv", index=False)
    argv = ["train", "--data", str(folder), "--spec", "default", "--model-dir", str(tmp_path / "m"), *FAST]
    assert main(argv) == 3
    err = capsys.readouterr().err
    assert "history data (file " in err and "group-02.csv) has no column 'units_sold'" in err


def test_a_pinned_decimal_comma_reads_numbers_an_excel_sheet_holds_as_text(tmp_path):
    frame = pd.DataFrame({"store_id": ["S1", "S1"], "date": ["2024-01-01", "2024-01-02"], "units_sold": ["11,5", "3"]})
    frame.to_excel(tmp_path / "text.xlsx", index=False)
    pinned = read_table(tmp_path / "text.xlsx", CsvDialect(decimal=","), text=("store_id",))
    assert pinned["units_sold"].astype(float).tolist() == [11.5, 3.0]  # the hint said to pin it; it changed nothing


def test_a_folder_key_with_leading_zeros_wins_over_the_files_integer(tmp_path):
    rows = pd.DataFrame({"store_id": [7, 7], "date": ["2024-01-01", "2024-01-02"], "units_sold": [1, 2]})
    (tmp_path / "sales" / "store_id=007").mkdir(parents=True)
    rows.to_parquet(tmp_path / "sales" / "store_id=007" / "part-0.parquet")  # the file's own column: int 7
    (tmp_path / "sales" / "store_id=008").mkdir()
    rows.drop(columns="store_id").to_parquet(tmp_path / "sales" / "store_id=008" / "part-0.parquet")
    assert set(read_table(tmp_path / "sales")["store_id"].astype(str)) == {"007", "008"}  # was '7' and '008'


def test_a_pinned_decimal_comma_leaves_the_number_cells_of_a_sheet_as_they_are(tmp_path):
    frame = pd.DataFrame({"store_id": ["S1"] * 4, "units_sold": [1.234, "11,5", "3,25", 2.5]})  # numbers and text
    frame.to_excel(tmp_path / "mixed.xlsx", index=False)
    read = read_table(tmp_path / "mixed.xlsx", CsvDialect(decimal=","), text=("store_id",))
    assert read["units_sold"].astype(float).tolist() == [1.234, 11.5, 3.25, 2.5]  # 1.234 became 1234


def test_a_byte_order_mark_does_not_change_the_dialect_of_a_long_file(tmp_path):
    """Excel's "CSV UTF-8" in Europe: BOM + ';' + decimal comma over 64 KiB was read as ',' and refused."""
    lines = [f"S{n % 7};item{n % 13};2024-01-{1 + n % 28:02d};{n % 9},5" for n in range(4000)]
    text = "store;item;date;units\n" + "\n".join(lines) + "\n"
    (tmp_path / "bom.csv").write_bytes(b"\xef\xbb\xbf" + text.encode())
    (tmp_path / "plain.csv").write_bytes(text.encode())
    bom, plain = (read_table(tmp_path / name, text=("store", "item")) for name in ("bom.csv", "plain.csv"))
    pd.testing.assert_frame_equal(bom, plain)
    assert list(bom.columns) == ["store", "item", "date", "units"] and len(bom) == 4000


def test_a_parquet_file_with_the_keys_in_a_named_index_reads_them_as_columns(tmp_path):
    """``daily = lines.groupby([...]).agg(...); daily.to_parquet(...)``: refused for missing key columns."""
    frame = generate(stores=2, items=2, days=10, seed=0)
    frame.set_index(["store_id", "item_id", "date"]).to_parquet(tmp_path / "daily.parquet")
    frame.to_parquet(tmp_path / "flat.parquet", index=False)
    indexed, flat = read_table(tmp_path / "daily.parquet"), read_table(tmp_path / "flat.parquet")
    pd.testing.assert_frame_equal(indexed[list(flat.columns)], flat)
