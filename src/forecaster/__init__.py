"""forecaster: campaign-aware fresh-produce demand forecasts on the SageMaker contract.

The public Python API is importable from here: :class:`DatasetSpec` (what the data's columns mean),
:class:`TrainConfig` (hyperparameters), :func:`fit_artifact` (train and write a model artifact),
:class:`ForecastModel` (a trained model) and :func:`forecast` (history + future frame → forecasts).

``import forecaster`` happens at every CLI start, in every server worker and in Airflow's DAG parsing, so it
imports nothing heavy: each name (and ``__version__``, read from the installed distribution's metadata) is
loaded on first access (PEP 562) and then cached in this module.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time each is imported on first access
    from forecaster.config import TrainConfig
    from forecaster.forecasting import forecast
    from forecaster.model import ForecastModel
    from forecaster.spec import DatasetSpec
    from forecaster.training import fit_artifact

__all__ = ["DatasetSpec", "ForecastModel", "TrainConfig", "fit_artifact", "forecast"]

#: public name -> the module that defines it
_EXPORTS = {
    "DatasetSpec": "forecaster.spec",
    "TrainConfig": "forecaster.config",
    "fit_artifact": "forecaster.training",
    "ForecastModel": "forecaster.model",
    "forecast": "forecaster.forecasting",
}
DISTRIBUTION = "forecaster"
#: the version of a source tree that is on ``sys.path`` without being installed and has no ``pyproject.toml``
UNKNOWN_VERSION = "0+unknown"


def __getattr__(name: str) -> Any:
    """Load a public name (or ``__version__``) on first access and cache it as a module global."""
    if name == "__version__":
        value: Any = _version()
    elif name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The module's globals plus the names loaded on first access."""
    return sorted({*globals(), *__all__, "__version__"})


def _version() -> str:
    """The installed distribution's version (pyproject.toml's ``version``, the one declaration).

    A source tree on ``sys.path`` that was never installed has no metadata: its ``pyproject.toml`` says it.
    """
    from importlib import metadata

    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return _source_tree_version()


def _source_tree_version() -> str:
    """``project.version`` of the ``pyproject.toml`` above ``src/forecaster``, or :data:`UNKNOWN_VERSION`."""
    import tomllib
    from pathlib import Path

    try:
        pyproject = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
        return str(pyproject["project"]["version"])
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return UNKNOWN_VERSION
