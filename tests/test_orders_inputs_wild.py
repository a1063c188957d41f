"""Order inputs as chains keep them: Hive folders, duplicates, odd dates and encodings; each once gave a wrong order
or a traceback. The forecasts are :func:`tests.test_orders.forecasts`' kind: store S1 (and S2), items a and b."""

from __future__ import annotations

import logging

import pandas as pd
import pytest

from forecaster.errors import DataValidationError, InvalidParameterError
from forecaster.order_defaults import OrderDefaults
from forecaster.orders import order_lines
from forecaster.simulation import simulate_files

MONDAY = pd.Timestamp("2024-06-03")


def forecasts(stores=("S1", "S2"), items=("a", "b"), days: int = 7) -> pd.DataFrame:
    dates = pd.date_range(MONDAY + pd.Timedelta(days=1), periods=days).strftime("%Y-%m-%d")
    rows = [
        {"store_id": s, "item_id": i, "date": d, "p10": 8.0, "p50": 10.0, "p90": 12.0, "mean": 10.0}
        for s in stores
        for i in items
        for d in dates
    ]
    return pd.DataFrame(rows)


def test_forecasts_in_a_hive_folder_keep_their_store(tmp_path):
    frame = forecasts()
    frame.to_parquet(tmp_path / "forecasts", partition_cols=["store_id"])  # store_id only in the folder names
    from forecaster.io import read_table

    read = read_table(tmp_path / "forecasts")
    assert list(read.columns[:2]) == ["store_id", "item_id"]  # the folder's key leads, as in the unsplit table
    lines = order_lines(read)
    assert len(lines) == 4 and set(lines["store_id"]) == {"S1", "S2"}
    pd.testing.assert_frame_equal(lines.reset_index(drop=True), order_lines(frame).reset_index(drop=True))


def test_a_calendar_in_a_hive_folder_applies_to_its_store_only(tmp_path):
    folder = tmp_path / "calendar" / "store_id=S1"
    folder.mkdir(parents=True)
    pd.DataFrame({"weekday": ["mon", "thu"], "lead_time_days": 1}).to_csv(folder / "part-0.csv", index=False)
    lines = order_lines(forecasts(), calendar=tmp_path / "calendar").set_index(["store_id", "item_id"])
    assert lines.loc[("S1", "a"), "days_covered"] == 3  # Monday to Thursday
    assert lines.loc[("S2", "a"), "days_covered"] == 1  # no row: the chain default, daily


def test_series_without_a_calendar_or_item_master_row_are_named_in_a_warning(tmp_path, caplog):
    pd.DataFrame({"store_id": ["s1"], "weekday": ["mon"], "lead_time_days": [1]}).to_csv(
        tmp_path / "c.csv", index=False
    )
    pd.DataFrame({"item_id": ["A"], "pack_size": [6]}).to_csv(tmp_path / "items.csv", index=False)
    with caplog.at_level(logging.WARNING, logger="forecaster.orders_inputs"):
        order_lines(forecasts(), calendar=tmp_path / "c.csv", item_master=tmp_path / "items.csv")
    assert "4 of 4 forecast series have no row in the delivery calendar" in caplog.text and "store_id=s1" in caplog.text
    assert "4 of 4 forecast series have no row in the item master" in caplog.text and "item_id=A" in caplog.text


def test_duplicate_forecasts_and_calendar_days_and_fractional_lead_times_are_refused(tmp_path):
    twice = pd.concat([forecasts(), forecasts().head(1).assign(p50=99.0)], ignore_index=True)
    with pytest.raises(DataValidationError, match=r"more than one row for store_id=S1, item_id=a, date=2024-06-04"):
        order_lines(twice)
    calendar = tmp_path / "calendar.csv"
    pd.DataFrame({"store_id": ["S1", "S1"], "weekday": ["mon", "Monday"], "lead_time_days": [1, 3]}).to_csv(
        calendar, index=False
    )
    with pytest.raises(DataValidationError, match=r"calendar\.csv row 2: .*store_id=S1, weekday Monday twice"):
        order_lines(forecasts(), calendar=calendar)
    pd.DataFrame({"weekday": ["mon"], "lead_time_days": [1.5]}).to_csv(calendar, index=False)
    with pytest.raises(DataValidationError, match=r"column 'lead_time_days': must be a whole number of days. Got 1.5"):
        order_lines(forecasts(), calendar=calendar)
    pd.DataFrame({"item_id": ["a"], "shelf_life_days": [2.5]}).to_csv(tmp_path / "items.csv", index=False)
    with pytest.raises(DataValidationError, match=r"items\.csv row 1, column 'shelf_life_days': must be a whole"):
        order_lines(forecasts(), item_master=tmp_path / "items.csv")


