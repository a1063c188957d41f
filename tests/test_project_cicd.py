"""The seed repositories' Bitbucket pipelines, line by line in a shell, against moto_server on 127.0.0.1.

What Bitbucket would provide is set as environment: the repository and deployment variables the seeding
Lambda sets, BITBUCKET_COMMIT and an OIDC token file. Only two things are left out: steps that build images
(``services: [docker]``) and ``pip install`` (the test's virtual environment has the pinned packages).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import iam_oracle as oracle
from aws_helpers import FAKE_CREDENTIALS, standins_server
from forecaster.project.seed import init
from forecaster.registry.sagemaker import SageMakerRegistry

pytestmark = pytest.mark.slow

PROJECT, PROJECT_ID, REGION, ACCOUNT = "demand-fresh", "p-abcdef123456", "eu-west-1", "123456789012"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
#: the roles' ARNs as the template names them
ROLES = oracle.physical(oracle.load(oracle.TEMPLATES / "project.yml"))[1]
PIPELINE_ROLE = ROLES["PipelineExecutionRole.Arn"]
BIN = Path(sys.executable).parent
ECR = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"
RELEASE = f"999999999999.dkr.ecr.{REGION}.amazonaws.com"  # the forecaster release images' registry
#: a stand-in for pip in the CI shell: the packages are installed already
PIP_STUB = 'pip() { echo "pip $* (skipped: the test venv has the pinned packages)"; }\n'
#: a stand-in for Docker in the CI shell: calls are logged; a push leaves the tag in (moto's) ECR
DOCKER_STUB = (
    'docker() { echo "docker $*" >> "$DOCKER_LOG"; if [ "$1" = login ]; then cat > /dev/null; fi; '
    f'if [ "$1" = push ]; then python {Path(__file__).parent / "ci_fake_docker_push.py"} "$2"; fi; }}\n'
)


#: the model-build pipeline's execution whose RegisterModel step the CI tests imitate, and its baselines
BUILD_RUN = "s3://artifacts/model-build/exec-1"
BUILD_BASELINES = {
    "data_quality_constraints": f"{BUILD_RUN}/DataQualityBaseline/baseline/constraints.json",
    "model_quality_constraints": f"{BUILD_RUN}/ModelQualityBaseline/baseline/constraints.json",
    "explainability_report": f"{BUILD_RUN}/ExplainabilityBaseline/baseline/analysis.json",
}


def register_build_model(registry, group: str, image: str):
    """Register what the model-build pipeline's RegisterModel step leaves (pending approval); return the version."""
    return registry.register(group, f"{BUILD_RUN}/Train/model.tar.gz", image_uri=image, baselines=BUILD_BASELINES)


@pytest.fixture(scope="module")
def moto_url(tmp_path_factory):
    with standins_server(tmp_path_factory.mktemp("moto") / "moto.log") as url:
        yield url


@pytest.fixture
def ci_env(fake_aws, moto_url, tmp_path):
    """The environment of a Bitbucket step: repository variables, build variables, AWS at moto_server.

    The test's own clients talk to moto_server with the fake credentials too (``fake_aws``).
    """
    token = tmp_path / "oidc-token"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SAGEMAKER_", "FORECASTER_"))}
    env |= {
        "PATH": f"{BIN}{os.pathsep}{env['PATH']}",
        "HOME": str(tmp_path),
        "AWS_ENDPOINT_URL": moto_url,
        **FAKE_CREDENTIALS,  # moto's; the seed code itself only uses the OIDC web identity
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCOUNT_ID": ACCOUNT,
        "SAGEMAKER_PROJECT_ID": PROJECT_ID,
        "SAGEMAKER_PIPELINE_ROLE_ARN": PIPELINE_ROLE,
        "ARTIFACT_BUCKET": "artifacts",
        "DATA_BUCKET": "data",
        "SCHEDULER_ROLE_ARN": ROLES["SchedulerRole.Arn"],
        "BITBUCKET_COMMIT": COMMIT,
        "BITBUCKET_BUILD_NUMBER": "7",
        "BITBUCKET_STEP_OIDC_TOKEN": "eyJhbGciOiJSUzI1NiJ9.e30.c2lnbmF0dXJl",
        "AWS_OIDC_ROLE_ARN": ROLES["BuildRole.Arn"],
        "PIP_INDEX_URL": "https://pypi.example.internal/simple",  # a secured repository variable
        "FORECASTER_TRAIN_IMAGE": f"{RELEASE}/forecaster-train:0.1.0",
        "FORECASTER_INFER_IMAGE": f"{RELEASE}/forecaster-infer:0.1.0",
    }
    token.write_text(env["BITBUCKET_STEP_OIDC_TOKEN"])
    import boto3

    s3 = boto3.client("s3", endpoint_url=moto_url, region_name=REGION)
    with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):  # moto_server serves the whole module
        s3.create_bucket(Bucket="artifacts", CreateBucketConfiguration={"LocationConstraint": REGION})
    return env


