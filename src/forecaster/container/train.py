"""Training entry on the SageMaker contract, run by the ``sagemaker-training`` toolkit (``SAGEMAKER_PROGRAM``).

The toolkit starts ``/opt/ml/code/train.py`` (``docker/train.py``), which calls :func:`main`. Everything the job
needs is read once from the toolkit's environment into a :class:`JobEnvironment`. On failure a one-line reason
goes to ``/opt/ml/output/failure`` (the toolkit keeps an existing file) and the process exits non-zero.

Several hosts (``InstanceCount`` > 1): the hosts train one model together (:mod:`forecaster.container.hosts`,
:mod:`forecaster.distributed`), each on its share of the train channel's partitions; the first host of the sorted
``hosts`` writes the model, every other host exits 0 without writing one (SageMaker merges all hosts'
``/opt/ml/model``).

Metrics are printed as ``<split>:<name>=<value>;`` lines, e.g. ``validation:wape=0.2312;``. SageMaker metric
definitions: ``{"Name": "validation:wape", "Regex": "validation:wape=([0-9.eE+-]+);"}`` (one per metric).
"""

from __future__ import annotations

import errno
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
from typing import TYPE_CHECKING, Any

from forecaster.checkpoints import stop_on_signal
from forecaster.container import hosts, layout
from forecaster.container.layout import FIRST_HOST, ContainerTree
from forecaster.errors import DataValidationError, ForecasterError, InvalidParameterError, JobStoppedError

if TYPE_CHECKING:  # the training modules are imported when a job runs, not with the entry
    from forecaster.distributed import Cluster

logger = logging.getLogger("forecaster.train")


@dataclass(frozen=True)
class JobEnvironment:
    """What a training job gets from SageMaker: channels, output locations and hyperparameters."""

    channels: Mapping[str, Path]
    model_dir: Path
    output_dir: Path
    output_data_dir: Path
    hyperparameters: Mapping[str, Any] = field(default_factory=dict)
    current_host: str = FIRST_HOST
    hosts: tuple[str, ...] = (FIRST_HOST,)
    checkpoint_dir: Path | None = None

    @property
    def training_host(self) -> str:
        """The host that trains: the first of the sorted ``hosts``."""
        return sorted(self.hosts)[0] if self.hosts else self.current_host

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> JobEnvironment:
        """Read the ``SM_*`` variables the toolkit exports (``SM_HPS`` keeps the decoded JSON types)."""
        tree = ContainerTree.from_env(environ)
        channels = {
            name: Path(environ.get(f"{layout.CHANNEL_ENV_PREFIX}{name.upper()}", tree.channel_dir(name)))
            for name in json.loads(environ.get(layout.CHANNELS_ENV, "[]"))
        }
        output_dir = Path(environ.get(layout.OUTPUT_DIR_ENV, tree.output_dir))
        resources = json.loads(tree.resource_config.read_text()) if tree.resource_config.is_file() else {}
        current_host = environ.get(layout.CURRENT_HOST_ENV) or resources.get("current_host") or layout.FIRST_HOST
        hosts = json.loads(environ[layout.HOSTS_ENV]) if environ.get(layout.HOSTS_ENV) else resources.get("hosts", [])
        return cls(
            channels=MappingProxyType(channels),
            model_dir=Path(environ.get(layout.MODEL_DIR_ENV, tree.model_dir)),
            output_dir=output_dir,
            output_data_dir=Path(environ.get(layout.OUTPUT_DATA_DIR_ENV, output_dir / "data")),
            hyperparameters=MappingProxyType(json.loads(environ.get(layout.HYPERPARAMETERS_ENV, "{}"))),
            current_host=current_host,
            hosts=tuple(hosts) or (current_host,),
            checkpoint_dir=tree.checkpoint_dir if tree.checkpoint_dir.is_dir() else None,
        )


def _spec_path(value: str, train_dir: Path) -> str | Path:
    """The ``spec`` hyperparameter, or the train channel's file of that relative name.

    Taken from the channel when the job's working directory (``/opt/ml/code``) has no such file.
    """
    path = Path(value)
    if value.endswith(".json") and not path.is_absolute() and not path.is_file() and (train_dir / path).is_file():
        return train_dir / path
    return value


def _train_channel(job: JobEnvironment) -> Path:
    """The training data's folder: the ``train`` channel (or the SDK's default name for it, ``training``)."""
    name = layout.train_channel(name for name, folder in job.channels.items() if folder.exists())
    if name is not None:
        return job.channels[name]
    received = ", ".join(f"{name!r}" + ("" if path.exists() else " (no folder)") for name, path in job.channels.items())
    raise DataValidationError(
        f"The required input channel {layout.TRAIN_CHANNEL!r} is missing (received: {received or 'no channel'}): "
        f"configure a channel named {layout.TRAIN_CHANNEL!r} (InputDataConfig / ModelTrainer input_data_config) "
        "holding CSV, Parquet or Excel files."
    )


