"""Leakage and consistency of the one feature code path (mlforecast #705-class bugs must be impossible)."""

import numpy as np
import pandas as pd
import pytest

from forecaster.config import TrainConfig
from forecaster.features import LEVEL_FEATURES, build_features, campaign_run_lengths, feature_set
from forecaster.forecasting import build_inference_features, forecast
from forecaster.panel import build_panel
from forecaster.training import fit_artifact

H = 7


def _same(a, b):
    return (a == b) | (np.isnan(a) & np.isnan(b))


def _rows(frame, spec, origin_day=80, level_features=False):
    panel = build_panel(spec, spec.validate_frame(frame))
    fs = feature_set(spec, level_features=level_features)
    vocab = {c: sorted(panel.series[c].unique()) for c in fs.categorical}
    series = np.repeat(np.arange(panel.n_series), H)
    horizon = np.tile(np.arange(1, H + 1), panel.n_series)
    X = build_features(panel, spec, fs, vocab, series, np.full(series.size, origin_day), horizon, H)
    return X, horizon, panel.dates[origin_day], fs


@pytest.mark.parametrize("level_features", [False, True])
def test_future_targets_and_past_only_values_never_change_origin_rows(synthetic_frame, synthetic_spec, level_features):
    X, _, origin, fs = _rows(synthetic_frame, synthetic_spec, level_features=level_features)
    assert set(LEVEL_FEATURES) <= set(fs.names) if level_features else not set(LEVEL_FEATURES) & set(fs.names)
    changed = synthetic_frame.copy()
    after = changed["date"] > origin
    rng = np.random.default_rng(1)
    changed.loc[after, "units_sold"] = rng.integers(0, 1000, after.sum())
    for column in synthetic_spec.past_only:
        changed.loc[after, column] = rng.uniform(0, 24, after.sum())
    X_changed, *_ = _rows(changed, synthetic_spec, level_features=level_features)
    np.testing.assert_array_equal(X, X_changed)
    # a target on the origin day itself does move the level features (they do read up to t0)
    on_origin = synthetic_frame.copy()
    on_origin.loc[on_origin["date"] == origin, "units_sold"] += 50
    X_origin, *_ = _rows(on_origin, synthetic_spec, level_features=level_features)
    for name in LEVEL_FEATURES if level_features else ():
        column = fs.names.index(name)
        assert not np.allclose(X[:, column], X_origin[:, column], equal_nan=True)


def test_level_features_are_recent_over_longer_means_of_the_series_and_the_chain(synthetic_frame, synthetic_spec):
    X, _, origin, fs = _rows(synthetic_frame, synthetic_spec, level_features=True)
    column = {name: X[:, fs.names.index(name)] for name in ("level_trend", "chain_trend", "mean_7", "mean_28")}
    np.testing.assert_allclose(column["level_trend"], column["mean_7"] / column["mean_28"], rtol=1e-12)
    sales = synthetic_frame.dropna(subset=["units_sold"])
    days = sales["date"]

    def window(width):
        return sales.loc[(days <= origin) & (days > origin - pd.Timedelta(days=width)), "units_sold"].mean()

    np.testing.assert_allclose(column["chain_trend"], window(7) / window(28), rtol=1e-12)


@pytest.mark.parametrize("h_changed", [1, 4, 7])
def test_known_future_value_changes_exactly_that_days_rows(synthetic_frame, synthetic_spec, h_changed):
    X, horizon, origin, fs = _rows(synthetic_frame, synthetic_spec)
    changed = synthetic_frame.copy()
    day = changed["date"] == origin + pd.Timedelta(days=h_changed)
    changed.loc[day, "discount"] = 0.5
    changed.loc[day, "holiday"] = 1 - changed.loc[day, "holiday"]
    X_changed, *_ = _rows(changed, synthetic_spec)
    differs = ~np.all(_same(X, X_changed), axis=1)
    np.testing.assert_array_equal(differs, horizon == h_changed)
    changed_columns = {fs.names[j] for j in np.flatnonzero(~np.all(_same(X, X_changed), axis=0))}
    assert changed_columns == {"discount", "holiday"}


