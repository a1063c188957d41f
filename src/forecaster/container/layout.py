"""The SageMaker container contract, declared once: the ``/opt/ml`` tree and the variables SageMaker sets.

Everything that runs in (or imitates) a SageMaker container reads its paths and variable names here: the
training entry and its preflight, the local training job, the server, the local batch transform, the processing
I/O of the checks and the SDK pipeline builder. :class:`ContainerTree` derives the whole tree from one base
directory (``SAGEMAKER_BASE_DIR``, default ``/opt/ml``), as ``sagemaker-training``'s ``environment.py`` does.
This module imports nothing of the package.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

# ---- the tree ---------------------------------------------------------------------------------------------------
#: Root of the container tree; ``SAGEMAKER_BASE_DIR`` moves it (the training toolkit reads it at import time).
DEFAULT_BASE_DIR = "/opt/ml"
BASE_DIR_ENV = "SAGEMAKER_BASE_DIR"
#: The training job's entry script, run by the toolkit from ``<base>/code``.
PROGRAM_ENV = "SAGEMAKER_PROGRAM"
DEFAULT_PROGRAM = "train.py"
#: Files of ``<base>/input/config`` that SageMaker writes for a training job.
RESOURCE_CONFIG_FILE = "resourceconfig.json"
HYPERPARAMETERS_FILE = "hyperparameters.json"
INPUT_DATA_CONFIG_FILE = "inputdataconfig.json"
#: One-line failure reason that DescribeTrainingJob shows (``<base>/output/failure``).
FAILURE_FILE = "failure"
#: The validation metrics of a training job, in ``<base>/output/data`` (``output.tar.gz``).
VALIDATION_METRICS_FILE = "validation_metrics.json"
#: Host name of a single-host job (and of the first host of a multi-host one).
FIRST_HOST = "algo-1"
#: Checkpoints of a training job (CheckpointConfig.LocalPath, synced to its CheckpointS3Uri); training keeps
#: checkpoints there when the folder exists.
DEFAULT_CHECKPOINT_DIR = f"{DEFAULT_BASE_DIR}/checkpoints"

#: The training data's channel; the SDK's default channel name (``estimator.fit("s3://...")``, ModelTrainer's
#: examples) is read as it.
TRAIN_CHANNEL, TRAIN_CHANNEL_ALIASES = "train", ("training",)


def train_channel(names: Iterable[str]) -> str | None:
    """The name among ``names`` the training data arrives under: ``train``, else the SDK's default ``training``."""
    given = set(names)
    return next((name for name in (TRAIN_CHANNEL, *TRAIN_CHANNEL_ALIASES) if name in given), None)


#: The optional held-out days' channel (single-host jobs only).
VALIDATION_CHANNEL = "validation"

# ---- what the training toolkit exports (``SM_*``) ----------------------------------------------------------------
CHANNELS_ENV = "SM_CHANNELS"
CHANNEL_ENV_PREFIX = "SM_CHANNEL_"
MODEL_DIR_ENV = "SM_MODEL_DIR"
OUTPUT_DIR_ENV = "SM_OUTPUT_DIR"
OUTPUT_DATA_DIR_ENV = "SM_OUTPUT_DATA_DIR"
HYPERPARAMETERS_ENV = "SM_HPS"
CURRENT_HOST_ENV = "SM_CURRENT_HOST"
HOSTS_ENV = "SM_HOSTS"
#: Makes the toolkit skip its DNS wait for the hosts (set by the local training job, which runs on this machine).
LOCAL_MODE_ENV = "SM_STUDIO_LOCAL_MODE"

