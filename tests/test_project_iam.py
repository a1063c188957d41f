"""The enforcing IAM oracle (tests/iam_oracle.py): every call a caller makes must be allowed by its template role.

A denial fails naming the caller, the IAM action, the resource ARN and the role.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import yaml

import iam_oracle as oracle
from iam_oracle import ACCOUNT, PARTITION, REGION
from test_project_cicd import _run_steps, ci_env, moto_url, register_build_model  # noqa: F401 - the moto_server fixtures of the CI tests
from test_project_lambdas import aws, fake, lambdas  # noqa: F401 - the fixtures of the Lambda tests

TEMPLATES = oracle.ROOT / "templates" / "cloudformation"
PROJECT, PROJECT_ID = "demand-fresh", "p-abcdef123456"
STACK = "SC-123456789012-pp-abcdefghijklm"
PARAMETERS = {
    "SageMakerProjectName": PROJECT,
    "SageMakerProjectId": PROJECT_ID,
    "BitbucketWorkspace": "acme",
    "BitbucketProjectKey": "DF",
    "BitbucketSecretArn": f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:bitbucket-AbCdEf",
    "AssetsBucket": "platform-assets",
    "DataBucketName": "data",
    "ForecasterTrainImage": f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/forecaster-train:1",
    "ForecasterInferImage": f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/forecaster-infer:1",
    "ForecasterImageRepositoryArns": [
        f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/forecaster-train",
        f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/forecaster-infer",
    ],
}


def _arn(service: str, resource: str, region: str = REGION) -> str:
    return f"arn:{PARTITION}:{service}:{region}:{ACCOUNT}:{resource}"


def _physical(template: dict, resolver_values: dict) -> tuple[dict, dict]:
    """Test values of each resource's Ref and ARN: its name, or a name as CloudFormation generates it."""
    refs, attributes = {}, {}
    name_keys = {
        "AWS::S3::Bucket": "BucketName",
        "AWS::ECR::Repository": "RepositoryName",
        "AWS::SageMaker::ModelPackageGroup": "ModelPackageGroupName",
        "AWS::IAM::Role": "RoleName",
        "AWS::Lambda::Function": "FunctionName",
        "AWS::Logs::LogGroup": "LogGroupName",
        "AWS::Events::Rule": "Name",
        "AWS::SQS::Queue": "QueueName",
    }
    for logical, resource in template["Resources"].items():
        kind, properties = resource["Type"], resource.get("Properties", {})
        key = name_keys.get(kind)
        generated = f"{STACK}-{logical}-ABCDEF123456"[:64]
        name = oracle.Resolver(template, PARAMETERS, refs, {}).resolve(properties[key]) if key in properties else None
        name = name or (generated.lower() if kind in ("AWS::S3::Bucket", "AWS::ECR::Repository") else generated)
        arn = {
            "AWS::S3::Bucket": f"arn:{PARTITION}:s3:::{name}",
            "AWS::ECR::Repository": _arn("ecr", f"repository/{name}"),
            "AWS::SageMaker::ModelPackageGroup": _arn("sagemaker", f"model-package-group/{name}"),
            "AWS::IAM::Role": f"arn:{PARTITION}:iam::{ACCOUNT}:role/{name}",
            "AWS::Lambda::Function": _arn("lambda", f"function:{name}"),
            "AWS::Logs::LogGroup": _arn("logs", f"log-group:{name}:*"),
            "AWS::Events::Rule": _arn("events", f"rule/{name}"),
            "AWS::SQS::Queue": _arn("sqs", name),
            "AWS::IAM::OIDCProvider": f"arn:{PARTITION}:iam::{ACCOUNT}:oidc-provider/api.bitbucket.org/2.0/"
            "workspaces/acme/pipelines-config/identity/oidc",
        }.get(kind, "*")
        refs[logical] = arn if kind in ("AWS::IAM::OIDCProvider", "AWS::SQS::Queue") else name
        attributes[f"{logical}.Arn"] = arn
    attributes |= {
        "SeedRepositories.Audience": "ari:cloud:bitbucket::workspace/uuid",
        "SeedRepositories.BuildRepositoryUuid": "{build}",
        "SeedRepositories.DeployRepositoryUuid": "{deploy}",
        "SeedRepositories.StagingEnvironmentUuid": "{staging}",
        "SeedRepositories.ProductionEnvironmentUuid": "{production}",
        "TrainImageRepository.RepositoryUri": "uri",
        "InferImageRepository.RepositoryUri": "uri",
    }
    return refs, attributes


