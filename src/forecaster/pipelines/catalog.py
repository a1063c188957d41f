"""The three pipelines as data: parameters and steps, shared by the SDK v3 definitions and the local runner.

Nothing here imports the SageMaker SDK. A pipeline is a :class:`PipelineSpec`: its parameters
(:class:`ParamSpec`, with defaults) and its steps in dependency order (:class:`StepSpec`). A step names the
``forecaster`` command it runs, its inputs (references to a pipeline parameter or to another step's output) and
its outputs; its arguments are tokens with placeholders:

- ``{input:NAME}``: the directory input ``NAME`` is mounted at (``/opt/ml/processing/input/NAME`` in a
  processing job, a local folder in the local runner); may be followed by a file name (``{input:x}/a.csv``);
- ``{output:NAME}``: the directory output ``NAME`` is written to (``/opt/ml/processing/output/NAME``);
- ``{param:NAME}``: the value of pipeline parameter ``NAME`` (a whole token, or inside one: ``--flag={param:NAME}``,
  an SDK ``Join``; an empty value then passes ``--flag=``).

References (:data:`Ref`) are ``"param:NAME"`` or ``"step:STEP/OUTPUT"``. Outputs of a training step are
``model`` (the ``model.tar.gz``), of a transform step ``predictions`` (one ``<input file>.out`` per input file).
"""

from __future__ import annotations

from forecaster.checks.contract import (
    ANALYSIS_FILE,
    CONSTRAINTS_FILE,
    DEFAULT_DRIFT_THRESHOLD,
    DEFAULT_MODEL_QUALITY_TOLERANCE,
    DEFAULT_NDCG_THRESHOLD,
    EVALUATION_FILE,
    STATISTICS_FILE,
)
from forecaster.config import TrainConfig
from forecaster.container.layout import TRAIN_CHANNEL
from forecaster.contract import (
    FORECASTS_FILE,
    HORIZON_RANGE,
    MODEL_PACKAGE_ENV,
)
from forecaster.params import NON_NEGATIVE, EntityName, Interval, Options
from forecaster.pipelines.catalog_steps import ACTIVE_DAYS as _ACTIVE_DAYS
from forecaster.pipelines.catalog_steps import (
    AT_LEAST_ONE,
    ORDERING_PARAMETERS,
    SHARDED_PARAMETER,
    TRANSFORM_PARAMETERS,
)
from forecaster.pipelines.catalog_steps import argv as _argv
from forecaster.pipelines.catalog_steps import explain_step as _explain
from forecaster.pipelines.catalog_steps import preprocess_steps as _preprocess
from forecaster.pipelines.catalog_steps import transform_steps as _transform
from forecaster.pipelines.table import ParamSpec, PipelineSpec, StepSpec
from forecaster.registry.base import ApprovalStatus

_TRAINING = TrainConfig()  # the training parameters' defaults are the training defaults


def _common(prefix: str) -> tuple[ParamSpec, ...]:
    return (
        ParamSpec("ProcessingImage", "string", "forecaster-train:latest", "training/processing image URI (ECR)"),
        ParamSpec("ProcessingInstanceType", "string", "ml.m5.xlarge", "instance type of the processing jobs"),
        ParamSpec("OutputPrefix", "string", f"s3://forecaster-artifacts/{prefix}", "S3 prefix of every output"),
    )


#: the sharded processing step (Preprocess) runs on this many instances, each with whole history partitions
#: the latest approved model (model.tar.gz), filled from the registry; its dataset spec names the data's columns
_MODEL_DATA = ParamSpec("ModelDataUrl", "string", "s3://forecaster-artifacts/model.tar.gz", "latest approved model")


