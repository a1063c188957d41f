"""Run a training job on this machine exactly as SageMaker would: an ``/opt/ml`` tree + the training toolkit.

Used by the tests and the local pipeline runner (``forecaster pipeline run ... --local``). The toolkit reads
``SAGEMAKER_BASE_DIR`` at import time, so every job runs in its own subprocess.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from forecaster.container import hosts as hosts_
from forecaster.container import layout
from forecaster.container.layout import FIRST_HOST, ContainerTree

#: What ``/opt/ml/code/train.py`` holds (the training image ships the same lines as ``docker/train.py``).
#: seconds a stopped job gets to write its failure file before it is killed
STOP_GRACE_S = 30.0
ENTRY_SCRIPT = "import sys\n\nfrom forecaster.container.train import main\n\nsys.exit(main())\n"


def write_job_tree(
    base_dir: str | os.PathLike[str],
    hyperparameters: Mapping[str, Any],
    channels: Mapping[str, str | os.PathLike[str]],
    hosts: tuple[str, ...] = (FIRST_HOST,),
    current_host: str = FIRST_HOST,
    distribution: str = "FullyReplicated",
) -> Path:
    """Lay out ``<base_dir>`` like ``/opt/ml``: configs, channel data (copied), the entry script in ``code/``.

    Hyperparameter values are written as strings, JSON-encoding non-strings (what SDK v3's ModelTrainer does).
    ``hosts``/``current_host``: the job's hosts in ``resourceconfig.json``; ``distribution``: the channels'
    ``S3DistributionType``.
    """
    tree = ContainerTree(Path(base_dir))
    config = tree.config_dir
    config.mkdir(parents=True, exist_ok=True)
    encoded = {k: v if isinstance(v, str) else json.dumps(v) for k, v in hyperparameters.items()}
    (config / layout.HYPERPARAMETERS_FILE).write_text(json.dumps(encoded))
    (config / layout.INPUT_DATA_CONFIG_FILE).write_text(
        json.dumps({name: {"TrainingInputMode": "File", "S3DistributionType": distribution} for name in channels})
    )
    resources = {"current_host": current_host, "hosts": list(hosts), "current_group_name": "homogeneousCluster"}
    tree.resource_config.write_text(json.dumps(resources))
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


def run_training_job(
    base_dir: str | os.PathLike[str], *, timeout: float | None = None, environ: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run the ``sagemaker-training`` toolkit (the image's ``train`` command) on a job tree; never raises on failure."""
    return _toolkit(base_dir, environ).communicate_result(timeout)


class _Toolkit(subprocess.Popen):
    """The toolkit in a session of its own, so that stopping it stops the script it started too."""

    def communicate_result(self, timeout: float | None) -> subprocess.CompletedProcess:
        try:
            stdout, stderr = self.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._stop_group(signal.SIGKILL)
            stdout, stderr = self.communicate()
            raise
        except BaseException:  # Ctrl-C, SIGTERM made KeyboardInterrupt: the job stops as SageMaker stops one
            self._stop_group(signal.SIGTERM)
            try:
                self.communicate(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                self._stop_group(signal.SIGKILL)
            raise
        return subprocess.CompletedProcess(self.args, self.returncode, stdout, stderr)

    def _stop_group(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signum)


def _toolkit(base_dir: str | os.PathLike[str], environ: Mapping[str, str] | None = None) -> _Toolkit:
    env = {
        **os.environ,
        layout.BASE_DIR_ENV: str(Path(base_dir).resolve()),  # the toolkit runs the script from code/
        layout.PROGRAM_ENV: layout.DEFAULT_PROGRAM,
        layout.LOCAL_MODE_ENV: "true",  # skip the toolkit's DNS wait for algo-1
        "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", "eu-west-1"),
    }
    env.update(environ or {})
    command = [sys.executable, "-c", "from sagemaker_training.cli.train import main; main()"]
    return _Toolkit(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def host_names(count: int) -> tuple[str, ...]:
    """SageMaker's host names of a job with ``count`` instances."""
    return tuple(f"algo-{i}" for i in range(1, count + 1))


def free_ports(count: int) -> list[int]:
    """``count`` TCP ports that were free on 127.0.0.1 a moment ago."""
    sockets = [socket.create_server(("127.0.0.1", 0)) for _ in range(count)]
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def run_hosts_job(
    root: str | os.PathLike[str],
    hyperparameters: Mapping[str, Any],
    channels: Mapping[str, str | os.PathLike[str]],
    count: int,
    *,
    sharded: bool = False,
    timeout: float | None = None,
    environ: Mapping[str, str] | None = None,
) -> dict[str, subprocess.CompletedProcess]:
    """A training job on ``count`` hosts, each a toolkit process on 127.0.0.1 with its own ``<root>/<host>`` tree.

    ``sharded``: each host's channels get every ``count``-th partition (sub-folder or file) only, as a
    ``ShardedByS3Key`` channel of whole partitions does; else every host gets all (``FullyReplicated``). Only the
    first host's ``model`` folder gets the model. Returns each host's finished process.
    """
    hosts = host_names(count)
    ports = free_ports(2 * count)
    addresses = {host: ["127.0.0.1", ports[i], ports[count + i]] for i, host in enumerate(hosts)}
    env = {hosts_.ADDRESSES_ENV: json.dumps(addresses), **(environ or {})}
    processes = {}
    for rank, host in enumerate(hosts):
        shares = {name: _share(Path(src), rank, count) if sharded else src for name, src in channels.items()}
        base = write_job_tree(
            Path(root) / host, hyperparameters, {},
            hosts=hosts, current_host=host, distribution=hosts_.SHARDED if sharded else "FullyReplicated",
        )  # fmt: skip
        _copy_channels(base, shares, hosts_.SHARDED if sharded else "FullyReplicated")
        processes[host] = _toolkit(base, env)
    return {host: process.communicate_result(timeout) for host, process in processes.items()}


def _share(source: Path, rank: int, count: int) -> list[Path]:
    """Every ``count``-th entry of a channel folder (``spec.json`` too): each object goes to one host."""
    entries = sorted(source.iterdir()) if source.is_dir() else [source]
    return [entry for i, entry in enumerate(entries) if i % count == rank]


def _copy_channels(base: Path, channels: Mapping[str, Any], distribution: str) -> None:
    tree = ContainerTree(base)
    data_config = {name: {"TrainingInputMode": "File", "S3DistributionType": distribution} for name in channels}
    (tree.config_dir / layout.INPUT_DATA_CONFIG_FILE).write_text(json.dumps(data_config))
    for name, source in channels.items():
        target = tree.channel_dir(name)
        target.mkdir(parents=True, exist_ok=True)
        for entry in source if isinstance(source, list) else [Path(source)]:
            if entry.is_dir() and isinstance(source, list):
                shutil.copytree(entry, target / entry.name)
            elif entry.is_dir():
                shutil.copytree(entry, target, dirs_exist_ok=True)
            else:
                shutil.copy2(entry, target / entry.name)
