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
from iam_oracle import ACCOUNT, PARAMETERS, PARTITION, PROJECT, REGION, TEMPLATES
from test_project_cicd import _run_steps, ci_env, image_repositories, moto_url, register_build_model  # noqa: F401 - the moto_server fixtures of the CI tests
from test_project_lambdas import aws, fake, lambdas  # noqa: F401 - the fixtures of the Lambda tests


def _arn(service: str, resource: str, region: str = REGION) -> str:
    return f"arn:{PARTITION}:{service}:{region}:{ACCOUNT}:{resource}"


project = oracle.project


def _physical(template: dict, _values: dict | None = None) -> tuple[dict, dict]:
    """:func:`iam_oracle.physical` under its earlier name here (tests written against it keep working)."""
    return oracle.physical(template)


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


#: the prefix of every project role: the launch role may create and pass role/forecaster-* only
ROLE_PREFIX = "forecaster-"
#: what the launch does to every project role besides the handlers' reads and tags: create it with its inline
#: policies and boundary, pass it to the service that runs as it, and delete it
ROLE_ACTIONS = (
    "iam:CreateRole",
    "iam:PutRolePolicy",
    "iam:PutRolePermissionsBoundary",
    "iam:PassRole",
    "iam:DeleteRolePolicy",
    "iam:DeleteRole",
)


def _launch_requests(template: dict) -> list[tuple[str, str, str, str]]:
    """(what, handler, action, resource ARN) of everything the launch of ``template`` asks of the launch role."""
    _, attributes = oracle.physical(template)
    requests = []
    for name, parameter in template["Parameters"].items():  # CloudFormation resolves SSM types as the launch role
        if parameter["Type"].startswith("AWS::SSM::Parameter::Value"):
            arn = _arn("ssm", f"parameter{parameter['Default']}")
            requests.append((f"parameter {name}", "resolve", "ssm:GetParameters", arn))
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
            # another service's actions (kms:, ec2:, ...) serve properties the template does not use: skipped
            requests += [(f"{logical} ({kind})", handler, a, arn) for a in actions if a.split(":")[0] == service]
        if kind == "AWS::IAM::Role":
            requests += [(f"{logical} ({kind})", "create/delete", action, arn) for action in ROLE_ACTIONS]
    return requests


def launch_denials(template: dict | None = None) -> list[str]:
    product = oracle.load(TEMPLATES / "product.yml")
    resolver = oracle.Resolver(product, {"AssetsBucket": "platform-assets"}, {}, {})
    role = "LaunchRole"
    statements = oracle.role_statements(product, role, resolver)
    lines = []
    for what, handler, action, arn in _launch_requests(template or project()[0]):
        evaluated = oracle.evaluated_resource(action, arn)
        if not oracle.allowed(statements, action, evaluated):
            lines.append(f"launch of {what}, {handler}: {action} on {evaluated} is not allowed by role {role}")
    return lines


def test_launch_role_allows_what_cloudformation_handlers_call():
    denied = launch_denials()
    assert not denied, "\n".join(denied)


def test_launch_role_creates_and_passes_only_project_prefixed_roles():
    """A role outside ``role/forecaster-*`` (a template edited to create an admin role) is refused, by name."""
    template = project()[0]
    template["Resources"]["BuildRole"]["Properties"]["RoleName"] = "platform-admin"
    denied = launch_denials(template)
    for action in ("iam:CreateRole", "iam:PassRole", "iam:PutRolePolicy", "iam:DeleteRole"):
        assert (
            f"launch of BuildRole (AWS::IAM::Role), create/delete: {action} on "
            f"arn:aws:iam::{ACCOUNT}:role/platform-admin is not allowed by role LaunchRole"
        ) in denied, denied
    assert all("BuildRole" in line for line in denied), denied


def test_platform_settings_come_from_the_ssm_parameters_the_platform_stack_writes():
    """Every SSM-typed parameter of project.yml defaults to a parameter that product.yml creates, and back."""
    parameters = project()[0]["Parameters"]
    wanted = {p["Default"] for p in parameters.values() if p["Type"].startswith("AWS::SSM::Parameter::Value")}
    product = oracle.load(TEMPLATES / "product.yml")["Resources"]
    written = {r["Properties"]["Name"] for r in product.values() if r["Type"] == "AWS::SSM::Parameter"}
    assert wanted == written and len(wanted) >= 7, (wanted, written)
    assert all(name.startswith("/forecaster/platform/") for name in wanted)
    # what differs per project stays a plain parameter the Studio form asks for
    assert parameters["DataBucketName"]["Type"] == parameters["BitbucketProjectKey"]["Type"] == "String"