def image_repositories(env: dict) -> None:
    """The project's two ECR repositories, as the template creates them (where no stack of the test does)."""
    import boto3

    ecr = boto3.client("ecr", endpoint_url=env["AWS_ENDPOINT_URL"], region_name=REGION)
    for kind in ("train", "infer"):
        with contextlib.suppress(ecr.exceptions.RepositoryAlreadyExistsException):
            ecr.create_repository(repositoryName=f"{PROJECT}-{kind}", imageTagMutability="IMMUTABLE")


def _client(env: dict):
    import boto3

    return boto3.client("sagemaker", endpoint_url=env["AWS_ENDPOINT_URL"], region_name=REGION)


def _run_steps(repo: Path, steps: list[dict], env: dict) -> list[str]:
    """Run each step's script lines in order in a fresh bash (as Bitbucket runs steps); return the step names.

    Docker is a stand-in (:data:`DOCKER_STUB`) that logs to ``$DOCKER_LOG`` (default: ``docker.log`` in ``repo``).
    """
    ran = []
    env = {"DOCKER_LOG": str(repo / "docker.log"), **env}
    for entry in steps:
        step = entry["step"]
        lines = [line for line in step["script"] if isinstance(line, str)]
        script = "set -eo pipefail\n" + PIP_STUB + DOCKER_STUB + "\n".join(lines) + "\n"
        done = subprocess.run(["bash", "-c", script], cwd=repo, env=env, capture_output=True, text=True)
        assert done.returncode == 0, f"step {step['name']!r} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        ran.append(step["name"])
    return ran


def _parameters(client, name: str) -> dict:
    definition = json.loads(client.describe_pipeline(PipelineName=name)["PipelineDefinition"])
    return {p["Name"]: p.get("DefaultValue") for p in definition["Parameters"]}


def test_build_then_approval_then_deploy(ci_env, tmp_path):
    repos = {key: path for key, (path, _) in init(PROJECT, tmp_path / "seed", "acme").items()}
    client = _client(ci_env)
    image_repositories(ci_env)

    build = yaml.safe_load((repos["build"] / "bitbucket-pipelines.yml").read_text())
    ran = _run_steps(repos["build"], build["pipelines"]["branches"]["main"], ci_env)
    assert ran == ["Lint and test", "Build and push images", "Upsert and start the model-build pipeline"]
    name = f"{PROJECT}-model-build"
    parameters = _parameters(client, name)
    assert parameters["ProcessingImage"] == f"{ECR}/{PROJECT}-train:{COMMIT}"
    assert parameters["InferenceImage"] == f"{ECR}/{PROJECT}-infer:{COMMIT}"
    assert parameters["CodeVersion"] == COMMIT and parameters["ModelPackageGroupName"] == PROJECT
    assert parameters["InputData"] == f"s3://data/{PROJECT}/history/" and parameters["Spec"] == "/opt/ml/code/spec.json"
    assert client.describe_pipeline(PipelineName=name)["RoleArn"] == PIPELINE_ROLE
    assert len(client.list_pipeline_executions(PipelineName=name)["PipelineExecutionSummaries"]) == 1

    # what the model-build pipeline's RegisterModel step leaves, then a reviewer's approval
    registry = SageMakerRegistry(client=client)
    image = f"{ECR}/{PROJECT}-infer:{COMMIT}"
    version = register_build_model(registry, PROJECT, image)
    registry.register(
        PROJECT, "s3://artifacts/newer-but-pending/model.tar.gz", image_uri=image, baselines=BUILD_BASELINES
    )
    registry.approve(PROJECT, version.version, "backtest reviewed")

    deploy = yaml.safe_load((repos["deploy"] / "bitbucket-pipelines.yml").read_text())
    env = ci_env | {"MODEL_PACKAGE_ARN": version.identifier}
    assert _run_steps(repos["deploy"], deploy["pipelines"]["branches"]["main"], env) == ["Validate stage configs"]
    steps = [entry for entry in deploy["pipelines"]["custom"]["deploy-approved-model"] if "step" in entry]
    for entry in steps:  # each deployment has its own OIDC role (a deployment variable)
        stage = entry["step"]["deployment"]
        _run_steps(repos["deploy"], [entry], env | {"AWS_OIDC_ROLE_ARN": f"arn:aws:iam::{ACCOUNT}:role/{stage}"})
    for stage in ("staging", "production"):
        inference = _parameters(client, f"{PROJECT}-batch-inference-{stage}")
        assert inference["ModelPackageArn"] == version.identifier
        assert inference["ModelDataUrl"] == f"{BUILD_RUN}/Train/model.tar.gz" and inference["InferenceImage"] == image
        assert inference["DataQualityBaselineUri"] == f"{BUILD_RUN}/DataQualityBaseline/baseline"
        assert inference["OutputPrefix"] == f"s3://artifacts/{stage}/batch-inference"
        quality = _parameters(client, f"{PROJECT}-model-quality-{stage}")
        assert quality["ModelQualityBaselineUri"] == f"{BUILD_RUN}/ModelQualityBaseline/baseline"
        assert quality["ModelDataUrl"] == f"{BUILD_RUN}/Train/model.tar.gz"
        assert quality["GroundTruthData"] == f"s3://data/{PROJECT}/{stage}/ground-truth/"
    instance_types = {
        stage: _parameters(client, f"{PROJECT}-batch-inference-{stage}")["TransformInstanceType"]
        for stage in ("staging", "production")
    }
    assert instance_types == {"staging": "ml.m5.xlarge", "production": "ml.m5.4xlarge"}
    executions = {
        stage: client.list_pipeline_executions(PipelineName=f"{PROJECT}-batch-inference-{stage}")
        for stage in ("staging", "production")
    }
    assert len(executions["staging"]["PipelineExecutionSummaries"]) == 1  # the smoke test
    assert executions["production"]["PipelineExecutionSummaries"] == []

    import boto3

    scheduler = boto3.client("scheduler", endpoint_url=ci_env["AWS_ENDPOINT_URL"], region_name=REGION)
    schedules = {item["Name"]: item for item in scheduler.list_schedules()["Schedules"]}
    # config/<stage>/schedules.json: production is scheduled by Airflow only (docs/airflow.md, one scheduler), so
    # EventBridge Scheduler runs staging's weekly batch inference and nothing of production
    assert set(schedules) == {f"{PROJECT}-batch-inference-staging"}
    weekly = scheduler.get_schedule(Name=f"{PROJECT}-batch-inference-staging")
    assert weekly["ScheduleExpression"] == "cron(0 4 ? * MON *)"
    assert weekly["Target"]["Arn"].endswith(f":pipeline/{PROJECT}-batch-inference-staging")
    assert weekly["Target"]["RoleArn"] == ci_env["SCHEDULER_ROLE_ARN"]