BUILD = PipelineSpec(
    name="forecaster-model-build",
    description="split -> train -> batch transform on the evaluation window -> evaluate -> baselines -> register",
    parameters=(
        *_common("build"),
        SHARDED_PARAMETER,
        ParamSpec("InputData", "string", "s3://forecaster-data/history/", "S3 prefix of the long history table"),
        ParamSpec("Spec", "string", "default", "dataset spec: a preset name or a JSON file in the image"),
        ParamSpec(
            "Horizon",
            "integer",
            _TRAINING.horizon,
            "forecast horizon in days (also the evaluation window)",
            Interval(int, *HORIZON_RANGE),
        ),
        ParamSpec("NumBoostRound", "integer", _TRAINING.num_boost_round, "LightGBM boosting rounds"),
        ParamSpec(
            "QuantileNumBoostRound",
            "integer",
            _TRAINING.quantile_num_boost_round,
            "LightGBM boosting rounds of the quantile boosters",
        ),
        ParamSpec("NumLeaves", "integer", _TRAINING.num_leaves, "LightGBM num_leaves"),
        ParamSpec("LearningRate", "float", _TRAINING.learning_rate, "LightGBM learning rate"),
        ParamSpec("NumThreads", "integer", 0, "LightGBM threads of the training job (0: every CPU)"),
        ParamSpec("TrainingInstanceType", "string", "ml.m5.2xlarge", "instance type of the training job"),
        ParamSpec("TrainingInstanceCount", "integer", 1, "instance count of the training job", AT_LEAST_ONE),
        ParamSpec("TrainingMaxRuntimeSeconds", "integer", 86400, "MaxRuntimeInSeconds of the training job"),
        ParamSpec("UseSpotInstances", "boolean", False, "managed spot training (resumes from its checkpoints)"),
        ParamSpec(
            "MaxWaitTime",
            "integer",
            172800,
            "MaxWaitTimeInSeconds of a spot training job (>= TrainingMaxRuntimeSeconds); in the definition only "
            "when it is built with UseSpotInstances=true (SageMaker rejects it without spot)",
        ),
        ParamSpec(
            "CheckpointS3Uri",
            "string",
            "s3://forecaster-artifacts/build/checkpoints",
            "S3 prefix of the training checkpoints (<prefix>/<execution id>/Train, synced with /opt/ml/checkpoints)",
        ),
        *TRANSFORM_PARAMETERS,
        _ACTIVE_DAYS,
        ParamSpec("MaxWape", "float", 0.6, "register only when the evaluation WAPE is at most this", NON_NEGATIVE),
        ParamSpec(
            "DataDriftThreshold",
            "float",
            DEFAULT_DRIFT_THRESHOLD,
            "data-quality baseline: numeric drift distance limit",
            NON_NEGATIVE,
        ),
        ParamSpec(
            "ModelQualityTolerance",
            "float",
            DEFAULT_MODEL_QUALITY_TOLERANCE,
            "model-quality baseline: relative slack on the metrics",
            NON_NEGATIVE,
        ),
        ParamSpec(
            "ModelPackageGroupName", "string", "forecaster-demand", "model package group to register in", EntityName()
        ),
        ParamSpec(
            "ModelApprovalStatus",
            "string",
            ApprovalStatus.PENDING.value,
            "status of the new model package",
            Options(tuple(status.value for status in ApprovalStatus)),
        ),
        ParamSpec("CodeVersion", "string", "unknown", "git commit of the code (lineage)"),
    ),
    steps=(
        StepSpec(
            "Split",
            "processing",
            command=("split",),
            args=_argv("--input data={input:data} --spec {param:Spec} --horizon {param:Horizon} --out {outputs}"),
            inputs={"data": "param:InputData"},
            outputs=("train", "history", "future", "truth"),
        ),
        StepSpec(
            "Train",
            "training",
            inputs={TRAIN_CHANNEL: "step:Split/train"},
            outputs=("model",),
            instance=("TrainingInstanceType", "TrainingInstanceCount"),
            settings={
                "image": "ProcessingImage",
                "max_runtime": "TrainingMaxRuntimeSeconds",
                # managed spot training; the local runner has no spot and keeps no checkpoints
                "spot": {"enabled": "UseSpotInstances", "max_wait": "MaxWaitTime", "checkpoints": "CheckpointS3Uri"},
                "hyperparameters": {
                    "horizon": "Horizon",
                    "spec": "Spec",
                    "num_boost_round": "NumBoostRound",
                    "quantile_num_boost_round": "QuantileNumBoostRound",
                    "num_leaves": "NumLeaves",
                    "learning_rate": "LearningRate",
                    "num_threads": "NumThreads",
                },
            },
        ),
        *_preprocess("step:Train/model", "step:Split/history", "step:Split/future"),
        *_transform("step:Train/model"),
        StepSpec(
            "Evaluate",
            "processing",
            command=("evaluate",),
            # the model's spec names the key, date and target columns of forecasts and truth
            args=_argv(
                f"--input predictions={{input:forecasts}}/{FORECASTS_FILE} --input truth={{input:truth}} "
                "--model-dir {input:model} --out {output:evaluation}"
            ),
            inputs={
                "forecasts": "step:Postprocess/forecasts",
                "truth": "step:Split/truth",
                "model": "step:Train/model",
            },
            outputs=("evaluation",),
            settings={"property_file": ("Evaluation", "evaluation", EVALUATION_FILE)},
        ),
        StepSpec(
            "DataQualityBaseline",
            "processing",
            command=("baseline", "data-quality"),
            # the header-less feature rows the model sees, named from the model's feature schema
            args=_argv(
                "--input dataset={input:features} --model-dir {input:model} "
                "--comparison-threshold {param:DataDriftThreshold} --out {output:baseline}"
            ),
            inputs={"features": "step:Preprocess/features", "model": "step:Train/model"},
            outputs=("baseline",),
            settings={"check": "data_quality"},
        ),
        StepSpec(
            "ModelQualityBaseline",
            "processing",
            command=("baseline", "model-quality"),
            args=_argv(
                "--input evaluation={input:evaluation} --tolerance {param:ModelQualityTolerance} "
                "--out {output:baseline}"
            ),
            inputs={"evaluation": "step:Evaluate/evaluation"},
            outputs=("baseline",),
            settings={"check": "model_quality"},
        ),
        _explain("ExplainabilityBaseline", "baseline", {"check": "explainability"}),
        StepSpec(
            "CheckEvaluation",
            "condition",
            settings={
                "property_file": ("Evaluate", "Evaluation"),
                "json_path": "regression_metrics.wape.value",
                "at_most": "MaxWape",
                "if_steps": ("RegisterModel",),
                "else_steps": ("EvaluationFailed",),
            },
        ),
        StepSpec(
            "RegisterModel",
            "register",
            inputs={"model": "step:Train/model"},
            settings={
                "image": "InferenceImage",
                "group": "ModelPackageGroupName",
                "approval_status": "ModelApprovalStatus",
                # registry field -> (step, output, file name)
                "files": {
                    "model_quality_statistics": ("Evaluate", "evaluation", EVALUATION_FILE),
                    "model_quality_constraints": ("ModelQualityBaseline", "baseline", CONSTRAINTS_FILE),
                    "data_quality_statistics": ("DataQualityBaseline", "baseline", STATISTICS_FILE),
                    "data_quality_constraints": ("DataQualityBaseline", "baseline", CONSTRAINTS_FILE),
                    "explainability_report": ("ExplainabilityBaseline", "baseline", ANALYSIS_FILE),
                },
                "lineage": {"code_version": "CodeVersion", "training_data": "InputData", "image": "ProcessingImage"},
            },
        ),
        StepSpec(
            "EvaluationFailed",
            "fail",
            settings={
                "message": ("Not registered: evaluation WAPE", "is above MaxWape"),
                "metric": ("Evaluate", "Evaluation", "regression_metrics.wape.value"),
                "threshold": "MaxWape",
            },
        ),
    ),
)


