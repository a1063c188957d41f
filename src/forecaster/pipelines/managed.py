"""Managed check steps: ``QualityCheckStep`` (Model Monitor analyzer) and ``ClarifyCheckStep`` (Clarify).

For AWS accounts that still have Model Monitor and Clarify (both closed to new customers, docs/sagemaker-notes.md
§1), the ``managed_checks`` switch of :class:`~forecaster.pipelines.builder.PipelineBuilder` replaces these steps:

| step (settings ``check``) | managed step |
|---|---|
| build ``DataQualityBaseline`` | ``QualityCheckStep`` data quality, ``skip_check=True, register_new_baseline=True`` |
| build ``ModelQualityBaseline`` | ``QualityCheckStep`` model quality (Regression), baseline run |
| build ``ExplainabilityBaseline`` | ``ClarifyCheckStep`` model explainability (SHAP), baseline run |
| inference ``DataQualityCheck`` | ``QualityCheckStep`` data quality against the supplied baseline |
| inference ``AttributionDriftCheck`` | ``ClarifyCheckStep`` model explainability against the supplied baseline |

The model-quality check of the ground-truth pipeline keeps the project's own step: the managed one needs a
joined predictions+truth dataset, which is what ``forecaster check model-quality`` computes itself.
All steps analyse the feature rows the model sees (the ``features*.csv`` files of Preprocess, header-less, schema
order). ``ClarifyCheckStep`` uploads its analysis config while the definition is built
(docs/sagemaker-notes.md §3): run under moto.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from forecaster.checks.contract import ANALYSIS_FILE, CONSTRAINTS_FILE, STATISTICS_FILE
from forecaster.checks.jobs import EVALUATION_DATASET
from forecaster.pipelines.table import StepSpec


class BuildContext(Protocol):
    """What a managed check step needs of the pipeline being built (:class:`~.builder.PipelineBuilder` has it)."""

    name: str
    role: str
    session: Any
    params: Mapping[str, Any]
    steps: Mapping[str, Any]

    def resolve(self, ref: str) -> Any:
        """The pipeline variable a ``param:``/``step:`` reference stands for."""

    def output_uri(self, step: StepSpec, output: str | None = None) -> Any:
        """Where ``step`` writes (its output ``output``)."""

    def file_uri(self, step_name: str, output: str, file: str) -> Any:
        """S3 URI of ``file`` inside output ``output`` of step ``step_name``."""


_JSON = "application/json"


def supports(spec: StepSpec) -> bool:
    """Whether ``spec`` has a managed counterpart."""
    check = spec.settings.get("check")
    return check in ("data_quality", "explainability") or (check == "model_quality" and spec.command[0] == "baseline")


def _is_baseline(spec: StepSpec) -> bool:
    return spec.command[0] in ("baseline", "explain")


def _features(builder: BuildContext) -> Any:
    return builder.resolve("step:Preprocess/features")


def _job_config(builder: BuildContext, spec: StepSpec) -> Any:
    from sagemaker.mlops.workflow.check_job_config import CheckJobConfig

    return CheckJobConfig(
        role=builder.role,
        instance_count=spec.instance_count(builder.params.__getitem__),
        instance_type=builder.params[spec.instance[0]],
        sagemaker_session=builder.session,
        base_job_name=f"forecaster-{spec.name.lower()}",
    )


def _lifecycle(builder: BuildContext, spec: StepSpec) -> dict[str, Any]:
    """Baseline run: skip the check, register the new baseline. Check run: compare with the supplied one."""
    group = builder.params.get("ModelPackageGroupName")
    if _is_baseline(spec):
        return {"skip_check": True, "register_new_baseline": True, "model_package_group_name": group}
    return {"skip_check": False, "register_new_baseline": False, "fail_on_violation": False}


def output_location(builder: BuildContext, spec: StepSpec) -> Any:
    """Where the managed step standing in for ``spec`` writes its results (violations, statistics...)."""
    if spec.settings["check"] == "explainability":
        # Clarify needs a plain string here (it uploads its analysis config there while the step is built)
        return f"s3://{builder.session.default_bucket()}/{builder.name}/{spec.name}"
    return builder.output_uri(spec, spec.outputs[0])


def check_step(builder: BuildContext, spec: StepSpec) -> Any:
    """Return the managed step standing in for ``spec``."""
    check = spec.settings["check"]
    if check == "explainability":
        return _clarify_step(builder, spec)
    from sagemaker.core.model_monitor import DatasetFormat
    from sagemaker.core.workflow.functions import Join
    from sagemaker.mlops.workflow.quality_check_step import (
        DataQualityCheckConfig,
        ModelQualityCheckConfig,
        QualityCheckStep,
    )

    output = output_location(builder, spec)
    supplied: dict[str, Any] = {}
    if check == "data_quality":
        config = DataQualityCheckConfig(
            baseline_dataset=_features(builder), dataset_format=DatasetFormat.csv(header=False), output_s3_uri=output
        )
        if not _is_baseline(spec):
            baseline = builder.params["DataQualityBaselineUri"]
            supplied = {
                "supplied_baseline_statistics": Join(on="/", values=[baseline, STATISTICS_FILE]),
                "supplied_baseline_constraints": Join(on="/", values=[baseline, CONSTRAINTS_FILE]),
            }
    else:
        file, prediction, truth = EVALUATION_DATASET
        config = ModelQualityCheckConfig(
            baseline_dataset=builder.file_uri("Evaluate", "evaluation", file),
            dataset_format=DatasetFormat.csv(header=True),
            output_s3_uri=output,
            problem_type="Regression",
            inference_attribute=prediction,
            ground_truth_attribute=truth,
        )
    return QualityCheckStep(
        name=spec.name,
        quality_check_config=config,
        check_job_config=_job_config(builder, spec),
        **_lifecycle(builder, spec),
        **supplied,
    )


def _clarify_step(builder: BuildContext, spec: StepSpec) -> Any:
    from sagemaker.core.clarify import DataConfig, ModelConfig, SHAPConfig
    from sagemaker.core.workflow.functions import Join
    from sagemaker.mlops.workflow.clarify_check_step import ClarifyCheckStep, ModelExplainabilityCheckConfig

    config = ModelExplainabilityCheckConfig(
        data_config=DataConfig(
            s3_data_input_path=_features(builder),
            # must be a plain string (the SDK uploads the analysis config there while building)
            s3_output_path=output_location(builder, spec),
            dataset_type="text/csv",
        ),
        model_config=ModelConfig(
            model_name=builder.steps["CreateModel"].properties.ModelName,
            instance_count=1,
            instance_type="ml.m5.xlarge",
            accept_type="text/csv",
            content_type="text/csv",
        ),
        explainability_config=SHAPConfig(num_samples=100, agg_method="mean_abs", save_local_shap_values=False),
    )
    supplied = {}
    if not _is_baseline(spec):
        baseline = builder.params["ExplainabilityBaselineUri"]
        supplied = {"supplied_baseline_constraints": Join(on="/", values=[baseline, ANALYSIS_FILE])}
    return ClarifyCheckStep(
        name=spec.name,
        clarify_check_config=config,
        check_job_config=_job_config(builder, spec),
        **_lifecycle(builder, spec),
        **supplied,
    )


def baseline_files(builder: BuildContext) -> dict[str, Any]:
    """Registry wiring of the managed baseline steps (their calculated baselines), by registry field."""
    files: dict[str, Any] = {}
    quality = builder.steps.get("DataQualityBaseline")
    if quality is not None and hasattr(quality.properties, "CalculatedBaselineStatistics"):
        files["data_quality_statistics"] = quality.properties.CalculatedBaselineStatistics
        files["data_quality_constraints"] = quality.properties.CalculatedBaselineConstraints
    model = builder.steps.get("ModelQualityBaseline")
    if model is not None and hasattr(model.properties, "CalculatedBaselineConstraints"):
        files["model_quality_constraints"] = model.properties.CalculatedBaselineConstraints
    explain = builder.steps.get("ExplainabilityBaseline")
    if explain is not None and hasattr(explain.properties, "CalculatedBaselineConstraints"):
        files["explainability_report"] = explain.properties.CalculatedBaselineConstraints
    return files


def config_file(builder: BuildContext, files: dict[str, Any]) -> Any:
    """Clarify's analysis config for ``DriftCheckBaselines.Explainability.ConfigFile`` (managed runs only)."""
    explain = builder.steps.get("ExplainabilityBaseline")
    config = getattr(explain, "clarify_check_config", None)
    uri = getattr(config, "monitoring_analysis_config_uri", None)
    if not uri:
        return None
    from sagemaker.core.model_metrics import FileSource

    return FileSource(content_type=_JSON, s3_uri=uri)
