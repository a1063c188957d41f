"""templates/lambdas against a fake Bitbucket server on 127.0.0.1 and moto (Secrets Manager, S3)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aws_helpers import TEST_REGION
from forecaster.project.seed import REPOSITORIES, bundle, render, seed_files
from project_fakes import WORKSPACE_UUID, FakeBitbucket

LAMBDAS = Path(__file__).resolve().parents[1] / "templates" / "lambdas"
REGION = TEST_REGION  # the fake_aws fixture's
WORKSPACE, PROJECT, KEY = "acme", "demand-fresh", "DEMAND"
SECRET = {"token": "test-token", "secured_variables": {"PIP_INDEX_URL": "https://ci:s3cret@pypi.acme.test/simple"}}
BUILD_ROLE = "arn:aws:iam::123456789012:role/demand-fresh-bitbucket-build"


class Context:
    def get_remaining_time_in_millis(self) -> int:
        return 300_000


@pytest.fixture
def fake():
    server = FakeBitbucket(WORKSPACE)
    yield server
    server.close()


@pytest.fixture
def aws(fake_aws, tmp_path):
    import boto3
    import moto

    with moto.mock_aws():
        secret = boto3.client("secretsmanager").create_secret(Name="bitbucket", SecretString=json.dumps(SECRET))
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="assets", CreateBucketConfiguration={"LocationConstraint": REGION})
        s3.upload_file(str(bundle(tmp_path / "seed.zip")), "assets", "forecaster-project/seed.zip")
        yield secret["ARN"]


@pytest.fixture
def lambdas(monkeypatch, fake):
    """The Lambda modules, talking to the fake server, with recorded (not slept) backoff waits."""
    monkeypatch.syspath_prepend(str(LAMBDAS))
    monkeypatch.setenv("BITBUCKET_API_URL", fake.url)
    import bitbucket_api
    import seed_repositories
    import trigger_deploy

    sleeps: list[float] = []
    monkeypatch.setattr(bitbucket_api.time, "sleep", sleeps.append)
    return seed_repositories, trigger_deploy, sleeps


def _event(fake, secret_arn, request="Create", **changes):
    properties = {
        "ServiceToken": "arn:aws:lambda:eu-west-1:123456789012:function:seed",
        "ProjectName": PROJECT,
        "BitbucketWorkspace": WORKSPACE,
        "BitbucketProjectKey": KEY,
        "SecretArn": secret_arn,
        "SeedBucket": "assets",
        "SeedKey": "forecaster-project/seed.zip",
        "DeleteRepositories": "false",
        "RepositoryVariables": {
            "build": {"AWS_OIDC_ROLE_ARN": BUILD_ROLE, "ARTIFACT_BUCKET": "artifacts"},
            "deploy": {"ARTIFACT_BUCKET": "artifacts"},
        },
        "DeploymentVariables": {
            "staging": {"AWS_OIDC_ROLE_ARN": "arn:aws:iam::123456789012:role/demand-fresh-bitbucket-staging"},
            "production": {"AWS_OIDC_ROLE_ARN": "arn:aws:iam::123456789012:role/demand-fresh-bitbucket-production"},
        },
    } | changes
    return {
        "RequestType": request,
        "ResponseURL": fake.cfn_url,
        "StackId": "arn:aws:cloudformation:eu-west-1:123456789012:stack/SC-1/abc",
        "RequestId": f"request-{request}",
        "LogicalResourceId": "SeedRepositories",
        "ResourceType": "Custom::BitbucketRepositories",
        "ResourceProperties": properties,
        **({"PhysicalResourceId": f"{WORKSPACE}/{PROJECT}"} if request != "Create" else {}),
    }


def _variables(variables: dict) -> dict:
    return {key: (value["value"], value["secured"]) for key, value in variables.items()}


def test_create_makes_the_project_and_seeds_both_repositories(fake, aws, lambdas):
    seed, _, _ = lambdas
    data = seed.handler(_event(fake, aws), Context())

    (answer,) = fake.cfn_responses
    assert answer["Status"] == "SUCCESS" and answer["RequestId"] == "request-Create"
    assert answer["PhysicalResourceId"] == f"{WORKSPACE}/{PROJECT}" and answer["Data"] == data
    assert data["Audience"] == f"ari:cloud:bitbucket::workspace/{WORKSPACE_UUID.strip('{}')}"
    assert fake.projects[KEY]["name"] == PROJECT and fake.projects[KEY]["is_private"] is True
    values = {"ProjectName": PROJECT, "BitbucketWorkspace": WORKSPACE}
    for key, suffix in REPOSITORIES.items():
        repo = fake.repositories[f"{PROJECT}-{suffix}"]
        assert repo["body"] == {"scm": "git", "is_private": True, "project": {"key": KEY}}
        assert data[f"{key.capitalize()}RepositoryUuid"] == repo["uuid"]
        (commit,) = repo["commits"]
        files = {path: render(text, values) for path, text in seed_files(key).items()}
        assert commit == {"message": f"Seed {PROJECT}-{suffix} (forecaster project template)", "branch": "main"} | files
        assert "bitbucket-pipelines.yml" in files and "{{" not in "".join(files.values())
        assert repo["pipelines_enabled"] is True
        assert _variables(repo["variables"])["PIP_INDEX_URL"] == (SECRET["secured_variables"]["PIP_INDEX_URL"], True)
    build = fake.repositories[f"{PROJECT}-model-build"]
    assert _variables(build["variables"])["AWS_OIDC_ROLE_ARN"] == (BUILD_ROLE, False)
    deploy = fake.repositories[f"{PROJECT}-model-deploy"]
    environments = {e["name"]: e for e in deploy["environments"].values()}
    assert set(environments) == {"Staging", "Production"}
    assert data["ProductionEnvironmentUuid"] == environments["Production"]["uuid"]
    staging_role = _variables(environments["Staging"]["variables"])["AWS_OIDC_ROLE_ARN"]
    assert staging_role == ("arn:aws:iam::123456789012:role/demand-fresh-bitbucket-staging", False)


def test_update_keeps_the_code_and_updates_variables(fake, aws, lambdas):
    seed, _, _ = lambdas
    seed.handler(_event(fake, aws), Context())
    variables = {"build": {"AWS_OIDC_ROLE_ARN": BUILD_ROLE, "ARTIFACT_BUCKET": "new"}, "deploy": {}}
    seed.handler(_event(fake, aws, "Update", RepositoryVariables=variables), Context())

    assert [r["Status"] for r in fake.cfn_responses] == ["SUCCESS", "SUCCESS"]
    build = fake.repositories[f"{PROJECT}-model-build"]
    assert len(build["commits"]) == 1  # an Update never commits over the team's work
    assert _variables(build["variables"])["ARTIFACT_BUCKET"] == ("new", False)
    puts = [path for method, path, _ in fake.requests if method == "PUT" and "/variables/" in path]
    assert puts  # updated in place, not created twice


def test_a_bitbucket_500_fails_the_stack_with_the_reason_after_retries(fake, aws, lambdas):
    seed, _, sleeps = lambdas
    fake.fail[("GET", f"/2.0/workspaces/{WORKSPACE}")] = [500] * 5
    assert seed.handler(_event(fake, aws), Context()) == {}

    (answer,) = fake.cfn_responses
    assert answer["Status"] == "FAILED"
    assert "answered 500" in answer["Reason"] and f"workspaces/{WORKSPACE}" in answer["Reason"]
    assert sleeps == [1.0, 2.0, 4.0, 8.0]  # 5 attempts, exponential backoff


def test_a_post_the_server_may_have_carried_out_is_not_sent_again(fake, aws, lambdas):
    """A 502 to a POST that created the repository (or started a run) once led to a second POST."""
    seed, _, sleeps = lambdas
    create = ("POST", f"/2.0/repositories/{WORKSPACE}/{PROJECT}-model-build")
    fake.fail[create] = [502]
    assert seed.handler(_event(fake, aws), Context()) == {}
    (answer,) = fake.cfn_responses
    assert answer["Status"] == "FAILED" and "answered 502" in answer["Reason"]
    assert sum((method, path) == create for method, path, _ in fake.requests) == 1 and sleeps == []
    fake.fail[create] = [429]  # 429: not carried out, sent again after the wait
    fake.cfn_responses.clear()
    seed.handler(_event(fake, aws), Context())
    assert fake.cfn_responses[-1]["Status"] == "SUCCESS" and sleeps == [1.0]


def test_429_is_retried_after_retry_after(fake, aws, lambdas):
    seed, _, sleeps = lambdas
    fake.fail[("GET", f"/2.0/workspaces/{WORKSPACE}")] = [429, 503]
    seed.handler(_event(fake, aws), Context())
    assert fake.cfn_responses[-1]["Status"] == "SUCCESS"
    assert sleeps == [1.0, 2.0]


def test_bad_credentials_fail_the_stack_at_once(fake, aws, lambdas, monkeypatch):
    import boto3

    seed, _, sleeps = lambdas
    boto3.client("secretsmanager").put_secret_value(SecretId=aws, SecretString=json.dumps({"token": "wrong"}))
    seed.handler(_event(fake, aws), Context())
    (answer,) = fake.cfn_responses
    assert answer["Status"] == "FAILED" and "answered 401" in answer["Reason"] and sleeps == []


def test_delete_is_idempotent_and_keeps_repositories_by_default(fake, aws, lambdas):
    seed, _, _ = lambdas
    seed.handler(_event(fake, aws), Context())
    seed.handler(_event(fake, aws, "Delete"), Context())
    assert len(fake.repositories) == 2  # DeleteRepositories=false: the team's code stays

    gone = aws.replace(":secret:bitbucket", ":secret:deleted-before-the-stack")  # the secret need not be read
    seed.handler(_event(fake, gone, "Delete"), Context())
    for _ in range(2):
        seed.handler(_event(fake, aws, "Delete", DeleteRepositories="true"), Context())
    assert [r["Status"] for r in fake.cfn_responses] == ["SUCCESS"] * 5
    assert fake.repositories == {} and fake.projects == {}


@pytest.fixture
def trigger_env(fake, aws, monkeypatch):
    """The trigger's environment (as project.yml sets it), the deploy repository, the events bucket."""
    import boto3

    for key, value in {
        "SECRET_ARN": aws,
        "BITBUCKET_WORKSPACE": WORKSPACE,
        "DEPLOY_REPOSITORY": f"{PROJECT}-model-deploy",
        "MODEL_PACKAGE_GROUP": PROJECT,
        "EVENTS_BUCKET": "artifacts",
    }.items():
        monkeypatch.setenv(key, value)
    boto3.client("s3").create_bucket(Bucket="artifacts", CreateBucketConfiguration={"LocationConstraint": REGION})
    fake.projects[KEY] = {"key": KEY}
    fake._repository("POST", f"{PROJECT}-model-deploy", "", {"project": {"key": KEY}})
    return f"/2.0/repositories/{WORKSPACE}/{PROJECT}-model-deploy/pipelines"