INFERENCE = PipelineSpec(
    name="forecaster-batch-inference",
    description="preprocess -> data-quality check -> batch transform (latest approved model) -> postprocess "
    "-> attribution-drift check -> retrain decision",
    parameters=(
        *_common("inference"),
        SHARDED_PARAMETER,
        ParamSpec("HistoryData", "string", "s3://forecaster-data/history/", "S3 prefix of recent history"),
        ParamSpec("FutureData", "string", "s3://forecaster-data/future/", "S3 prefix of known-future features"),
        *TRANSFORM_PARAMETERS,
        _ACTIVE_DAYS,
        _MODEL_DATA,
        *ORDERING_PARAMETERS,
        ParamSpec(
            "DataQualityBaselineUri",
            "string",
            "s3://forecaster-artifacts/baselines/data-quality/",
            "S3 prefix with statistics.json + constraints.json of the approved model",
        ),
        ParamSpec(
            "ExplainabilityBaselineUri",
            "string",
            "s3://forecaster-artifacts/baselines/explainability/",
            "S3 prefix with analysis.json of the approved model",
        ),
        ParamSpec("ModelPackageArn", "string", "", "the approved model package (lineage only)"),
        ParamSpec(
            "NdcgThreshold",
            "float",
            DEFAULT_NDCG_THRESHOLD,
            "attribution drift when NDCG of the top features is below",
            Interval(float, 0, 1),
        ),
        ParamSpec(
            "MinDriftedFeatures", "integer", 1, "drifted features needed to decide to retrain", Interval(int, 1, None)
        ),
    ),
    steps=(
        *_preprocess("param:ModelDataUrl", "param:HistoryData", "param:FutureData"),
        StepSpec(
            "DataQualityCheck",
            "processing",
            command=("check", "data-quality"),
            args=_argv(
                "--input baseline={input:baseline} --input dataset={input:features} "
                "--model-dir {input:model} --out {output:violations}"
            ),
            inputs={
                "baseline": "param:DataQualityBaselineUri",
                "features": "step:Preprocess/features",
                "model": "param:ModelDataUrl",
            },
            outputs=("violations",),
            settings={"check": "data_quality"},
        ),
        *_transform("param:ModelDataUrl", {MODEL_PACKAGE_ENV: "ModelPackageArn"}, ordering=True),
        _explain("Explain", "attributions"),
        StepSpec(
            "AttributionDriftCheck",
            "processing",
            command=("check", "attribution-drift"),
            args=_argv(
                "--input baseline={input:baseline} --input current={input:current} "
                "--threshold {param:NdcgThreshold} --out {output:violations}"
            ),
            inputs={"baseline": "param:ExplainabilityBaselineUri", "current": "step:Explain/attributions"},
            outputs=("violations",),
            settings={"check": "explainability"},
        ),
        StepSpec(
            "DecideRetrain",
            "processing",
            command=("decide-retrain",),
            args=_argv(
                "--input violations={input:data_quality} --input violations={input:attribution_drift} "
                "--min-drifted-features {param:MinDriftedFeatures} --out {output:decision}"
            ),
            inputs={
                "data_quality": "step:DataQualityCheck/violations",
                "attribution_drift": "step:AttributionDriftCheck/violations",
            },
            outputs=("decision",),
        ),
    ),
)


