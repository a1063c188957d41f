"""Tables as data platforms and spreadsheets write them: Hive keys in the path, layouts, CSV dialects, Excel."""

from __future__ import annotations

import codecs
import logging
import sys

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from forecaster.dialect import CsvDialect, detect, read_csv
from forecaster.errors import DataValidationError, InvalidParameterError, MissingExtraError
from forecaster.io import read_table, write_table
from forecaster.partitions import partitions, write_partition
from forecaster.spec import DatasetSpec


@pytest.fixture()
def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "store_id": ["007", "007", "S2", "S2"],
            "item_id": ["Äpfel", "Möhren", "Äpfel", "Möhren"],
            "date": ["2024-06-01", "2024-06-01", "2024-06-02", "2024-06-02"],
            "units_sold": [1.5, 2.0, 3.25, 0.0],
        }
    )


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    plain = frame.astype({c: str for c in frame.select_dtypes("category").columns})
    return plain[sorted(plain.columns)].sort_values(["store_id", "item_id"]).reset_index(drop=True)


# --------------------------------------------------------------------------------------------- Hive layouts
def test_a_key_only_in_the_path_becomes_a_string_column(tmp_path, frame):
    frame.to_parquet(tmp_path / "h", partition_cols=["store_id"])  # the key leaves the files
    assert "store_id" not in pd.read_parquet(next((tmp_path / "h" / "store_id=007").glob("*.parquet")))
    parts = partitions(tmp_path / "h")
    assert [p.name for p in parts] == ["store_id=007", "store_id=S2"]
    assert parts[0].keys == (("store_id", "007"),)
    got = read_table(tmp_path / "h")
    assert sorted(got["store_id"].astype(str).unique()) == ["007", "S2"]  # "007", not 7: keys are strings
    pd.testing.assert_frame_equal(_sorted(got), _sorted(frame))


def test_pyarrow_write_dataset_with_several_files_per_partition_and_nested_keys(tmp_path, frame):
    table = pa.Table.from_pandas(frame.assign(group=["fruit", "root", "fruit", "root"]), preserve_index=False)
    ds.write_dataset(
        table, tmp_path / "h", format="parquet", partitioning=["store_id", "group"], partitioning_flavor="hive",
        max_rows_per_file=1, max_rows_per_group=1,
    )  # fmt: skip
    parts = partitions(tmp_path / "h")
    assert [p.name for p in parts] == ["store_id=007", "store_id=S2"]  # a partition: the top-level folder
    assert [len(p.files) for p in parts] == [2, 2]
    assert {f.keys for f in parts[0].fragments} == {(("store_id", "007"), ("group", "fruit")),
                                                     (("store_id", "007"), ("group", "root"))}  # fmt: skip
    got = parts[0].read()
    assert sorted(got["group"].astype(str)) == ["fruit", "root"] and set(got["store_id"].astype(str)) == {"007"}


def test_a_key_in_the_path_and_in_the_file_must_agree(tmp_path, frame):
    good = frame.assign(store_id=[7, 7, 8, 8])  # a typed column agrees with its folder name "7"
    for store, rows in good.groupby("store_id"):
        write_table(rows, tmp_path / "ok" / f"store_id={store}" / "part-0.csv")
    assert read_table(tmp_path / "ok")["store_id"].tolist() == ["7", "7", "8", "8"]  # the folder's text
    write_table(frame[frame["store_id"] == "S2"], tmp_path / "bad" / "store_id=S1" / "part-0.parquet")
    message = (
        r"store_id=S1.part-0\.parquet lies in the partition folder store_id=S1 but its 'store_id' column holds 'S2'"
    )
    with pytest.raises(DataValidationError, match=message + " in row 1"):
        read_table(tmp_path / "bad")