def test_one_oidc_provider_per_account_in_the_platform_stack():
    """Deleting a project leaves the provider: it is in product.yml, and project.yml only takes its ARN."""
    kinds = {r["Type"] for r in project()[0]["Resources"].values()}
    assert "AWS::IAM::OIDCProvider" not in kinds
    product = oracle.load(TEMPLATES / "product.yml")["Resources"]
    assert [r["Type"] for r in product.values()].count("AWS::IAM::OIDCProvider") == 1
    template, resolver, _ = project()
    for role in ("BuildRole", "StagingDeployRole", "ProductionDeployRole"):
        trust = resolver.resolve(template["Resources"][role]["Properties"]["AssumeRolePolicyDocument"])
        assert json.loads(trust)["Statement"][0]["Principal"] == {"Federated": PARAMETERS["BitbucketOidcProviderArn"]}


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
    _, attributes = oracle.physical(template)
    refs["ArtifactBucket"] = env["ARTIFACT_BUCKET"]
    attributes["ArtifactBucket.Arn"] = f"arn:{PARTITION}:s3:::{env['ARTIFACT_BUCKET']}"
    attributes["SchedulerRole.Arn"] = env["SCHEDULER_ROLE_ARN"]
    if "SAGEMAKER_PIPELINE_ROLE_ARN" in env:  # the role the seed hands out
        attributes["PipelineExecutionRole.Arn"] = env["SAGEMAKER_PIPELINE_ROLE_ARN"]
    resolver = oracle.Resolver(template, parameters or PARAMETERS, refs, attributes)
    return oracle.denials(calls, oracle.role_statements(template, role, resolver), caller, role)


@pytest.mark.slow
def test_build_steps_upserting_twice_are_allowed_by_the_build_role(fresh_moto, ci_env, tmp_path):  # noqa: F811
    from forecaster.project.seed import init

    repos = {key: path for key, (path, _) in init(PROJECT, tmp_path / "seed", "acme").items()}
    build = yaml.safe_load((repos["build"] / "bitbucket-pipelines.yml").read_text())
    image_repositories(ci_env)  # the template's (this test has no stack)
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
    import boto3

    from test_project_lambdas import Context, _event

    seed, trigger, _ = lambdas
    with oracle.recording() as seed_calls:
        seed.handler(_event(fake, aws), Context())
    # the trigger's own token (pipeline write on the deploy repository), not the seed's repository-admin credential
    token = json.dumps({"token": "test-token"})  # the token the fake Bitbucket accepts
    trigger_secret = boto3.client("secretsmanager").create_secret(Name="trigger", SecretString=token)["ARN"]
    template = oracle.load(TEMPLATES / "project.yml")
    refs, attributes = _physical(template, {})
    boto3.client("s3").create_bucket(
        Bucket=refs["ArtifactBucket"], CreateBucketConfiguration={"LocationConstraint": REGION}
    )
    for key, value in {
        "SECRET_ARN": trigger_secret,
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
    parameters |= {"BitbucketTriggerSecretArn": trigger_secret}
    resolver = oracle.Resolver(template, parameters, refs, attributes)
    denied = []
    for role, calls, caller in (
        ("SeedFunctionRole", seed_calls, "seed Lambda"),
        ("TriggerFunctionRole", trigger_calls, "trigger Lambda"),
    ):
        denied += oracle.denials(calls, oracle.role_statements(template, role, resolver), caller, role)
    assert not denied, "\n".join(denied)
    read = {c["params"]["SecretId"] for c in trigger_calls if c["operation"] == "GetSecretValue"}
    assert read == {trigger_secret}, read


def test_the_trigger_role_reads_only_the_trigger_secret():
    """Given or created by the stack, the trigger's secret is the one secret its role may read: never the seed's."""
    seed_secret = PARAMETERS["BitbucketSecretArn"]
    given = _arn("secretsmanager", "secret:trigger-XyZ123")
    for parameters, own in (
        (PARAMETERS, oracle.physical(project()[0])[0]["TriggerSecret"]),
        (PARAMETERS | {"BitbucketTriggerSecretArn": given}, given),
    ):
        template, resolver, _ = project(parameters=parameters)
        statements = oracle.role_statements(template, "TriggerFunctionRole", resolver)
        assert oracle.allowed(statements, "secretsmanager:GetSecretValue", own)
        assert not oracle.allowed(statements, "secretsmanager:GetSecretValue", seed_secret)
        environment = template["Resources"]["TriggerFunction"]["Properties"]["Environment"]["Variables"]
        assert resolver.resolve(environment["SECRET_ARN"]) == own


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
    assert {"ArtifactBucket", "BuildRole", "StagingDeployRole", "ProductionDeployRole", "AirflowRole"} <= set(checked)
    roles = [logical for logical, r in template["Resources"].items() if r["Type"] == "AWS::IAM::Role"]
    assert set(roles) <= set(checked), "every role is named, so that the launch role may create it"
    for logical in roles:  # the only roles the launch role may create and pass
        assert checked[logical].startswith(ROLE_PREFIX) and len(checked[logical]) <= 64, (logical, checked[logical])
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
