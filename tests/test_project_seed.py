"""`forecaster project init|bundle`: deterministic seed repositories with valid, OIDC-only Bitbucket pipelines."""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from aws_helpers import use_fake_aws
from forecaster import __version__
from forecaster.cli.main import main
from forecaster.errors import InvalidParameterError
from forecaster.project.seed import REPOSITORIES, TOKENS, init
from pipeline_helpers import check_golden

PROJECT, WORKSPACE = "demand-fresh", "acme"
BIN = Path(sys.executable).parent
#: keys Bitbucket Pipelines accepts in a step (those this test lets the seed use)
STEP_KEYS = {
    "name", "script", "image", "caches", "services", "deployment", "trigger", "max-time", "oidc", "size", "artifacts"
}  # fmt: skip
TOP_KEYS = {"image", "options", "definitions", "pipelines"}
PINNED = re.compile(r"^[\w./-]+(:\d+(\.\d+){2}[\w.-]*|@sha256:[0-9a-f]{64})$")  # x.y.z tag or digest
AWS_COMMANDS = ("forecaster pipeline", "forecaster registry", "forecaster deploy", "aws ")


@pytest.fixture(scope="module")
def seeded(tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("seed")
    return {key: path for key, (path, _) in init(PROJECT, out, WORKSPACE).items()}


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


def _steps(node) -> list[dict]:
    """Every step under ``node`` (anchored definitions resolve to the same dicts)."""
    steps = []

    def walk(node) -> None:
        if isinstance(node, dict):
            if "step" in node:
                steps.append(node["step"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(node)
    return steps


def test_init_is_byte_stable_and_matches_the_golden_manifest(seeded, tmp_path, capsys):
    manifest = {}
    for key, repo in seeded.items():
        assert repo.name == f"{PROJECT}-{REPOSITORIES[key]}"
        assert _git(repo, "rev-list", "--count", "HEAD") == "1" and _git(repo, "status", "--porcelain") == ""
        assert _git(repo, "log", "-1", "--format=%an <%ae> %aI | %cn <%ce> %cI") == (
            "forecaster project template <forecaster@users.noreply.invalid> 2025-01-01T00:00:00+00:00 | "
            "forecaster project template <forecaster@users.noreply.invalid> 2025-01-01T00:00:00+00:00"
        )
        files = {
            path: hashlib.sha256((repo / path).read_bytes()).hexdigest() for path in _git(repo, "ls-files").split()
        }
        manifest[key] = {"commit": _git(repo, "rev-parse", "HEAD"), "files": files}
    check_golden(manifest, "project-init")

    assert main(["project", "init", "--name", PROJECT, "--out", str(tmp_path), "--bitbucket-workspace", WORKSPACE]) == 0
    printed = capsys.readouterr().out
    for key, entry in manifest.items():
        assert f"{key}: {tmp_path / f'{PROJECT}-{REPOSITORIES[key]}'} (commit {entry['commit']})" in printed


def test_init_refuses_bad_names_and_existing_directories(seeded, tmp_path):
    for name in ("Demand", "x", "demand_fresh", "-demand", "a" * 33):
        with pytest.raises(InvalidParameterError, match="project name"):
            init(name, tmp_path)
    with pytest.raises(InvalidParameterError, match="exists already"):
        init(PROJECT, seeded["build"].parent)
    assert list(tmp_path.iterdir()) == []


def test_bundle_holds_the_raw_seed_files_and_the_manifest(tmp_path):
    import json

    assert main(["project", "bundle", "--out", str(tmp_path / "seed.zip")]) == 0
    with zipfile.ZipFile(tmp_path / "seed.zip") as archive:
        names = archive.namelist()
        manifest = json.loads(archive.read("manifest.json"))
        assert "{{project_name}}" in archive.read("build/bitbucket-pipelines.yml").decode()
        requirements = archive.read("build/requirements.txt").decode()
    assert f"forecaster[pipelines]=={__version__}\n" in requirements  # the release that wrote the seed
    assert manifest == {"tokens": TOKENS, "repositories": REPOSITORIES}
    assert {"build/.gitignore", "build/settings/build.json", "deploy/config/staging/inference.json"} <= set(names)


def test_pipelines_validate_against_the_bitbucket_schema(seeded):
    from importlib import resources

    vendored = resources.files("check_jsonschema") / "builtin_schemas" / "vendor" / "bitbucket-pipelines.json"
    assert vendored.is_file()  # the schema ships in the package: no network at test time
    files = [str(repo / "bitbucket-pipelines.yml") for repo in seeded.values()]
    command = [str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.bitbucket-pipelines", *files]
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    broken = seeded["build"].parent / "broken.yml"  # the check is real: a misplaced key fails it
    broken.write_text("pipelines:\n  default:\n    - step:\n        script: [echo]\n        oidc: maybe\n")
    assert subprocess.run([*command[:3], str(broken)], capture_output=True).returncode == 1


@pytest.mark.parametrize("key", ["build", "deploy"])
def test_steps_have_scripts_known_keys_pinned_images_and_oidc(seeded, key):
    document = yaml.safe_load((seeded[key] / "bitbucket-pipelines.yml").read_text())
    assert set(document) <= TOP_KEYS and PINNED.match(document["image"]), document["image"]
    assert document["options"]["max-time"] <= 120
    steps = _steps(document["pipelines"])
    assert steps
    for step in steps:
        assert set(step) <= STEP_KEYS and step["script"] and step["max-time"] <= 60, step["name"]
        assert PINNED.match(step.get("image", document["image"]))
        lines = [line for line in step["script"] if isinstance(line, str)]
        pipes = [line["pipe"] for line in step["script"] if isinstance(line, dict)]
        assert all(PINNED.match(pipe) for pipe in pipes), pipes
        if step.get("deployment") or pipes or any(command in line for line in lines for command in AWS_COMMANDS):
            assert step.get("oidc") is True, step["name"]  # AWS only through OpenID Connect
    if key == "deploy":
        deploy = [s for s in _steps(document["pipelines"]["custom"]) if s.get("deployment")]
        assert [(s["deployment"], s.get("trigger", "automatic")) for s in deploy] == [
            ("staging", "automatic"),
            ("production", "manual"),
        ]
        assert any("--wait" in line for line in deploy[0]["script"])  # the smoke test on staging


def test_no_access_keys_in_the_seed_code(seeded):
    for repo in seeded.values():
        for path in repo.rglob("*"):
            if path.is_file() and ".git" not in path.parts:
                assert not re.search(r"AWS_ACCESS_KEY|AWS_SECRET|aws_access_key", path.read_text()), path


def test_the_build_repository_logs_in_to_the_release_registry(seeded, monkeypatch):
    import base64
    import importlib.util

    import moto

    spec = importlib.util.spec_from_file_location("ecr_login", seeded["build"] / "ci" / "ecr_login.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    use_fake_aws(monkeypatch, region=None)  # the region is the registry URI's
    with moto.mock_aws():
        password = module.password("123456789012.dkr.ecr.eu-west-1.amazonaws.com/forecaster-train:0.1.0")
    import boto3

    with moto.mock_aws():
        token = boto3.client("ecr", region_name="eu-west-1").get_authorization_token()["authorizationData"][0]
    assert password and password == base64.b64decode(token["authorizationToken"]).decode().split(":", 1)[1]