def test_layout_errors_name_the_path(tmp_path, frame):
    write_table(frame, tmp_path / "empty" / "store_id=S1" / "part-0.csv")
    (tmp_path / "empty" / "store_id=S2").mkdir()
    (tmp_path / "empty" / "store_id=S2" / "_SUCCESS").touch()  # skipped, like pyarrow does: the folder is empty
    with pytest.raises(DataValidationError, match=r"Partition folder .*empty.store_id=S2 holds no CSV, Parquet"):
        partitions(tmp_path / "empty")
    write_table(frame, tmp_path / "mixed" / "store_id=S1" / "part-0.csv")
    write_table(frame, tmp_path / "mixed" / "more.csv")
    with pytest.raises(DataValidationError, match=r"mixed mixes files \(more\.csv, \.\.\.\) and partition folders"):
        read_table(tmp_path / "mixed")
    write_table(frame, tmp_path / "keys" / "store_id=S1" / "part-0.csv")
    write_table(frame, tmp_path / "keys" / "region=N" / "part-0.csv")
    with pytest.raises(DataValidationError, match=r"keys mixes partition layouts: region=N.part-0\.csv has"):
        partitions(tmp_path / "keys")


def test_hidden_files_and_files_of_other_kinds_are_skipped(tmp_path, frame):
    write_table(frame, tmp_path / "h" / "store_id=S1" / "part-00000.snappy.parquet")
    (tmp_path / "h" / "_SUCCESS").touch()
    (tmp_path / "h" / "store_id=S1" / ".part-00000.snappy.parquet.crc").touch()
    (tmp_path / "h" / "spec.json").write_text("{}")
    assert [p.files for p in partitions(tmp_path / "h")] == [(tmp_path / "h/store_id=S1/part-00000.snappy.parquet",)]


def test_parquet_files_named_without_a_suffix_are_read_as_hive_and_athena_write_them(tmp_path, frame):
    for store, rows in frame.groupby("store_id"):
        write_table(rows.drop(columns="store_id"), tmp_path / "h" / f"store_id={store}" / "part.parquet")
        (tmp_path / "h" / f"store_id={store}" / "part.parquet").rename(
            tmp_path / "h" / f"store_id={store}" / "000000_0"
        )
    (tmp_path / "h" / "notes.md").write_text("# what this is")  # other kinds of file still skipped
    pd.testing.assert_frame_equal(_sorted(read_table(tmp_path / "h")), _sorted(frame))


@pytest.mark.parametrize("name", ["more.tsv", "more.txt", "more.csv.bz2", "more.xls", "000001_0"])
def test_a_data_file_in_a_format_not_read_is_refused_not_skipped(tmp_path, frame, name):
    """A .tsv or extension-less text part beside the CSV files was skipped: its series' days counted as 0 sales."""
    write_table(frame, tmp_path / "h" / "part-0.csv")
    (tmp_path / "h" / name).write_text("store_id\titem_id\tdate\tunits_sold\nS3\tx\t2024-06-01\t4\n")
    with pytest.raises(DataValidationError, match=rf"h.{name}, which is not a CSV, Parquet or Excel .* left out"):
        read_table(tmp_path / "h")


def test_write_partition_writes_hive_in_hive_out_and_files_as_files(tmp_path, frame):
    frame.to_parquet(tmp_path / "h", partition_cols=["store_id"])
    for part in partitions(tmp_path / "h"):
        write_partition(part.read(), part, tmp_path / "out")
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*.parquet")) == [
        "store_id=007/part-0.parquet",
        "store_id=S2/part-0.parquet",
    ]
    pd.testing.assert_frame_equal(_sorted(read_table(tmp_path / "out")), _sorted(frame))
    write_table(frame, tmp_path / "groups" / "group-1.csv")
    (part,) = partitions(tmp_path / "groups")
    write_partition(part.read(), part, tmp_path / "out2")
    assert [p.name for p in (tmp_path / "out2").iterdir()] == ["group-1.parquet"]


