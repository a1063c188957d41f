"""Training entry on the SageMaker contract, run by the ``sagemaker-training`` toolkit (``SAGEMAKER_PROGRAM``).

The toolkit starts ``/opt/ml/code/train.py`` (``docker/train.py``), which calls :func:`main`. Everything the job
needs is read once from the toolkit's environment into a :class:`JobEnvironment`. On failure a one-line reason
goes to ``/opt/ml/output/failure`` (the toolkit keeps an existing file) and the process exits non-zero.

Metrics are printed as ``<split>:<name>=<value>;`` lines, e.g. ``validation:wape=0.2312;``. SageMaker metric
definitions: ``{"Name": "validation:wape", "Regex": "validation:wape=([0-9.eE+-]+);"}`` (one per metric).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, MappingProxyType
from typing import Any

from forecaster.errors import DataValidationError, ForecasterError, JobStoppedError

logger = logging.getLogger("forecaster.train")

SPEC_FILE = "spec.json"


@dataclass(frozen=True)
class JobEnvironment:
    """What a training job gets from SageMaker: channels, output locations and hyperparameters."""

    channels: Mapping[str, Path]
    model_dir: Path
    output_dir: Path
    output_data_dir: Path
    hyperparameters: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> JobEnvironment:
        """Read the ``SM_*`` variables the toolkit exports (``SM_HPS`` keeps the decoded JSON types)."""
        base = Path(environ.get("SAGEMAKER_BASE_DIR", "/opt/ml"))
        channel_names = json.loads(environ.get("SM_CHANNELS", "[]"))
        channels = {
            name: Path(environ.get(f"SM_CHANNEL_{name.upper()}", base / "input" / "data" / name))
            for name in channel_names
        }
        output_dir = Path(environ.get("SM_OUTPUT_DIR", base / "output"))
        return cls(
            channels=MappingProxyType(channels),
            model_dir=Path(environ.get("SM_MODEL_DIR", base / "model")),
            output_dir=output_dir,
            output_data_dir=Path(environ.get("SM_OUTPUT_DATA_DIR", output_dir / "data")),
            hyperparameters=MappingProxyType(json.loads(environ.get("SM_HPS", "{}"))),
        )


def run(job: JobEnvironment) -> dict[str, float]:
    """Train from the job's channels into its model dir; return the validation metrics."""
    from forecaster.config import TrainConfig
    from forecaster.io import read_table, write_json
    from forecaster.spec import DatasetSpec, resolve_spec
    from forecaster.training import fit_artifact

    config = TrainConfig.from_hyperparameters(job.hyperparameters)
    train_dir = job.channels.get("train")
    if train_dir is None or not train_dir.exists():
        raise DataValidationError(
            "The required input channel 'train' is missing: configure a channel named 'train' "
            "(InputDataConfig / ModelTrainer input_data_config) holding CSV or Parquet files."
        )
    spec_file = train_dir / SPEC_FILE
    if "spec" not in job.hyperparameters and spec_file.is_file():
        spec = DatasetSpec.from_json(spec_file)
        logger.info("dataset spec from %s", spec_file)
    else:
        spec = resolve_spec(config.spec)
    validation_dir = job.channels.get("validation")
    if validation_dir is not None:
        scores = fit_artifact(read_table(train_dir), spec, config, job.model_dir, validation=read_table(validation_dir))
    else:  # partition by partition (one file, or a folder of partitions), one worker process per CPU
        scores = fit_artifact(train_dir, spec, config, job.model_dir, workers=None)
    for name, value in scores.items():
        print(f"validation:{name}={value};", flush=True)
    write_json(scores, job.output_data_dir / "validation_metrics.json")
    return scores


def write_failure(output_dir: Path, reason: str) -> None:
    """Write the one-line ``reason`` that DescribeTrainingJob shows (first 1024 characters)."""
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "failure").write_text(reason[:1024] + "\n")


def _stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise JobStoppedError(
        "Training was stopped (SIGTERM: MaxRuntimeInSeconds reached or the job was stopped); no model was "
        "written. Raise max_runtime or lower num_boost_round / max_train_rows."
    )


def main() -> int:
    """Run the job; 0 on success, the error's exit code (and a failure file) otherwise."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    job = JobEnvironment.from_env()
    try:
        run(job)
    except ForecasterError as error:
        logger.error("training failed: %s", error.reason)
        write_failure(job.output_dir, f"{type(error).__name__}: {error.reason}")
        return error.exit_code
    except Exception as error:  # the boundary: a bug still ends as a readable failure file
        traceback.print_exc()
        write_failure(job.output_dir, f"InternalError: {type(error).__name__}: {error}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
