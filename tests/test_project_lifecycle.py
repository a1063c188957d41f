"""A project's whole life against moto_server, every AWS call checked by the IAM oracle.

1. the project stack is created by CloudFormation (moto's) from ``project.yml``; the types moto cannot create run
   as the explicit stand-ins of ``tests/moto_standins.py`` (the custom resources' handlers run in moto's process);
2. the build repository's steps: build (image steps skipped, as in test_project_cicd), push, upsert twice, run;
3. approve, then the trigger Lambda (in this process, with the function's environment from moto: EventBridge's
   delivery is the stand-in), then staging and production, with the same ARN in both;
4. approve a newer version and deploy it, reject it, and the deploy rolls back to the previous approved one;
5. delete the stack: nothing of the project is left but the artifact bucket, which the template retains.
"""

from __future__ import annotations

import io
import json
import os
import sys
import time
import zipfile

import pytest
import yaml

import iam_oracle as oracle
from aws_helpers import FAKE_CREDENTIALS, free_port, standins_server
from project_fakes import FakeBitbucket
from test_project_cicd import PROJECT, PROJECT_ID, REGION, _run_steps, ci_env, deployed, register_build_model  # noqa: F401
from test_project_iam import PARAMETERS, TEMPLATES, _recording, _role_denials, _stack_handler_denials
from test_project_lambdas import LAMBDAS

pytestmark = pytest.mark.slow

WORKSPACE = "acme"


@pytest.fixture(scope="module")
def fake():
    server = FakeBitbucket(WORKSPACE)
    yield server
    server.close()


@pytest.fixture(scope="module")
def calls_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("lambda-calls")