def project(overrides: dict | None = None) -> tuple[dict, oracle.Resolver, dict]:
    template = oracle.load(TEMPLATES / "project.yml")
    refs, attributes = _physical(template, {})
    refs |= overrides or {}
    return template, oracle.Resolver(template, PARAMETERS, refs, attributes), refs


# ---- the evaluator denies what IAM denies ---------------------------------------------------------------------
def test_evaluator_denies_outside_the_pattern_and_on_explicit_deny():
    statements = [
        {"Effect": "Allow", "Action": "sagemaker:Describe*", "Resource": _arn("sagemaker", "pipeline/demand-*")},
        {"Effect": "Allow", "NotAction": "iam:*", "Resource": f"arn:{PARTITION}:s3:::data/*"},
        {"Effect": "Deny", "Action": "s3:DeleteObject", "Resource": "*"},
    ]
    assert oracle.allowed(statements, "sagemaker:DescribePipeline", _arn("sagemaker", "pipeline/demand-fresh"))
    assert oracle.allowed(statements, "SageMaker:describepipeline", _arn("sagemaker", "pipeline/demand-x"))
    assert not oracle.allowed(statements, "sagemaker:DescribePipeline", _arn("sagemaker", "pipeline/other"))
    assert not oracle.allowed(statements, "sagemaker:DescribePipeline", _arn("sagemaker", "pipeline/Demand-x"))
    assert not oracle.allowed(statements, "sagemaker:ListTags", _arn("sagemaker", "pipeline/demand-fresh"))
    assert oracle.allowed(statements, "s3:GetObject", f"arn:{PARTITION}:s3:::data/a/b")
    assert not oracle.allowed(statements, "s3:GetObject", f"arn:{PARTITION}:s3:::data")
    assert not oracle.allowed(statements, "s3:DeleteObject", f"arn:{PARTITION}:s3:::data/a")  # explicit Deny
    assert not oracle.allowed(statements, "iam:PassRole", f"arn:{PARTITION}:s3:::data/a")  # NotAction


def test_calls_map_to_actions_and_arns():
    assert oracle.to_requests({"prefix": "s3", "operation": "ListObjectsV2", "params": {"Bucket": "b"}}) == [
        ("s3:ListBucket", f"arn:{PARTITION}:s3:::b")
    ]
    assert oracle.to_requests({"prefix": "s3", "operation": "HeadObject", "params": {"Bucket": "b", "Key": "k"}}) == [
        ("s3:GetObject", f"arn:{PARTITION}:s3:::b/k")
    ]
    create = {"prefix": "sagemaker", "operation": "CreatePipeline", "params": {"PipelineName": "P-x", "RoleArn": "r"}}
    assert oracle.to_requests(create) == [
        ("sagemaker:CreatePipeline", _arn("sagemaker", "pipeline/p-x")),
        ("iam:PassRole", "r"),
    ]


def test_template_resolution_substitutes_parameters_refs_and_attributes():
    template, resolver, _ = project()
    statements = oracle.role_statements(template, "BuildRole", resolver)
    resources = [r for s in statements for r in oracle._list(s["Resource"])]
    assert _arn("sagemaker", f"pipeline/{PROJECT}-model-build") in resources
    assert not [r for r in resources if "${" in r or isinstance(r, dict)]


# ---- the Service Catalog launch role vs CloudFormation's resource handlers ------------------------------------
def _handler_permissions(kind: str) -> dict[str, list[str]]:
    import cfnlint

    data = Path(cfnlint.__file__).parent / "data" / "schemas"
    digest = json.loads((data / "providers" / "us-east-1.json").read_text())[kind]
    schema = json.loads((data / "resources" / f"{digest}.json").read_text())
    handlers = schema.get("handlers", {})
    needed = {h: handlers[h].get("permissions", []) for h in ("read", "delete") if h in handlers}
    # create and update list a setter for every property (property-gated); every create tags the resource
    create = handlers.get("create", {}).get("permissions", [])
    needed["create"] = [a for a in create if a.split(":")[1].startswith(("Tag", "AddTags", "ListTags"))]
    return needed


