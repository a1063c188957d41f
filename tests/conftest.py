"""Shared fixtures: a small synthetic data set and a model trained on it (built once per test session)."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

# LightGBM's OpenMP threads spin while waiting; on a busy 2-core CI machine that costs minutes. Tests train
# with one thread (determinism does not depend on it) and let waiting threads sleep.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from aws_helpers import use_fake_aws
from forecaster.config import TrainConfig
from forecaster.forecasting import build_inference_features
from forecaster.spec import DatasetSpec
from forecaster.synth import SYNTH_SPEC, generate
from forecaster.training import fit_artifact

# helper modules (no tests of their own) imported by test modules: rewrite their asserts like a test's
pytest.register_assert_rewrite("pipeline_helpers", "serving_helpers", "docker_helpers", "local_mode")

HORIZON = 7
#: Small, fast, deterministic training settings for tests.
TEST_HYPERPARAMETERS = {
    "horizon": HORIZON,
    "num_boost_round": 40,
    "quantile_num_boost_round": 25,
    "num_leaves": 15,
    "min_data_in_leaf": 20,
    "num_threads": 1,
}


def split_history_future(frame: pd.DataFrame, spec: DatasetSpec, days: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """History = all but the last ``days`` days; future = those days' keys, date and known-future columns."""
    cut = frame[spec.date].max() - pd.Timedelta(days=days)
    history = frame[frame[spec.date] <= cut].reset_index(drop=True)
    future = frame.loc[frame[spec.date] > cut, [*spec.keys, spec.date, *spec.known_future]].reset_index(drop=True)
    return history, future


@pytest.fixture(scope="session")
def synthetic_spec() -> DatasetSpec:
    return DatasetSpec.from_dict(SYNTH_SPEC)


@pytest.fixture(scope="session")
def synthetic_frame() -> pd.DataFrame:
    return generate(stores=3, items=4, days=120, seed=0)


@pytest.fixture(scope="session")
def history_frame(synthetic_frame, synthetic_spec) -> pd.DataFrame:
    return split_history_future(synthetic_frame, synthetic_spec, HORIZON)[0]


@pytest.fixture(scope="session")
def future_frame(synthetic_frame, synthetic_spec) -> pd.DataFrame:
    return split_history_future(synthetic_frame, synthetic_spec, HORIZON)[1]


@pytest.fixture(scope="session")
def train_config() -> TrainConfig:
    return TrainConfig.from_hyperparameters(TEST_HYPERPARAMETERS)


@pytest.fixture(scope="session")
def trained_model_dir(tmp_path_factory, history_frame, synthetic_spec, train_config) -> Path:
    model_dir = tmp_path_factory.mktemp("model") / "model"
    fit_artifact(history_frame, synthetic_spec, train_config, model_dir)
    return model_dir


@pytest.fixture(scope="session")
def feature_frame(trained_model_dir, history_frame, future_frame) -> pd.DataFrame:
    return build_inference_features(trained_model_dir, history_frame, future_frame)[0]


@pytest.fixture
def fake_aws(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """Fake AWS for one test (:func:`aws_helpers.use_fake_aws`): moto's credentials, region ``eu-west-1``."""
    use_fake_aws(monkeypatch)
    return monkeypatch


# ---- Docker: the engine and both images, built once per session (tests/docker_helpers.py) ----------------------
@pytest.fixture(scope="session")
def base_image() -> str:
    from docker_helpers import pick_base_image

    return pick_base_image()


@pytest.fixture(scope="session")
def train_image(base_image: str) -> str:
    from docker_helpers import TRAIN_TAG, build

    return build("train", TRAIN_TAG, base_image)


@pytest.fixture(scope="session")
def infer_image(base_image: str) -> str:
    from docker_helpers import INFER_TAG, build

    return build("infer", INFER_TAG, base_image)
