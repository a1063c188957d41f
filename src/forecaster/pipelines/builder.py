"""Turn a :class:`~forecaster.pipelines.catalog.PipelineSpec` into SageMaker SDK v3 pipeline objects.

One walk over the step table: processing steps run the training/processing image with ``forecaster <command>``
as the container entrypoint (a plain ``Processor``: the code is in the image, so nothing is uploaded), training
is a ``ModelTrainer`` on the custom image (SageMaker runs the image's ``train``), the transform uses the model
of a ``ModelStep(build)``, and registration is ``ModelStep(register)`` with model metrics and drift-check
baselines. Import this module only inside :func:`forecaster.pipelines.sdk.offline_aws` or
:func:`~forecaster.pipelines.sdk.sdk_environment` (the SDK needs its environment at import time).

Some SDK 3.27.0 fields reject pipeline variables (pydantic ``int``/``bool``): ``TransformResources.InstanceCount``,
``StoppingCondition.MaxRuntimeInSeconds`` / ``MaxWaitTimeInSeconds`` and ``EnableManagedSpotTraining``. The steps
are built with a placeholder and the request is patched with the parameter (``_PATCHES``), so the definition
really refers to ``Parameters.<name>``.

Spot training: ``EnableManagedSpotTraining`` is the ``UseSpotInstances`` parameter and the checkpoints
(``CheckpointConfig``: ``<CheckpointS3Uri>/<execution id>/<step>`` synced with ``/opt/ml/checkpoints``) are always
configured. SageMaker rejects ``MaxWaitTimeInSeconds`` unless spot is on, and a definition cannot leave a field
out at run time (aws/sagemaker-python-sdk#4140): it carries ``MaxWaitTimeInSeconds`` (the ``MaxWaitTime``
parameter) only when it is built with ``UseSpotInstances`` defaulting to true.
"""

from __future__ import annotations

from typing import Any

from sagemaker.core.drift_check_baselines import DriftCheckBaselines
from sagemaker.core.model_metrics import MetricsSource, ModelMetrics
from sagemaker.core.processing import Processor
from sagemaker.core.shapes import ProcessingInput, ProcessingOutput, ProcessingS3Input, ProcessingS3Output
from sagemaker.core.transformer import Transformer
from sagemaker.core.workflow.conditions import ConditionLessThanOrEqualTo
from sagemaker.core.workflow.execution_variables import ExecutionVariables
from sagemaker.core.workflow.functions import Join, JsonGet
from sagemaker.core.workflow.parameters import ParameterBoolean, ParameterFloat, ParameterInteger, ParameterString
from sagemaker.core.workflow.properties import PropertyFile
from sagemaker.mlops.workflow.condition_step import ConditionStep
from sagemaker.mlops.workflow.fail_step import FailStep
from sagemaker.mlops.workflow.model_step import ModelStep
from sagemaker.mlops.workflow.pipeline import Pipeline
from sagemaker.mlops.workflow.steps import ProcessingStep, TrainingStep, TransformStep
from sagemaker.serve import ModelBuilder
from sagemaker.train import ModelTrainer
from sagemaker.train.configs import CheckpointConfig, Compute, InputData, OutputDataConfig, StoppingCondition

from forecaster.container.layout import DEFAULT_CHECKPOINT_DIR, PROCESSING_INPUT_ROOT, PROCESSING_OUTPUT_ROOT
from forecaster.pipelines import managed
from forecaster.pipelines.table import PipelineSpec, StepSpec, absent_inputs, optional_params, render_args

_PARAMETER_TYPES = {
    "string": ParameterString,
    "integer": ParameterInteger,
    "float": ParameterFloat,
    "boolean": ParameterBoolean,
}
_JSON = "application/json"
#: (step kind, request path) -> settings key naming the parameter that replaces the placeholder
_PATCHES = {
    "transform": (("TransformResources", "InstanceCount"),),
    "training": (
        ("StoppingCondition", "MaxRuntimeInSeconds"),
        ("EnableManagedSpotTraining",),
        ("StoppingCondition", "MaxWaitTimeInSeconds"),
    ),
}


class _PatchedRequest:
    """Mixin: after the SDK built the request, put pipeline variables where its pydantic shapes want ints."""

    patches: dict[tuple[str, ...], Any]

    @property
    def arguments(self) -> dict:
        request = super().arguments  # type: ignore[misc]
        for path, value in self.patches.items():
            node = request
            for key in path[:-1]:
                node = node.setdefault(key, {})
            node[path[-1]] = value
        return request


