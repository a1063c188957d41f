"""Model registry: one interface, a local SQLite backend (default) and SageMaker Model Registry.

Choose the backend with a URL (``--registry`` or ``FORECASTER_REGISTRY``):

- ``sqlite:///PATH`` as in SQLAlchemy: ``sqlite:///registry.db`` (relative), ``sqlite:////abs/registry.db``
  (absolute), ``sqlite:///~/.forecaster/registry.db`` (the default);
- ``sagemaker://`` (region from the AWS configuration) or ``sagemaker://eu-west-1``.
"""

from __future__ import annotations

import os

from forecaster.errors import InvalidParameterError
from forecaster.registry.base import (
    BASELINE_KINDS,
    LINEAGE_KEYS,
    ApprovalStatus,
    ModelRegistry,
    ModelVersion,
)

DEFAULT_REGISTRY_URL = "sqlite:///~/.forecaster/registry.db"
REGISTRY_ENV = "FORECASTER_REGISTRY"

__all__ = [
    "BASELINE_KINDS",
    "DEFAULT_REGISTRY_URL",
    "LINEAGE_KEYS",
    "ApprovalStatus",
    "ModelRegistry",
    "ModelVersion",
    "open_registry",
]


def open_registry(url: str | None = None) -> ModelRegistry:
    """Return the registry for ``url`` (default: ``$FORECASTER_REGISTRY``, else the local SQLite file).

    Raises:
        InvalidParameterError: for a URL of another scheme.
    """
    url = url or os.environ.get(REGISTRY_ENV) or DEFAULT_REGISTRY_URL
    scheme, sep, rest = url.partition("://")
    if sep and scheme == "sqlite":
        from forecaster.registry.sqlite import SQLiteRegistry

        # SQLAlchemy style: sqlite:///rel.db -> rel.db ; sqlite:////abs.db -> /abs.db ; sqlite:///~/x -> ~/x
        path = rest[1:] if rest.startswith("/") else rest
        if not path:
            raise InvalidParameterError("The registry URL 'sqlite://' needs a path: sqlite:///path/registry.db.")
        return SQLiteRegistry(path)
    if sep and scheme == "sagemaker":
        from forecaster.registry.sagemaker import SageMakerRegistry

        return SageMakerRegistry(region=rest.strip("/") or None)
    raise InvalidParameterError(
        f"The 'registry' parameter must be a sqlite:///PATH or sagemaker://[REGION] URL. Got {url!r} instead."
    )