def launch_denials() -> list[str]:
    product = oracle.load(TEMPLATES / "product.yml")
    resolver = oracle.Resolver(product, {"AssetsBucket": "platform-assets"}, {}, {})
    role = "LaunchRole"
    statements = oracle.role_statements(product, role, resolver)
    template, _, _ = project()
    _, attributes = _physical(template, {})
    lines = []
    for logical, resource in template["Resources"].items():
        kind = resource["Type"]
        if kind.startswith("Custom::"):
            continue
        arn = attributes.get(f"{logical}.Arn", "*")
        properties = resource.get("Properties", {})
        target = properties.get("FunctionName") or properties.get("Bucket") or (properties.get("Queues") or [None])[0]
        if isinstance(target, dict) and "Ref" in target:  # a permission or policy acts on the resource it names
            arn = attributes[f"{target['Ref']}.Arn"]
        service = kind.split("::")[1].lower()
        for handler, actions in _handler_permissions(kind).items():
            for action in actions:
                # another service's actions (kms:, ec2:, ...) serve properties the template does not use: skipped
                if action.split(":")[0] != service:
                    continue
                if not oracle.allowed(statements, action, arn):
                    line = f"launch of {logical} ({kind}, {handler}): {action} on {arn} is not allowed by role {role}"
                    lines.append(line)
    return lines


def test_launch_role_allows_what_cloudformation_handlers_call():
    denied = launch_denials()
    assert not denied, "\n".join(denied)


# ---- the build repository's steps, recorded in every Python process they start ---------------------------------
RECORDER = Path(__file__).parent / "iam_recorder"


@pytest.fixture
def fresh_moto(moto_url):  # noqa: F811
    """moto_server (shared by the module) emptied: each test creates its own buckets and pipelines."""
    import urllib.request

    urllib.request.urlopen(urllib.request.Request(f"{moto_url}/moto-api/reset", method="POST")).close()


def _recording(env: dict, log: Path) -> dict:
    path = os.pathsep.join(p for p in (str(RECORDER), env.get("PYTHONPATH", "")) if p)
    return env | {"PYTHONPATH": path, "IAM_ORACLE_LOG": str(log)}


def _role_denials(role: str, calls: list[dict], caller: str, env: dict, parameters: dict | None = None) -> list[str]:
    """Denials of the calls under the template's role, with the names the CI environment gives the resources."""
    template, _, refs = project()
    _, attributes = _physical(template, {})
    refs["ArtifactBucket"] = env["ARTIFACT_BUCKET"]
    attributes["ArtifactBucket.Arn"] = f"arn:{PARTITION}:s3:::{env['ARTIFACT_BUCKET']}"
    attributes["SchedulerRole.Arn"] = env["SCHEDULER_ROLE_ARN"]
    resolver = oracle.Resolver(template, parameters or PARAMETERS, refs, attributes)
    return oracle.denials(calls, oracle.role_statements(template, role, resolver), caller, role)


@pytest.mark.slow
def test_build_steps_upserting_twice_are_allowed_by_the_build_role(fresh_moto, ci_env, tmp_path):  # noqa: F811
    from forecaster.project.seed import init

    repos = {key: path for key, (path, _) in init(PROJECT, tmp_path / "seed", "acme").items()}
    build = yaml.safe_load((repos["build"] / "bitbucket-pipelines.yml").read_text())
    log = tmp_path / "calls.jsonl"
    env = _recording(ci_env, log)
    for _ in range(2):  # the second push updates the pipeline (Pipeline.upsert of an existing one)
        _run_steps(repos["build"], build["pipelines"]["branches"]["main"], env)
    calls = oracle.recorded(log)
    operations = {c["operation"] for c in calls}
    assert {"CreatePipeline", "UpdatePipeline", "StartPipelineExecution"} <= operations, operations
    denied = _role_denials("BuildRole", calls, "build repository (branch main)", ci_env)
    assert not denied, "\n".join(denied)


