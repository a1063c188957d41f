import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from forecaster import training, training_rows
from forecaster.artifact import BOOSTER_FILES, FeatureSchema
from forecaster.errors import DataValidationError, ModelArtifactError
from forecaster.forecasting import build_inference_features, forecast
from forecaster.model import ForecastModel, booster_params
from forecaster.training import fit_artifact
from forecaster.training_rows import ChainSummary, PartitionData, summarize


def test_artifact_holds_models_schema_and_metadata(trained_model_dir, history_frame, train_config):
    files = {p.name for p in trained_model_dir.iterdir()}
    assert files == {*BOOSTER_FILES.values(), "feature_schema.json", "metadata.json"}
    schema = json.loads((trained_model_dir / "feature_schema.json").read_text())
    assert schema["horizon"] == 7 and schema["quantiles"] == [0.1, 0.5, 0.9]
    categorical = {f["name"]: f["categories"] for f in schema["features"] if f["dtype"] == "category"}
    assert categorical["item_id"] == sorted(history_frame["item_id"].unique())
    meta = json.loads((trained_model_dir / "metadata.json").read_text())
    assert set(meta["libraries"]) >= {"lightgbm", "numpy", "pandas", "python"}
    assert len(meta["training_data_hash"]) == 64
    assert meta["training_window"]["end"] == str(history_frame["date"].max().date())
    assert meta["hyperparameters"]["horizon"] == train_config.horizon
    assert 0 < meta["validation_metrics"]["wape"] < 1


def test_retraining_on_the_same_data_gives_identical_predictions(
    tmp_path, trained_model_dir, history_frame, future_frame, synthetic_spec, train_config
):
    fit_artifact(history_frame, synthetic_spec, train_config, tmp_path / "again")
    first = forecast(trained_model_dir, history_frame, future_frame)
    second = forecast(tmp_path / "again", history_frame, future_frame)
    pd.testing.assert_frame_equal(first, second)


def test_quantiles_never_cross(trained_model_dir, feature_frame):
    model = ForecastModel.load(trained_model_dir)
    rng = np.random.default_rng(0)
    X = feature_frame.to_numpy()
    noisy = X[rng.integers(0, len(X), 5000)] * rng.uniform(0.0, 3.0, size=(5000, X.shape[1]))
    noisy[:, model.schema.categorical_indices] = np.nan
    predictions = model.predict(noisy)
    assert np.all(predictions[:, 0] <= predictions[:, 1]) and np.all(predictions[:, 1] <= predictions[:, 2])
    assert np.all(predictions >= 0) and np.isfinite(predictions).all()


def test_unseen_categories_become_missing_and_still_predict(trained_model_dir, history_frame, future_frame):
    history = history_frame.copy()
    history.loc[history["store_id"] == "S001", "city"] = "Kiruna-not-in-training"
    out = forecast(trained_model_dir, history, future_frame)
    assert out[["p10", "p50", "p90", "mean"]].notna().all().all()
    from forecaster.forecasting import build_inference_features

    features, keys = build_inference_features(trained_model_dir, history, future_frame)
    assert features.loc[keys["store_id"] == "S001", "city"].isna().all()
    assert features.loc[keys["store_id"] != "S001", "city"].notna().all()


def test_contributions_add_up_to_the_raw_prediction(trained_model_dir, feature_frame):
    model = ForecastModel.load(trained_model_dir)
    X = feature_frame.to_numpy()
    contributions = model.contributions(X)
    raw = model.boosters["mean"].predict(X, raw_score=True)
    np.testing.assert_allclose(contributions.sum(axis=1), raw, rtol=1e-9, atol=1e-9)


