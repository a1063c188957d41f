"""Image measurements: build time and size of both images, a training job, container start to first ``/ping`` 200.

Builds both images with ``docker/build.sh`` (tags ``forecaster-{train,infer}:<--tag>``), runs one training job
on synthetic data the way SageMaker runs it, starts the inference container twice (published on 127.0.0.1, and
hardened: ``--read-only --network none``) and times SIGTERM to exit. Prints a table and writes
``bench/results/docker.json``. The behaviour of the images is tested by ``tests/test_docker.py``; this script
only measures. Needs a Docker engine (``docker/dockerd.sh start``).

    .venv/bin/python bench/docker.py [--base-image local/debian:bookworm] [--tag bench]
    .venv/bin/python bench/docker.py --train-image forecaster-train:test --infer-image forecaster-infer:test

``--train-image`` / ``--infer-image``: measure images built already (no build, no build time): the smoke run of
tests/test_bench_smoke.py reuses the images the image tests built.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO_ROOT, RESULTS_DIR, machine_info, markdown_table

LOCAL_BASE = "local/debian:bookworm"
HYPERPARAMETERS = {"horizon": "7", "num_boost_round": "40", "quantile_num_boost_round": "30"}


def sh(*args: str, timeout: float = 1500, **kwargs) -> str:
    """Run a command; raise with its output tail when it fails; return its stdout."""
    result = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False, **kwargs)
    if result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(args)} exited {result.returncode}\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
        )
    return result.stdout.strip()


def timed(*args: str, **kwargs) -> tuple[str, float]:
    start = time.monotonic()
    out = sh(*args, **kwargs)
    return out, round(time.monotonic() - start, 2)


def wait_for_ping(container: str, command: list[str], start: float, timeout: float = 120) -> float:
    """Seconds from ``start`` until ``command`` (run in or next to the container) prints 200."""
    while time.monotonic() < start + timeout:
        status = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False).stdout.strip()
        if status.endswith("200"):
            return round(time.monotonic() - start, 2)
        time.sleep(0.1)
    logs = subprocess.run(["docker", "logs", container], capture_output=True, text=True, check=False).stderr
    raise RuntimeError(f"/ping never answered 200 within {timeout} s:\n{logs[-3000:]}")


PING_INSIDE = (
    "import urllib.request as u\ntry: print(u.urlopen('http://127.0.0.1:8080/ping', timeout=5).status)\n"
    "except OSError: print(0)"
)


def serve(image: str, model_dir: Path, *extra: str, inside: bool) -> dict[str, float]:
    """Start the inference container; time start -> first /ping 200 and SIGTERM -> exit."""
    start = time.monotonic()
    container = sh("docker", "run", "-d", *extra, "-v", f"{model_dir}:/opt/ml/model:ro", image, "serve")
    try:
        if inside:
            probe = ["docker", "exec", container, "python3", "-c", PING_INSIDE]
        else:
            port = sh("docker", "port", container, "8080/tcp").split(":")[-1]
            url = f"http://127.0.0.1:{port}/ping"
            probe = [sys.executable, "-c", PING_INSIDE.replace("http://127.0.0.1:8080/ping", url)]
        to_ping = wait_for_ping(container, probe, start)
        _, to_exit = timed("docker", "stop", "-t", "30", container)
        return {"start_to_ping_s": to_ping, "sigterm_to_exit_s": to_exit}
    finally:
        subprocess.run(["docker", "rm", "-f", container], capture_output=True, check=False)


def train(image: str, root: Path) -> float:
    """One training job with the /opt/ml tree bind-mounted; returns its seconds (model files end up in root)."""
    from forecaster.synth import write_dataset

    config = root / "input" / "config"
    config.mkdir(parents=True)
    (config / "hyperparameters.json").write_text(json.dumps(HYPERPARAMETERS))
    channel = {"train": {"ContentType": "text/csv", "TrainingInputMode": "File"}}
    (config / "inputdataconfig.json").write_text(json.dumps(channel))
    hosts = {"current_host": "algo-1", "hosts": ["algo-1"], "current_group_name": "homogeneousCluster"}
    (config / "resourceconfig.json").write_text(json.dumps(hosts))
    write_dataset(root / "input" / "data" / "train", stores=3, items=4, days=120, seed=0)
    for sub in ("model", "output"):
        (root / sub).mkdir()
    mounts = [arg for sub in ("input", "model", "output") for arg in ("-v", f"{root / sub}:/opt/ml/{sub}")]
    _, seconds = timed("docker", "run", "--rm", "--hostname", "algo-1", *mounts, image, "train")
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-image", default=os.environ.get("BASE_IMAGE"), help="default: local/debian:bookworm")
    parser.add_argument("--tag", default=os.environ.get("FORECASTER_TEST_TAG", "bench"), help="image tag suffix")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "docker.json")
    parser.add_argument("--train-image", help="measure this training image as it is (no build)")
    parser.add_argument("--infer-image", help="measure this inference image as it is (no build)")
    options = parser.parse_args()
    base = options.base_image or LOCAL_BASE
    results: dict[str, object] = {"base_image": base}
    images = {}
    for kind in ("train", "infer"):
        given = getattr(options, f"{kind}_image")
        images[kind] = given or f"forecaster-{kind}:{options.tag}"
        if given:  # built already: no build time
            results[f"{kind}_build_s"] = None
        else:
            build = [str(REPO_ROOT / "docker" / "build.sh"), kind, images[kind]]
            _, results[f"{kind}_build_s"] = timed(*build, env={**os.environ, "BASE_IMAGE": base})
        size = int(sh("docker", "image", "inspect", "-f", "{{.Size}}", images[kind]))
        results[f"{kind}_image_mb"] = round(size / 1e6, 1)
    with tempfile.TemporaryDirectory(prefix="bench-docker-") as folder:
        root = Path(folder) / "opt_ml"
        results["train_run_s"] = train(images["train"], root)
        published = serve(images["infer"], root / "model", "-p", "127.0.0.1::8080", inside=False)
        hardened = serve(
            images["infer"], root / "model", "--read-only", "--tmpfs", "/tmp", "--network", "none", inside=True
        )
        results["start_to_ping_s"] = published["start_to_ping_s"]
        results["start_to_ping_read_only_s"] = hardened["start_to_ping_s"]
        results["sigterm_to_exit_s"] = hardened["sigterm_to_exit_s"]
        # files the root container wrote into the bind mount: hand them back so the folder can be removed
        owner = f"{os.getuid()}:{os.getgid()}"
        chown = ["docker", "run", "--rm", "--user", "0", "--entrypoint", "chown", "-v", f"{root}:/x"]
        subprocess.run([*chown, images["train"], "-R", owner, "/x"], capture_output=True, check=False)
    rows = [{"measure": key, "value": value} for key, value in results.items()]
    print(markdown_table(rows, [("measure", "measure", ""), ("value", "value", "")]))
    options.out.parent.mkdir(parents=True, exist_ok=True)
    options.out.write_text(json.dumps({**results, "machine": machine_info()}, indent=2) + "\n")
    print(f"written to {options.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