def state_change(group: str, status: str, event_id: str, version: int = 3) -> dict:
    """A "SageMaker Model Package State Change" event as EventBridge delivers it."""
    arn = f"arn:aws:sagemaker:eu-west-1:123456789012:model-package/{group}/{version}"
    detail = {"ModelPackageGroupName": group, "ModelApprovalStatus": status, "ModelPackageArn": arn}
    return {"id": event_id, "detail-type": "SageMaker Model Package State Change", "source": "aws.sagemaker",
            "time": "2026-12-06T10:00:00Z", "detail": detail}  # fmt: skip


def test_trigger_starts_the_custom_pipeline_on_approval_and_rejection(fake, lambdas, trigger_env):
    _, trigger, _ = lambdas
    assert trigger.handler(state_change(PROJECT, "PendingManualApproval", "e0"), Context())["started"] is False
    assert trigger.handler(state_change("other-group", "Approved", "e1"), Context())["started"] is False
    assert fake.requests == []
    started = trigger.handler(state_change(PROJECT, "Approved", "e2"), Context())
    assert started["started"] is True and started["build_number"] == 1
    # a rejection starts the pipeline too: its resolve step rolls back when the rejected version is deployed
    assert trigger.handler(state_change(PROJECT, "Rejected", "e3"), Context())["build_number"] == 2
    (method, path, body), _ = fake.requests
    assert (method, path) == ("POST", trigger_env)
    arn = state_change(PROJECT, "Approved", "e2")["detail"]["ModelPackageArn"]
    assert body == {
        "target": {
            "type": "pipeline_ref_target",
            "ref_type": "branch",
            "ref_name": "main",
            "selector": {"type": "custom", "pattern": "deploy-approved-model"},
        },
        "variables": [{"key": "MODEL_PACKAGE_ARN", "value": arn}],
    }