@pytest.fixture(scope="module")
def moto_url(tmp_path_factory, fake, calls_dir):
    """moto_server with the stand-ins, the Lambda handlers' AWS calls pointed back at it, Bitbucket at the fake."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")} | dict(FAKE_CREDENTIALS)
    env |= {
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "BITBUCKET_API_URL": fake.url,
        "STANDIN_LAMBDA_CODE": str(LAMBDAS),
        "STANDIN_CALLS": str(calls_dir),
    }
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    try:
        with standins_server(log, port, env) as url:
            yield url
    finally:
        print(log.read_text()[-5000:])


def _client(service: str, url: str):
    import boto3

    return boto3.client(service, endpoint_url=url, region_name=REGION)


def _platform(url: str, folder) -> dict:
    """What the platform team provides once: the assets (Lambda zip, seed bundle) and the Bitbucket secret."""
    from forecaster.project.seed import bundle

    s3 = _client("s3", url)
    s3.create_bucket(Bucket="assets", CreateBucketConfiguration={"LocationConstraint": REGION})
    s3.create_bucket(Bucket="data", CreateBucketConfiguration={"LocationConstraint": REGION})
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        for module in sorted(LAMBDAS.glob("*.py")):
            archive.write(module, module.name)
    s3.put_object(Bucket="assets", Key="forecaster-project/lambdas.zip", Body=code.getvalue())
    seed = bundle(folder / "seed.zip")
    s3.upload_file(str(seed), "assets", "forecaster-project/seed.zip")
    secret = _client("secretsmanager", url).create_secret(
        Name="bitbucket", SecretString=json.dumps({"token": "test-token"})
    )
    # the trigger's own token (pipeline write on the deploy repository); moto's CloudFormation cannot create one
    trigger = _client("secretsmanager", url).create_secret(
        Name="bitbucket-trigger", SecretString=json.dumps({"token": "test-token"})
    )
    return PARAMETERS | {
        "BitbucketSecretArn": secret["ARN"],
        "BitbucketTriggerSecretArn": trigger["ARN"],
        "AssetsBucket": "assets",
    }


def _platform_settings(url: str, parameters: dict) -> dict:
    """What product.yml writes once per account: the SSM parameters the project's SSM-typed parameters default to.

    Returns the parameters a data scientist still gives (the SSM-typed ones are left to their defaults).
    """
    ssm = _client("ssm", url)
    declared = oracle.load(TEMPLATES / "project.yml")["Parameters"]
    given = {}
    for key, value in parameters.items():
        kind = declared[key]["Type"]
        if not kind.startswith("AWS::SSM::Parameter::Value"):
            given[key] = value
            continue
        listed = isinstance(value, list)
        text, kind = (",".join(value), "StringList") if listed else (value, "String")
        ssm.put_parameter(Name=declared[key]["Default"], Value=text, Type=kind)
    return given


def _wait(cloudformation, stack: str, done: str) -> dict:
    for _ in range(600):
        try:
            found = cloudformation.describe_stacks(StackName=stack)["Stacks"][0]
        except cloudformation.exceptions.ClientError:
            return {"StackStatus": "DELETE_COMPLETE"}
        if not found["StackStatus"].endswith("IN_PROGRESS"):
            assert found["StackStatus"] == done, found
            return found
        time.sleep(0.2)
    raise AssertionError(f"{stack} still in progress")


#: the lifecycle's project parameters (the platform's secret ARN), for the oracle's policy resolution
LIVE: dict = {}


def _lambda_denials(calls_dir, role: str, function: str) -> list[str]:
    calls = oracle.recorded(calls_dir / f"{function}.jsonl")
    assert calls, f"no AWS call recorded for {function}"
    return _role_denials(role, calls, f"{function} Lambda", _names(), LIVE)


def _names() -> dict:
    return {"ARTIFACT_BUCKET": _bucket(), "SCHEDULER_ROLE_ARN": "-"}


def _bucket() -> str:
    return f"sagemaker-{PROJECT_ID}-{oracle.ACCOUNT}-{REGION}"


def _trigger(url: str, status_arn: tuple[str, str], event_id: str, fake) -> str:
    """EventBridge's delivery (stand-in): the trigger Lambda's handler with its environment from moto."""
    from test_project_lambdas import Context

    configuration = _client("lambda", url).get_function_configuration(FunctionName=f"{PROJECT}-trigger-deploy")
    status, arn = status_arn
    detail = {"ModelPackageGroupName": PROJECT, "ModelApprovalStatus": status, "ModelPackageArn": arn}
    event = {"id": event_id, "detail-type": "SageMaker Model Package State Change", "source": "aws.sagemaker"}
    sys.path.insert(0, str(LAMBDAS))
    saved = dict(os.environ)
    try:
        import trigger_deploy

        os.environ.update(configuration["Environment"]["Variables"] | {"AWS_ENDPOINT_URL": url})
        os.environ["BITBUCKET_API_URL"] = fake.url
        with oracle.recording() as calls:
            for _ in range(2):  # a retried delivery starts nothing
                trigger_deploy.handler(event | {"detail": detail}, Context())
    finally:
        sys.path.remove(str(LAMBDAS))
        os.environ.clear()
        os.environ.update(saved)
    denied = _role_denials("TriggerFunctionRole", calls, "trigger Lambda", _names(), LIVE)
    assert not denied, "\n".join(denied)
    run = fake.repositories[f"{PROJECT}-model-deploy"]["runs"][-1]
    return {v["key"]: v["value"] for v in run["variables"]}["MODEL_PACKAGE_ARN"]


def test_project_lifecycle(moto_url, fake, calls_dir, ci_env, tmp_path):  # noqa: F811
    from forecaster.registry.sagemaker import SageMakerRegistry

    url = moto_url
    cloudformation = _client("cloudformation", url)
    parameters = _platform(url, tmp_path)
    LIVE.update(parameters)
    stack = "SC-123456789012-pp-lifecycle"

    # 1. the project stack
    template = (TEMPLATES / "project.yml").read_text()
    cloudformation.create_stack(
        StackName=stack,
        TemplateBody=template,
        Parameters=[
            {"ParameterKey": k, "ParameterValue": ",".join(v) if isinstance(v, list) else v}
            for k, v in _platform_settings(url, parameters).items()
        ],
        Capabilities=["CAPABILITY_NAMED_IAM"],
    )
    created = _wait(cloudformation, stack, "CREATE_COMPLETE")
    outputs = {o["OutputKey"]: o["OutputValue"] for o in created.get("Outputs", [])}
    assert outputs["ArtifactBucket"] == _bucket()
    assert set(fake.repositories) == {f"{PROJECT}-model-build", f"{PROJECT}-model-deploy"}
    denied = _lambda_denials(calls_dir, "SeedFunctionRole", f"{PROJECT}-seed-repositories")
    resources = {
        r["LogicalResourceId"]: r.get("PhysicalResourceId")
        for r in cloudformation.describe_stack_resources(StackName=stack)["StackResources"]
        if "LogicalResourceId" in r  # moto lists a resource whose Condition is false (TriggerSecret) without ids
    }
    iam = _client("iam", url)
    scheduler_role = iam.get_role(RoleName=resources["SchedulerRole"])["Role"]["Arn"]
    env = ci_env | {
        "ARTIFACT_BUCKET": _bucket(),
        "SCHEDULER_ROLE_ARN": scheduler_role,
        "SAGEMAKER_PIPELINE_ROLE_ARN": outputs["PipelineExecutionRoleArn"],
    }

    # 2. the build repository's steps, twice (the second push updates the pipeline)
    from forecaster.project.seed import init

    repos = {key: path for key, (path, _) in init(PROJECT, tmp_path / "seed", WORKSPACE).items()}
    build = yaml.safe_load((repos["build"] / "bitbucket-pipelines.yml").read_text())
    log = tmp_path / "build.jsonl"
    for _ in range(2):
        _run_steps(repos["build"], build["pipelines"]["branches"]["main"], _recording(env, log))
    denied += _role_denials("BuildRole", oracle.recorded(log), "build repository", env)

    # 3. approve; the trigger; staging then production with the same ARN
    registry = SageMakerRegistry(client=_client("sagemaker", url))
    image = f"{oracle.ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{PROJECT}-infer:1"
    first = register_build_model(registry, PROJECT, image)
    registry.approve(PROJECT, first.version, "backtest reviewed")

    def deploy(event_arn: str) -> None:
        spec = yaml.safe_load((repos["deploy"] / "bitbucket-pipelines.yml").read_text())
        for entry in [e for e in spec["pipelines"]["custom"]["deploy-approved-model"] if "step" in e]:
            stage = entry["step"]["deployment"]
            role = {"staging": "StagingDeployRole", "production": "ProductionDeployRole"}[stage]
            stage_log = tmp_path / f"{stage}-{time.monotonic_ns()}.jsonl"
            _run_steps(repos["deploy"], [entry], _recording(env | {"MODEL_PACKAGE_ARN": event_arn}, stage_log))
            denied.extend(_role_denials(role, oracle.recorded(stage_log), f"deploy repository ({stage})", env))
            body = cloudformation.get_template(StackName=f"{PROJECT}-deploy-{stage}")["TemplateBody"]
            denied.extend(_stack_handler_denials(body if isinstance(body, dict) else json.loads(body), role, env))

    deploy(_trigger(url, ("Approved", first.identifier), "event-1", fake))
    assert deployed(env) == {"staging": first.identifier, "production": first.identifier}

    # 4. a newer version approved and deployed, then rejected: both stages roll back to the first
    second = register_build_model(registry, PROJECT, image)
    registry.approve(PROJECT, second.version, "better backtest")
    deploy(_trigger(url, ("Approved", second.identifier), "event-2", fake))
    assert deployed(env) == {"staging": second.identifier, "production": second.identifier}
    registry.reject(PROJECT, second.version, "bad week")
    deploy(_trigger(url, ("Rejected", second.identifier), "event-3", fake))
    assert deployed(env) == {"staging": first.identifier, "production": first.identifier}
    assert len(fake.repositories[f"{PROJECT}-model-deploy"]["runs"]) == 3  # one run per event, retries included

    # 5. delete the project: the cleanup deletes the deployment stacks and the versions, then the rest goes
    cloudformation.delete_stack(StackName=stack)
    _wait(cloudformation, stack, "DELETE_COMPLETE")
    denied += _lambda_denials(calls_dir, "DeploymentCleanupRole", f"{PROJECT}-cleanup-deployments")
    assert not denied, "\n".join(denied)
    assert _left(url) == {"s3 buckets": [_bucket()]}  # retained by the template (DeletionPolicy: Retain)


def _left(url: str) -> dict[str, list[str]]:
    """Everything in the account that names the project (its name or id), per kind; empty kinds left out."""
    found = {
        "stacks": [
            s["StackName"]
            for s in _client("cloudformation", url).list_stacks()["StackSummaries"]
            if s["StackStatus"] != "DELETE_COMPLETE"
        ],
        "s3 buckets": [b["Name"] for b in _client("s3", url).list_buckets()["Buckets"]],
        "ecr repositories": [r["repositoryName"] for r in _client("ecr", url).describe_repositories()["repositories"]],
        "iam roles": [r["RoleName"] for r in _client("iam", url).list_roles()["Roles"]],
        "oidc providers": [
            p["Arn"] for p in _client("iam", url).list_open_id_connect_providers()["OpenIDConnectProviderList"]
        ],
        "lambda functions": [f["FunctionName"] for f in _client("lambda", url).list_functions()["Functions"]],
        "log groups": [g["logGroupName"] for g in _client("logs", url).describe_log_groups()["logGroups"]],
        "event rules": [r["Name"] for r in _client("events", url).list_rules()["Rules"]],
        "sqs queues": _client("sqs", url).list_queues().get("QueueUrls", []),
        "pipelines": [p["PipelineName"] for p in _client("sagemaker", url).list_pipelines()["PipelineSummaries"]],
        "model package groups": [
            g["ModelPackageGroupName"]
            for g in _client("sagemaker", url).list_model_package_groups()["ModelPackageGroupSummaryList"]
        ],
        "schedules": [s["Name"] for s in _client("scheduler", url).list_schedules()["Schedules"]],
    }
    found["model packages"] = []
    for group in found["model package groups"]:
        found["model packages"] += [
            p["ModelPackageArn"]
            for p in _client("sagemaker", url).list_model_packages(ModelPackageGroupName=group)[
                "ModelPackageSummaryList"
            ]
        ]
    named = {
        kind: [n for n in names if PROJECT in n or PROJECT_ID in n or "StackSet" in n or "SC-" in n]
        for kind, names in found.items()
    }
    return {kind: names for kind, names in named.items() if names}
