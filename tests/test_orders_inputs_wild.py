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
    assert (
        "4 of 4 forecast series have no row in the delivery calendar" in caplog.text and "store_id='s1'" in caplog.text
    )
    assert "4 of 4 forecast series have no row in the item master" in caplog.text and "item_id='A'" in caplog.text


def test_duplicate_forecasts_and_calendar_days_and_fractional_lead_times_are_refused(tmp_path):
    twice = pd.concat([forecasts(), forecasts().head(1).assign(p50=99.0)], ignore_index=True)
    with pytest.raises(DataValidationError, match=r"more than one row for store_id=S1, item_id=a, date=2024-06-04"):
        order_lines(twice)
    calendar = tmp_path / "calendar.csv"
    pd.DataFrame({"store_id": ["S1", "S1"], "weekday": ["mon", "Monday"], "lead_time_days": [1, 3]}).to_csv(
        calendar, index=False
    )
    with pytest.raises(DataValidationError, match=r"calendar\.csv row 2: .*store_id='S1', weekday Monday twice"):
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
         r"The actuals have no value for store_id='S2', item_id='a' on 2024-06-06"),
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
        ("items", {"item_id": ["a"], "pack_size": [1e-320]},
         r"store_id='S1', item_id='a' is not a finite number of units"),
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
    with pytest.raises(DataValidationError, match=r"store_id='S1', item_id='a' order on Thursday with a lead time of 5 "
                       r"days: that delivery would come on the same day as the one of the next order \(Monday, lead "
                       r"time 1 days, "
                       r"on the shelf 5 days after Thursday's order\)"):  # fmt: skip
        order_lines(forecasts(days=14), calendar=calendar)  # a Monday order: Thursday's is checked all the same
    pd.DataFrame({"store_id": "S1", "weekday": ["thu", "mon"], "lead_time_days": [4, 1]}).to_csv(calendar, index=False)
    lines = order_lines(forecasts(days=14), calendar=calendar).set_index(["store_id", "item_id"])
    assert lines.loc[("S1", "a"), "arrival_date"] == "2024-06-04"
    assert lines.loc[("S1", "a"), "next_arrival_date"] == "2024-06-10"  # Thursday's order, 4 days on the way


def test_a_chain_row_beside_store_rows_in_a_calendar_says_where_it_belongs(tmp_path):
    calendar = tmp_path / "calendar.csv"
    pd.DataFrame({"store_id": ["S1", None], "weekday": ["mon", "thu"], "lead_time_days": [1, 1]}).to_csv(
        calendar, index=False
    )
    with pytest.raises(DataValidationError, match=r"row 2, column 'store_id': the key is missing\. A row for the whole "
                       r"chain goes into the defaults file \(order_weekdays, lead_time_days\)"):  # fmt: skip
        order_lines(forecasts(), calendar=calendar)


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


@pytest.mark.parametrize(
    ("name", "table", "message"),
    [
        ("calendar", {"Store_ID": ["S1", "S1"], "weekday": ["mon", "wed"]}, r"column 'Store_ID' where the forecasts'"),
        ("calendar", {"Filiale": ["S1"], "weekday": ["mon"]}, r"none of the forecasts' key columns .* \['Filiale'\]"),
        ("item_master", {"Item ID": ["a"], "store_id": ["S1"], "pack_size": [6]}, r"column 'Item ID' .* 'item_id'"),
    ],
)
def test_a_key_column_spelled_otherwise_is_refused_not_applied_to_every_store(tmp_path, name, table, message):
    """A calendar keyed 'Store_ID' once gave S1's order days to every store, silently."""
    path = tmp_path / f"{name}.csv"
    pd.DataFrame(table).to_csv(path, index=False)
    with pytest.raises(DataValidationError, match=message):
        order_lines(forecasts(), **{name: path})