# ---- serving and batch transform ----------------------------------------------------------------------------------
#: Where the model data is unpacked in a serving container.
DEFAULT_MODEL_DIR = f"{DEFAULT_BASE_DIR}/model"
#: Port the serving container listens on (``SAGEMAKER_BIND_TO_PORT`` overrides).
DEFAULT_PORT = 8080
BIND_TO_PORT_ENV = "SAGEMAKER_BIND_TO_PORT"
MODEL_SERVER_WORKERS_ENV = "SAGEMAKER_MODEL_SERVER_WORKERS"
MODEL_SERVER_TIMEOUT_ENV = "SAGEMAKER_MODEL_SERVER_TIMEOUT"
#: Set to ``true`` by SageMaker in a batch-transform container (never on an endpoint).
BATCH_ENV = "SAGEMAKER_BATCH"
#: Batch transform's settings as SageMaker hands them to the container.
MAX_PAYLOAD_ENV = "SAGEMAKER_MAX_PAYLOAD_IN_MB"
BATCH_STRATEGY_ENV = "SAGEMAKER_BATCH_STRATEGY"
MAX_CONCURRENT_TRANSFORMS_ENV = "SAGEMAKER_MAX_CONCURRENT_TRANSFORMS"
#: threads per server worker (LightGBM's OpenMP and the CSV parser); default: the CPUs shared by the workers
OMP_THREADS_ENV = "OMP_NUM_THREADS"

# ---- processing jobs ------------------------------------------------------------------------------------------------
#: Where a processing job mounts its inputs and collects its outputs (``<root>/input/<name>``,
#: ``<root>/output/<name>``); ``FORECASTER_PROCESSING_ROOT`` moves it (tests, a run outside a container).
DEFAULT_PROCESSING_ROOT = f"{DEFAULT_BASE_DIR}/processing"
PROCESSING_ROOT_ENV = "FORECASTER_PROCESSING_ROOT"
PROCESSING_INPUT_ROOT = f"{DEFAULT_PROCESSING_ROOT}/input"
PROCESSING_OUTPUT_ROOT = f"{DEFAULT_PROCESSING_ROOT}/output"


@dataclass(frozen=True)
class ContainerTree:
    """The ``/opt/ml`` tree of one container, derived from its base directory."""

    base: Path = Path(DEFAULT_BASE_DIR)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> ContainerTree:
        """The tree under ``SAGEMAKER_BASE_DIR`` (default ``/opt/ml``)."""
        return cls(Path(environ.get(BASE_DIR_ENV) or DEFAULT_BASE_DIR))

    @property
    def code_dir(self) -> Path:
        """Where the training toolkit finds the entry script."""
        return self.base / "code"

    @property
    def config_dir(self) -> Path:
        """``input/config``: hyperparameters, input data and resource configuration."""
        return self.base / "input" / "config"

    @property
    def resource_config(self) -> Path:
        """``resourceconfig.json``: ``current_host`` and ``hosts`` of a training job."""
        return self.config_dir / RESOURCE_CONFIG_FILE

    @property
    def data_dir(self) -> Path:
        """``input/data``: one folder per input channel."""
        return self.base / "input" / "data"

    def channel_dir(self, name: str) -> Path:
        """Where the input channel ``name`` is mounted."""
        return self.data_dir / name

    @property
    def model_dir(self) -> Path:
        """What the training job leaves behind as ``model.tar.gz`` (and where a server finds the model)."""
        return self.base / "model"

    @property
    def checkpoint_dir(self) -> Path:
        """Where a training job keeps its checkpoints (``/opt/ml/checkpoints``)."""
        return self.base / Path(DEFAULT_CHECKPOINT_DIR).relative_to(DEFAULT_BASE_DIR)

    @property
    def output_dir(self) -> Path:
        """``output``: the failure file and ``output/data`` (``output.tar.gz``)."""
        return self.base / "output"

    @property
    def output_data_dir(self) -> Path:
        """``output/data``: what the job leaves in ``output.tar.gz`` (``SM_OUTPUT_DATA_DIR``)."""
        return self.output_dir / "data"

    @property
    def failure_file(self) -> Path:
        """The one-line failure reason of a training job."""
        return self.output_dir / FAILURE_FILE


def processing_root(environ: Mapping[str, str] = os.environ) -> Path:
    """Root of a processing job's inputs and outputs (``FORECASTER_PROCESSING_ROOT`` or ``/opt/ml/processing``)."""
    return Path(environ.get(PROCESSING_ROOT_ENV) or DEFAULT_PROCESSING_ROOT)