def test_failed_training_leaves_the_previous_model_untouched(
    tmp_path, monkeypatch, history_frame, synthetic_spec, train_config
):
    model_dir = tmp_path / "model"
    fit_artifact(history_frame, synthetic_spec, train_config, model_dir)
    before = {p.name: p.read_bytes() for p in model_dir.iterdir()}

    def explode(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(training.ForecastModel, "save", explode)
    with pytest.raises(RuntimeError):
        fit_artifact(history_frame, synthetic_spec, train_config.replace(num_boost_round=5), model_dir)
    assert {p.name: p.read_bytes() for p in model_dir.iterdir()} == before
    # no staging directory left behind; the hidden record of what the first run wrote stays beside the model
    assert sorted(p.name for p in tmp_path.iterdir()) == [".model.forecaster-output.json", "model"]


def test_bad_data_writes_nothing(tmp_path, history_frame, synthetic_spec, train_config):
    with pytest.raises(DataValidationError, match="units_sold"):
        fit_artifact(history_frame.drop(columns="units_sold"), synthetic_spec, train_config, tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_too_short_history_says_how_long_it_must_be(tmp_path, history_frame, synthetic_spec, train_config):
    short = history_frame[history_frame["date"] < history_frame["date"].min() + pd.Timedelta(days=10)]
    with pytest.raises(DataValidationError, match="at least 8 are needed"):
        fit_artifact(short, synthetic_spec, train_config, tmp_path / "m")


@pytest.mark.parametrize(
    ("mode", "kept", "recovered"),
    [("none", 1.0, 1.0), ("exclude", 0.0, 1.0), ("weight", 0.75, 1.0), ("recover", 0.75, 1 / 0.75)],
)
def test_stockout_days_are_censored_targets(history_frame, synthetic_spec, train_config, mode, kept, recovered):
    frame = synthetic_spec.validate_frame(history_frame)
    chain = ChainSummary.combine([summarize((frame, synthetic_spec))], synthetic_spec, train_config)
    data = PartitionData(frame, chain)
    stockout = data.panel.covariates["stockout_hours"]
    series, day = np.argwhere(stockout > 0)[0]
    stockout[series, day] = 6.0  # a quarter of the day out of stock
    config = train_config.replace(stockout_handling=mode)
    rows, _ = data.rows(np.array([series]), np.array([day - 1]), np.array([1]), config)
    assert (rows.weight.tolist() or [0.0]) == [kept]
    if kept:  # "recover": sales of a day 3/4 in stock count as 3/4 of its demand
        assert rows.y[0] == pytest.approx(data.panel.target[series, day] * recovered)


def test_loading_an_incomplete_model_dir_is_a_clear_error(tmp_path, trained_model_dir):
    with pytest.raises(ModelArtifactError, match="not a forecaster model directory"):
        ForecastModel.load(tmp_path)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "feature_schema.json").write_text((trained_model_dir / "feature_schema.json").read_text())
    with pytest.raises(ModelArtifactError, match=r"model_mean\.txt is missing"):
        ForecastModel.load(broken)
    assert FeatureSchema.load(trained_model_dir).horizon == 7


def test_a_directory_holding_model_tar_gz_loads_like_the_unpacked_model(tmp_path, trained_model_dir, feature_frame):
    from forecaster.artifact import pack_model

    packed = tmp_path / "input" / "model"
    pack_model(trained_model_dir, packed / "model.tar.gz")
    assert [p.name for p in packed.iterdir()] == ["model.tar.gz"]
    X = feature_frame.to_numpy()
    np.testing.assert_array_equal(
        ForecastModel.load(packed).predict(X), ForecastModel.load(trained_model_dir).predict(X)
    )
    (tmp_path / "bad.tar.gz").write_bytes(b"not a tarball")
    with pytest.raises(ModelArtifactError, match="not a readable model archive"):
        ForecastModel.load(tmp_path / "bad.tar.gz")


def test_the_unpacked_copy_of_model_tar_gz_is_removed_when_the_process_exits(tmp_path, trained_model_dir):
    import subprocess
    import sys

    from forecaster.artifact import pack_model

    pack_model(trained_model_dir, tmp_path / "m" / "model.tar.gz")
    script = "import sys; from forecaster.artifact import model_files; print(model_files(sys.argv[1]))"
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "m")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    unpacked = Path(done.stdout.strip())
    assert unpacked.name.startswith("forecaster-model-") and unpacked != tmp_path / "m"
    assert not unpacked.exists()  # the process unpacked it and, on exit, removed it
    killed = "import os, sys; from forecaster.artifact import model_files; print(model_files(sys.argv[1]), flush=True)"
    killed += "; os.kill(os.getpid(), 9)"  # SIGKILL (an out-of-memory kill): no atexit
    done = subprocess.run([sys.executable, "-c", killed, str(tmp_path / "m")], capture_output=True, text=True)
    orphan = Path(done.stdout.strip())
    assert done.returncode == -9 and orphan.is_dir()
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "m")], capture_output=True, text=True)
    assert done.returncode == 0 and not orphan.exists()  # the next process that unpacks removes the dead one's copy