def test_a_later_order_day_uses_the_forecast_days_after_it():
    """Yesterday's forecasts serve today's order: the days up to the order day are left out."""
    frame = forecasts(days=10)
    later = order_lines(frame, order_date="2024-06-05")
    trimmed = order_lines(frame[frame["date"] > "2024-06-05"])  # the default order day: the day before
    pd.testing.assert_frame_equal(later, trimmed)
    assert set(later["order_date"]) == {"2024-06-05"} and set(later["arrival_date"]) == {"2024-06-06"}
    with pytest.raises(DataValidationError, match=r"forecasts end on 2024-06-13, not after the order day 2024-06-13"):
        order_lines(frame, order_date="2024-06-13")
    message = r"order day 2020-01-01 is \d+ day\(s\) before .* first forecast day \(2024-06-04\).* Order on 2024-06-03"
    with pytest.raises(DataValidationError, match=message):  # was "do not cover every day from 2020-01-02 to …"
        order_lines(frame, order_date="2020-01-01")


def test_categories_match_without_case_and_a_missing_category_column_is_refused(tmp_path, caplog):
    items = tmp_path / "items.csv"
    pd.DataFrame({"item_id": ["a", "b"], "category": ["Fruit ", "nuts"]}).to_csv(items, index=False)
    defaults = OrderDefaults.from_dict({"category_column": "category", "shelf_life_days_by_category": {"fruit": 2}})
    with caplog.at_level(logging.WARNING, logger="forecaster.order_items"):
        lines = order_lines(forecasts(stores=("S1",)), item_master=items, defaults=defaults).set_index("item_id")
    assert lines.loc["a", "shelf_life_days"] == 2 and lines.loc["b", "shelf_life_days"] == 3  # unmapped: the default
    assert "1 of 2 series have a category that shelf_life_days_by_category does not name (e.g. 'nuts')" in caplog.text
    pd.DataFrame({"item_id": ["a"], "Kategorie": ["fruit"]}).to_csv(items, index=False)
    with pytest.raises(DataValidationError, match=r"category column 'category', but neither the item master nor"):
        order_lines(forecasts(stores=("S1",)), item_master=items, defaults=defaults)


def test_stock_with_a_shelf_life_and_an_expiry_date_that_disagree_is_refused(tmp_path):
    path = tmp_path / "stock.csv"
    stock = {"store_id": ["S1"], "item_id": ["a"], "stock_date": ["2024-06-03"], "on_hand_units": [30]}
    pd.DataFrame({**stock, "shelf_life_days_left": [1], "expiry_date": ["2024-06-10"]}).to_csv(path, index=False)
    one = forecasts(stores=("S1",), items=("a",))
    with pytest.raises(DataValidationError, match=r"stock\.csv row 1, column 'expiry_date': the row gives .* 7 days"):
        order_lines(one, stock=path)
    pd.DataFrame({**stock, "shelf_life_days_left": [7], "expiry_date": ["2024-06-10"]}).to_csv(path, index=False)
    assert order_lines(one, stock=path)["stock_counted"].iat[0] == 30  # they agree: counted once


def test_a_unit_cost_above_the_price_names_the_item_master_row(tmp_path):
    items = tmp_path / "items.csv"
    pd.DataFrame({"item_id": ["a", "b"], "unit_cost": [0.5, 2], "unit_price": [1, 1.5]}).to_csv(items, index=False)
    with pytest.raises(
        DataValidationError, match=r"items\.csv row 2: the item master gives .*item_id='b' a unit cost 2"
    ):
        order_lines(forecasts(), item_master=items)


def test_simulate_says_why_the_rule_of_thumb_was_left_out(tmp_path, caplog):
    frame = forecasts(stores=("S1",), items=("a",), days=5)
    actuals = frame[["store_id", "item_id", "date"]].assign(units_sold=9.0)
    with caplog.at_level(logging.WARNING, logger="forecaster.simulation"):
        results = simulate_files(frame, actuals, target="units_sold")
    assert "rule_of_thumb" not in results["policies"] and "forecaster" in results["policies"]
    assert "needs the 28 days before it" in results["skipped_policies"]["rule_of_thumb"]
    assert "the rule-of-thumb policy is left out: the actuals hold 0 days before" in caplog.text


def test_simulate_writes_its_results_to_a_json_file_only(tmp_path, capsys):
    from forecaster.cli.main import main

    forecasts(stores=("S1",)).to_csv(tmp_path / "f.csv", index=False)
    argv = ["orders", "simulate", "--forecasts", str(tmp_path / "f.csv"), "--actuals", str(tmp_path / "f.csv")]
    assert main([*argv, "--out", str(tmp_path / "results.csv")]) == InvalidParameterError.exit_code
    assert "is a JSON file (the results)" in capsys.readouterr().err and not (tmp_path / "results.csv").exists()