def _deploy(repo: Path, env: dict, event_arn: str) -> None:
    """The custom pipeline as the trigger starts it for one event: staging, then (manual) production."""
    deploy = yaml.safe_load((repo / "bitbucket-pipelines.yml").read_text())
    for entry in [e for e in deploy["pipelines"]["custom"]["deploy-approved-model"] if "step" in e]:
        stage = entry["step"]["deployment"]
        role = {"AWS_OIDC_ROLE_ARN": f"arn:aws:iam::{ACCOUNT}:role/{stage}", "MODEL_PACKAGE_ARN": event_arn}
        _run_steps(repo, [entry], env | role)


def deployed(ci_env: dict) -> dict[str, str]:
    """Per stage: the model package its stack records, checked against its pipelines' parameters and tags."""
    import boto3

    from forecaster.pipelines.deployment import MODEL_TAG, STAGE_TAG, stack_name

    cloudformation = boto3.client("cloudformation", endpoint_url=ci_env["AWS_ENDPOINT_URL"], region_name=REGION)
    client = _client(ci_env)
    found = {}
    for stage in ("staging", "production"):
        stack = cloudformation.describe_stacks(StackName=stack_name(PROJECT, stage))["Stacks"][0]
        arn = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}["ModelPackageArn"]
        stack_tags = {t["Key"]: t["Value"] for t in stack["Tags"]}
        assert stack_tags == {
            "sagemaker:project-name": PROJECT,
            "sagemaker:project-id": PROJECT_ID,
            STAGE_TAG: stage,
            MODEL_TAG: arn,
        }
        pipeline = f"{PROJECT}-batch-inference-{stage}"
        assert _parameters(client, pipeline)["ModelPackageArn"] == arn
        pipeline_arn = client.describe_pipeline(PipelineName=pipeline)["PipelineArn"]
        tags = {t["Key"]: t["Value"] for t in client.list_tags(ResourceArn=pipeline_arn)["Tags"]}
        assert tags[MODEL_TAG] == arn and tags[STAGE_TAG] == stage
        found[stage] = arn
    return found


@pytest.fixture
def emptied(moto_url):
    """moto_server (shared by the module) emptied before ``ci_env`` creates its bucket again."""
    import urllib.request

    urllib.request.urlopen(urllib.request.Request(f"{moto_url}/moto-api/reset", method="POST")).close()