def test_a_replaced_model_tar_gz_replaces_its_copy_and_a_bad_one_leaves_none(tmp_path, trained_model_dir):
    """A long-lived process (a worker scoring every day) keeps one copy per archive path, not one per version."""
    import os
    import tempfile

    from forecaster.artifact import model_files, pack_model

    tarball = tmp_path / "m" / "model.tar.gz"
    pack_model(trained_model_dir, tarball)
    first = model_files(tarball.parent)
    assert model_files(tarball.parent) == first  # unpacked once
    os.utime(tarball, ns=(tarball.stat().st_atime_ns, tarball.stat().st_mtime_ns + 10**9))  # a new version
    second = model_files(tarball.parent)
    assert second != first and second.is_dir() and not first.exists()
    ours = f"forecaster-model-{os.getpid()}-"
    before = {p.name for p in Path(tempfile.gettempdir()).glob(f"{ours}*")}
    (tmp_path / "bad.tar.gz").write_bytes(b"not a tarball")
    with pytest.raises(ModelArtifactError):
        model_files(tmp_path / "bad.tar.gz")
    assert {p.name for p in Path(tempfile.gettempdir()).glob(f"{ours}*")} == before


def test_model_tar_gz_unpacks_on_the_images_python_3_11_2(tmp_path, monkeypatch, trained_model_dir, feature_frame):
    # Debian bookworm's Python 3.11.2 (the images') has neither tarfile.data_filter nor extractall(filter=...)
    import tarfile

    from forecaster.artifact import pack_model

    real_extractall = tarfile.TarFile.extractall

    def extractall_3_11_2(self, path=".", members=None, *, numeric_owner=False):
        return real_extractall(self, path, members, numeric_owner=numeric_owner)

    monkeypatch.delattr(tarfile, "data_filter")
    monkeypatch.setattr(tarfile.TarFile, "extractall", extractall_3_11_2)
    pack_model(trained_model_dir, tmp_path / "m" / "model.tar.gz")
    X = feature_frame.to_numpy()
    np.testing.assert_array_equal(
        ForecastModel.load(tmp_path / "m").predict(X), ForecastModel.load(trained_model_dir).predict(X)
    )


@pytest.mark.parametrize("kind", ["symlink", "parent", "absolute"])
def test_model_tar_gz_with_a_member_outside_the_archive_is_refused(tmp_path, kind, trained_model_dir):
    import io
    import tarfile

    tarball = tmp_path / "evil" / "model.tar.gz"
    tarball.parent.mkdir()
    with tarfile.open(tarball, "w:gz") as archive:
        archive.add(trained_model_dir / "feature_schema.json", arcname="feature_schema.json")
        member = tarfile.TarInfo({"symlink": "link", "parent": "../escape.txt", "absolute": "/tmp/abs.txt"}[kind])
        if kind == "symlink":
            member.type, member.linkname = tarfile.SYMTYPE, "/etc/passwd"
            archive.addfile(member)
        else:
            member.size = 1
            archive.addfile(member, io.BytesIO(b"x"))
    with pytest.raises(ModelArtifactError, match="not a plain file inside the archive"):
        FeatureSchema.load(tarball.parent)
    assert not (tmp_path / "escape.txt").exists()


def test_calibration_factors_make_held_out_coverage_nominal():
    from forecaster.model import calibration_factors

    rng = np.random.default_rng(0)
    y = rng.gamma(2.0, 5.0, 20000)
    raw = np.column_stack([np.full(y.size, 3.0), np.full(y.size, 8.0), np.full(y.size, 12.0)])
    factors = calibration_factors(raw, y, (0.1, 0.5, 0.9), bounds=(0.01, 100))
    calibrated = raw * np.asarray(factors)
    coverage = [(y <= calibrated[:, i]).mean() for i in range(3)]
    np.testing.assert_allclose(coverage, [0.1, 0.5, 0.9], atol=0.005)
    assert calibration_factors(raw[:50], y[:50], (0.1, 0.5, 0.9)) == (1.0, 1.0, 1.0)  # too few rows: unchanged