class _TransformStep(_PatchedRequest, TransformStep):
    pass


class _TrainingStep(_PatchedRequest, TrainingStep):
    pass


class PipelineBuilder:
    """Builds one pipeline from its spec.

    Args:
        spec: the pipeline's parameters and steps.
        role: IAM role ARN the jobs run as.
        session: a ``PipelineSession``.
        managed_checks: use ``QualityCheckStep``/``ClarifyCheckStep`` (Model Monitor / Clarify images) for the
            check steps that have a managed counterpart, instead of the project's own processing steps.
        name: pipeline name (default: the spec's).
    """

    def __init__(self, spec: PipelineSpec, *, role: str, session: Any, managed_checks: bool = False, name=None):
        self.spec = spec
        self.role = role
        self.session = session
        self.managed_checks = managed_checks
        self.name = name or spec.name
        self.params = {p.name: _PARAMETER_TYPES[p.kind](name=p.name, default_value=p.default) for p in spec.parameters}
        # an optional input whose parameter is empty in the definition is left out, and so is its parameter:
        # an execution can point a given input elsewhere, but cannot add one the definition left out
        defaults = spec.defaults()
        self._unused = {name for name in optional_params(spec) if defaults[name] == ""}
        self.steps: dict[str, Any] = {}
        self.property_files: dict[str, PropertyFile] = {}
        self._depends_on: set[str] = set()

    # -- references -------------------------------------------------------------------------------------
    def resolve(self, ref: str) -> Any:
        """Return the pipeline variable a ``param:``/``step:`` reference stands for (an S3 URI)."""
        kind, _, target = ref.partition(":")
        if kind == "param":
            return self.params[target]
        step_name, _, output = target.partition("/")
        spec = self.spec.step(step_name)
        step = self.steps[step_name]
        if self._is_managed(spec):  # a check step writes where it was told; depend on it explicitly
            self._depends_on.add(step_name)
            return managed.output_location(self, spec)
        if spec.kind == "processing":
            return step.properties.ProcessingOutputConfig.Outputs[output].S3Output.S3Uri
        if spec.kind == "training":
            return step.properties.ModelArtifacts.S3ModelArtifacts
        if spec.kind == "model":  # the model data the model was created from
            return self.resolve(spec.inputs["model"])
        if spec.kind == "transform":
            return step.properties.TransformOutput.S3OutputPath
        raise ValueError(f"{ref}: a {spec.kind} step has no outputs")

    def output_uri(self, step: StepSpec, output: str | None = None) -> Join:
        """``<OutputPrefix>/<execution id>/<step>[/<output>]``: every execution writes under its own prefix."""
        values = [self.params["OutputPrefix"], ExecutionVariables.PIPELINE_EXECUTION_ID, step.name]
        return Join(on="/", values=[*values, output] if output else values)

    def file_uri(self, step_name: str, output: str, file: str) -> Join:
        """S3 URI of ``file`` inside output ``output`` of step ``step_name``."""
        return Join(on="/", values=[self.resolve(f"step:{step_name}/{output}"), file])

    # -- steps ------------------------------------------------------------------------------------------
    def processing(self, step: StepSpec) -> ProcessingStep:
        """A processing job running ``forecaster <command> <args>`` in the processing image."""
        self._depends_on = set()
        processor = Processor(
            role=self.role,
            image_uri=self.params["ProcessingImage"],
            instance_count=step.instance_count(self.params.__getitem__),
            instance_type=self.params[step.instance[0]],
            entrypoint=["forecaster", *step.command],
            base_job_name=f"forecaster-{'-'.join(step.command)}",
            sagemaker_session=self.session,
        )
        # the SDK's local mode refuses ShardedByS3Key (one container per instance, every one gets all the data)
        shard = not getattr(self.session, "local_mode", False)
        absent = absent_inputs(step, self.spec.defaults().__getitem__)
        inputs = [
            ProcessingInput(
                input_name=name,
                s3_input=ProcessingS3Input(
                    s3_uri=self.resolve(ref),
                    local_path=f"{PROCESSING_INPUT_ROOT}/{name}",
                    s3_data_type="S3Prefix",
                    s3_input_mode="File",
                    s3_data_distribution_type="ShardedByS3Key" if shard and name in step.sharded else "FullyReplicated",
                ),
            )
            for name, ref in step.inputs.items()
            if name not in absent
        ]
        outputs = [
            ProcessingOutput(
                output_name=name,
                s3_output=ProcessingS3Output(
                    s3_uri=self.output_uri(step, name),
                    local_path=f"{PROCESSING_OUTPUT_ROOT}/{name}",
                    s3_upload_mode="EndOfJob",
                ),
            )
            for name in step.outputs
        ]
        arguments = render_args(
            step,
            input_dir=lambda name: f"{PROCESSING_INPUT_ROOT}/{name}",
            output_root=PROCESSING_OUTPUT_ROOT,
            param=lambda name: self.params[name].to_string(),
            absent=absent,
            join=lambda parts: Join(on="", values=parts),
        )
        step_args = processor.run(inputs=inputs, outputs=outputs, arguments=arguments)
        property_files = []
        if "property_file" in step.settings:
            name, output, path = step.settings["property_file"]
            self.property_files[name] = PropertyFile(name=name, output_name=output, path=path)
            property_files.append(self.property_files[name])
        return ProcessingStep(
            name=step.name,
            step_args=step_args,
            property_files=property_files or None,
            depends_on=sorted(self._depends_on) or None,
        )

    def training(self, step: StepSpec) -> TrainingStep:
        """A training job on the custom image; hyperparameters are strings (``Std:Join`` of the parameters)."""
        instance_type, instance_count = step.instance
        trainer = ModelTrainer(
            base_job_name="forecaster-train",
            training_image=self.params[step.settings["image"]],
            role=self.role,
            sagemaker_session=self.session,
            compute=Compute(instance_type=self.params[instance_type], instance_count=self.params[instance_count]),
            stopping_condition=StoppingCondition(max_runtime_in_seconds=86400),
            hyperparameters={key: self.params[p].to_string() for key, p in step.settings["hyperparameters"].items()},
            input_data_config=[
                InputData(channel_name=name, data_source=self.resolve(ref)) for name, ref in step.inputs.items()
            ],
            output_data_config=OutputDataConfig(s3_output_path=self.output_uri(step)),
            checkpoint_config=CheckpointConfig(s3_uri=self.checkpoint_uri(step), local_path=DEFAULT_CHECKPOINT_DIR),
        )
        built = _TrainingStep(name=step.name, step_args=trainer.train())
        runtime, spot, max_wait = _PATCHES["training"]
        spot_params = step.settings["spot"]
        built.patches = {runtime: self.params[step.settings["max_runtime"]], spot: self.params[spot_params["enabled"]]}
        if self.spec.defaults()[spot_params["enabled"]] is True:  # see the module docstring
            built.patches[max_wait] = self.params[spot_params["max_wait"]]
        return built

    def checkpoint_uri(self, step: StepSpec) -> Join:
        """``<CheckpointS3Uri>/<execution id>/<step>``: a restarted (spot) job finds its own checkpoints only."""
        prefix = self.params[step.settings["spot"]["checkpoints"]]
        return Join(on="/", values=[prefix, ExecutionVariables.PIPELINE_EXECUTION_ID, step.name])

    def model(self, step: StepSpec) -> ModelStep:
        """A SageMaker model of the inference image and the model data (what the transform runs)."""
        builder = self._model_builder(step)
        return ModelStep(name=step.name, step_args=builder.build())

    def transform(self, step: StepSpec) -> TransformStep:
        """Batch transform of the header-less CSV files under a prefix (whole files per instance), a record a line."""
        instance_type, instance_count = step.instance
        settings = step.settings
        transformer = Transformer(
            model_name=self.steps[step.inputs["model"].split(":")[1].split("/")[0]].properties.ModelName,
            instance_count=1,  # placeholder, patched with the parameter below
            instance_type=self.params[instance_type],
            strategy="MultiRecord",
            assemble_with="Line",
            accept=settings["accept"],
            max_payload=self.params["TransformMaxPayloadInMB"],
            max_concurrent_transforms=self.params["TransformMaxConcurrent"],
            output_path=self.output_uri(step, "predictions"),
            base_transform_job_name="forecaster-transform",
            env={**settings["environment"], **{name: self.params[param] for name, param in settings["env"].items()}},
            sagemaker_session=self.session,
        )
        data = self.resolve(step.inputs["data"])
        step_args = transformer.transform(data=data, content_type=settings["content_type"], split_type="Line")
        built = _TransformStep(name=step.name, step_args=step_args)
        built.patches = {_PATCHES["transform"][0]: self.params[instance_count]}
        return built

    def register(self, step: StepSpec) -> ModelStep:
        """Register the model package: approval status, metrics, drift-check baselines and lineage."""
        settings = step.settings
        files = {
            key: self.file_uri(*where)
            for key, where in settings["files"].items()
            if not self._is_managed(self.spec.step(where[0]))
        }
        files.update(managed.baseline_files(self) if self.managed_checks else {})

        def source(key: str) -> MetricsSource | None:
            return MetricsSource(content_type=_JSON, s3_uri=files[key]) if key in files else None

        # the same files serve as the package's metrics and as its drift-check baselines
        quality = {
            "model_statistics": source("model_quality_statistics"),
            "model_constraints": source("model_quality_constraints"),
            "model_data_statistics": source("data_quality_statistics"),
            "model_data_constraints": source("data_quality_constraints"),
        }
        metrics = ModelMetrics(**quality, explainability=source("explainability_report"))
        baselines = DriftCheckBaselines(
            **quality,
            explainability_constraints=source("explainability_report"),
            explainability_config_file=managed.config_file(self, files),
        )
        lineage = {f"forecaster:{key}": self.params[p] for key, p in settings["lineage"].items()}
        lineage["forecaster:parent_run"] = ExecutionVariables.PIPELINE_EXECUTION_ARN
        step_args = self._model_builder(step).register(
            model_package_group_name=self.params[settings["group"]],
            approval_status=self.params[settings["approval_status"]],
            content_types=["text/csv"],
            response_types=["text/csv", "application/json"],
            inference_instances=["ml.m5.large", "ml.m5.xlarge"],
            transform_instances=[self.params["TransformInstanceType"]],
            model_metrics=metrics,
            drift_check_baselines=baselines,
            customer_metadata_properties=lineage,
            description=f"Registered by pipeline {self.name}",
        )
        return ModelStep(name=step.name, step_args=step_args)

    def fail(self, step: StepSpec) -> FailStep:
        """Stop the execution with a message that carries the metric and the threshold."""
        settings = step.settings
        before, after = settings["message"]
        producer, file_name, json_path = settings["metric"]
        metric = JsonGet(step_name=producer, property_file=self.property_files[file_name], json_path=json_path)
        message = Join(on=" ", values=[before, metric, after, self.params[settings["threshold"]]])
        return FailStep(name=step.name, error_message=message)

    def condition(self, step: StepSpec) -> ConditionStep:
        """``JsonGet(property file, json_path) <= parameter``; its branches are built here."""
        settings = step.settings
        producer, file_name = settings["property_file"]
        metric = JsonGet(
            step_name=producer, property_file=self.property_files[file_name], json_path=settings["json_path"]
        )
        condition = ConditionLessThanOrEqualTo(left=metric, right=self.params[settings["at_most"]])
        return ConditionStep(
            name=step.name,
            conditions=[condition],
            if_steps=[self.steps[name] for name in settings["if_steps"]],
            else_steps=[self.steps[name] for name in settings["else_steps"]],
        )

    def _is_managed(self, spec: StepSpec) -> bool:
        return self.managed_checks and managed.supports(spec)

    def _model_builder(self, step: StepSpec) -> ModelBuilder:
        return ModelBuilder(
            s3_model_data_url=self.resolve(step.inputs["model"]),
            image_uri=self.params[step.settings["image"]],
            env_vars=dict(step.settings.get("environment", {})),
            role_arn=self.role,
            sagemaker_session=self.session,
        )

    # -- the pipeline -----------------------------------------------------------------------------------
    def build(self) -> Pipeline:
        """Build every step in table order and return the ``Pipeline`` (branch steps live in their condition)."""
        branch = set()
        for spec in self.spec.steps:
            if spec.kind == "condition":
                branch.update(spec.settings["if_steps"], spec.settings["else_steps"])
            elif self._is_managed(spec):
                self.steps[spec.name] = managed.check_step(self, spec)
            else:
                self.steps[spec.name] = getattr(self, spec.kind)(spec)
        for spec in self.spec.steps:
            if spec.kind == "condition":
                self.steps[spec.name] = self.condition(spec)
        top_level = [self.steps[spec.name] for spec in self.spec.steps if spec.name not in branch]
        return Pipeline(
            name=self.name,
            parameters=[param for name, param in self.params.items() if name not in self._unused],
            steps=top_level,
            sagemaker_session=self.session,
        )