def run(job: JobEnvironment, cluster: Cluster | None = None) -> dict[str, float]:
    """Train from the job's channels into its model dir; return the validation metrics.

    ``cluster``: this host's part in a multi-host job (only its first host writes the model).
    """
    from forecaster.config import TrainConfig
    from forecaster.io import read_table, write_json
    from forecaster.spec import DatasetSpec, bundled_spec, resolve_spec
    from forecaster.training import fit_artifact

    config = TrainConfig.from_hyperparameters(job.hyperparameters)
    train_dir = _train_channel(job)
    spec_file = bundled_spec(train_dir)
    if cluster is not None:  # a sharded channel hands spec.json to one host: every host takes the one found
        spec_file = hosts.shared_spec(cluster, spec_file)
    if "spec" not in job.hyperparameters and spec_file is not None:
        spec = DatasetSpec.from_json(spec_file)
        config = config.replace(spec=str(bundled_spec(train_dir) or spec_file))  # metadata.json names it
        logger.info("dataset spec from %s", spec_file)
    else:
        spec = resolve_spec(_spec_path(config.spec, train_dir))
    validation_dir = job.channels.get(layout.VALIDATION_CHANNEL)
    if validation_dir is not None:
        train, validation = (read_table(path, spec.csv, spec.text_columns) for path in (train_dir, validation_dir))
        scores = fit_artifact(
            train, spec, config, job.model_dir, validation=validation, checkpoint_dir=job.checkpoint_dir
        )
    else:  # partition by partition (one file, or a folder of partitions), one worker process per CPU
        scores = fit_artifact(
            train_dir, spec, config, job.model_dir, workers=None, cluster=cluster, checkpoint_dir=job.checkpoint_dir
        )
    for name, value in scores.items():
        print(f"validation:{name}={value};", flush=True)
    write_json(scores, job.output_data_dir / layout.VALIDATION_METRICS_FILE)
    if cluster is not None:
        write_json(hosts.host_report(cluster), job.output_data_dir / hosts.HOST_REPORT_FILE)
    return scores


def write_failure(output_dir: Path, reason: str) -> None:
    """Write the one-line ``reason`` that DescribeTrainingJob shows (first 1024 characters).

    Where the file cannot be written (a full or read-only volume), the reason goes to stderr: this runs in the error
    boundary, and a second error here would hide the first.
    """
    one_line = " ".join(reason.split())  # LightGBM's messages end in blank lines
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / layout.FAILURE_FILE).write_text(one_line[:1024] + "\n")
    except OSError as error:
        print(f"Could not write the failure file into {output_dir} ({error}); the failure: {one_line}", file=sys.stderr)


#: what a failure that looks like a full disk adds (a short write of a model file, ENOSPC)
_MORE_SPACE = "Is the volume full? Give the training job a larger one (VolumeSizeInGB; locally: free disk space)."


def _short_write(error: BaseException) -> bool:
    """Whether ``error`` is a write cut short: ENOSPC, or LightGBM's 'Cannot write binary data ... wrote N of M'."""
    if isinstance(error, OSError):
        return error.errno in (errno.ENOSPC, errno.EDQUOT)
    return type(error).__name__ == "LightGBMError" and str(error).startswith("Cannot write")


def _stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    if stop_on_signal():  # with checkpoints: the booster loop saves and stops (else this raises where it stopped)
        return
    raise JobStoppedError(
        "Training was stopped (SIGTERM: MaxRuntimeInSeconds reached or the job was stopped); no model was "
        "written. Raise max_runtime or lower num_boost_round / max_train_rows."
    )


def main() -> int:
    """Run the job; 0 on success, the error's exit code (and a failure file) otherwise."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    try:
        job = JobEnvironment.from_env()
    except (ValueError, OSError) as error:  # a hand-set SM_HPS / SM_HOSTS / SM_CHANNELS, an unreadable resourceconfig
        error = InvalidParameterError(
            f"The training job's environment could not be read: {error}. SM_HPS, SM_HOSTS and SM_CHANNELS must be "
            "JSON (the SageMaker training toolkit writes them; by hand, e.g. SM_HPS='{\"horizon\": 14}')."
        )
        logger.error("training failed: %s", error.reason)
        output_dir = Path(os.environ.get(layout.OUTPUT_DIR_ENV) or ContainerTree.from_env().output_dir)
        write_failure(output_dir, f"{type(error).__name__}: {error.reason}")
        return error.exit_code
    return _train(job)


def _train(job: JobEnvironment) -> int:
    try:
        if len(job.hosts) > 1:
            if layout.VALIDATION_CHANNEL in job.channels:  # each host would train a model of its own
                raise DataValidationError(
                    f"The {layout.VALIDATION_CHANNEL!r} channel needs a single-host job (InstanceCount=1); this job "
                    f"has {len(job.hosts)} hosts, which would each train a model of their own. Drop the channel (the "
                    "hosts then hold out the last validation_days of the training data together) or run one instance."
                )
            hosts.train_on_hosts(job, run)
        else:
            run(job)
    except ForecasterError as error:
        logger.error("training failed: %s", error.reason)
        write_failure(job.output_dir, f"{type(error).__name__}: {error.reason}")
        return error.exit_code
    except Exception as error:  # the boundary: a bug still ends as a readable failure file
        traceback.print_exc()
        hint = f" {_MORE_SPACE}" if _short_write(error) else ""
        write_failure(job.output_dir, f"InternalError: {type(error).__name__}: {error}{hint}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