def test_calibration_on_intermittent_demand_makes_p10_cover_a_tenth_of_the_days_with_sales():
    """40 % of the days sell nothing: P10 is fitted on the days with sales, P90 keeps 90 % over all days."""
    from forecaster.model import calibration_factors

    rng = np.random.default_rng(1)
    n = 40_000
    level = rng.gamma(2.0, 4.0, n)  # what a day would sell if it sells
    sold = rng.random(n) > 0.4
    y = np.where(sold, rng.poisson(level) + 1.0, 0.0)
    raw = np.column_stack([0.6 * level, 0.9 * level, 1.3 * level])  # a booster's uncalibrated, too-narrow quantiles
    calibrated = raw * np.asarray(calibration_factors(raw, y, (0.1, 0.5, 0.9)))
    coverage_sold = (y[sold] <= calibrated[sold, 0]).mean()
    assert abs(coverage_sold - 0.1) < 0.02, coverage_sold
    assert abs((y <= calibrated[:, 2]).mean() - 0.9) < 0.01
    # fitted on every day, the P10 factor is the share-0.1 quantile of y / forecast: 0, bounded up to 0.5; the
    # P10 then covers far fewer selling days than one in ten
    every_day = float(np.clip(np.quantile(y / raw[:, 0], 0.1), 0.5, 2.0))
    assert abs((y[sold] <= every_day * raw[sold, 0]).mean() - 0.1) > 0.05


def test_calibration_with_few_zero_days_keeps_p10_coverage_over_all_days():
    """4 % of the days sell nothing (FreshRetailNet's share): P10 covers 10 % of all days, zeros included."""
    from forecaster.model import calibration_factors

    rng = np.random.default_rng(2)
    n = 40_000
    level = rng.gamma(2.0, 4.0, n)
    y = np.where(rng.random(n) > 0.04, rng.poisson(level) + 1.0, 0.0)
    raw = np.column_stack([0.6 * level, 0.9 * level, 1.3 * level])
    calibrated = raw * np.asarray(calibration_factors(raw, y, (0.1, 0.5, 0.9)))
    assert abs((y <= calibrated[:, 0]).mean() - 0.1) < 0.01  # fitted on selling days only it would be ~0.14
    assert abs((y <= calibrated[:, 2]).mean() - 0.9) < 0.01


def test_trained_model_stores_its_calibration(trained_model_dir):
    schema = FeatureSchema.load(trained_model_dir)
    assert len(schema.quantile_calibration) == 3
    assert all(0.5 <= c <= 2.0 for c in schema.quantile_calibration)


def test_point_forecast_blends_the_point_and_calibrated_p50_boosters(trained_model_dir, feature_frame):
    model = ForecastModel.load(trained_model_dir)
    X = feature_frame.to_numpy()
    mean_booster = model.boosters["mean"].predict(X)
    alone = ForecastModel(model.boosters, dataclasses.replace(model.schema, point_blend=0.0, point_scale=1.0))
    np.testing.assert_allclose(alone.predict_mean(X), mean_booster.clip(min=0))  # blend 0: the point booster
    p50 = model.predict_uncalibrated(X)[:, 1] * model.schema.quantile_calibration[1]
    blended = ForecastModel(model.boosters, dataclasses.replace(model.schema, point_blend=0.25, point_scale=1.1))
    expected = (0.75 * mean_booster + 0.25 * p50) * 1.1
    np.testing.assert_allclose(blended.predict_mean(X), expected.clip(min=0), rtol=1e-12)


def test_a_schema_without_point_fields_reads_as_the_point_booster_alone(tmp_path, trained_model_dir, feature_frame):
    old = tmp_path / "old"
    shutil.copytree(trained_model_dir, old)
    schema = json.loads((old / "feature_schema.json").read_text())
    schema.update(point_blend=0.5, point_scale=2.0)
    (tmp_path / "new.json").write_text(json.dumps(schema))
    del schema["point_blend"], schema["point_scale"]  # as written before the point forecast was configurable
    (old / "feature_schema.json").write_text(json.dumps(schema))
    model = ForecastModel.load(old)
    X = feature_frame.to_numpy()
    np.testing.assert_allclose(model.predict_mean(X), model.boosters["mean"].predict(X).clip(min=0))
    assert FeatureSchema.from_dict(json.loads((tmp_path / "new.json").read_text())).point_blend == 0.5


