"""``forecaster``'s top level: the public Python API (loaded on first access) and the version from metadata."""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import forecaster
from forecaster.config import TrainConfig
from forecaster.forecasting import forecast
from forecaster.model import ForecastModel
from forecaster.spec import DatasetSpec
from forecaster.training import fit_artifact

PUBLIC = {
    "DatasetSpec": DatasetSpec,
    "TrainConfig": TrainConfig,
    "fit_artifact": fit_artifact,
    "ForecastModel": ForecastModel,
    "forecast": forecast,
}
PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
HEAVY = ("pandas", "numpy", "lightgbm", "pyarrow", "sklearn", "scipy")
#: a fresh interpreter: the heavy top-level packages loaded after ``import forecaster``, then after one access
PROBE = f"""
import json, sys
heavy = lambda: sorted(m for m in {HEAVY!r} if m in sys.modules)
import forecaster
before = heavy()
submodules = sorted(m for m in sys.modules if m.startswith("forecaster."))
forecaster.fit_artifact
print(json.dumps({{"before": before, "submodules": submodules, "after": heavy()}}))
"""


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_each_public_name_is_the_defining_modules_object(name):
    assert getattr(forecaster, name) is PUBLIC[name]
    assert name in dir(forecaster)


def test_all_lists_exactly_the_public_api():
    assert sorted(forecaster.__all__) == sorted(PUBLIC)
    namespace: dict = {}
    exec("from forecaster import *", namespace)
    assert {name for name in namespace if not name.startswith("__")} == set(PUBLIC)


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'fit'"):
        forecaster.fit  # noqa: B018
    assert not hasattr(forecaster, "training_rows_")


def test_import_forecaster_loads_no_heavy_package():
    run = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120, check=True)
    loaded = json.loads(run.stdout)
    assert loaded["before"] == [], f"import forecaster loads {loaded['before']}"
    assert loaded["submodules"] == [], f"import forecaster imports {loaded['submodules']}"
    assert {"pandas", "numpy", "lightgbm"} <= set(loaded["after"])  # the probe sees a loaded package


def test_the_version_is_the_distributions():
    declared = tomllib.loads(PYPROJECT.read_text())["project"]["version"]
    assert forecaster.__version__ == importlib.metadata.version("forecaster") == declared


def test_a_source_tree_that_is_not_installed_reads_its_pyproject(monkeypatch, tmp_path):
    def not_installed(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", not_installed)
    package = tmp_path / "src" / "forecaster"
    package.mkdir(parents=True)
    monkeypatch.setattr(forecaster, "__file__", str(package / "__init__.py"))
    assert forecaster._version() == forecaster.UNKNOWN_VERSION  # no pyproject.toml
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "forecaster"\nversion = "9.8.7"\n')
    assert forecaster._version() == "9.8.7"
