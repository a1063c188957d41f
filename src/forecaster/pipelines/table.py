"""The vocabulary of the pipeline step table: parameters, steps, pipelines, and argument rendering.

See :mod:`forecaster.pipelines.catalog` for the table itself and the placeholder syntax.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

#: ``"param:NAME"`` or ``"step:STEP/OUTPUT"``.
Ref = str
StepKind = Literal["processing", "training", "model", "transform", "condition", "register", "fail"]


@dataclass(frozen=True)
class ParamSpec:
    """One pipeline parameter: ``kind`` is ``"string"``, ``"integer"``, ``"float"`` or ``"boolean"``."""

    name: str
    kind: Literal["string", "integer", "float", "boolean"]
    default: str | int | float | bool
    help: str


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


def render_args(
    step: StepSpec,
    *,
    input_dir: Callable[[str], str],
    output_root: str,
    param: Callable[[str], Any],
) -> list[Any]:
    """Return ``step.args`` with the placeholders replaced.

    Args:
        step: the step whose argument tokens to render.
        input_dir: input name -> the directory it is mounted at.
        output_root: the directory every output ``NAME`` is a sub-folder of.
        param: parameter name -> its value (a pipeline variable in the SDK, a string locally).
    """
    rendered: list[Any] = []
    for token in step.args:
        if token.startswith("{param:") and token.endswith("}"):
            rendered.append(param(token[len("{param:") : -1]))
            continue
        token = token.replace("{outputs}", output_root)
        for name in step.outputs:
            token = token.replace(f"{{output:{name}}}", f"{output_root}/{name}")
        for name in step.inputs:
            token = token.replace(f"{{input:{name}}}", input_dir(name))
        if "{" in token:
            raise ValueError(f"Step {step.name}: unresolved placeholder in argument {token!r}")
        rendered.append(token)
    return rendered