def test_the_early_stopping_fit_draws_a_share_of_the_rows(monkeypatch, history_frame, synthetic_spec, train_config):
    monkeypatch.setattr(training_rows, "MIN_SAMPLE_ROWS", 0)
    frame = synthetic_spec.validate_frame(history_frame)
    chain = ChainSummary.combine([summarize((frame, synthetic_spec))], synthetic_spec, train_config)
    data, last_day, n_series = PartitionData(frame, chain), len(chain.dates) - 1, len(chain.series)

    def drawn(share: float) -> int:
        rate = training_rows.sampling_rate(n_series, last_day, train_config, share=share)
        return data.sample(last_day, rate, train_config.seed, train_config)[0].size

    full, quarter = drawn(1.0), drawn(0.25)
    assert quarter == pytest.approx(0.25 * full, rel=0.1)
    monkeypatch.setattr(training_rows, "MIN_SAMPLE_ROWS", 10**9)  # small data: every row, whatever the share
    assert drawn(0.25) == full


def test_metadata_counts_the_rows_of_each_fit(trained_model_dir):
    schema = FeatureSchema.load(trained_model_dir)  # the defaults: P50 in the blend, bias factor from the window
    assert schema.point_blend == 0.25 and 0.8 <= schema.point_scale <= 1.25
    meta = json.loads((trained_model_dir / "metadata.json").read_text())
    rows = meta["training_rows"]
    assert rows["final_fit"] > rows["early_stopping_fit"] > 0 and rows["validation"] > 0
    assert set(meta["validation_metrics"]) >= {"wape", "bias", "wape_p50", "coverage_p90"}


def test_a_relative_point_booster_forecasts_in_units(
    tmp_path, history_frame, future_frame, synthetic_spec, train_config
):
    config = train_config.replace(point_relative=True, point_blend=0.5)
    fit_artifact(history_frame, synthetic_spec, config, tmp_path / "relative")
    model = ForecastModel.load(tmp_path / "relative")
    assert model.schema.point_relative and model.schema.point_blend == 0.5
    X = build_inference_features(model, history_frame, future_frame)[0].to_numpy()
    relative = model.boosters["mean"].predict(X)
    assert relative.mean() < 0.5 * model.predict_mean(X).mean()  # the booster learned target / level
    out = forecast(model, history_frame, future_frame)
    assert 0.5 < out["mean"].sum() / out["p50"].sum() < 2.0  # the point forecast is back in units


def test_the_fitted_factors_shrink_toward_one_by_their_weights(
    tmp_path, trained_model_dir, history_frame, synthetic_spec, train_config
):
    assert FeatureSchema.load(trained_model_dir).point_scale == 1.0  # the default weight 0: no bias factor
    fit_artifact(history_frame, synthetic_spec, train_config.replace(point_bias_weight=1.0), tmp_path / "full")
    fitted = FeatureSchema.load(tmp_path / "full")  # weight 1: the factor as fitted on the held-out window
    assert fitted.point_scale != 1.0  # else the check below proves nothing
    fit_artifact(history_frame, synthetic_spec, train_config.replace(point_bias_weight=0.5), tmp_path / "half")
    assert FeatureSchema.load(tmp_path / "half").point_scale == pytest.approx(np.sqrt(fitted.point_scale), rel=1e-5)
    fit_artifact(history_frame, synthetic_spec, train_config.replace(point_bias_weight=0.0), tmp_path / "none")
    assert FeatureSchema.load(tmp_path / "none").point_scale == 1.0
    assert training.shrunk((0.81, 1.0, 1.44), 0.5) == (0.9, 1.0, 1.2)  # the same rule for the quantile factors
    assert training.shrunk((0.81, 1.44), 0.0) == (1.0, 1.0)


