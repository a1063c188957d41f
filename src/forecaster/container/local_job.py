"""Run a training job on this machine exactly as SageMaker would: an ``/opt/ml`` tree + the training toolkit.

Used by the tests and the local pipeline runner (``forecaster pipeline run ... --local``). The toolkit reads
``SAGEMAKER_BASE_DIR`` at import time, so every job runs in its own subprocess.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from forecaster.container import layout
from forecaster.container.layout import FIRST_HOST, ContainerTree

#: What ``/opt/ml/code/train.py`` holds (the training image ships the same lines as ``docker/train.py``).
ENTRY_SCRIPT = "import sys\n\nfrom forecaster.container.train import main\n\nsys.exit(main())\n"


def write_job_tree(
    base_dir: str | os.PathLike[str],
    hyperparameters: Mapping[str, Any],
    channels: Mapping[str, str | os.PathLike[str]],
) -> Path:
    """Lay out ``<base_dir>`` like ``/opt/ml``: configs, channel data (copied), the entry script in ``code/``.

    Hyperparameter values are written as strings, JSON-encoding non-strings (what SDK v3's ModelTrainer does).
    """
    tree = ContainerTree(Path(base_dir))
    config = tree.config_dir
    config.mkdir(parents=True, exist_ok=True)
    encoded = {k: v if isinstance(v, str) else json.dumps(v) for k, v in hyperparameters.items()}
    (config / layout.HYPERPARAMETERS_FILE).write_text(json.dumps(encoded))
    (config / layout.INPUT_DATA_CONFIG_FILE).write_text(
        json.dumps({name: {"TrainingInputMode": "File", "S3DistributionType": "FullyReplicated"} for name in channels})
    )
    tree.resource_config.write_text(
        json.dumps({"current_host": FIRST_HOST, "hosts": [FIRST_HOST], "current_group_name": "homogeneousCluster"})
    )
    for name, source in channels.items():
        target = tree.channel_dir(name)
        source = Path(source)
        if source.is_dir():
            shutil.copytree(source, target, dirs_exist_ok=True)
        else:
            target.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / source.name)
    tree.code_dir.mkdir(exist_ok=True)
    (tree.code_dir / layout.DEFAULT_PROGRAM).write_text(ENTRY_SCRIPT)
    for folder in (tree.model_dir, tree.output_dir):
        folder.mkdir(exist_ok=True)
    return tree.base


def run_training_job(base_dir: str | os.PathLike[str], *, timeout: float | None = None) -> subprocess.CompletedProcess:
    """Run the ``sagemaker-training`` toolkit (the image's ``train`` command) on a job tree; never raises on failure."""
    env = {
        **os.environ,
        layout.BASE_DIR_ENV: str(Path(base_dir).resolve()),  # the toolkit runs the script from code/
        layout.PROGRAM_ENV: layout.DEFAULT_PROGRAM,
        layout.LOCAL_MODE_ENV: "true",  # skip the toolkit's DNS wait for algo-1
        "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", "eu-west-1"),
    }
    command = [sys.executable, "-c", "from sagemaker_training.cli.train import main; main()"]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout, check=False)
