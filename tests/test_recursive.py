"""The recursive point forecast (forecaster.recursive): no leakage, step 1 = direct point, independent series."""

import numpy as np
import pandas as pd
import pytest

from forecaster.forecasting import inference_rows, predictions_frame
from forecaster.model import ForecastModel
from forecaster.totals import GroupTotals

H = 7


@pytest.fixture(scope="module")
def model(trained_model_dir):
    return ForecastModel.load(trained_model_dir)


def _recursive(model, history, future, **kwargs):
    rows = inference_rows(model, history, future, recursive=True, **kwargs)
    frame = rows.keys.copy()
    frame["recursive"] = rows.recursive
    return rows, frame


def test_changing_any_target_after_the_origin_leaves_the_recursive_forecasts_unchanged(
    model, synthetic_frame, synthetic_spec, history_frame, future_frame
):
    _, base = _recursive(model, history_frame, future_frame)
    origin = history_frame["date"].max()
    rng = np.random.default_rng(3)
    # the future frame carrying (changed) targets and past-only values of the days after t0
    future = synthetic_frame[synthetic_frame["date"] > origin].copy()
    future["units_sold"] = rng.integers(0, 1000, len(future))
    for column in synthetic_spec.past_only:
        future[column] = rng.uniform(0, 24, len(future))
    _, changed = _recursive(model, history_frame, future)
    pd.testing.assert_frame_equal(base, changed)
    assert base["recursive"].notna().all() and (base["recursive"] >= 0).all()
    # a target on the origin day itself does move them (they read up to t0)
    moved = history_frame.copy()
    moved.loc[moved["date"] == origin, "units_sold"] += 200
    _, on_origin = _recursive(model, moved, future_frame)
    assert not np.allclose(on_origin["recursive"], base["recursive"])


def test_the_first_step_is_the_direct_models_horizon_1_point_and_later_steps_differ(model, history_frame, future_frame):
    rows, frame = _recursive(model, history_frame, future_frame)
    direct = predictions_frame(model, rows.features, rows.keys)
    first = frame["date"] == frame["date"].min()
    np.testing.assert_allclose(frame.loc[first, "recursive"], direct.loc[first, "mean"], rtol=1e-12)
    assert not np.allclose(frame.loc[~first, "recursive"], direct.loc[~first, "mean"])
    assert rows.features.shape[1] == len(model.schema.feature_names)  # the transform still gets plain rows


def test_a_one_step_predictor_of_its_own_is_fed_back_in_place_of_the_models_point(model, history_frame, future_frame):
    # "tomorrow = the last day + 1": fed back, day k after the origin is the origin's target + k
    lag_0 = model.schema.feature_names.index("lag_0")
    _, frame = _recursive(model, history_frame, future_frame, one_step=lambda X: X[:, lag_0] + 1.0)
    origin = history_frame["date"].max()
    last = history_frame.loc[history_frame["date"] == origin, ["store_id", "item_id", "units_sold"]].astype(
        {"store_id": str, "item_id": str}
    )
    merged = frame.merge(last, on=["store_id", "item_id"])
    days = (pd.to_datetime(merged["date"]) - origin).dt.days
    assert len(merged) == len(frame) > 0
    np.testing.assert_allclose(merged["recursive"], merged["units_sold"] + days, rtol=1e-12)


def test_deterministic_and_per_series_independent_of_the_other_series_under_the_chains_totals(
    model, synthetic_frame, synthetic_spec, history_frame, future_frame
):
    chain = GroupTotals.from_panel(_panel(synthetic_spec, history_frame), synthetic_spec)
    _, whole = _recursive(model, history_frame, future_frame, totals=chain)
    _, again = _recursive(model, history_frame, future_frame, totals=chain)
    pd.testing.assert_frame_equal(whole, again)
    store = history_frame["store_id"].astype(str) == sorted(history_frame["store_id"].astype(str).unique())[0]
    part_history = history_frame[store]
    part_future = future_frame[future_frame["store_id"].astype(str).isin(part_history["store_id"].astype(str))]
    _, part = _recursive(model, part_history, part_future, totals=chain)
    expected = whole.merge(part[["store_id", "item_id", "date"]], on=["store_id", "item_id", "date"])
    assert len(part) == len(expected) > 0
    np.testing.assert_allclose(
        part.sort_values(["store_id", "item_id", "date"])["recursive"].to_numpy(),
        expected.sort_values(["store_id", "item_id", "date"])["recursive"].to_numpy(),
        rtol=1e-12,
    )


def test_the_chains_totals_of_an_older_history_are_refused(model, synthetic_spec, history_frame, future_frame):
    """Once 12 % empty feature cells and exit 0: the hierarchy features of the days after the totals read nothing."""
    from forecaster.errors import DataValidationError

    older = history_frame[history_frame["date"] <= history_frame["date"].max() - pd.Timedelta(days=10)]
    totals = GroupTotals.from_panel(_panel(synthetic_spec, older), synthetic_spec)
    end, last = older["date"].max().date(), history_frame["date"].max().date()
    with pytest.raises(DataValidationError, match=f"group totals end on {end}, but the history runs to {last}"):
        inference_rows(model, history_frame, future_frame, totals=totals)


def test_a_short_future_frame_is_forecast_for_the_days_given(model, synthetic_frame, synthetic_spec):
    cut = synthetic_frame["date"].max() - pd.Timedelta(days=3)  # 3 future days, for a model of 7
    history = synthetic_frame[synthetic_frame["date"] <= cut]
    columns = [*synthetic_spec.keys, "date", *synthetic_spec.known_future]
    future = synthetic_frame.loc[synthetic_frame["date"] > cut, columns]
    rows = inference_rows(model, history, future, recursive=True)
    assert rows.recursive.shape == (len(rows.keys),) and np.isfinite(rows.recursive).all()


def _panel(spec, history):
    from forecaster.panel import build_panel

    return build_panel(spec, spec.validate_frame(history, kind="history"))
