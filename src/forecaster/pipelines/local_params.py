"""Parameters of a local pipeline run: validated, local paths made absolute, the approved model resolved.

- Every value is checked against the parameter's kind (``integer``, ``float``, ``string``) and kept as the
  string the SDK would render (``Std:Join`` of a parameter), which is what the steps receive.
- A parameter a step reads as an input (``InputData``, ``HistoryData``, ``ModelDataUrl``, …) must name an
  existing local file or directory; it is made absolute. ``Spec`` may be a preset name or a JSON file; without
  a ``Spec``, a ``spec.json`` next to ``InputData`` is used (what ``forecaster synth`` writes). An optional
  input's parameter (``StockData``, …) may also be empty: the input is not given.
- The inference and model-quality pipelines take the model and its baselines from the latest approved version
  in the registry (:func:`forecaster.pipelines.resolve.approved_model_parameters`) unless all of those
  parameters are given.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from forecaster.errors import InvalidParameterError, NoApprovedModelError, RegistryError
from forecaster.pipelines.catalog import BUILD
from forecaster.pipelines.executions import cast_parameter
from forecaster.pipelines.table import PipelineSpec, input_params, optional_params

#: what the approved-model resolver fills in, per pipeline
RESOLVED = {
    "inference": ("ModelDataUrl", "ModelPackageArn", "DataQualityBaselineUri", "ExplainabilityBaselineUri"),
    "model-quality": ("ModelDataUrl", "ModelQualityBaselineUri"),
}
#: where the build pipeline registers by default
DEFAULT_GROUP = str(BUILD.defaults()["ModelPackageGroupName"])


def _typed(pipeline: PipelineSpec, name: str, value: Any) -> str:
    param = next(p for p in pipeline.parameters if p.name == name)
    typed = cast_parameter(pipeline.name, name, param.kind, str(value).strip() if param.kind != "string" else value)
    rendered = str(typed).lower() if param.kind == "boolean" else str(typed)
    param.check(rendered, pipeline.name)
    return rendered


def _approved(key: str, registry_url: str, group: str) -> dict[str, str]:
    from forecaster.pipelines.resolve import approved_model_parameters
    from forecaster.registry import open_registry

    registry = open_registry(registry_url)
    try:
        return approved_model_parameters(registry, group, key)
    except NoApprovedModelError:
        raise NoApprovedModelError(
            f"No approved model in group {group!r} of registry {registry_url}: the {key} pipeline runs the latest "
            f"approved version. Review the registered versions with `forecaster registry list --registry "
            f"{registry_url} --group {group}`, then approve one with `forecaster registry approve --registry "
            f"{registry_url} --group {group} --version N`."
        ) from None
    except RegistryError as error:
        if group in registry.list_groups():
            raise
        raise RegistryError(
            f"Registry {registry_url} has no model package group {group!r}, which the {key} pipeline takes its "
            f"model from. Run the build pipeline with this registry first (`forecaster pipeline run build --local "
            f"--registry {registry_url} ...`), or pass --registry/--group of the registry that holds the model."
        ) from error


def _check_hyperparameters(pipeline: PipelineSpec, params: Mapping[str, str]) -> None:
    """Validate what a training step will pass as hyperparameters now, not after the steps before it."""
    from forecaster.config import TrainConfig

    for step in pipeline.steps:
        mapping = step.settings.get("hyperparameters", {}) if step.kind == "training" else {}
        values = {name: params[param] for name, param in mapping.items() if name != "spec"}
        if values:
            TrainConfig.from_hyperparameters(values, caller=f"the {step.name} step (pipeline parameters)")


def resolve_parameters(
    key: str,
    pipeline: PipelineSpec,
    given: Mapping[str, Any],
    *,
    registry_url: str,
    group: str | None = None,
) -> tuple[dict[str, str], list[str]]:
    """Return ``({parameter: value}, notes)`` for a local run of ``pipeline`` (see the module docstring).

    Raises:
        InvalidParameterError: for an unknown parameter, a value of the wrong kind, or an input parameter that
            is not an existing local path.
        NoApprovedModelError: when the model must come from the registry and no version is approved.
    """
    defaults = pipeline.defaults()
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise InvalidParameterError(
            f"The {pipeline.name} pipeline has no parameter {', '.join(map(repr, unknown))}. Its parameters: "
            f"{', '.join(defaults)}."
        )
    params = {name: _typed(pipeline, name, value) for name, value in {**defaults, **given}.items()}
    notes: list[str] = []
    registering = [s.settings["group"] for s in pipeline.steps if s.kind == "register" and "group" in s.settings]
    for name in registering if group is not None else ():  # --group names the group a build registers in
        if name in given and str(given[name]) != group:
            raise InvalidParameterError(
                f"--group {group!r} and --param {name}={given[name]} name two model package groups; give one."
            )
        params[name] = group
    inputs = input_params(pipeline)
    resolved = RESOLVED.get(key, ())
    partly = [name for name in resolved if name not in given] if set(resolved) & set(given) else []
    if partly:
        raise InvalidParameterError(
            f"The {pipeline.name} pipeline takes its model and baselines together: give {', '.join(partly)} too, or "
            f"none of {', '.join(resolved)} to use the latest approved version (a model with another version's "
            "baselines would be checked against the wrong ones)."
        )
    if resolved and not set(resolved) <= set(given):
        group = group or DEFAULT_GROUP
        approved = _approved(key, registry_url, group)
        for name, value in approved.items():
            if name not in given:
                params[name] = value
        notes.append(f"model and baselines: latest approved version of {group!r} in {registry_url}")
    optional = optional_params(pipeline)
    for name in sorted(inputs):
        if name in optional and params[name] == "":  # an optional input that is not given
            continue
        path = Path(params[name]).expanduser()
        if "://" in params[name] or not params[name].strip() or not path.exists():  # "": Path("") is the cwd
            raise InvalidParameterError(
                f"The {name!r} parameter must name an existing local file or directory for a local run. Got "
                f"{params[name]!r} instead. Pass --param {name}=PATH."
            )
        params[name] = str(path.resolve())
    _check_hyperparameters(pipeline, params)
    if "Spec" in params:
        spec = Path(params["Spec"]).expanduser()
        if "Spec" not in given and "InputData" in params:
            from forecaster.spec import bundled_spec  # pandas: not at import (the Airflow DAGs import this module)

            bundled = bundled_spec(params["InputData"])
            if bundled is not None:
                spec = bundled
                notes.append(f"Spec: {bundled} (the spec.json next to InputData)")
        if spec.suffix == ".json" or spec.is_file():
            if not spec.is_file():
                raise InvalidParameterError(f"The 'Spec' parameter names {spec}, which does not exist.")
            params["Spec"] = str(spec.resolve())
    return params, notes
