"""Point bags (``point_bags``): several point boosters on the same rows, another seed each, averaged."""

import json
import shutil

import numpy as np
import pytest

from forecaster.artifact import FeatureSchema, booster_files
from forecaster.checks.explain import explain_matrix
from forecaster.config import TrainConfig
from forecaster.contract import booster_keys, point_bag_booster, point_bag_index
from forecaster.errors import InvalidParameterError, ModelArtifactError
from forecaster.forecasting import build_inference_features, forecast
from forecaster.model import ForecastModel
from forecaster.training import fit_artifact


@pytest.fixture(scope="module")
def bagged_model_dir(tmp_path_factory, history_frame, synthetic_spec, train_config):
    model_dir = tmp_path_factory.mktemp("bags") / "model"
    fit_artifact(history_frame, synthetic_spec, train_config.replace(point_bags=3), model_dir)
    return model_dir


@pytest.fixture(scope="module")
def bagged_rows(bagged_model_dir, history_frame, future_frame):
    return build_inference_features(bagged_model_dir, history_frame, future_frame)[0].to_numpy()


def test_bag_keys_round_trip_and_quantile_keys_are_no_bags():
    assert booster_keys(3) == ("mean", "mean_2", "mean_3", "q10", "q50", "q90")
    assert [point_bag_index(point_bag_booster(i)) for i in range(4)] == [0, 1, 2, 3]
    assert [point_bag_index(key) for key in ("q10", "q50", "mean_x", "means_2")] == [None] * 4


def test_a_bagged_artifact_holds_one_file_per_bag_and_says_how_many(bagged_model_dir):
    files = {p.name for p in bagged_model_dir.iterdir()}
    assert {"model_mean.txt", "model_mean_2.txt", "model_mean_3.txt", "model_q50.txt"} <= files
    assert set(booster_files(3).values()) <= files
    assert FeatureSchema.load(bagged_model_dir).point_bags == 3


def test_each_bag_is_its_own_booster_and_the_point_forecast_is_their_mean(bagged_model_dir, bagged_rows):
    model = ForecastModel.load(bagged_model_dir)
    alone = [booster.predict(bagged_rows) for booster in model.point_boosters]
    assert len(alone) == 3
    assert not np.allclose(alone[0], alone[1]) and not np.allclose(alone[1], alone[2])  # other seeds, other trees
    blend = model.schema.point_blend
    p50 = model.predict_uncalibrated(bagged_rows)[:, 1] * model.schema.quantile_calibration[1]
    expected = ((1 - blend) * np.mean(alone, axis=0) + blend * p50) * model.schema.point_scale
    np.testing.assert_allclose(model.predict_mean(bagged_rows), expected.clip(min=0), rtol=1e-12)


def test_the_first_bag_is_the_unbagged_model(trained_model_dir, bagged_model_dir, bagged_rows):
    one = ForecastModel.load(trained_model_dir).boosters["mean"].predict(bagged_rows)
    np.testing.assert_array_equal(ForecastModel.load(bagged_model_dir).boosters["mean"].predict(bagged_rows), one)


def test_contributions_add_up_to_the_bags_mean_raw_score(bagged_model_dir, bagged_rows):
    model = ForecastModel.load(bagged_model_dir)
    raw = np.mean([booster.predict(bagged_rows, raw_score=True) for booster in model.point_boosters], axis=0)
    np.testing.assert_allclose(model.contributions(bagged_rows).sum(axis=1), raw, rtol=1e-9, atol=1e-9)
    background = bagged_rows[:20]
    interventional = explain_matrix(model, bagged_rows[:30], background, "interventional")
    np.testing.assert_allclose(interventional.sum(axis=1), raw[:30], rtol=1e-6, atol=1e-6)


def test_a_bagged_model_forecasts_end_to_end(bagged_model_dir, history_frame, future_frame):
    out = forecast(bagged_model_dir, history_frame, future_frame)
    assert out[["p10", "p50", "p90", "mean"]].notna().all().all() and (out["mean"] >= 0).all()


def test_a_missing_bag_file_is_a_clear_artifact_error(tmp_path, bagged_model_dir):
    broken = tmp_path / "model"
    shutil.copytree(bagged_model_dir, broken)
    (broken / "model_mean_2.txt").unlink()
    with pytest.raises(ModelArtifactError, match=r"model_mean_2\.txt is missing"):
        ForecastModel.load(broken)


def test_older_schemas_read_as_one_bag(trained_model_dir):
    schema = json.loads((trained_model_dir / "feature_schema.json").read_text())
    schema.pop("point_bags", None)
    assert FeatureSchema.from_dict(schema).point_bags == 1


@pytest.mark.parametrize("bags", [0, 9, "two"])
def test_point_bags_out_of_range_is_refused_with_the_parameter_named(bags):
    with pytest.raises(InvalidParameterError, match="point_bags"):
        TrainConfig.from_hyperparameters({"point_bags": bags})