def test_the_defaults_csv_entry_pins_how_the_inputs_are_written(tmp_path):
    """``1.200`` in a ';' file is 1.2 to the detection; a chain that means 1200 says so once, in the defaults."""
    stock = tmp_path / "stock.csv"
    stock.write_text("store_id;item_id;stock_date;on_hand_units\nS1;a;2024-06-03;1.200\n", encoding="utf-8")
    one = forecasts(stores=("S1",), items=("a",))
    assert order_lines(one, stock=stock)["stock_counted"].iat[0] == 1.2  # detected (and warned)
    pinned = OrderDefaults.from_dict({"csv": {"decimal": ","}})
    line = order_lines(one, stock=stock, defaults=pinned).iloc[0]
    assert line["stock_counted"] == 1200 and line["order_units"] == 0
    with pytest.raises(InvalidParameterError, match=r"'csv.decimal' entry of the .* must be one of"):
        OrderDefaults.from_dict({"csv": {"decimal": ";"}})


def test_a_stock_row_repeated_exactly_is_counted_and_named_in_a_warning(tmp_path, caplog):
    path = tmp_path / "stock.csv"
    rows = {"store_id": ["S1", "S1", "S1"], "item_id": ["a", "a", "a"], "stock_date": ["2024-06-03"] * 3}
    pd.DataFrame({**rows, "on_hand_units": [5, 5, 3]}).to_csv(path, index=False)
    one = forecasts(stores=("S1",), items=("a",))
    with caplog.at_level(logging.WARNING, logger="forecaster.orders_inputs"):
        lines = order_lines(one, stock=path)
    assert lines["stock_counted"].iat[0] == 13  # buckets of the same series add up, copies included
    assert "1 stock row(s) at" in caplog.text and "stock.csv row 2, column 'on_hand_units' repeats" in caplog.text
    assert "stock.csv row 1, column 'on_hand_units'" in caplog.text and "exported twice" in caplog.text
    caplog.clear()
    pd.DataFrame({**rows, "on_hand_units": [5, 4, 3]}).to_csv(path, index=False)
    with caplog.at_level(logging.WARNING, logger="forecaster.orders_inputs"):
        order_lines(one, stock=path)
    assert "repeat an earlier row" not in caplog.text  # buckets that differ are stock, not copies


@pytest.mark.parametrize("shelf_life", [3, 7])
def test_a_replay_with_perfect_forecasts_on_a_sparse_calendar_neither_wastes_nor_loses(tmp_path, shelf_life):
    """Mon/Thu orders, lead time 2: the orders bought the days before each delivery (wasted at shelf life 3),
    and the replay's last days got no delivery (lost sales with perfect information)."""
    days = pd.date_range("2024-06-04", periods=21).strftime("%Y-%m-%d")
    frame = pd.DataFrame({"store_id": "S1", "item_id": "a", "date": days, "p10": 10.0, "p50": 10.0, "p90": 10.0})
    frame["mean"] = 10.0
    actuals = frame[["store_id", "item_id", "date"]].assign(units_sold=10.0)
    calendar, defaults = tmp_path / "calendar.csv", tmp_path / "defaults.json"
    pd.DataFrame({"weekday": ["mon", "thu"], "lead_time_days": [2, 2]}).to_csv(calendar, index=False)
    defaults.write_text(f'{{"shelf_life_days": {shelf_life}}}')
    results = simulate_files(frame, actuals, target="units_sold", calendar=calendar, defaults_path=defaults)
    ours = results["policies"]["forecaster"]
    assert ours["waste_units"] == 0  # was 30 at shelf life 3: Tuesday's demand bought for a Wednesday delivery
    if shelf_life == 7:  # (at 3, Saturday's delivery cannot last to Tuesday: those sales are lost whatever is ordered)
        assert ours["lost_units"] == 0 and ours["fill_rate"] == 1.0  # the last 3 days were lost
