"""Fixtures and helpers shared by the serving and transform tests (this module holds no tests itself)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from forecaster.serving.transform import ServerProcess

#: ``sitecustomize`` for a server process whose model load takes longer (a slow disk): wraps the real load.
SLOW_LOAD_SITECUSTOMIZE = """
import os, time
from forecaster import model as _model

_load = _model.ForecastModel.load.__func__


def _slow_load(cls, model_dir):
    time.sleep(float(os.environ["FORECASTER_TEST_LOAD_DELAY"]))
    return _load(cls, model_dir)


_model.ForecastModel.load = classmethod(_slow_load)
_predict = _model.ForecastModel.predict


def _slow_predict(self, matrix):
    time.sleep(float(os.environ.get("FORECASTER_TEST_PREDICT_DELAY", "0")))
    return _predict(self, matrix)


_model.ForecastModel.predict = _slow_predict
"""


@pytest.fixture(scope="session")
def serving_model_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's trained model (conftest's ``trained_model_dir``; trained here once if conftest has none)."""
    try:
        return Path(request.getfixturevalue("trained_model_dir"))
    except pytest.FixtureLookupError:
        pass
    model_dir = tmp_path_factory.getbasetemp() / "serving-model"
    if not (model_dir / "feature_schema.json").exists():
        from forecaster.config import TrainConfig
        from forecaster.spec import DatasetSpec
        from forecaster.synth import SYNTH_SPEC, generate
        from forecaster.training import fit_artifact

        frame = generate(stores=3, items=4, days=120, seed=0)
        config = TrainConfig.from_hyperparameters({"horizon": 7, "num_boost_round": 30})
        fit_artifact(frame, DatasetSpec.from_dict(SYNTH_SPEC), config, model_dir)
    return model_dir


@pytest.fixture(scope="session")
def serving_model(serving_model_dir: Path):
    from forecaster.model import ForecastModel

    return ForecastModel.load(serving_model_dir)


@pytest.fixture(scope="session")
def feature_rows(request: pytest.FixtureRequest, serving_model) -> np.ndarray:
    """Inference feature rows in schema order (conftest's ``feature_frame`` when it exists)."""
    try:
        frame = request.getfixturevalue("feature_frame")
        return frame.to_numpy(dtype=np.float64)
    except pytest.FixtureLookupError:
        pass
    schema = serving_model.schema
    rng = np.random.default_rng(0)
    rows = rng.gamma(2.0, 10.0, size=(84, len(schema.feature_names))).round(3)
    for name in schema.categorical_features:
        rows[:, schema.feature_names.index(name)] = rng.integers(0, len(schema.categories[name]), len(rows))
    rows[::5, schema.feature_names.index("lag_3")] = np.nan
    return rows


def to_csv(rows: np.ndarray) -> bytes:
    """Header-less CSV, full precision, empty field for NaN."""
    return "".join(",".join("" if v != v else repr(v) for v in row) + "\n" for row in rows.tolist()).encode()


def repeat_to_size(rows: np.ndarray, size_bytes: int) -> tuple[bytes, np.ndarray]:
    """A CSV body of ``rows`` repeated, just under ``size_bytes``; returns (body, index into ``rows`` per line)."""
    lines = to_csv(rows).splitlines(keepends=True)
    block = b"".join(lines)
    copies = size_bytes // len(block)
    index = np.tile(np.arange(len(rows)), copies)
    body = block * copies
    extra = []
    for i, line in enumerate(lines):
        if len(body) + sum(len(lines[j]) for j in extra) + len(line) > size_bytes:
            break
        extra.append(i)
    return body + b"".join(lines[i] for i in extra), np.concatenate([index, extra]).astype(int)


def all_columns(model, rows) -> np.ndarray:
    """What ``quantiles=all`` answers: every quantile, then the point forecast ``mean``."""
    return np.column_stack([model.predict(rows), model.predict_mean(rows)])


def csv_lines(answer: bytes) -> list[list[float]]:
    return [[float(v) for v in line.split(",")] for line in answer.decode().splitlines()]


@pytest.fixture
def start_server(serving_model_dir: Path) -> Iterator:
    """Factory: start a real ``forecaster serve`` (gunicorn) on 127.0.0.1; stopped (SIGTERM) after the test."""
    servers: list[ServerProcess] = []

    def start(
        model_dir: Path | None = None, *, env: dict[str, str] | None = None, workers: int = 2, wait: bool = True
    ) -> ServerProcess:
        server = ServerProcess(model_dir or serving_model_dir, workers=workers, env=env or {}, startup_timeout_s=90)
        servers.append(server)
        server.start()
        if wait:
            server.wait_ready()
        return server

    yield start
    for server in servers:
        server.stop()
        server._log.close()
        Path(server._log.name).unlink(missing_ok=True)


def slow_load_env(directory: Path, seconds: float, predict_seconds: float = 0.0) -> dict[str, str]:
    """Environment that makes a server's model load take ``seconds`` longer, and each prediction
    ``predict_seconds`` (a sitecustomize in ``directory``)."""
    (directory / "sitecustomize.py").write_text(SLOW_LOAD_SITECUSTOMIZE)
    path = os.pathsep.join(filter(None, [str(directory), os.environ.get("PYTHONPATH", "")]))
    return {
        "PYTHONPATH": path,
        "FORECASTER_TEST_LOAD_DELAY": str(seconds),
        "FORECASTER_TEST_PREDICT_DELAY": str(predict_seconds),
    }