@pytest.mark.slow
def test_deploy_steps_are_allowed_by_each_stage_role(fresh_moto, ci_env, tmp_path):  # noqa: F811
    import boto3

    from forecaster.project.seed import init
    from forecaster.registry.sagemaker import SageMakerRegistry

    repos = {key: path for key, (path, _) in init(PROJECT, tmp_path / "seed", "acme").items()}
    client = boto3.client("sagemaker", endpoint_url=ci_env["AWS_ENDPOINT_URL"], region_name=REGION)
    registry = SageMakerRegistry(client=client)
    image = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{PROJECT}-infer:1"
    version = register_build_model(registry, PROJECT, image)
    registry.approve(PROJECT, version.version, "backtest reviewed")

    deploy = yaml.safe_load((repos["deploy"] / "bitbucket-pipelines.yml").read_text())
    steps = [entry for entry in deploy["pipelines"]["custom"]["deploy-approved-model"] if "step" in entry]
    roles = {"staging": "StagingDeployRole", "production": "ProductionDeployRole"}
    denied = []
    for entry in steps * 2:  # a second deploy updates the stage pipelines and schedules
        stage = entry["step"]["deployment"]
        log = tmp_path / f"{stage}.jsonl"
        env = _recording(ci_env | {"MODEL_PACKAGE_ARN": version.identifier}, log)
        _run_steps(repos["deploy"], [entry], env)
        assert oracle.recorded(log), f"no AWS call recorded for {stage}"
    cloudformation = boto3.client("cloudformation", endpoint_url=ci_env["AWS_ENDPOINT_URL"], region_name=REGION)
    for stage, role in roles.items():
        calls = oracle.recorded(tmp_path / f"{stage}.jsonl")
        assert "CreateStack" in {c["operation"] for c in calls} and "UpdateStack" in {c["operation"] for c in calls}
        denied += _role_denials(role, calls, f"deploy repository ({stage} step)", ci_env)
        # no CloudFormation service role: the stack's resource handlers act with the deploy role's credentials
        body = cloudformation.get_template(StackName=f"{PROJECT}-deploy-{stage}")["TemplateBody"]
        denied += _stack_handler_denials(body if isinstance(body, dict) else json.loads(body), role, ci_env)
    assert not denied, "\n".join(denied)


def _stack_handler_denials(stack_template: dict, role: str, env: dict) -> list[str]:
    """What CloudFormation's handlers call for each resource of a deployment stack, against the deploy role."""
    template, _, refs = project()
    _, attributes = _physical(template, {})
    attributes["SchedulerRole.Arn"] = env["SCHEDULER_ROLE_ARN"]
    attributes["ArtifactBucket.Arn"] = f"arn:{PARTITION}:s3:::{env['ARTIFACT_BUCKET']}"
    statements = oracle.role_statements(template, role, oracle.Resolver(template, PARAMETERS, refs, attributes))
    lines = []
    for logical, resource in stack_template["Resources"].items():
        kind, properties = resource["Type"], resource["Properties"]
        if kind == "AWS::SageMaker::Pipeline":
            arn, passed = _arn("sagemaker", f"pipeline/{properties['PipelineName'].lower()}"), properties["RoleArn"]
        else:
            arn = _arn("scheduler", f"schedule/default/{properties['Name']}")
            passed = properties["Target"]["RoleArn"]
        import cfnlint

        data = Path(cfnlint.__file__).parent / "data" / "schemas"
        digest = json.loads((data / "providers" / "us-east-1.json").read_text())[kind]
        handlers = json.loads((data / "resources" / f"{digest}.json").read_text())["handlers"]
        for handler in ("create", "read", "update", "delete"):
            for action in handlers.get(handler, {}).get("permissions", []):
                target = passed if action == "iam:PassRole" else arn
                if action.split(":")[0] not in ("sagemaker", "scheduler", "iam"):
                    continue  # s3:GetObject serves PipelineDefinitionS3Location, kms: a key; neither is used
                if not oracle.allowed(statements, action, target):
                    lines.append(f"stack {logical} ({kind}, {handler}): {action} on {target} not allowed by {role}")
    return lines


