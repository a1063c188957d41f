"""The model registry interface: versioned model packages with approval status, metrics, baselines, lineage.

Two backends implement :class:`ModelRegistry`: :class:`~forecaster.registry.sqlite.SQLiteRegistry` (a local
file, the default) and :class:`~forecaster.registry.sagemaker.SageMakerRegistry` (SageMaker Model Registry).

"Latest approved" is the newest *created* version among the approved ones (not the most recently approved):
rolling back means rejecting the newer version.
"""

from __future__ import annotations

import abc
import datetime as dt
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from forecaster.errors import InvalidParameterError, NoApprovedModelError


class ApprovalStatus(StrEnum):
    """Approval status of a model version (the SageMaker ``ModelApprovalStatus`` values)."""

    PENDING = "PendingManualApproval"
    APPROVED = "Approved"
    REJECTED = "Rejected"

    @classmethod
    def parse(cls, value: str | ApprovalStatus) -> ApprovalStatus:
        """Return the status for ``value`` (case-insensitive; ``pending`` is accepted).

        Raises:
            InvalidParameterError: for any other value.
        """
        if isinstance(value, ApprovalStatus):
            return value
        aliases = {s.value.lower(): s for s in cls} | {"pending": cls.PENDING}
        try:
            return aliases[str(value).lower()]
        except KeyError:
            raise InvalidParameterError(
                f"The 'status' parameter must be one of {[s.value for s in cls]}. Got {value!r} instead."
            ) from None


#: baseline/metric files a version can carry, and where SageMaker keeps them
BASELINE_KINDS = (
    "data_quality_statistics",
    "data_quality_constraints",
    "model_quality_statistics",
    "model_quality_constraints",
    "explainability_report",
    "explainability_config",
)
#: lineage fields a version can carry
LINEAGE_KEYS = ("training_data_hash", "training_data", "code_version", "image", "image_digest", "parent_run")


@dataclass(frozen=True)
class ModelVersion:
    """One registered version of a model.

    Attributes:
        group: model package group name.
        version: 1, 2, 3 ... in creation order within the group.
        status: approval status.
        created_at: creation time (UTC).
        model_data_url: where the model artifact (``model.tar.gz`` or a model directory) is.
        image_uri: inference image the model runs in.
        metrics: scalar metrics (e.g. ``wape``, ``mae``).
        baselines: baseline kind (:data:`BASELINE_KINDS`) -> URI or path.
        lineage: lineage key (:data:`LINEAGE_KEYS`) -> value.
        identifier: backend id (the model package ARN on SageMaker, ``<group>/<version>`` locally).
        description: free text; the last approval note is kept in ``approval_description``.
    """

    group: str
    version: int
    status: ApprovalStatus
    created_at: dt.datetime
    model_data_url: str
    image_uri: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    baselines: dict[str, str] = field(default_factory=dict)
    lineage: dict[str, str] = field(default_factory=dict)
    identifier: str = ""
    description: str = ""
    approval_description: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (status as its string, time in ISO 8601)."""
        data = asdict(self)
        data["status"] = self.status.value
        data["created_at"] = self.created_at.isoformat()
        return data


@dataclass(frozen=True)
class Registration:
    """A validated registration request, what a backend's ``_register`` stores."""

    group: str
    model_data_url: str
    image_uri: str
    status: ApprovalStatus
    metrics: dict[str, float]
    baselines: dict[str, str]
    lineage: dict[str, str]
    description: str


def check_fields(baselines: Mapping[str, str], lineage: Mapping[str, str], metrics: Mapping[str, float]) -> None:
    """Validate the keys and values of a registration.

    Raises:
        InvalidParameterError: naming the unknown key or non-numeric metric.
    """
    for key in baselines:
        if key not in BASELINE_KINDS:
            raise InvalidParameterError(
                f"The 'baselines' parameter keys must be among {list(BASELINE_KINDS)}. Got {key!r} instead."
            )
    for key in lineage:
        if key not in LINEAGE_KEYS:
            raise InvalidParameterError(
                f"The 'lineage' parameter keys must be among {list(LINEAGE_KEYS)}. Got {key!r} instead."
            )
    for key, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidParameterError(f"Metric {key!r} must be a number. Got {value!r} instead.")


class ModelRegistry(abc.ABC):
    """What every registry backend offers."""

    @abc.abstractmethod
    def create_group(self, group: str, description: str = "") -> None:
        """Create model package group ``group`` if it does not exist yet."""

    @abc.abstractmethod
    def list_groups(self) -> list[str]:
        """Return the group names, sorted."""

    def register(
        self,
        group: str,
        model_data_url: str,
        *,
        image_uri: str = "",
        status: ApprovalStatus | str = ApprovalStatus.PENDING,
        metrics: Mapping[str, float] | None = None,
        baselines: Mapping[str, str] | None = None,
        lineage: Mapping[str, str] | None = None,
        description: str = "",
    ) -> ModelVersion:
        """Register a new version in ``group`` (created if missing) and return it.

        Raises:
            InvalidParameterError: for an unknown status, baseline kind or lineage key, or a non-numeric metric.
        """
        entry = Registration(
            group=group,
            model_data_url=model_data_url,
            image_uri=image_uri,
            status=ApprovalStatus.parse(status),
            metrics=dict(metrics or {}),
            baselines=dict(baselines or {}),
            lineage=dict(lineage or {}),
            description=description,
        )
        check_fields(entry.baselines, entry.lineage, entry.metrics)
        return self._register(entry)

    @abc.abstractmethod
    def _register(self, entry: Registration) -> ModelVersion:
        """Store a validated registration as the group's next version."""

    @abc.abstractmethod
    def list_versions(self, group: str, status: ApprovalStatus | str | None = None) -> list[ModelVersion]:
        """Return the versions of ``group`` (optionally only those in ``status``), newest created first.

        Raises:
            RegistryError: when the group does not exist.
        """

    @abc.abstractmethod
    def get(self, group: str, version: int) -> ModelVersion:
        """Return one version.

        Raises:
            RegistryError: when the group or the version does not exist.
        """

    @abc.abstractmethod
    def set_status(self, group: str, version: int, status: ApprovalStatus | str, note: str = "") -> ModelVersion:
        """Change the approval status of a version and return the updated version.

        Raises:
            RegistryError: when the group or the version does not exist.
        """

    def approve(self, group: str, version: int, note: str = "") -> ModelVersion:
        """Approve a version (it becomes a candidate for "latest approved")."""
        return self.set_status(group, version, ApprovalStatus.APPROVED, note)

    def reject(self, group: str, version: int, note: str = "") -> ModelVersion:
        """Reject a version (e.g. to roll back to the previous approved one)."""
        return self.set_status(group, version, ApprovalStatus.REJECTED, note)

    @abc.abstractmethod
    def latest_approved(self, group: str) -> ModelVersion:
        """Return the newest created approved version.

        Raises:
            NoApprovedModelError: when no version of ``group`` is approved.
            RegistryError: when the group does not exist.
        """


def no_approved(group: str) -> NoApprovedModelError:
    """The error for a group without an approved version (same wording on every backend)."""
    return NoApprovedModelError(
        f"Model package group {group!r} has no approved version. Approve one with "
        f"`forecaster registry approve --group {group} --version N` (see `forecaster registry list --group {group}`)."
    )