def test_one_model_through_the_stages_rollback_and_reapproval(emptied, ci_env, tmp_path):
    repos = {key: path for key, (path, _) in init(PROJECT, tmp_path / "seed", "acme").items()}
    registry = SageMakerRegistry(client=_client(ci_env))
    image = f"{ECR}/{PROJECT}-infer:{COMMIT}"
    first = register_build_model(registry, PROJECT, image)
    registry.approve(PROJECT, first.version, "backtest reviewed")
    _deploy(repos["deploy"], ci_env, first.identifier)
    assert deployed(ci_env) == {"staging": first.identifier, "production": first.identifier}

    # a newer version is approved while an older approved one stays: staging and production get the event's ARN
    second = register_build_model(registry, PROJECT, image)
    registry.approve(PROJECT, second.version, "better backtest")
    newest_pending = register_build_model(registry, PROJECT, image)  # never approved: never deployed
    _deploy(repos["deploy"], ci_env, second.identifier)
    assert deployed(ci_env) == {"staging": second.identifier, "production": second.identifier}

    # rejecting a version that is not deployed changes nothing
    registry.reject(PROJECT, newest_pending.version, "not this one")
    _deploy(repos["deploy"], ci_env, newest_pending.identifier)
    assert deployed(ci_env) == {"staging": second.identifier, "production": second.identifier}

    # rejecting the deployed version rolls both stages back to the previous approved version
    registry.reject(PROJECT, second.version, "bad week in production")
    _deploy(repos["deploy"], ci_env, second.identifier)
    assert deployed(ci_env) == {"staging": first.identifier, "production": first.identifier}

    # approving the newest version deploys it; then re-approving the older rejected one deploys that one, though a
    # newer approved version exists (the event's ARN, not "latest approved")
    registry.approve(PROJECT, newest_pending.version, "second look")
    _deploy(repos["deploy"], ci_env, newest_pending.identifier)
    assert deployed(ci_env) == {"staging": newest_pending.identifier, "production": newest_pending.identifier}
    registry.approve(PROJECT, second.version, "fixed the data, re-approved")
    _deploy(repos["deploy"], ci_env, second.identifier)
    assert deployed(ci_env) == {"staging": second.identifier, "production": second.identifier}


def test_a_step_without_the_package_index_stops_before_pip_runs(tmp_path):
    """Without PIP_INDEX_URL, pip took forecaster==0.1.0 from PyPI: an unrelated package's setup.py, in CI."""
    repos = {key: path for key, (path, _) in init(PROJECT, tmp_path / "seed", "acme").items()}
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}  # a step's environment without PIP_INDEX_URL
    for repo in repos.values():
        text = (repo / "bitbucket-pipelines.yml").read_text()
        lines = [line for line in text.splitlines() if "pip install" in line]
        assert lines and all("${PIP_INDEX_URL:?" in line for line in lines)
        script = f"set -eo pipefail\n{PIP_STUB}{lines[0].strip().removeprefix('- ')}"
        done = subprocess.run(["bash", "-c", script], cwd=repo, env=env, capture_output=True, text=True)
        assert done.returncode != 0 and "PIP_INDEX_URL is not set" in done.stderr, done.stderr
        assert "pip install" not in done.stdout  # stopped before pip ran


def test_the_images_step_pushes_new_tags_only_and_retrain_needs_pushed_images(ci_env, tmp_path):
    """ECR tags are immutable: a re-run of the images step failed on the push of an image it had pushed before."""
    repos = {key: path for key, (path, _) in init(PROJECT, tmp_path / "seed", "acme").items()}
    image_repositories(ci_env)
    build = yaml.safe_load((repos["build"] / "bitbucket-pipelines.yml").read_text())
    images = [e for e in build["pipelines"]["branches"]["main"] if e["step"]["name"] == "Build and push images"]
    log = tmp_path / "docker.log"
    env = ci_env | {"BITBUCKET_COMMIT": "feedface" * 5, "DOCKER_LOG": str(log)}
    _run_steps(repos["build"], images, env)
    calls = log.read_text().splitlines()
    pushed = [f"docker push {ECR}/{PROJECT}-{kind}:{'feedface' * 5}" for kind in ("train", "infer")]
    assert [c for c in calls if c.startswith("docker push")] == pushed
    assert f"--build-arg BASE_IMAGE={RELEASE}/forecaster-infer:0.1.0" in calls[-2]  # each image on its base
    log.unlink()
    _run_steps(repos["build"], images, env)  # the same commit again: nothing built, nothing pushed
    assert not [c for c in log.read_text().splitlines() if c.startswith(("docker build", "docker push"))]
    retrain = build["pipelines"]["custom"]["retrain"]
    unbuilt = ci_env | {"BITBUCKET_COMMIT": "0badc0de" * 5}
    with pytest.raises(AssertionError, match=r"No train image for commit 0badc0de.* run the main pipeline"):
        _run_steps(repos["build"], retrain, unbuilt)