# --------------------------------------------------------------------------------------------- CSV dialects
def _excel_europe(frame: pd.DataFrame, path, bom: bool = True) -> None:
    """What Excel writes in most of Europe: ';', decimal comma, cp1252 (here also behind a UTF-8 byte-order mark)."""
    data = frame.to_csv(sep=";", decimal=",", index=False).encode("cp1252")
    path.write_bytes((codecs.BOM_UTF8 if bom else b"") + data)


def _plain_read(frame: pd.DataFrame, tmp_path) -> pd.DataFrame:
    """``frame`` written as a plain CSV (',', '.', UTF-8) and read back by pandas: what every dialect must give."""
    frame.to_csv(tmp_path / "plain.csv", index=False)
    return pd.read_csv(tmp_path / "plain.csv")


@pytest.mark.parametrize("bom", [True, False])
def test_a_european_excel_csv_is_read_without_configuration(tmp_path, frame, caplog, bom):
    _excel_europe(frame, tmp_path / "eu.csv", bom)
    with caplog.at_level(logging.INFO, logger="forecaster.dialect"):
        got = read_table(tmp_path / "eu.csv")
    pd.testing.assert_frame_equal(got, _plain_read(frame, tmp_path))
    assert got["item_id"].tolist() == frame["item_id"].tolist() and got["units_sold"].tolist() == [1.5, 2, 3.25, 0]
    (message,) = [r.getMessage() for r in caplog.records if "eu.csv" in r.getMessage()]
    assert "separator ';' (detected), decimal mark ','" in message and "encoding cp1252 (detected: not UTF-8" in message
    assert ("after a UTF-8 byte-order mark" in message) is bom


@pytest.mark.parametrize(
    ("write", "expected"),
    [
        (lambda f, p: f.to_csv(p, index=False), (",", ".", "utf-8", 0)),
        (lambda f, p: f.to_csv(p, index=False, sep=";", decimal=",", encoding="utf-8-sig"), (";", ",", "utf-8", 3)),
        (
            lambda f, p: f.to_csv(p, index=False, sep="\t", encoding="utf-16"),
            ("\t", ".", "utf-16", 0),
        ),  # "Unicode text"
        (lambda f, p: f.to_csv(p, index=False, sep="|"), ("|", ".", "utf-8", 0)),
        (lambda f, p: f.to_csv(p, index=False, sep=";", encoding="cp1252"), (";", ".", "cp1252", 0)),
    ],
)
def test_dialects_are_detected(tmp_path, frame, write, expected):
    write(frame, tmp_path / "t.csv")
    found = detect(tmp_path / "t.csv")
    assert (found.dialect.sep, found.dialect.decimal, found.dialect.encoding, found.bom) == expected
    pd.testing.assert_frame_equal(read_csv(tmp_path / "t.csv"), _plain_read(frame, tmp_path))


def test_day_first_dates_with_points_do_not_vote_for_a_decimal_point(tmp_path):
    (tmp_path / "t.csv").write_text("Datum;Menge;Preis\n01.06.2024;1;1,5\n02.06.2024;2;2,25\n")
    assert detect(tmp_path / "t.csv").dialect == CsvDialect(";", ",", "utf-8")
    assert read_csv(tmp_path / "t.csv")["Preis"].tolist() == [1.5, 2.25]


def test_a_value_that_does_not_parse_is_reported_by_row_and_column(tmp_path, frame):
    bad = frame.astype({"units_sold": object})
    bad.loc[2, "units_sold"] = "zwei"
    _excel_europe(bad, tmp_path / "eu.csv")
    spec = DatasetSpec.from_dict({"keys": ["store_id", "item_id"], "date": "date", "target": "units_sold"})
    with pytest.raises(DataValidationError, match=r"'units_sold' column \(target\).*with 'zwei' in row 3"):
        spec.validate_frame(read_table(tmp_path / "eu.csv"))


