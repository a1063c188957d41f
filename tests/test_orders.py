"""The ordering policy on hand-made cases, its inputs' errors, postprocess with and without stock, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from forecaster.cli.main import main
from forecaster.errors import DataValidationError, InvalidParameterError
from forecaster.io import read_table
from forecaster.order_defaults import DEFAULT_HOLDING_COST_SHARE, OrderDefaults
from forecaster.order_policy import round_to_packs, usable_stock
from forecaster.orders import order_lines

MONDAY = pd.Timestamp("2024-06-03")


def forecasts(days: int = 7, p10: float = 8.0, p50: float = 10.0, p90: float = 12.0, items=("a",)) -> pd.DataFrame:
    dates = pd.date_range(MONDAY + pd.Timedelta(days=1), periods=days).strftime("%Y-%m-%d")
    return pd.DataFrame(
        [
            {"store_id": "S1", "item_id": item, "date": d, "p10": p10, "p50": p50, "p90": p90, "mean": p50}
            for item in items
            for d in dates
        ]
    )


def stock_file(tmp_path, rows, name="stock.csv"):
    path = tmp_path / name
    pd.DataFrame([{"store_id": "S1", "item_id": "a", "stock_date": "2024-06-03", **row} for row in rows]).to_csv(
        path, index=False
    )
    return path


def one(lines: pd.DataFrame) -> pd.Series:
    assert len(lines) == 1
    return lines.iloc[0]


# ------------------------------------------------------------------------------------------ acceptance cases
def test_empty_shelf_orders_the_target_rounded_up(tmp_path):
    line = one(order_lines(forecasts(), stock=stock_file(tmp_path, [{"on_hand_units": 0}])))
    assert line["stock_considered"] and line["stock_counted"] == 0 and line["on_order"] == 0
    assert line["days_covered"] == 1 and line["arrival_date"] == "2024-06-04"
    assert line["order_units"] == np.ceil(line["target_units"])
    assert 10.5 <= line["target_units"] <= 12.5  # a 3-day shelf life lifts the target above the median


def test_stock_covering_the_period_orders_nothing(tmp_path):
    line = one(order_lines(forecasts(), stock=stock_file(tmp_path, [{"on_hand_units": 40}])))
    assert line["order_units"] == 0 and line["stock_counted"] == 40


def test_stock_expiring_before_the_arrival_is_not_counted(tmp_path):
    calendar = tmp_path / "calendar.csv"
    pd.DataFrame({"weekday": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "lead_time_days": 2}).to_csv(
        calendar, index=False
    )
    rows = [{"on_hand_units": 6, "shelf_life_days_left": 0}, {"on_hand_units": 30, "shelf_life_days_left": 1}]
    line = one(order_lines(forecasts(), stock=stock_file(tmp_path, rows), calendar=calendar))
    assert line["arrival_date"] == "2024-06-05" and line["days_covered"] == 2
    # expires today: nothing; sellable tomorrow only (before the delivery arrives): tomorrow's expected 10 units
    assert line["stock_counted"] == pytest.approx(10) and line["stock_not_counted"] == pytest.approx(26)
    fresh = one(order_lines(forecasts(), stock=stock_file(tmp_path, [{"on_hand_units": 36}]), calendar=calendar))
    assert fresh["stock_counted"] == 36 and fresh["order_units"] == 0 < line["order_units"]


def test_expiry_date_and_fifo_count_older_units_first(tmp_path):
    rows = [{"on_hand_units": 5, "expiry_date": "2024-06-04"}, {"on_hand_units": 20, "expiry_date": "2024-06-04"}]
    line = one(order_lines(forecasts(), stock=stock_file(tmp_path, rows)))
    assert line["stock_counted"] == 25  # sellable through the whole day covered: all of it counts
    counted, lost = usable_stock(np.array([[0, 4.0, 1], [0, 9.0, 2]]), 1, np.array([[3.0, 3.0, 3.0]]), np.array([3]))
    assert counted[0] == pytest.approx(3 + 3) and lost[0] == pytest.approx(1 + 6)  # FIFO: 3 of 4, then 3 of 9


def test_pack_rounding(tmp_path):
    master = tmp_path / "items.csv"
    pd.DataFrame({"item_id": ["a"], "pack_size": [6]}).to_csv(master, index=False)
    line = one(order_lines(forecasts(), stock=stock_file(tmp_path, [{"on_hand_units": 1}]), item_master=master))
    need = line["target_units"] - 1
    assert line["order_units"] % 6 == 0 and need <= line["order_units"] < need + 6 and line["pack_size"] == 6
    assert round_to_packs(np.array([-3.0, 0.0, 6.0, 6.01]), np.array([6.0] * 4)).tolist() == [0, 0, 6, 12]


def test_pack_rounding_by_cost_takes_the_cheaper_of_the_two_nearest_pack_counts(tmp_path):
    """pack_rounding=cost: 0.1 units short of a pack boundary is one pack less than rounding up orders."""
    master = tmp_path / "items.csv"
    pd.DataFrame({"item_id": ["a"], "pack_size": [6]}).to_csv(master, index=False)
    by_cost = OrderDefaults(pack_rounding="cost")
    target = one(order_lines(forecasts(), defaults=by_cost))["target_units"]

    def order(stock: float, defaults: OrderDefaults, **options) -> float:
        path = stock_file(tmp_path, [{"on_hand_units": stock}])
        return one(order_lines(forecasts(), stock=path, item_master=master, defaults=defaults, **options))[
            "order_units"
        ]

    just_over = target - 6.1  # one pack leaves the shelf 0.1 short of the target, two packs 5.9 over it
    assert order(just_over, OrderDefaults()) == 12 and order(just_over, by_cost) == 6
    path = stock_file(tmp_path, [{"on_hand_units": just_over}])
    assert one(order_lines(forecasts(), stock=path, item_master=master, defaults=by_cost))["rounded_down"]
    assert not one(order_lines(forecasts(), stock=path, item_master=master))["rounded_down"]
    just_under = target - 5.9  # one pack lands 0.1 over the target: both round to it
    assert order(just_under, OrderDefaults()) == 6 and order(just_under, by_cost) == 6
    assert order(target + 1, by_cost) == 0
    # the minimum display is a floor the rounding never goes under; a service level always rounds up
    display = OrderDefaults(pack_rounding="cost", min_display_units=target)
    assert order(just_over, display) == 12
    at_median = one(order_lines(forecasts(), defaults=by_cost, service_level=0.5))["target_units"]
    assert order(at_median - 6.1, by_cost, service_level=0.5) == 12
    with pytest.raises(InvalidParameterError, match=r"'pack_rounding'.*'up', 'cost'.*'nearest'"):
        OrderDefaults.from_dict({"pack_rounding": "nearest"})


def test_a_two_day_delivery_gap_doubles_the_period(tmp_path):
    calendar = tmp_path / "calendar.csv"
    pd.DataFrame({"store_id": ["S1", "S1"], "weekday": ["Monday", "Wednesday"], "lead_time_days": [1, 1]}).to_csv(
        calendar, index=False
    )
    daily = one(order_lines(forecasts(), stock=stock_file(tmp_path, [{"on_hand_units": 0}])))
    gap = one(order_lines(forecasts(), stock=stock_file(tmp_path, [{"on_hand_units": 0}]), calendar=calendar))
    assert (daily["days_covered"], gap["days_covered"]) == (1, 2)
    assert gap["next_arrival_date"] == "2024-06-06" and gap["expected_demand"] == 2 * daily["expected_demand"]
    assert gap["target_units"] > 1.8 * daily["target_units"]


def test_higher_waste_cost_gives_a_lower_target():
    targets = []
    for cost_ratio in (0.3, 0.6, 0.9):
        defaults = OrderDefaults(cost_ratio=cost_ratio, shelf_life_days=1)
        targets.append(one(order_lines(forecasts(), defaults=defaults))["target_units"])
    assert targets[0] > targets[1] > targets[2]
    # shelf life = the period: the critical fractile margin / (margin + cost + holding), holding = share x cost
    line = one(order_lines(forecasts(), defaults=OrderDefaults(shelf_life_days=1)))
    assert line["service_level"] == pytest.approx(0.4 / (0.4 + 0.6 * (1 + DEFAULT_HOLDING_COST_SHARE)), abs=0.01)
    classic = one(order_lines(forecasts(), defaults=OrderDefaults(shelf_life_days=1, holding_cost_share=0)))
    assert classic["service_level"] == pytest.approx(0.4, abs=0.01)
    longer = one(order_lines(forecasts(), defaults=OrderDefaults(shelf_life_days=5)))
    assert longer["target_units"] > line["target_units"]  # a unit that keeps 5 days is hardly ever wasted:
    assert longer["service_level"] == pytest.approx(0.4 / (0.4 + 0.6 * DEFAULT_HOLDING_COST_SHARE), abs=0.03)


def test_stockout_penalty_and_a_lower_holding_cost_buy_fuller_shelves():
    """The two settings docs/ordering.md names for a chain that prizes full shelves above waste."""
    base = one(order_lines(forecasts(), defaults=OrderDefaults()))
    penalty = one(order_lines(forecasts(), defaults=OrderDefaults(stockout_penalty=0.5)))
    cheaper_carry = one(order_lines(forecasts(), defaults=OrderDefaults(holding_cost_share=0.1)))
    for fuller in (penalty, cheaper_carry):
        assert fuller["target_units"] > base["target_units"] and fuller["service_level"] > base["service_level"]
    # shelf life 3 days > the 1-day period: waste hardly binds, the fractile is margin / (margin + holding cost)
    margin = 0.4 + 0.5
    assert penalty["service_level"] == pytest.approx(margin / (margin + 0.6 * DEFAULT_HOLDING_COST_SHARE), abs=0.03)


def test_minimum_display_and_margin_from_the_item_master(tmp_path):
    master = tmp_path / "items.csv"
    pd.DataFrame(
        {"item_id": ["a", "b"], "min_display_units": [30, None], "unit_price": [2, 2], "margin": [1.8, 0.2]}
    ).to_csv(master, index=False)
    lines = order_lines(forecasts(items=("a", "b")), item_master=master, defaults=OrderDefaults(shelf_life_days=1))
    assert lines["target_units"].iloc[0] == 30  # the display minimum wins over the cost balance
    assert lines["service_level"].iloc[1] < 0.15  # cost 1.8 of price 2: order low


def test_open_orders_and_a_service_level_override(tmp_path):
    opened = tmp_path / "open.csv"
    pd.DataFrame({"store_id": ["S1"], "item_id": ["a"], "units": [4], "arrival_date": ["2024-06-04"]}).to_csv(
        opened, index=False
    )
    line = one(order_lines(forecasts(), stock=stock_file(tmp_path, [{"on_hand_units": 0}]), open_orders=opened))
    assert line["on_order"] == 4 and line["order_units"] == np.ceil(line["target_units"] - 4)
    median = one(order_lines(forecasts(), service_level=0.5))
    assert median["target_units"] == pytest.approx(10, abs=0.2)
    assert median["service_level"] == pytest.approx(0.5, abs=0.01)


# ------------------------------------------------------------------------------------------- bad inputs (CLI)
def _run(tmp_path, capsys, *extra):
    path = tmp_path / "forecasts.csv"
    forecasts(items=("a", "b")).to_csv(path, index=False)
    out = tmp_path / "orders.csv"
    code = main(["orders", "--forecasts", str(path), "--out", str(out), *map(str, extra)])
    return code, out, capsys.readouterr()


def test_cli_writes_order_lines(tmp_path, capsys):
    code, out, captured = _run(tmp_path, capsys, "--stock", stock_file(tmp_path, [{"on_hand_units": 3}]))
    assert code == 0 and "2 order lines" in captured.out
    lines = read_table(out, dtype={"store_id": str, "item_id": str})
    assert lines["item_id"].tolist() == ["a", "b"] and lines["stock_counted"].tolist() == [3, 0]


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("negative stock", "row 1, column 'on_hand_units': must be a finite number >= 0. Got -2"),
        ("unknown series", "row 1: the stock names store_id='S9', item_id='a', which is not among the forecast series"),
        ("other day", "column 'stock_date': the stock was counted on 2024-06-02, not on the order day 2024-06-03"),
        ("calendar without the day", "no order on 2024-06-03 (Monday)"),
        ("pack size 0", "items.csv row 2, column 'pack_size': must be a finite number > 0. Got 0"),
    ],
)
def test_bad_inputs_stop_with_a_clear_error_and_write_nothing(tmp_path, capsys, case, message):
    stock = {"on_hand_units": 1}
    extra: list = []
    if case == "negative stock":
        stock = {"on_hand_units": -2}
    elif case == "unknown series":
        pd.DataFrame([{"store_id": "S9", "item_id": "a", "stock_date": "2024-06-03", "on_hand_units": 1}]).to_csv(
            tmp_path / "stock.csv", index=False
        )
    elif case == "other day":
        stock = {"on_hand_units": 1, "stock_date": "2024-06-02"}
    elif case == "calendar without the day":
        pd.DataFrame({"weekday": ["tue", "thu"]}).to_csv(tmp_path / "calendar.csv", index=False)
        extra = ["--calendar", tmp_path / "calendar.csv"]
    else:
        pd.DataFrame({"item_id": ["a", "b"], "pack_size": [6, 0]}).to_csv(tmp_path / "items.csv", index=False)
        extra = ["--item-master", tmp_path / "items.csv"]
    if case != "unknown series":
        stock_file(tmp_path, [stock])
    code, out, captured = _run(tmp_path, capsys, "--stock", tmp_path / "stock.csv", *extra)
    assert code == DataValidationError.exit_code and message in captured.err, captured.err
    assert not out.exists() and list(tmp_path.glob(".orders*")) == []


def test_cli_keeps_keys_as_text_and_refuses_non_numeric_forecasts(tmp_path, capsys):
    frame = forecasts().assign(store_id="007")
    frame.to_csv(tmp_path / "forecasts.csv", index=False)
    pd.DataFrame([{"store_id": "007", "item_id": "a", "stock_date": "2024-06-03", "on_hand_units": 40}]).to_csv(
        tmp_path / "stock.csv", index=False
    )
    args = ["orders", "--forecasts", tmp_path / "forecasts.csv", "--stock", tmp_path / "stock.csv"]
    assert main([*map(str, args), "--out", str(tmp_path / "orders.csv")]) == 0
    assert read_table(tmp_path / "orders.csv", dtype=str)["store_id"].tolist() == ["007"]
    frame.assign(p90="lots").to_csv(tmp_path / "forecasts.csv", index=False)
    assert main([*map(str, args), "--out", str(tmp_path / "bad.csv")]) == DataValidationError.exit_code
    assert "row 1 has p90='lots'" in capsys.readouterr().err and not (tmp_path / "bad.csv").exists()


def test_bad_defaults_name_the_entry(tmp_path, capsys):
    defaults = tmp_path / "defaults.json"
    defaults.write_text(json.dumps({"pack_size": 0}))
    code, out, captured = _run(tmp_path, capsys, "--defaults", defaults)
    assert code == 2 and "'pack_size' parameter of order defaults" in captured.err and not out.exists()


def test_shelf_life_by_category_from_the_defaults(tmp_path):
    frame = forecasts(items=("a", "b"))
    master = tmp_path / "items.csv"
    pd.DataFrame({"item_id": ["a", "b"], "category": ["berries", "roots"]}).to_csv(master, index=False)
    defaults = OrderDefaults(category_column="category", shelf_life_days_by_category={"berries": 1, "roots": 10})
    lines = order_lines(frame, item_master=master, defaults=defaults)
    assert lines["shelf_life_days"].tolist() == [1, 10]
    assert lines["target_units"].iloc[0] < lines["target_units"].iloc[1]


# ----------------------------------------------------------------------------------------------- postprocess
def _keys_and_predictions(tmp_path):
    keys = tmp_path / "keys.csv"
    pd.DataFrame({"store_id": ["S1", "S1"], "item_id": ["a", "a"], "date": ["2024-06-04", "2024-06-05"]}).to_csv(
        keys, index=False
    )
    predictions = tmp_path / "features.csv.out"
    predictions.write_text("8,10,12,10\n8,10,12,10\n")
    return keys, predictions


def test_postprocess_with_stock_writes_the_policys_order_lines(tmp_path):
    keys, predictions = _keys_and_predictions(tmp_path)
    stock = stock_file(tmp_path, [{"on_hand_units": 4}])
    args = ["postprocess", "--keys", keys, "--predictions", predictions, "--out", tmp_path / "f.csv", "--stock", stock]
    code = main([str(arg) for arg in args])
    orders = read_table(tmp_path / "order_proposals.csv")
    assert code == 0 and len(orders) == 1 and orders["stock_considered"].all()
    assert orders["stock_counted"].iloc[0] == 4 and orders["order_date"].iloc[0] == "2024-06-03"


def test_postprocess_with_stock_says_pack_size_is_not_used_and_reads_an_order_date_with_an_offset(tmp_path, caplog):
    keys, predictions = _keys_and_predictions(tmp_path)
    stock = stock_file(tmp_path, [{"on_hand_units": 4}])
    args = ["postprocess", "--keys", keys, "--predictions", predictions, "--out", tmp_path / "f.csv", "--stock", stock]
    args += ["--pack-size", "10", "--order-date", "2024-06-03T00:00:00+05:00"]
    assert main([str(arg) for arg in args]) == 0
    orders = read_table(tmp_path / "order_proposals.csv")
    assert orders["order_date"].iloc[0] == "2024-06-03" and orders["pack_size"].iloc[0] == 1
    assert "--pack-size given with --stock: not used" in caplog.text
    args = ["postprocess", "--keys", keys, "--predictions", predictions, "--out", tmp_path / "g.csv"]
    assert main([str(arg) for arg in [*args, "--pack-size", "0"]]) == 2  # 0 is refused, not read as "not given"
    assert not (tmp_path / "g.csv").exists()


def test_postprocess_without_stock_says_stock_was_not_considered(tmp_path, caplog):
    keys, predictions = _keys_and_predictions(tmp_path)
    assert (
        main(["postprocess", "--keys", str(keys), "--predictions", str(predictions), "--out", str(tmp_path / "f.csv")])
        == 0
    )
    orders = read_table(tmp_path / "order_proposals.csv")
    assert len(orders) == 2 and not orders["stock_considered"].any() and "order_units" in orders
    assert "stock_considered = False" in caplog.text


@pytest.mark.parametrize(("on_hand", "expected"), [(0, 30), (5, 30), (20, 20), (50, 0)])
def test_demand_before_a_late_delivery_that_the_shelf_cannot_meet_is_not_ordered(tmp_path, on_hand, expected):
    """Ordered Monday with lead time 2, on the shelf Wednesday: Tuesday's sales come from the shelf or are lost.

    The order bought Tuesday's demand too (40 on an empty shelf), which the replay then threw away.
    """
    calendar = tmp_path / "calendar.csv"
    pd.DataFrame({"weekday": ["mon", "thu"], "lead_time_days": [2, 2]}).to_csv(calendar, index=False)
    frame = forecasts(days=14, p10=10.0, p50=10.0, p90=10.0)  # a known demand: 10 a day
    stock = stock_file(tmp_path, [{"on_hand_units": on_hand}])
    line = one(order_lines(frame, stock=stock, calendar=calendar, service_level=0.5))
    assert line["arrival_date"] == "2024-06-05" and line["days_covered"] == 4  # Tuesday to Friday
    assert line["order_units"] == expected


def test_pack_rounding_is_up_to_whole_packs_whatever_the_pack_size():
    """Float noise is no extra pack, and a few units in a huge pack are one pack (rounding to 9 decimals gave 0)."""
    from forecaster.order_policy import round_to_packs

    units = np.array([0.0, 2.0000000001, 2.0, 2.1, 5.0, -1.0, 5.0, 1e-13])
    packs = np.array([1.0, 1.0, 1.0, 1.0, 1e12, 1.0, 0.1, 1.0])
    np.testing.assert_array_equal(round_to_packs(units, packs), [0.0, 2.0, 2.0, 3.0, 1e12, 0.0, 5.0, 0.0])