def test_the_point_and_the_quantile_boosters_sample_their_own_share_of_columns(train_config):
    config = train_config.replace(feature_fraction=0.3, quantile_feature_fraction=0.7)
    assert booster_params(config, "mean")["feature_fraction"] == 0.3
    assert {booster_params(config, q)["feature_fraction"] for q in ("q10", "q50", "q90")} == {0.7}


def test_too_few_rows_for_min_data_in_leaf_are_named_in_a_warning_and_a_small_value_trains(
    tmp_path, history_frame, synthetic_spec, train_config, caplog
):
    few = history_frame[history_frame["store_id"] == history_frame["store_id"].iloc[0]]
    few = few[few["item_id"] == few["item_id"].iloc[0]]
    config = dataclasses.replace(train_config, min_data_in_leaf=500, num_boost_round=3, quantile_num_boost_round=3)
    with caplog.at_level("WARNING", logger="forecaster.training"):
        fit_artifact(few, synthetic_spec, config, tmp_path / "m")
    assert "a split needs 2 x min_data_in_leaf = 1000" in caplog.text and "Lower min_data_in_leaf" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="forecaster.training"):
        fit_artifact(few, synthetic_spec, dataclasses.replace(config, min_data_in_leaf=5), tmp_path / "m2")
    assert "min_data_in_leaf" not in caplog.text  # below LightGBM's Dataset default of 20: was a LightGBMError
    assert (tmp_path / "m2" / "model_mean.txt").exists()


def test_a_model_trained_on_whole_number_double_keys_matches_the_integer_keys_read_now(trained_model_dir):
    """Keys read as integers since ("1", not "1.0"): an older model's "1.0" labels would have made them unseen."""
    schema = json.loads((trained_model_dir / "feature_schema.json").read_text())
    feature = next(f for f in schema["features"] if "categories" in f)
    feature["categories"] = ["1.0", "10.0", "2.0"]
    assert FeatureSchema.from_dict(schema).categories[feature["name"]] == ["1", "10", "2"]  # same order, codes
    feature["categories"] = ["1.0", "S2"]
    assert FeatureSchema.from_dict(schema).categories[feature["name"]] == ["1.0", "S2"]  # text labels stay


@pytest.mark.parametrize(
    "change",
    [{"quantiles": [0.1, 0.9]}, {"quantiles": [0.2, 0.5, 0.8]}, {"quantile_calibration": [1.0, 1.0]}],
    ids=["no median", "other levels", "short calibration"],
)
def test_a_schema_with_other_quantiles_is_an_artifact_error_not_a_500(tmp_path, trained_model_dir, change):
    """The server scores p10/p50/p90 by position: another list would fail every request with a bare ValueError."""
    from forecaster.artifact import SCHEMA_FILE, FeatureSchema

    model = tmp_path / "model"
    shutil.copytree(trained_model_dir, model)
    schema = json.loads((model / SCHEMA_FILE).read_text())
    (model / SCHEMA_FILE).write_text(json.dumps({**schema, **change}))
    with pytest.raises(ModelArtifactError, match=r"this forecaster serves \[0\.1, 0\.5, 0\.9\]\. Retrain or restore"):
        FeatureSchema.load(model)


def test_the_point_forecast_never_exceeds_the_p90_and_follows_a_series_that_stopped_selling(
    trained_model_dir, history_frame, future_frame, synthetic_spec
):
    """A series with 8 weeks of zeros: the quantiles follow its level, the point booster kept the item's (4-10x P90)."""
    from forecaster.forecasting import forecast

    series = history_frame[list(synthetic_spec.keys)].iloc[0]
    mine = (history_frame[list(synthetic_spec.keys)] == series).all(axis=1)
    stopped = history_frame.copy()
    recent = stopped[synthetic_spec.date] > stopped[synthetic_spec.date].max() - pd.Timedelta(days=56)
    stopped.loc[mine & recent, synthetic_spec.target] = 0
    predictions = forecast(trained_model_dir, stopped, future_frame)
    assert (predictions["mean"] <= predictions["p90"]).all()
    theirs = (predictions[list(synthetic_spec.keys)] == series).all(axis=1)
    assert predictions.loc[theirs, "mean"].max() <= predictions.loc[theirs, "p90"].max()
