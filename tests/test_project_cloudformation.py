"""templates/cloudformation: cfn-lint clean, least privilege, a private encrypted bucket, no access keys."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

cfnlint_api = pytest.importorskip("cfnlint.api")
from cfnlint.decode import decode  # noqa: E402

from iam_oracle import UNSCOPED_ACTIONS  # noqa: E402

TEMPLATES = Path(__file__).resolve().parents[1] / "templates" / "cloudformation"
PATHS = sorted(TEMPLATES.glob("*.yml"))
SUPPORTED_RUNTIMES = {"python3.12", "python3.13"}
#: rules switched off for a template, each with the reason; none today (placeholders would go here)
SUPPRESSED: dict[str, str] = {}


def _template(path: Path) -> dict:
    template, matches = decode(str(path))
    assert not matches, matches
    return template


def _resources(kind: str) -> list[tuple[str, dict, str]]:
    found = []
    for path in PATHS:
        for name, resource in _template(path)["Resources"].items():
            if resource["Type"] == kind:
                found.append((name, resource.get("Properties", {}), path.name))
    return found


def _policy(document) -> dict:
    """A policy document as a dict: a !Sub'd JSON string is parsed with its ${...} left as text."""
    if isinstance(document, dict) and "Fn::Sub" in document:
        text = document["Fn::Sub"][0] if isinstance(document["Fn::Sub"], list) else document["Fn::Sub"]
        return json.loads(text)
    return document


def _statements() -> list[tuple[str, dict]]:
    statements = []
    for kind, key in (("AWS::IAM::Role", "Policies"), ("AWS::IAM::ManagedPolicy", None), ("AWS::IAM::Policy", None)):
        for name, props, _ in _resources(kind):
            documents = [p["PolicyDocument"] for p in props.get(key, [])] if key else [props["PolicyDocument"]]
            if kind == "AWS::IAM::Role":
                documents.append(props["AssumeRolePolicyDocument"])
            for document in documents:
                for statement in _policy(document)["Statement"]:
                    statements.append((name, statement))
    return statements


def _as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def test_templates_exist():
    assert {p.name for p in PATHS} == {"project.yml", "product.yml"}


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.name)
def test_cfn_lint_passes(path):
    matches = cfnlint_api.lint_file(path)
    assert [f"{m.rule.id} {m.message} line {m.linenumber}" for m in matches if m.rule.id not in SUPPRESSED] == []


def test_cfn_lint_catches_a_retired_runtime(tmp_path):
    bad = tmp_path / "project.yml"
    bad.write_text((TEMPLATES / "project.yml").read_text().replace("python3.13", "python3.8"))
    assert {m.rule.id for m in cfnlint_api.lint_file(bad)} == {"W2531"}


def test_no_policy_grants_every_action_on_every_resource():
    statements = _statements()
    assert len(statements) > 20
    for name, statement in statements:
        if statement["Effect"] != "Allow" or "Principal" in statement:
            continue  # trust policies name a principal; Deny statements restrict
        actions = _as_list(statement["Action"])
        resources = _as_list(statement["Resource"])
        assert not any(a == "*" or a.endswith(":*") for a in actions), (name, statement)
        if "*" in resources:  # only actions that take no resource (or are evaluated against "*") may use "*"
            assert set(actions) <= {
                "ecr:GetAuthorizationToken",
                "cloudwatch:PutMetricData",
                "cloudformation:GetTemplateSummary",
                "s3:ListAllMyBuckets",
                "cloudformation:ValidateTemplate",
                *UNSCOPED_ACTIONS,
            }, (name, statement)


