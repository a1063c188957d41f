"""The vocabulary of the pipeline step table: parameters, steps, pipelines, and argument rendering.

See :mod:`forecaster.pipelines.catalog` for the table itself and the placeholder syntax.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any, Literal

from forecaster.params import Constraint, coerce

#: ``"param:NAME"`` or ``"step:STEP/OUTPUT"``.
Ref = str
StepKind = Literal["processing", "training", "model", "transform", "condition", "register", "fail"]


@dataclass(frozen=True)
class ParamSpec:
    """One pipeline parameter: ``kind`` is ``"string"``, ``"integer"``, ``"float"`` or ``"boolean"``.

    ``within``: the values it may take (an Interval or Options of :mod:`forecaster.params`), checked by every
    executor before any step runs; an empty string passes for a string parameter (an input or override not given).
    """

    name: str
    kind: Literal["string", "integer", "float", "boolean"]
    default: str | int | float | bool
    help: str
    within: Constraint | None = None

    def check(self, value: Any, pipeline: str) -> None:
        """Raise InvalidParameterError unless ``value`` is within the parameter's range."""
        if self.within is not None and not (self.kind == "string" and value == ""):
            coerce(self.name, value, [self.within], f"the {pipeline} pipeline")


@dataclass(frozen=True)
class StepSpec:
    """One step. Which fields matter depends on ``kind`` (see the module docstring).

    Attributes:
        name: step name in the definition (also the folder name in the local runner).
        kind: processing, training, model (create a SageMaker model), transform, condition, register or fail.
        command: ``forecaster`` sub-command (processing steps), e.g. ``("check", "data-quality")``.
        args: argument tokens after the command.
        inputs: input name -> reference; processing inputs are mounted at ``{input:NAME}``.
        outputs: output names; processing outputs are written from ``{output:NAME}``.
        instance: ``(instance-type param, instance-count param)`` that run the step; an empty count param means
            one instance (a processing step whose inputs every instance would read in full).
        sharded: processing inputs distributed ``ShardedByS3Key`` over the instances (whole objects, i.e. whole
            partitions, per instance); the others are ``FullyReplicated``.
        settings: kind-specific settings (hyperparameters, image, condition, registry wiring...).
        optional: processing inputs that may be left out: each refers to a ``param:``, and an empty value of
            that parameter means "not given": the input and every argument token naming it are left out
            (:func:`absent_inputs`).
    """

    name: str
    kind: StepKind
    command: tuple[str, ...] = ()
    args: tuple[str, ...] = ()
    inputs: dict[str, Ref] = field(default_factory=dict)
    outputs: tuple[str, ...] = ()
    instance: tuple[str, str] = ("ProcessingInstanceType", "")
    sharded: tuple[str, ...] = ()
    settings: dict = field(default_factory=dict)
    optional: tuple[str, ...] = ()

    def instance_count(self, param: Callable[[str], Any]) -> Any:
        """The instance count: parameter ``instance[1]`` (through ``param``), or 1 when it names none."""
        return param(self.instance[1]) if self.instance[1] else 1


@dataclass(frozen=True)
class PipelineSpec:
    """A pipeline: its default name, what it is for, its parameters and its steps in dependency order."""

    name: str
    description: str
    parameters: tuple[ParamSpec, ...]
    steps: tuple[StepSpec, ...]

    def step(self, name: str) -> StepSpec:
        """Return the step called ``name`` (KeyError if there is none)."""
        for step in self.steps:
            if step.name == name:
                return step
        raise KeyError(name)

    def defaults(self) -> dict[str, str | int | float]:
        """Return ``{parameter name: default value}``."""
        return {param.name: param.default for param in self.parameters}


def input_params(pipeline: PipelineSpec) -> set[str]:
    """The parameters of ``pipeline`` that name a step's input (a location the step reads)."""
    refs = (ref for step in pipeline.steps for ref in step.inputs.values())
    return {ref.partition(":")[2] for ref in refs if ref.startswith("param:")}


def optional_params(pipeline: PipelineSpec) -> set[str]:
    """The parameters of ``pipeline`` that feed an optional input (empty: the input is not given)."""
    return {step.inputs[name].partition(":")[2] for step in pipeline.steps for name in step.optional}


def absent_inputs(step: StepSpec, value: Callable[[str], Any]) -> set[str]:
    """The optional inputs of ``step`` that are not given: their parameter's ``value`` (name -> value) is empty."""
    return {name for name in step.optional if str(value(step.inputs[name].partition(":")[2])) == ""}


_EMBEDDED_PARAM = re.compile(r"(\{param:\w+\})")


def render_args(
    step: StepSpec,
    *,
    input_dir: Callable[[str], str],
    output_root: str,
    param: Callable[[str], Any],
    absent: Collection[str] = (),
    join: Callable[[list[Any]], Any] = lambda parts: "".join(map(str, parts)),
) -> list[Any]:
    """Return ``step.args`` with the placeholders replaced.

    Args:
        step: the step whose argument tokens to render.
        input_dir: input name -> the directory it is mounted at.
        output_root: the directory every output ``NAME`` is a sub-folder of.
        param: parameter name -> its value (a pipeline variable in the SDK, a string locally).
        absent: optional inputs that are not given: tokens naming them are left out.
        join: joins the parts of a token with a parameter inside (``--flag={param:NAME}``): an SDK ``Join``.
    """
    rendered: list[Any] = []
    for token in step.args:
        if any(f"{{input:{name}}}" in token for name in absent):
            continue
        if token.startswith("{param:") and token.endswith("}"):
            rendered.append(param(token[len("{param:") : -1]))
            continue
        if "{param:" in token:  # --flag={param:NAME}: an empty value passes an empty option value
            parts = [p for p in _EMBEDDED_PARAM.split(token) if p]
            rendered.append(join([param(p[len("{param:") : -1]) if p.startswith("{param:") else p for p in parts]))
            continue
        token = token.replace("{outputs}", output_root)
        for name in step.outputs:
            token = token.replace(f"{{output:{name}}}", f"{output_root}/{name}")
        for name in step.inputs:
            if f"{{input:{name}}}" in token:
                token = token.replace(f"{{input:{name}}}", input_dir(name))
        if "{" in token:
            raise ValueError(f"Step {step.name}: unresolved placeholder in argument {token!r}")
        rendered.append(token)
    return rendered
