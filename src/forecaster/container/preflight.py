"""Checks the training image runs before the sagemaker-training toolkit, so that habits fail fast or just work.

- **This host must resolve.** The toolkit resolves every host of ``resourceconfig.json`` by DNS and retries for up
  to 15 minutes: ``docker run IMAGE train`` without ``--hostname algo-1`` seems to hang. Here the current host
  gets a few seconds; then the run stops with a failure file saying what to do. (Other hosts of a multi-host
  job are left to the toolkit's retry: on SageMaker their DNS records can appear later.)
- **The entry script must be found.** The classic bring-your-own-container examples mount a whole directory over
  ``/opt/ml`` (``docker run -v $PWD/test_dir:/opt/ml IMAGE train``), hiding the script baked into
  ``/opt/ml/code``; it is copied there from the image's spare copy.

Run as ``python -m forecaster.container.preflight`` by the image's entry point; exit status 0 = go on.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import time
from pathlib import Path

from forecaster.container import layout
from forecaster.container.layout import ContainerTree

#: the spare copy of the entry script in the training image (Dockerfile.train)
BAKED_CODE_DIR = Path("/opt/forecaster/code")
RESOLVE_SECONDS = 10.0


def current_host(config_file: Path) -> str | None:
    """``current_host`` of ``resourceconfig.json`` (None without the file: the toolkit then uses algo-1 alone)."""
    try:
        return str(json.loads(config_file.read_text())["current_host"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def resolves(host: str, seconds: float | None = None) -> bool:
    """Whether ``host`` resolves by DNS within ``seconds`` (default ``RESOLVE_SECONDS``; retried every 0.5 s)."""
    deadline = time.monotonic() + (RESOLVE_SECONDS if seconds is None else seconds)
    while True:
        try:
            socket.getaddrinfo(host, None)
            return True
        except OSError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.5)


def restore_entry_script(code_dir: Path, program: str, baked: Path = BAKED_CODE_DIR) -> Path | None:
    """Copy the baked entry script into ``code_dir`` when a mount hid it; return the copy's path if made."""
    target = code_dir / program
    source = baked / program
    if target.exists() or not source.is_file():
        return None
    code_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy2(source, target)
    return target


def _fail(message: str) -> int:
    print(f"forecaster train: error: {message}", file=sys.stderr)
    failure = ContainerTree.from_env().failure_file
    try:
        failure.parent.mkdir(parents=True, exist_ok=True)
        failure.write_text(message + "\n")
    except OSError:
        pass
    return 1


def main() -> int:
    """Run the checks; return the exit status (0 = start the toolkit)."""
    tree = ContainerTree.from_env()
    host = current_host(tree.resource_config)
    if host is not None and not resolves(host):
        return _fail(
            f"This container cannot resolve its own host name {host!r} (current_host of "
            f"{tree.resource_config}); the training toolkit would retry for 15 minutes. Start the "
            f"container with that host name: docker run --hostname {host} ... IMAGE train (SageMaker and the SDK's "
            "local mode do this)."
        )
    program = os.environ.get(layout.PROGRAM_ENV, layout.DEFAULT_PROGRAM)
    copied = restore_entry_script(tree.code_dir, program)
    if copied is not None:
        print(f"forecaster: {copied} was hidden by a mount over {tree.base}; copied the image's entry script there")
    return 0


if __name__ == "__main__":
    sys.exit(main())
