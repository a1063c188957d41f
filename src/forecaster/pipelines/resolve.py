"""Resolve the latest approved model into pipeline parameters, outside the pipeline (docs/sagemaker-notes.md §4).

A pipeline cannot look up "the latest approved model package" at run time by itself, so the batch-inference
and model-quality pipelines take the model data URL and the baseline locations as parameters;
:func:`approved_model_parameters` fills them from the registry (newest *created* approved version).
"""

from __future__ import annotations

import posixpath

from forecaster.errors import RegistryError
from forecaster.registry import ModelRegistry, ModelVersion

#: pipeline parameter -> baseline kind whose folder it is (the baseline steps write both files into one folder)
_BASELINE_FOLDERS = {
    "inference": {
        "DataQualityBaselineUri": "data_quality_constraints",
        "ExplainabilityBaselineUri": "explainability_report",
    },
    "model-quality": {"ModelQualityBaselineUri": "model_quality_constraints"},
}


def _folder(uri: str) -> str:
    return posixpath.dirname(uri.rstrip("/"))


def parameters_for(version: ModelVersion, pipeline: str) -> dict[str, str]:
    """Return the pipeline parameters of ``pipeline`` (``inference`` or ``model-quality``) for ``version``.

    Raises:
        RegistryError: when the version lacks a baseline the pipeline needs.
    """
    folders = _BASELINE_FOLDERS.get(pipeline)
    if folders is None:
        raise RegistryError(
            f"Pipeline {pipeline!r} takes no approved-model parameters; use inference or model-quality."
        )
    # both read the model: inference runs it, model quality takes the dataset spec of its forecasts from it
    parameters: dict[str, str] = {"ModelDataUrl": version.model_data_url}
    if pipeline == "inference":
        parameters["ModelPackageArn"] = version.identifier
        if version.image_uri:  # the model runs in the image it was built and evaluated with
            parameters["InferenceImage"] = version.image_uri
    for parameter, kind in folders.items():
        uri = version.baselines.get(kind)
        if not uri:
            raise RegistryError(
                f"Version {version.version} of {version.group!r} has no {kind} baseline, which the {pipeline} "
                "pipeline needs. Register it with its baselines (the model-build pipeline does)."
            )
        parameters[parameter] = _folder(uri)
    return parameters


def approved_model_parameters(registry: ModelRegistry, group: str, pipeline: str = "inference") -> dict[str, str]:
    """Parameters of ``pipeline`` for the latest approved version of ``group``.

    Raises:
        NoApprovedModelError: when no version is approved.
    """
    return parameters_for(registry.latest_approved(group), pipeline)