@pytest.mark.parametrize("value", ["12.02.2024", "notadate"])
def test_the_order_date_must_be_iso(value):
    with pytest.raises(InvalidParameterError, match=r"'order_date' parameter must be an ISO date"):
        order_lines(forecasts(), order_date=value)


def test_defaults_json_with_a_byte_order_mark_or_in_another_encoding(tmp_path):
    (tmp_path / "bom.json").write_bytes(b"\xef\xbb\xbf" + b'{"pack_size": 6}')
    assert OrderDefaults.load(tmp_path / "bom.json").pack_size == 6
    (tmp_path / "cp1252.json").write_bytes('{"category_column": "Gemüse"}'.encode("cp1252"))
    with pytest.raises(DataValidationError, match=r"cp1252\.json is not UTF-8 text .* save it as UTF-8"):
        OrderDefaults.load(tmp_path / "cp1252.json")


def actuals(frame: pd.DataFrame) -> pd.DataFrame:
    days = pd.date_range(MONDAY - pd.Timedelta(days=30), periods=38).strftime("%Y-%m-%d")
    keys = frame[["store_id", "item_id"]].drop_duplicates()
    return keys.merge(pd.DataFrame({"date": days}), how="cross").assign(units_sold=9.0, stockout_hours=0.0)


def test_simulate_refuses_bad_actuals_naming_row_and_column():
    frame = forecasts()
    sales = actuals(frame)
    cases = [
        (pd.concat([sales, sales.tail(1)], ignore_index=True),
         r"actuals have more than one row for store_id=S2, item_id=b, date=2024-06-10 \(row 153\)"),
        (sales.assign(stockout_hours=sales["stockout_hours"].astype(object).where(sales.index != 5, "yes")),
         r"actuals' row 6, column 'stockout_hours': 'yes' is not a number"),
        (sales.assign(date=sales["date"].where(sales.index != 2, "29.02.2024")),
         r"actuals' row 3, column 'date': '29.02.2024' is not an ISO date"),
        (sales[~((sales["store_id"] == "S2") & (sales["date"] == "2024-06-06"))],
         r"The actuals have no value for store_id=S2, item_id=a on 2024-06-06"),
    ]  # fmt: skip
    for bad, message in cases:
        with pytest.raises(DataValidationError, match=message):
            simulate_files(frame, bad, target="units_sold", stockout="stockout_hours")
    with pytest.raises(DataValidationError, match=r"no column 'nohours'; they need .*'nohours'"):
        simulate_files(frame, sales, target="units_sold", stockout="nohours")


def test_simulate_refuses_forecasts_that_are_no_numbers_or_negative():
    frame, sales = forecasts(), actuals(forecasts())
    cases = [
        (frame.assign(p50=frame["p50"].astype(object).where(frame.index != 2, "abc")),
         r"forecasts' row 3, column 'p50': 'abc' is not a number"),
        (frame.assign(p10=frame["p10"].where(frame.index != 4, -3.0)),
         r"forecasts' row 5, column 'p10': -3.0 is out of range; forecasts must be finite numbers >= 0"),
    ]  # fmt: skip
    for bad, message in cases:
        with pytest.raises(DataValidationError, match=message):
            simulate_files(bad, sales, target="units_sold")


def test_simulate_says_how_many_series_of_the_actuals_it_leaves_out(caplog):
    frame = forecasts()
    sales = actuals(forecasts(stores=("S1", "S2", "S3")))  # S3 sold, but nobody forecast it
    with caplog.at_level(logging.INFO, logger="forecaster.simulation"):
        results = simulate_files(frame, sales, target="units_sold")
    assert results["policies"]["forecaster"]["series"] == 4
    assert "2 of 6 series of the actuals have no forecasts: left out" in caplog.text