def test_one_event_id_starts_one_deploy_run(fake, lambdas, trigger_env):
    import boto3

    _, trigger, _ = lambdas
    event = state_change(PROJECT, "Approved", "0b1e2c3d-retried")
    assert trigger.handler(event, Context())["started"] is True
    again = trigger.handler(event, Context())  # EventBridge's retry, or a second delivery, of the same event
    assert again == {"started": False, "reason": "event 0b1e2c3d-retried seen before"}
    assert len(fake.repositories[f"{PROJECT}-model-deploy"]["runs"]) == 1
    claim = boto3.client("s3").get_object(Bucket="artifacts", Key="deploy-events/0b1e2c3d-retried")
    assert json.loads(claim["Body"].read())["detail"] == event["detail"]
    # another event of the same version (a later re-approval) has its own id: its own run
    assert trigger.handler(state_change(PROJECT, "Approved", "another-id"), Context())["build_number"] == 2


def test_a_failed_start_releases_the_event_for_the_retry(fake, lambdas, trigger_env):
    _, trigger, _ = lambdas
    event = state_change(PROJECT, "Approved", "fails-once")
    fake.fail[("POST", trigger_env)] = [400]
    with pytest.raises(Exception, match="400"):
        trigger.handler(event, Context())
    assert fake.repositories[f"{PROJECT}-model-deploy"]["runs"] == []
    assert trigger.handler(event, Context())["started"] is True  # EventBridge's retry
    assert len(fake.repositories[f"{PROJECT}-model-deploy"]["runs"]) == 1