# ---- the seed and trigger Lambdas, in this process ------------------------------------------------------------
def test_lambdas_are_allowed_by_their_roles(fake, aws, lambdas, monkeypatch):  # noqa: F811
    from test_project_lambdas import Context, _event

    seed, trigger, _ = lambdas
    with oracle.recording() as seed_calls:
        seed.handler(_event(fake, aws), Context())
    import boto3

    template = oracle.load(TEMPLATES / "project.yml")
    refs, attributes = _physical(template, {})
    boto3.client("s3").create_bucket(
        Bucket=refs["ArtifactBucket"], CreateBucketConfiguration={"LocationConstraint": REGION}
    )
    for key, value in {
        "SECRET_ARN": aws,
        "BITBUCKET_WORKSPACE": "acme",
        "DEPLOY_REPOSITORY": f"{PROJECT}-model-deploy",
        "MODEL_PACKAGE_GROUP": PROJECT,
        "EVENTS_BUCKET": refs["ArtifactBucket"],
    }.items():
        monkeypatch.setenv(key, value)
    detail = {
        "ModelPackageGroupName": PROJECT,
        "ModelApprovalStatus": "Approved",
        "ModelPackageArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package/{PROJECT}/1",
    }
    event = {"id": "e-1", "detail-type": "SageMaker Model Package State Change", "source": "aws.sagemaker"}
    with oracle.recording() as trigger_calls:
        trigger.handler(event | {"detail": detail}, Context())
        fake.fail[("POST", f"/2.0/repositories/acme/{PROJECT}-model-deploy/pipelines")] = [400]
        with pytest.raises(Exception, match="400"):  # a failed start releases the event: DeleteObject
            trigger.handler(event | {"id": "e-2", "detail": detail}, Context())
    assert {c["operation"] for c in seed_calls} >= {"GetSecretValue", "GetObject"}, seed_calls
    assert {c["operation"] for c in trigger_calls} >= {"GetSecretValue", "PutObject", "DeleteObject"}, trigger_calls

    parameters = PARAMETERS | {"BitbucketSecretArn": aws, "AssetsBucket": "assets"}
    resolver = oracle.Resolver(template, parameters, refs, attributes)
    denied = []
    for role, calls, caller in (
        ("SeedFunctionRole", seed_calls, "seed Lambda"),
        ("TriggerFunctionRole", trigger_calls, "trigger Lambda"),
    ):
        denied += oracle.denials(calls, oracle.role_statements(template, role, resolver), caller, role)
    assert not denied, "\n".join(denied)


# ---- names within AWS limits for every name the parameters allow ----------------------------------------------
LIMITS = {
    "AWS::S3::Bucket": ("BucketName", 63),
    "AWS::IAM::Role": ("RoleName", 64),
    "AWS::Lambda::Function": ("FunctionName", 64),
    "AWS::SQS::Queue": ("QueueName", 80),
    "AWS::ECR::Repository": ("RepositoryName", 256),
    "AWS::SageMaker::ModelPackageGroup": ("ModelPackageGroupName", 63),
    "AWS::Logs::LogGroup": ("LogGroupName", 512),
}


def _longest(pattern: str, alphabet: str = "a1") -> str:
    """The longest string of a..z/0..9 the pattern allows (names up to 64 characters tried)."""
    best = ""
    for n in range(1, 65):
        candidate = ("a" + alphabet * 64)[:n]
        for form in (candidate, "p-" + candidate[2:] if n > 2 else candidate):
            if re.fullmatch(pattern, form):
                best = form
    return best


def test_every_name_stays_within_aws_limits_for_the_longest_allowed_parameters():
    template = oracle.load(TEMPLATES / "project.yml")
    name = _longest(template["Parameters"]["SageMakerProjectName"]["AllowedPattern"])
    project_id = _longest(template["Parameters"]["SageMakerProjectId"]["AllowedPattern"])
    assert len(name) == 32 and len(project_id) == 16, (name, project_id)
    parameters = PARAMETERS | {"SageMakerProjectName": name, "SageMakerProjectId": project_id}
    resolver = oracle.Resolver(template, parameters, {}, {})
    resolver.values["AWS::Region"] = "ap-southeast-7"  # among the longest region names (14 characters)
    checked = {}
    for logical, resource in template["Resources"].items():
        key, limit = LIMITS.get(resource["Type"], (None, 0))
        if key and key in resource.get("Properties", {}):
            value = resolver.resolve(resource["Properties"][key])
            assert len(value) <= limit, f"{logical}.{key} {value!r} has {len(value)} characters, more than {limit}"
            checked[logical] = value
    assert {"ArtifactBucket", "BuildRole", "StagingDeployRole", "ProductionDeployRole"} <= set(checked)
    assert project_id in checked["ArtifactBucket"]  # globally unique: the project id, the account and the region


def test_every_role_takes_the_permissions_boundary_parameter():
    template = oracle.load(TEMPLATES / "project.yml")
    roles = {k: r for k, r in template["Resources"].items() if r["Type"] == "AWS::IAM::Role"}
    assert len(roles) >= 7
    for logical, role in roles.items():
        boundary = role["Properties"].get("PermissionsBoundary")
        assert boundary == {
            "Fn::If": ["HasPermissionsBoundary", {"Ref": "PermissionsBoundaryArn"}, {"Ref": "AWS::NoValue"}]
        }, logical
    resolver = oracle.Resolver(template, PARAMETERS, {}, {})
    assert resolver.condition("HasPermissionsBoundary") is False
    resolver.values["PermissionsBoundaryArn"] = f"arn:aws:iam::{ACCOUNT}:policy/boundary"
    assert resolver.condition("HasPermissionsBoundary") is True