def test_artifact_bucket_is_encrypted_private_and_tls_only():
    ((_, bucket, _),) = _resources("AWS::S3::Bucket")
    assert bucket["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    (rule,) = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in ("aws:kms", "AES256")
    ((_, policy, _),) = _resources("AWS::S3::BucketPolicy")
    (deny,) = policy["PolicyDocument"]["Statement"]
    assert deny["Effect"] == "Deny" and deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_no_access_keys_anywhere():
    assert _resources("AWS::IAM::AccessKey") == [] and _resources("AWS::IAM::User") == []
    for path in PATHS:
        assert not re.search(r"AccessKey|SecretAccessKey|AWS_SECRET", path.read_text()), path.name


def test_images_are_scanned_and_lambdas_use_supported_runtimes():
    repositories = _resources("AWS::ECR::Repository")
    assert len(repositories) == 2
    assert all(props["ImageScanningConfiguration"] == {"ScanOnPush": True} for _, props, _ in repositories)
    functions = _resources("AWS::Lambda::Function")
    handlers = {props["Handler"] for _, props, _ in functions}
    assert handlers == {"seed_repositories.handler", "trigger_deploy.handler", "cleanup_deployments.handler"}
    assert {props["Runtime"] for _, props, _ in functions} <= SUPPORTED_RUNTIMES


def test_oidc_roles_trust_only_their_repository_and_environment():
    subjects = {}
    for name, props, _ in _resources("AWS::IAM::Role"):
        (statement,) = _policy(props["AssumeRolePolicyDocument"])["Statement"]
        if statement["Action"] == "sts:AssumeRoleWithWebIdentity":
            condition = statement["Condition"]
            assert condition["StringEquals"] == {"${Issuer}:aud": "${SeedRepositories.Audience}"}
            subjects[name] = condition["StringLike"]["${Issuer}:sub"]
    assert subjects == {
        "BuildRole": "${SeedRepositories.BuildRepositoryUuid}:*",
        "StagingDeployRole": "${SeedRepositories.DeployRepositoryUuid}${SeedRepositories.StagingEnvironmentUuid}:*",
        "ProductionDeployRole": (
            "${SeedRepositories.DeployRepositoryUuid}${SeedRepositories.ProductionEnvironmentUuid}:*"
        ),
    }


def test_approval_rule_targets_the_trigger_lambda():
    ((_, rule, _),) = _resources("AWS::Events::Rule")
    pattern = rule["EventPattern"]
    assert pattern["detail-type"] == ["SageMaker Model Package State Change"]
    assert pattern["detail"]["ModelApprovalStatus"] == ["Approved", "Rejected"]  # a rejection may roll back
    assert rule["Targets"][0]["Arn"] == {"Fn::GetAtt": ["TriggerFunction", "Arn"]}
    dlq = {"Fn::GetAtt": ["ApprovalDeadLetterQueue", "Arn"]}
    assert rule["Targets"][0]["DeadLetterConfig"]["Arn"] == dlq  # events EventBridge could not hand over
    # EventBridge invokes Lambda asynchronously: a failure inside the trigger is Lambda's to retry and park
    ((_, failures, _),) = _resources("AWS::Lambda::EventInvokeConfig")
    assert failures["FunctionName"] == {"Ref": "TriggerFunction"}
    assert failures["DestinationConfig"]["OnFailure"]["Destination"] == dlq
    (role,) = [props for name, props, _ in _resources("AWS::IAM::Role") if name == "TriggerFunctionRole"]
    statements = [st for policy in role["Policies"] for st in policy["PolicyDocument"]["Statement"]]
    assert any(st["Action"] == "sqs:SendMessage" and st["Resource"] == dlq for st in statements)


def test_project_template_takes_what_sagemaker_passes_and_product_offers_it():
    project = _template(TEMPLATES / "project.yml")
    assert {"SageMakerProjectName", "SageMakerProjectId"} <= set(project["Parameters"])
    product = _template(TEMPLATES / "product.yml")["Resources"]
    kinds = {resource["Type"] for resource in product.values()}
    assert {
        "AWS::ServiceCatalog::Portfolio",
        "AWS::ServiceCatalog::CloudFormationProduct",
        "AWS::ServiceCatalog::LaunchRoleConstraint",
    } <= kinds
    assert {"Key": "sagemaker:studio-visibility", "Value": "true"} in product["Product"]["Properties"]["Tags"]


def test_names_the_template_hands_out_match_what_it_creates():
    from forecaster.project.seed import REPOSITORIES

    resources = _template(TEMPLATES / "project.yml")["Resources"]
    seed = resources["SeedRepositories"]["Properties"]
    handed_out = [seed["RepositoryVariables"]["build"]["AWS_OIDC_ROLE_ARN"]]
    handed_out += [variables["AWS_OIDC_ROLE_ARN"] for variables in seed["DeploymentVariables"].values()]
    role_names = {
        resources[name]["Properties"]["RoleName"]["Fn::Sub"]
        for name in ("BuildRole", "StagingDeployRole", "ProductionDeployRole")
    }
    assert {arn["Fn::Sub"].rsplit("/", 1)[1] for arn in handed_out} == role_names
    environment = resources["TriggerFunction"]["Properties"]["Environment"]["Variables"]
    assert environment["DEPLOY_REPOSITORY"] == {"Fn::Sub": f"${{SageMakerProjectName}}-{REPOSITORIES['deploy']}"}