def test_the_lambda_and_the_package_name_the_same_repositories(lambdas):
    seed, _, _ = lambdas
    assert tuple(REPOSITORIES.values()) == seed.REPOSITORY_SUFFIXES


def test_the_trigger_secret_left_empty_fails_saying_what_to_put_in_it(aws, lambdas):
    """The stack creates the trigger's secret with an empty token: the trigger fails naming the token it needs."""
    import bitbucket_api
    import boto3

    empty = boto3.client("secretsmanager").create_secret(Name="trigger", SecretString=json.dumps({"token": ""}))
    with pytest.raises(ValueError, match=r"non-empty \"token\".*deploy repository \(scope Pipelines: Write\)"):
        bitbucket_api.load_secret(empty["ARN"])


def test_cleanup_stops_a_running_build_before_deleting_its_pipeline(monkeypatch):
    """SageMaker refuses to delete a pipeline with a running execution; the refusal was taken for 'already gone'."""
    import boto3
    from botocore.stub import Stubber

    monkeypatch.syspath_prepend(str(LAMBDAS))
    import cleanup_deployments

    client = boto3.client("sagemaker", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="y")
    name = f"{PROJECT}-model-build"
    arn = f"arn:aws:sagemaker:{REGION}:123456789012:pipeline/{name}/execution/abc123"
    summaries = [
        {"PipelineExecutionArn": arn, "PipelineExecutionStatus": "Executing"},
        {"PipelineExecutionArn": arn.replace("abc123", "old"), "PipelineExecutionStatus": "Succeeded"},
    ]
    with Stubber(client) as stubber:
        stubber.add_response(
            "list_pipeline_executions", {"PipelineExecutionSummaries": summaries}, {"PipelineName": name}
        )
        stubber.add_response("describe_pipeline_execution", {"PipelineExecutionStatus": "Executing"})
        stubber.add_response("stop_pipeline_execution", {"PipelineExecutionArn": arn})
        stubber.add_response("describe_pipeline_execution", {"PipelineExecutionStatus": "Stopping"})
        stubber.add_response("describe_pipeline_execution", {"PipelineExecutionStatus": "Stopped"})
        stubber.add_response("delete_pipeline", {}, {"PipelineName": name})
        stubber.add_client_error("list_pipeline_executions", "ResourceNotFound", "Pipeline gone does not exist")
        assert cleanup_deployments.delete_pipelines(client, [name, "gone"], deadline=1e12, poll=0) == [name]
        stubber.assert_no_pending_responses()