def test_campaign_on_a_later_day_changes_that_days_rows_and_no_earlier_ones(synthetic_frame, synthetic_spec):
    X, horizon, origin, fs = _rows(synthetic_frame, synthetic_spec)
    changed = synthetic_frame.copy()
    day = changed["date"] == origin + pd.Timedelta(days=5)
    changed.loc[day, "campaign"] = 1 - changed.loc[day, "campaign"]
    X_changed, *_ = _rows(changed, synthetic_spec)
    differs = ~np.all(_same(X, X_changed), axis=1)
    assert differs[horizon == 5].all()
    # earlier days only change through the documented run length of a campaign running into day 5
    left = fs.names.index("campaign_days_left")
    earlier = (horizon < 5) & differs
    assert np.all(X[earlier][:, left] != X_changed[earlier][:, left])


def test_campaign_run_lengths():
    plan = np.array([[0, 1, 1, 1, 0, 0, 1]], dtype=bool)
    day, left, since = campaign_run_lengths(plan)
    assert day.tolist() == [[0, 1, 2, 3, 0, 0, 1]]
    assert left.tolist() == [[0, 3, 2, 1, 0, 0, 1]]
    assert since.tolist() == [[60, 0, 0, 0, 1, 2, 0]]


def test_training_and_inference_build_identical_rows(trained_model_dir, synthetic_frame, synthetic_spec, train_config):
    """Inference rows for origin t0 equal training-path rows for the same (series, origin, horizon)."""
    features, _ = build_inference_features(
        trained_model_dir,
        synthetic_frame[synthetic_frame.date <= synthetic_frame.date.max() - pd.Timedelta(days=H)],
        synthetic_frame[synthetic_frame.date > synthetic_frame.date.max() - pd.Timedelta(days=H)],
    )
    origin_day = len(pd.date_range(synthetic_frame.date.min(), synthetic_frame.date.max())) - 1 - H
    X, _, _, fs = _rows(synthetic_frame, synthetic_spec, origin_day)
    assert list(features.columns) == list(fs.names)
    np.testing.assert_array_equal(features.to_numpy(), X)


def test_promo_on_day_h_changes_the_day_h_forecast(trained_model_dir, history_frame, future_frame):
    """A campaign on a later forecast day moves that day's forecast, not only day 1's (docs/sagemaker-notes.md §6)."""
    base = forecast(trained_model_dir, history_frame, future_frame)
    promo = future_frame.copy()
    day = promo["date"] == promo["date"].min() + pd.Timedelta(days=4)
    promo.loc[day, ["campaign", "discount"]] = [1, 0.6]
    promo.loc[~day, ["campaign", "discount"]] = [0, 1.0]
    nopromo = promo.copy()
    nopromo.loc[day, ["campaign", "discount"]] = [0, 1.0]
    with_promo = forecast(trained_model_dir, history_frame, promo)
    without = forecast(trained_model_dir, history_frame, nopromo)
    on_day = with_promo["date"] == str((promo["date"].min() + pd.Timedelta(days=4)).date())
    assert (with_promo.loc[on_day, "mean"] > without.loc[on_day, "mean"]).mean() > 0.8
    assert len(base) == len(with_promo)


def test_feature_set_lists_kinds_for_every_feature(synthetic_spec):
    fs = feature_set(synthetic_spec, keys_as_features=TrainConfig().keys_as_features)
    assert set(fs.kinds) == set(fs.names)
    assert fs.categorical == ("store_id", "item_id", "category", "city")
    assert {"discount", "campaign_day", "days_since_campaign", "lag_0", "same_weekday_mean"} <= set(fs.names)
    assert "stockout_hours" not in fs.names  # past-only values enter only as history statistics


def test_a_model_with_level_features_builds_the_same_rows_at_inference(
    tmp_path, synthetic_frame, synthetic_spec, train_config
):
    history = synthetic_frame[synthetic_frame.date <= synthetic_frame.date.max() - pd.Timedelta(days=H)]
    future = synthetic_frame[synthetic_frame.date > synthetic_frame.date.max() - pd.Timedelta(days=H)]
    model_dir = tmp_path / "level"
    fit_artifact(history, synthetic_spec, train_config.replace(level_features=True), model_dir)
    features, _ = build_inference_features(model_dir, history, future)
    origin_day = len(pd.date_range(synthetic_frame.date.min(), synthetic_frame.date.max())) - 1 - H
    X, _, _, fs = _rows(synthetic_frame, synthetic_spec, origin_day, level_features=True)
    assert list(features.columns) == list(fs.names)
    np.testing.assert_array_equal(features.to_numpy(), X)
    assert forecast(model_dir, history, future.drop(columns="units_sold"))["mean"].notna().all()
