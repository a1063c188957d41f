"""Docker helpers shared by the image tests (tests/test_docker.py) and SDK local mode (tests/sagemaker_local/).

Without a Docker engine the tests that need one skip (with the reason) on a developer machine and FAIL under
``CI=true``. The images are built once per test session (fixtures ``train_image``/``infer_image`` in
tests/conftest.py), tagged ``forecaster-{train,infer}:$FORECASTER_TEST_TAG`` (default ``test``) so that several
checkouts can share one engine.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LOCAL_BASE = "local/debian:bookworm"
PUBLIC_BASE = "debian:bookworm-slim"
# FORECASTER_TEST_TAG lets several checkouts share one engine without building over each other's images
TRAIN_TAG = f"forecaster-train:{os.environ.get('FORECASTER_TEST_TAG', 'test')}"
INFER_TAG = f"forecaster-infer:{os.environ.get('FORECASTER_TEST_TAG', 'test')}"
#: build seconds and image sizes of this session (written to bench/results/docker.json by test_docker.py)
MEASURED: dict[str, float | str] = {}


# ---- engine detection: skip on a laptop, fail in CI ----------------------------------------------------------
def is_ci(environ: dict[str, str] | os._Environ[str] = os.environ) -> bool:
    return environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def docker_problem() -> str | None:
    """Why Docker cannot be used here, or None when an engine answers."""
    if shutil.which("docker") is None:
        return "the docker CLI is not installed"
    try:
        info = subprocess.run(
            ["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True, timeout=30
        )
    except subprocess.TimeoutExpired:
        return "`docker info` did not answer within 30 s"
    if info.returncode != 0:
        detail = (info.stderr.strip().splitlines() or ["no output"])[-1]
        return f"no Docker engine answers (docker info: {detail})"
    return None


def require_docker() -> None:
    problem = docker_problem()
    if problem is None:
        return
    if is_ci():
        pytest.fail(
            f"CI=true but {problem}. CI must build and run the images: .ci/run installs docker.io and starts "
            "the engine with docker/dockerd.sh start."
        )
    pytest.skip(f"{problem}; start Docker (or run `make docker-test`, which starts dockerd) to run the image tests")


def sh(*args: str, timeout: float = 600, check: bool = True, **kwargs) -> subprocess.CompletedProcess[str]:
    """Run a command; on failure show its output in the test report."""
    result = subprocess.run(args, capture_output=True, text=True, timeout=timeout, **kwargs)
    if check and result.returncode != 0:
        pytest.fail(f"{' '.join(args)} exited {result.returncode}\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return result


def image_mb(tag: str) -> float:
    return int(sh("docker", "image", "inspect", "-f", "{{.Size}}", tag).stdout) / 1e6


def give_back_files(image: str, path: Path) -> None:
    """Files a root container wrote into a bind mount: hand them to the user running the tests."""
    if os.getuid() != 0 and path.exists():
        owner = f"{os.getuid()}:{os.getgid()}"
        chown = ["--user", "0", "--entrypoint", "chown", "-v", f"{path}:/x"]
        sh("docker", "run", "--rm", *chown, image, "-R", owner, "/x")


def build(kind: str, tag: str, base_image: str) -> str:
    start = time.monotonic()
    result = subprocess.run(
        [str(ROOT / "docker" / "build.sh"), kind, tag],
        capture_output=True,
        text=True,
        timeout=1500,
        env={**os.environ, "BASE_IMAGE": base_image},
    )
    if result.returncode != 0:
        pytest.fail(f"docker/build.sh {kind} failed:\n{result.stdout[-6000:]}\n{result.stderr[-3000:]}")
    MEASURED[f"{kind}_build_s"] = round(time.monotonic() - start, 1)
    MEASURED[f"{kind}_image_mb"] = round(image_mb(tag), 1)
    MEASURED["base_image"] = base_image
    return tag


def pick_base_image() -> str:
    """``$BASE_IMAGE``, else ``local/debian:bookworm`` when it exists, else ``debian:bookworm-slim``."""
    require_docker()
    if os.environ.get("BASE_IMAGE"):
        return os.environ["BASE_IMAGE"]
    has_local = sh("docker", "image", "inspect", LOCAL_BASE, check=False).returncode == 0
    return LOCAL_BASE if has_local else PUBLIC_BASE