def test_the_spec_pins_the_dialect(tmp_path):
    (tmp_path / "t.csv").write_bytes("a,b;c\n1,5;2\n".encode("cp1252"))
    pinned = DatasetSpec.from_dict(
        {"keys": ["a,b"], "date": "d", "target": "c", "csv": {"sep": ";", "decimal": ",", "encoding": "latin-1"}}
    )
    assert pinned.csv == CsvDialect(";", ",", "iso8859-1")
    assert DatasetSpec.from_dict(pinned.to_dict()) == pinned and pinned.to_dict()["csv"]["sep"] == ";"
    assert "csv" not in DatasetSpec.preset("default").to_dict()  # no entry unless pinned: older readers still read it
    got = read_table(tmp_path / "t.csv", pinned.csv)
    assert list(got.columns) == ["a,b", "c"] and got["a,b"].tolist() == [1.5]


@pytest.mark.parametrize(
    ("csv", "message"),
    [
        ({"sep": ":"}, r"'csv.sep' entry of the dataset spec must be one of \[',', ';', '\\t', '\|'\]. Got ':'"),
        ({"decimal": ";"}, r"'csv.decimal' entry .* must be one of \['.', ','\]. Got ';'"),
        ({"encoding": "klingon"}, r"'csv.encoding' entry .* must be a Python codec name .* Got 'klingon'"),
        ({"quote": "'"}, r"Unknown key 'quote' in the 'csv' entry .* Valid keys: sep, decimal, encoding"),
        (";", r"The 'csv' entry of the dataset spec must be an object"),
    ],
)
def test_a_bad_csv_entry_is_refused(csv, message):
    with pytest.raises(InvalidParameterError, match=message):
        DatasetSpec.from_dict({"keys": ["k"], "date": "d", "target": "t", "csv": csv})


# --------------------------------------------------------------------------------------------- Excel
def test_an_xlsx_sheet_is_read_and_a_missing_openpyxl_names_the_extra(tmp_path, frame, monkeypatch):
    frame.to_excel(tmp_path / "laden.xlsx", index=False)
    got = read_table(tmp_path / "laden.xlsx")
    assert got["item_id"].tolist() == frame["item_id"].tolist() and got["units_sold"].tolist() == [1.5, 2, 3.25, 0]
    assert got["store_id"].tolist() == ["007", "007", "S2", "S2"]  # text cells stay text
    monkeypatch.setitem(sys.modules, "openpyxl", None)
    with pytest.raises(MissingExtraError, match=r"needs the 'excel' extra .*pip install 'forecaster\[excel\]'"):
        read_table(tmp_path / "laden.xlsx")


def test_a_damaged_workbook_or_a_cut_gzip_is_a_clear_error_naming_the_file(tmp_path, frame):
    """Both were tracebacks (BadZipFile, EOFError): an .xls export renamed .xlsx, a copy stopped halfway."""
    (tmp_path / "export.xlsx").write_bytes(b"<html><table><tr><td>store_id</td></tr></table></html>")
    with pytest.raises(DataValidationError, match=r"export\.xlsx is no readable \.xlsx workbook .*save it as"):
        read_table(tmp_path / "export.xlsx")
    write_table(pd.concat([frame] * 500, ignore_index=True), tmp_path / "whole.csv.gz")
    (tmp_path / "cut.csv.gz").write_bytes((tmp_path / "whole.csv.gz").read_bytes()[:300])
    with pytest.raises(DataValidationError, match=r"cut\.csv\.gz could not be read: .* cut short or damaged"):
        read_table(tmp_path / "cut.csv.gz")


def test_the_empty_rows_excel_saves_at_the_end_of_a_csv_are_dropped(tmp_path, frame):
    data = frame.to_csv(sep=";", decimal=",", index=False) + ";;;\r\n;;;\r\n"
    (tmp_path / "export.csv").write_text(data, encoding="cp1252")
    got = read_table(tmp_path / "export.csv")
    assert len(got) == len(frame) and got["units_sold"].tolist() == [1.5, 2.0, 3.25, 0.0]
    (tmp_path / "gap.csv").write_text("store_id;units_sold\n;\nS1;1\n", encoding="utf-8")  # not at the end: kept
    assert len(read_table(tmp_path / "gap.csv")) == 2
