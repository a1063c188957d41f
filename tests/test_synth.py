"""The synthetic data generator: determinism, grid, holidays, weekly pattern, campaigns, dips and stockouts."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from forecaster.errors import InvalidParameterError
from forecaster.io import read_table
from forecaster.spec import DatasetSpec
from forecaster.synth import ASSORTMENT, SYNTH_SPEC, generate, write_dataset

# Sweden's public holidays in 2024 (Riksdag calendar), independent of the `holidays` package.
SE_2024 = [
    "2024-01-01", "2024-01-06", "2024-03-29", "2024-03-31", "2024-04-01", "2024-05-01", "2024-05-09",
    "2024-05-19", "2024-06-06", "2024-06-22", "2024-11-02", "2024-12-25", "2024-12-26",
]  # fmt: skip


@pytest.fixture(scope="module")
def year() -> pd.DataFrame:
    """A year of 12 stores x 25 items (every assortment entry once), with the latent demand."""
    return generate(stores=12, items=len(ASSORTMENT), days=366, seed=7, start="2024-01-01", return_demand=True)


def test_same_seed_gives_identical_frame_and_other_seed_differs() -> None:
    first = generate(stores=3, items=4, days=60, seed=1)
    pd.testing.assert_frame_equal(first, generate(stores=3, items=4, days=60, seed=1))
    other = generate(stores=3, items=4, days=60, seed=2)
    assert not first["units_sold"].equals(other["units_sold"])


def test_adding_stores_keeps_the_existing_stores() -> None:
    small = generate(stores=2, items=5, days=40, seed=3)
    large = generate(stores=4, items=5, days=40, seed=3)
    pd.testing.assert_frame_equal(small, large.iloc[: len(small)])


def test_complete_sorted_grid_with_spec_columns_and_dtypes() -> None:
    frame = generate(stores=3, items=30, days=45, seed=0, start="2023-12-20")
    spec = DatasetSpec.from_dict(SYNTH_SPEC)
    assert list(frame.columns) == [*spec.keys, spec.date, spec.target, *spec.known_future, *spec.static,
                                   *spec.past_only]  # fmt: skip
    assert len(frame) == 3 * 30 * 45
    assert not frame.duplicated(["store_id", "item_id", "date"]).any()
    assert frame.groupby(["store_id", "item_id"]).size().eq(45).all()
    assert frame["date"].min() == pd.Timestamp("2023-12-20") and frame["date"].max() == pd.Timestamp("2024-02-02")
    sorted_frame = frame.sort_values(["store_id", "item_id", "date"], ignore_index=True)
    pd.testing.assert_frame_equal(frame, sorted_frame)
    assert sorted(frame["store_id"].unique()) == ["S001", "S002", "S003"]
    assert {"banana", "banana_2", "strawberries"} <= set(frame["item_id"])  # names cycle beyond the assortment
    assert frame["date"].dtype == "datetime64[ns]"
    assert all(isinstance(v, str) for c in ("store_id", "item_id", "category", "city") for v in frame[c].head(50))
    assert frame["units_sold"].dtype.kind == "i" and (frame["units_sold"] >= 0).all()
    assert set(frame["campaign"].unique()) == {0, 1} and set(frame["holiday"].unique()) == {0, 1}
    assert frame["discount"].between(0.6, 1.0).all()
    assert ((frame["discount"] < 1.0) == (frame["campaign"] == 1)).all()
    assert frame["stockout_hours"].between(0.0, 24.0).all()
    assert frame.groupby(["store_id", "item_id"])[["category", "city"]].nunique().eq(1).all().all()
    assert spec.validate_frame(frame).shape[0] == len(frame)


def test_holiday_flag_is_exactly_the_swedish_public_holidays(year: pd.DataFrame) -> None:
    flagged = year.loc[year["holiday"] == 1, "date"].drop_duplicates().dt.strftime("%Y-%m-%d").tolist()
    assert flagged == SE_2024  # plain Sundays and de-facto holidays (Midsummer Eve) are not flagged
    by_day = year.groupby("date")["baseline"].sum()
    # Midsummer Eve (the shopping day before Midsummer Day) sells more than Midsummer Day itself
    assert by_day[pd.Timestamp("2024-06-21")] > 1.5 * by_day[pd.Timestamp("2024-06-22")]


def test_weekly_pattern_peaks_friday_saturday_and_dips_sunday(year: pd.DataFrame) -> None:
    ordinary = year[(year["holiday"] == 0) & (year["campaign"] == 0)]
    by_weekday = ordinary.groupby(ordinary["date"].dt.dayofweek)["units_sold"].mean()
    assert by_weekday[[4, 5]].min() > 1.15 * by_weekday[[0, 1, 2, 3]].max()
    assert by_weekday[6] < by_weekday[[0, 2, 3]].min()


def test_yearly_seasonality_and_temperature(year: pd.DataFrame) -> None:
    strawberries = year[year["item_id"] == "strawberries"]
    month = strawberries["date"].dt.month
    assert (
        strawberries.loc[month.isin([6, 7]), "units_sold"].mean()
        > 3 * strawberries.loc[month.isin([1, 2]), "units_sold"].mean()
    )
    temperature = year.drop_duplicates(["city", "date"])
    season = temperature["date"].dt.month
    assert temperature.loc[season == 7, "temperature"].mean() > temperature.loc[season == 1, "temperature"].mean() + 10


def test_campaign_uplift_grows_with_discount_depth(year: pd.DataFrame) -> None:
    campaign = year[year["campaign"] == 1]
    assert 0.05 < len(campaign) / len(year) < 0.4
    uplift = (campaign["demand"] / campaign["baseline"]).groupby(campaign["discount"]).mean()
    assert len(uplift) >= 6 and uplift.is_monotonic_decreasing and uplift.min() > 1.1
    assert uplift.loc[0.6] > 2 * uplift.loc[0.9] - 1  # deep cuts lift more than proportionally shallow ones
    # also visible in what was actually sold, despite stockouts
    sold = campaign["units_sold"] / campaign["baseline"]
    assert sold[campaign["discount"] <= 0.7].mean() > 1.3 * sold[campaign["discount"] >= 0.85].mean()


def test_post_campaign_dip(year: pd.DataFrame) -> None:
    grouped = year.groupby(["store_id", "item_id"])["campaign"]
    ended = (grouped.shift(1, fill_value=0) == 1) & (year["campaign"] == 0)
    quiet = year["campaign"].eq(0) & grouped.transform(lambda s: s.rolling(10, min_periods=1).max()).eq(0)
    ratio = year["demand"] / year["baseline"]
    assert ended.sum() > 500 and quiet.sum() > 10_000
    assert ratio[ended].mean() < 0.9 < 0.95 < ratio[quiet].mean() < 1.05


def test_stockouts_cap_sales_below_demand(year: pd.DataFrame) -> None:
    out = year["stockout_hours"] > 0
    assert (year["units_sold"] <= year["demand"]).all()
    assert (year.loc[~out, "units_sold"] == year.loc[~out, "demand"]).all()
    assert (year.loc[out, "units_sold"] < year.loc[out, "demand"]).all()
    assert 0.01 < out.mean() < 0.3
    assert (year.loc[out, "units_sold"] / year.loc[out, "demand"]).mean() < 0.9
    assert out[year["campaign"] == 1].mean() > 1.5 * out[year["campaign"] == 0].mean()
    # longer stockouts hide a larger share of the demand
    long, short = year["stockout_hours"] >= 12, out & (year["stockout_hours"] < 3)
    assert (year["units_sold"] / year["demand"])[long].mean() < (year["units_sold"] / year["demand"])[short].mean()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"stores": 0}, "The 'stores' parameter of generate must be an int in the range [1, inf). Got 0 instead."),
        ({"items": -2}, "The 'items' parameter of generate must be an int in the range [1, inf). Got -2 instead."),
        ({"days": 1.5}, "The 'days' parameter of generate must be an int in the range [1, inf). Got 1.5 instead."),
        ({"stores": True}, "The 'stores' parameter of generate must be an int in the range [1, inf). Got True"),
        ({"seed": -1}, "The 'seed' parameter of generate must be an int in the range [0, inf). Got -1 instead."),
        ({"start": "next tuesday"}, "The 'start' parameter of generate must be a date like '2024-01-01'. Got"),
        ({"start": 20240101}, "The 'start' parameter of generate must be a date like '2024-01-01'. Got 20240101"),
    ],
)
def test_invalid_arguments_raise_clear_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(InvalidParameterError) as caught:
        generate(**kwargs)
    assert str(caught.value).startswith(message)


def test_string_arguments_from_the_command_line_are_accepted() -> None:
    pd.testing.assert_frame_equal(generate(stores="2", items="3", days="10", seed="4"), generate(2, 3, 10, 4))


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_write_dataset_round_trips(tmp_path, fmt: str) -> None:
    out = write_dataset(tmp_path / "data", stores=2, items=3, days=20, seed=5, start="2024-03-01", fmt=fmt)
    assert sorted(p.name for p in out.iterdir()) == sorted([f"sales.{fmt}", "spec.json"])
    assert json.loads((out / "spec.json").read_text()) == SYNTH_SPEC
    frame = read_table(out)
    frame["date"] = pd.to_datetime(frame["date"])
    expected = generate(stores=2, items=3, days=20, seed=5, start="2024-03-01")
    pd.testing.assert_frame_equal(frame, expected, check_dtype=fmt == "parquet")
    assert DatasetSpec.from_json(out / "spec.json").validate_frame(frame).shape[0] == 120


def test_write_dataset_replaces_the_other_format_and_fails_cleanly(tmp_path) -> None:
    write_dataset(tmp_path, stores=1, items=2, days=5, fmt="parquet")
    write_dataset(tmp_path, stores=1, items=2, days=5, fmt="csv")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sales.csv", "spec.json"]
    assert len(read_table(tmp_path)) == 10  # the directory reads as one data set, not twice
    with pytest.raises(InvalidParameterError, match=r"The 'fmt' parameter of write_dataset must be a str among"):
        write_dataset(tmp_path / "new", fmt="xlsx")
    with pytest.raises(InvalidParameterError, match="'days'"):
        write_dataset(tmp_path / "new", days=0)
    assert not (tmp_path / "new").exists()


def test_latent_columns_only_on_request() -> None:
    frame = generate(stores=1, items=2, days=10, return_demand=True)
    assert {"demand", "baseline"} <= set(frame.columns)
    assert "demand" not in generate(stores=1, items=2, days=10).columns
    assert np.isfinite(frame["baseline"]).all() and (frame["baseline"] > 0).all()