MODEL_QUALITY = PipelineSpec(
    name="forecaster-model-quality",
    description="ground truth + earlier forecasts -> model-quality check -> retrain decision",
    parameters=(
        *_common("model-quality"),
        ParamSpec("ForecastsData", "string", "s3://forecaster-artifacts/inference/forecasts/", "earlier forecasts"),
        ParamSpec("GroundTruthData", "string", "s3://forecaster-data/ground-truth/", "observed sales"),
        ParamSpec(
            "ModelQualityBaselineUri",
            "string",
            "s3://forecaster-artifacts/baselines/model-quality/",
            "S3 prefix with statistics.json + constraints.json of the approved model",
        ),
        _MODEL_DATA,
        ParamSpec("RetrainWape", "float", 0.6, "decide to retrain when the WAPE on the ground truth is above"),
    ),
    steps=(
        StepSpec(
            "ModelQualityCheck",
            "processing",
            command=("check", "model-quality"),
            # the model's spec names the key, date and target columns of forecasts and truth (as in Evaluate)
            args=_argv(
                "--input baseline={input:baseline} --input predictions={input:predictions} "
                "--input truth={input:truth} --model-dir {input:model} --out {output:violations}"
            ),
            inputs={
                "baseline": "param:ModelQualityBaselineUri",
                "predictions": "param:ForecastsData",
                "truth": "param:GroundTruthData",
                "model": "param:ModelDataUrl",
            },
            outputs=("violations",),
            settings={"check": "model_quality"},
        ),
        StepSpec(
            "DecideRetrain",
            "processing",
            command=("decide-retrain",),
            args=_argv(
                "--input violations={input:model_quality} --max-wape {param:RetrainWape} --out {output:decision}"
            ),
            inputs={"model_quality": "step:ModelQualityCheck/violations"},
            outputs=("decision",),
        ),
    ),
)

#: ``forecaster pipeline definition <key>`` -> spec
PIPELINES: dict[str, PipelineSpec] = {"build": BUILD, "inference": INFERENCE, "model-quality": MODEL_QUALITY}
