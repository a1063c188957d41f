"""Model registry: one interface, a local SQLite backend (default) and SageMaker Model Registry.

Choose the backend with a URL (``--registry`` or ``FORECASTER_REGISTRY``):

- ``sqlite:///PATH`` as in SQLAlchemy: ``sqlite:///registry.db`` (relative), ``sqlite:////abs/registry.db``
  (absolute), ``sqlite:///~/.forecaster/registry.db`` (the default);
- ``sagemaker://`` (region from the AWS configuration) or ``sagemaker://eu-west-1``.
"""

from __future__ import annotations

import os
from pathlib import Path

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
#: The registry file of a work directory (the local runner's, the Airflow local backend's, the demo's).
WORKDIR_REGISTRY_FILE = "registry.db"

__all__ = [
    "BASELINE_KINDS",
    "DEFAULT_REGISTRY_URL",
    "LINEAGE_KEYS",
    "REGISTRY_ENV",
    "WORKDIR_REGISTRY_FILE",
    "ApprovalStatus",
    "ModelRegistry",
    "ModelVersion",
    "open_registry",
    "registry_url",
    "workdir_registry",
]


def workdir_registry(workdir: str | os.PathLike[str]) -> str:
    """URL of the SQLite registry inside ``workdir``."""
    return f"sqlite:///{Path(workdir) / WORKDIR_REGISTRY_FILE}"


def registry_url(url: str | None = None, workdir: str | os.PathLike[str] | None = None) -> str:
    """The registry to use: ``url``, else ``$FORECASTER_REGISTRY``, else the work directory's or the user's.

    Without a work directory the user's own is ``~/.forecaster/registry.db``.
    """
    if url:
        return url
    if os.environ.get(REGISTRY_ENV):
        return os.environ[REGISTRY_ENV]
    return workdir_registry(workdir) if workdir is not None else DEFAULT_REGISTRY_URL


def open_registry(url: str | None = None, *, create: bool = True) -> ModelRegistry:
    """Return the registry for ``url`` (default: ``$FORECASTER_REGISTRY``, else the local SQLite file).

    ``create``: a local registry file that does not exist is made (else: RegistryError, for reading commands).

    Raises:
        InvalidParameterError: for a URL of another scheme.
    """
    url = registry_url(url)
    scheme, sep, rest = url.partition("://")
    if sep and scheme == "sqlite":
        from forecaster.registry.sqlite import SQLiteRegistry

        # SQLAlchemy style: sqlite:///rel.db -> rel.db ; sqlite:////abs.db -> /abs.db ; sqlite:///~/x -> ~/x
        path = rest[1:] if rest.startswith("/") else rest
        if not path:
            raise InvalidParameterError("The registry URL 'sqlite://' needs a path: sqlite:///path/registry.db.")
        return SQLiteRegistry(path, create=create)
    if sep and scheme == "sagemaker":
        from forecaster.registry.sagemaker import SageMakerRegistry

        return SageMakerRegistry(region=rest.strip("/") or None)
    raise InvalidParameterError(
        f"The 'registry' parameter must be a sqlite:///PATH or sagemaker://[REGION] URL. Got {url!r} instead."
    )