def test_out_of_range_days_and_numbers_stop_the_orders_before_anything_is_written(tmp_path):
    """Once a traceback, a memory kill or an order of inf units (each exited 0 or crashed)."""
    calendar, items = tmp_path / "calendar.csv", tmp_path / "items.csv"
    cases = [
        ("calendar", {"weekday": ["mon"], "lead_time_days": ["inf"]},
         r"calendar.csv row 1, column 'lead_time_days': must be a finite number >= 1 and <= 60. Got inf"),
        ("calendar", {"weekday": ["mon"], "lead_time_days": [100000]}, r"<= 60. Got 100000 instead"),
        ("items", {"item_id": ["a"], "shelf_life_days": [100000]},
         r"items.csv row 1, column 'shelf_life_days': must be a finite number >= 1 and <= 366. Got 100000"),
        ("items", {"item_id": ["a"], "pack_size": ["inf"]}, r"'pack_size': must be a finite number > 0. Got inf"),
        ("items", {"item_id": ["a"], "pack_size": [1e-320]}, r"store_id=S1, item_id=a is not a finite number of units"),
    ]  # fmt: skip
    for which, table, message in cases:
        path = calendar if which == "calendar" else items
        pd.DataFrame(table).to_csv(path, index=False)
        with pytest.raises(DataValidationError, match=message):
            order_lines(forecasts(), **{"calendar" if which == "calendar" else "item_master": path})
    frame = forecasts()
    with pytest.raises(DataValidationError, match=r"row 3 has p90='inf': forecasts must be finite numbers >= 0"):
        order_lines(frame.assign(p90=frame["p90"].astype(object).where(frame.index != 2, "inf")))


def test_a_delivery_that_would_overtake_the_next_one_is_refused(tmp_path):
    calendar = tmp_path / "calendar.csv"
    pd.DataFrame({"store_id": "S1", "weekday": ["thu", "mon"], "lead_time_days": [5, 1]}).to_csv(calendar, index=False)
    with pytest.raises(DataValidationError, match=r"store_id=S1, item_id=a order on Thursday with a lead time of 5 "
                       r"days: that delivery would come after the one of the next order \(Monday, lead time 1 days, "
                       r"on the shelf 5 days after Thursday's order\)"):  # fmt: skip
        order_lines(forecasts(days=14), calendar=calendar)  # a Monday order: Thursday's is checked all the same
    pd.DataFrame({"store_id": "S1", "weekday": ["thu", "mon"], "lead_time_days": [4, 1]}).to_csv(calendar, index=False)
    lines = order_lines(forecasts(days=14), calendar=calendar).set_index(["store_id", "item_id"])
    assert lines.loc[("S1", "a"), "arrival_date"] == "2024-06-04"
    assert lines.loc[("S1", "a"), "next_arrival_date"] == "2024-06-10"  # Thursday's order, 4 days on the way


def test_forecasts_with_utc_offsets_order_on_their_own_wall_clock_days(tmp_path, caplog):
    frame = forecasts()
    aware = frame.assign(date=pd.to_datetime(frame["date"]).dt.tz_localize("Europe/Stockholm"))
    aware.to_parquet(tmp_path / "forecasts.parquet")
    from forecaster.io import read_table

    lines = order_lines(read_table(tmp_path / "forecasts.parquet", dtype=str))
    pd.testing.assert_frame_equal(lines, order_lines(frame))
    crossed = frame.assign(p10=frame["p10"].where(frame.index != 0, 30.0))
    with caplog.at_level(logging.WARNING, logger="forecaster.orders"):
        order_lines(crossed)
    assert "1 forecast rows have crossed quantiles (p10 > p50 or p50 > p90)" in caplog.text


def test_simulate_refuses_negative_or_infinite_sales():
    frame = forecasts()
    sales = actuals(frame)
    for value, shown in ((-50.0, "-50.0"), (float("inf"), "inf")):
        bad = sales.assign(units_sold=sales["units_sold"].where(sales.index != 7, value))
        with pytest.raises(DataValidationError, match=rf"actuals' row 8, column 'units_sold': {shown} is out of range"):
            simulate_files(frame, bad, target="units_sold")
