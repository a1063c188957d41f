"""SageMaker Model Registry backend (boto3).

Mapping: a group is a model package group, a version a model package. Baselines go where SageMaker's own
tooling looks for them (``ModelMetrics`` and ``DriftCheckBaselines``); scalar metrics and lineage go into
``CustomerMetadataProperties`` as ``metric:<name>`` and ``lineage:<key>``.

"Latest approved" is one call: ``ListModelPackages(ModelApprovalStatus="Approved", SortBy="CreationTime",
SortOrder="Descending", MaxResults=1)`` (the API sorts ascending by default, which would return the oldest).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from forecaster.errors import RegistryError
from forecaster.registry.base import ApprovalStatus, ModelRegistry, ModelVersion, Registration, no_approved

_JSON = "application/json"
#: baseline kind -> (ModelMetrics path, DriftCheckBaselines path)
_BASELINE_PATHS: dict[str, tuple[tuple[str, ...] | None, tuple[str, ...] | None]] = {
    "data_quality_statistics": (("ModelDataQuality", "Statistics"), ("ModelDataQuality", "Statistics")),
    "data_quality_constraints": (("ModelDataQuality", "Constraints"), ("ModelDataQuality", "Constraints")),
    "model_quality_statistics": (("ModelQuality", "Statistics"), ("ModelQuality", "Statistics")),
    "model_quality_constraints": (("ModelQuality", "Constraints"), ("ModelQuality", "Constraints")),
    "explainability_report": (("Explainability", "Report"), ("Explainability", "Constraints")),
    "explainability_config": (None, ("Explainability", "ConfigFile")),
}
_METRIC, _LINEAGE = "metric:", "lineage:"


def _nest(paths: Mapping[tuple[str, ...], str]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for (section, name), uri in paths.items():
        tree.setdefault(section, {})[name] = {"ContentType": _JSON, "S3Uri": uri}
    return tree


class SageMakerRegistry(ModelRegistry):
    """Registry on SageMaker Model Registry.

    Args:
        client: a boto3 ``sagemaker`` client (default: one for ``region``).
        region: AWS region of the default client.
    """

    def __init__(self, client: Any = None, region: str | None = None) -> None:
        if client is None:
            import boto3

            client = boto3.client("sagemaker", region_name=region)
        self.client = client
        self._errors = client.exceptions

    def __repr__(self) -> str:
        return f"SageMakerRegistry(region={self.client.meta.region_name!r})"

    # -- groups ---------------------------------------------------------------------------------------------
    def _group_exists(self, group: str) -> bool:
        try:
            self.client.describe_model_package_group(ModelPackageGroupName=group)
        except self.client.exceptions.ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("ValidationException", "ResourceNotFound"):
                return False
            raise
        return True

    def _require_group(self, group: str) -> None:
        if not self._group_exists(group):
            raise RegistryError(f"Model package group {group!r} does not exist in {self.client.meta.region_name}.")

    def create_group(self, group: str, description: str = "") -> None:
        """Create model package group ``group`` if it does not exist yet."""
        if not self._group_exists(group):
            self.client.create_model_package_group(
                ModelPackageGroupName=group, ModelPackageGroupDescription=description or "forecaster models"
            )

    def list_groups(self) -> list[str]:
        """Return the group names, sorted."""
        names: list[str] = []
        for page in self.client.get_paginator("list_model_package_groups").paginate():
            names.extend(item["ModelPackageGroupName"] for item in page["ModelPackageGroupSummaryList"])
        return sorted(names)

    # -- versions -------------------------------------------------------------------------------------------
    def _register(self, entry: Registration) -> ModelVersion:
        """Create a model package in the group (created if missing); SageMaker numbers the versions."""
        group, baselines = entry.group, entry.baselines
        self.create_group(group)
        metric_paths = {_BASELINE_PATHS[k][0]: v for k, v in baselines.items() if _BASELINE_PATHS[k][0]}
        drift_paths = {_BASELINE_PATHS[k][1]: v for k, v in baselines.items() if _BASELINE_PATHS[k][1]}
        properties = {f"{_METRIC}{k}": repr(float(v)) for k, v in entry.metrics.items()}
        properties |= {f"{_LINEAGE}{k}": str(v) for k, v in entry.lineage.items()}
        request: dict[str, Any] = {
            "ModelPackageGroupName": group,
            "ModelPackageDescription": entry.description,
            "ModelApprovalStatus": entry.status.value,
            "InferenceSpecification": {
                "Containers": [{"Image": entry.image_uri or "unspecified", "ModelDataUrl": entry.model_data_url}],
                "SupportedContentTypes": ["text/csv"],
                "SupportedResponseMIMETypes": ["text/csv", "application/json"],
            },
        }
        if metric_paths:
            request["ModelMetrics"] = _nest(metric_paths)
        if drift_paths:
            request["DriftCheckBaselines"] = _nest(drift_paths)
        if properties:
            request["CustomerMetadataProperties"] = properties
        arn = self.client.create_model_package(**request)["ModelPackageArn"]
        return self._describe(arn)

    def _describe(self, arn: str) -> ModelVersion:
        package = self.client.describe_model_package(ModelPackageName=arn)
        container = package.get("InferenceSpecification", {}).get("Containers", [{}])[0]
        baselines: dict[str, str] = {}
        for kind, (metric_path, drift_path) in _BASELINE_PATHS.items():
            for source, path in (("DriftCheckBaselines", drift_path), ("ModelMetrics", metric_path)):
                node = package.get(source, {})
                for key in path or ("<none>",):
                    node = node.get(key, {}) if isinstance(node, dict) else {}
                if path and node.get("S3Uri"):
                    baselines.setdefault(kind, node["S3Uri"])
        properties = package.get("CustomerMetadataProperties", {})
        image = container.get("Image", "")
        return ModelVersion(
            group=package["ModelPackageGroupName"],
            version=int(package["ModelPackageVersion"]),
            status=ApprovalStatus(package["ModelApprovalStatus"]),
            created_at=_utc(package["CreationTime"]),
            model_data_url=container.get("ModelDataUrl", ""),
            image_uri="" if image == "unspecified" else image,
            metrics={k[len(_METRIC) :]: float(v) for k, v in properties.items() if k.startswith(_METRIC)},
            baselines=baselines,
            lineage={k[len(_LINEAGE) :]: v for k, v in properties.items() if k.startswith(_LINEAGE)},
            identifier=package["ModelPackageArn"],
            description=package.get("ModelPackageDescription", ""),
            approval_description=package.get("ApprovalDescription", ""),
        )

    def _summaries(self, group: str, status: ApprovalStatus | None, limit: int | None = None) -> list[dict]:
        request: dict[str, Any] = {
            "ModelPackageGroupName": group,
            "SortBy": "CreationTime",
            "SortOrder": "Descending",  # the API default is Ascending: oldest first
        }
        if status is not None:
            request["ModelApprovalStatus"] = status.value
        if limit is not None:
            request["MaxResults"] = limit
            return self.client.list_model_packages(**request)["ModelPackageSummaryList"]
        summaries: list[dict] = []
        for page in self.client.get_paginator("list_model_packages").paginate(**request):
            summaries.extend(page["ModelPackageSummaryList"])
        return summaries

    def list_versions(self, group: str, status: ApprovalStatus | str | None = None) -> list[ModelVersion]:
        """Return the versions of ``group``, newest created first."""
        self._require_group(group)
        parsed = None if status is None else ApprovalStatus.parse(status)
        return [self._describe(item["ModelPackageArn"]) for item in self._summaries(group, parsed)]

    def _arn(self, group: str, version: int) -> str:
        for item in self._summaries(group, None):
            if int(item.get("ModelPackageVersion", -1)) == int(version):
                return item["ModelPackageArn"]
        raise RegistryError(f"Model package group {group!r} has no version {version}.")

    def get(self, group: str, version: int) -> ModelVersion:
        """Return one version."""
        self._require_group(group)
        return self._describe(self._arn(group, version))

    def set_status(self, group: str, version: int, status: ApprovalStatus | str, note: str = "") -> ModelVersion:
        """``UpdateModelPackage`` with the new ``ModelApprovalStatus`` (and the note as ``ApprovalDescription``)."""
        status = ApprovalStatus.parse(status)
        self._require_group(group)
        arn = self._arn(group, version)
        request = {"ModelPackageArn": arn, "ModelApprovalStatus": status.value}
        if note:
            request["ApprovalDescription"] = note
        self.client.update_model_package(**request)
        return self._describe(arn)

    def latest_approved(self, group: str) -> ModelVersion:
        """Newest created approved package: sorted by creation time, descending, first result."""
        self._require_group(group)
        summaries = self._summaries(group, ApprovalStatus.APPROVED, limit=1)
        if not summaries:
            raise no_approved(group)
        return self._describe(summaries[0]["ModelPackageArn"])


def _utc(value: dt.datetime | str) -> dt.datetime:
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
