"""An enforcing IAM oracle: the roles of the project templates, resolved, against the calls their callers make.

* **policy resolution**: :func:`role_statements` reads a role's inline policies from a CloudFormation template and
  resolves ``!Sub``, ``!Ref``, ``!GetAtt``, ``!If``/conditions and ``!Join`` with test values.
* **recording**: :func:`recorded` reads the calls written by ``tests/iam_recorder/sitecustomize.py`` (a botocore
  ``provide-client-params`` hook in every Python process of a step); :func:`to_requests` maps each call to the IAM
  action (with the S3 and hidden-call exceptions) and the resource ARN it is authorized against.
* **evaluation**: :func:`allowed` follows IAM's rules: an explicit ``Deny`` wins, else some ``Allow`` must match;
  ``Action``/``NotAction`` and ``Resource``/``NotResource`` with ``*``/``?`` wildcards (case-insensitive actions,
  case-sensitive ARNs). Conditions are ignored (treated as met): the oracle proves actions and ARNs, not keys.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
TEMPLATES = ROOT / "templates" / "cloudformation"
PARTITION, REGION, ACCOUNT = "aws", "eu-west-1", "123456789012"
#: test values of the project stack's parameters (the platform settings included: SSM would resolve those)
PROJECT, PROJECT_ID = "demand-fresh", "p-abcdef123456"
STACK = "SC-123456789012-pp-abcdefghijklm"
PARAMETERS = {
    "SageMakerProjectName": PROJECT,
    "SageMakerProjectId": PROJECT_ID,
    "BitbucketWorkspace": "acme",
    "BitbucketOidcProviderArn": f"arn:aws:iam::{ACCOUNT}:oidc-provider/api.bitbucket.org/2.0/workspaces/acme/"
    "pipelines-config/identity/oidc",
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
    "AirflowExecutionRoleArn": f"arn:aws:iam::{ACCOUNT}:role/mwaa-execution",
}


class _Loader(yaml.SafeLoader):
    pass


def _tag(loader, suffix, node):
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


_Loader.add_multi_constructor("!", _tag)


def load(template: str | Path) -> dict:
    return yaml.load(Path(template).read_text(), Loader=_Loader)


@dataclass
class Resolver:
    """Resolves intrinsic functions with test values: parameters, pseudo parameters and resource refs/attributes."""

    template: dict
    parameters: dict
    refs: dict
    attributes: dict

    def __post_init__(self):
        pseudo = {"AWS::Partition": PARTITION, "AWS::Region": REGION, "AWS::AccountId": ACCOUNT}
        defaults = {k: v.get("Default") for k, v in self.template.get("Parameters", {}).items() if "Default" in v}
        self.values = pseudo | defaults | self.parameters | self.refs

    def condition(self, name: str) -> bool:
        return bool(self.resolve(self.template["Conditions"][name]))

    def resolve(self, node):
        if isinstance(node, list):
            return [self.resolve(item) for item in node]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            ((key, arg),) = node.items()
            if key == "Ref":
                if arg not in self.values:
                    raise KeyError(f"no test value for !Ref {arg}")
                return self.values[arg]
            if key == "Fn::GetAtt":
                return self.attributes[".".join(arg)]
            if key == "Fn::Sub":
                text, extra = (arg, {}) if isinstance(arg, str) else (arg[0], self.resolve(arg[1]))
                return re.sub(r"\$\{([^}!]+)\}", lambda m: str(self._sub(m.group(1), extra)), text)
            if key == "Fn::If":
                return self.resolve(arg[1] if self.condition(arg[0]) else arg[2])
            if key == "Fn::Equals":
                return self.resolve(arg[0]) == self.resolve(arg[1])
            if key == "Fn::Not":
                return not self.resolve(arg[0])
            if key == "Fn::Join":
                return arg[0].join(self.resolve(arg[1]))
            if key == "Condition":
                return self.condition(arg)
        return {key: self.resolve(value) for key, value in node.items()}

    def _sub(self, name: str, extra: dict):
        if name in extra:
            return extra[name]
        if name in self.values:
            return self.values[name]
        return self.attributes[name]


def role_statements(template: dict, role: str, resolver: Resolver) -> list[dict]:
    """The statements of the role's inline policies, resolved."""
    properties = template["Resources"][role]["Properties"]
    statements = []
    for policy in properties.get("Policies", []):
        document = resolver.resolve(policy["PolicyDocument"])
        found = document["Statement"]
        statements += found if isinstance(found, list) else [found]
    return statements


def _list(value) -> list:
    if value is None:
        return []
    if isinstance(value, list):
        return [item for sub in value for item in _list(sub)]
    return [value]


def _match(pattern: str, value: str, case: bool) -> bool:
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, 0 if case else re.IGNORECASE) is not None


def _applies(statement: dict, action: str, resource: str) -> bool:
    if "Action" in statement:
        hit = any(_match(p, action, case=False) for p in _list(statement["Action"]))
    else:
        hit = not any(_match(p, action, case=False) for p in _list(statement["NotAction"]))
    if not hit:
        return False
    if "Resource" in statement:
        return any(_match(p, resource, case=True) for p in _list(statement["Resource"]))
    return not any(_match(p, resource, case=True) for p in _list(statement["NotResource"]))


def allowed(statements: list[dict], action: str, resource: str) -> bool:
    """IAM evaluation of one request (conditions treated as met): explicit Deny wins, else an Allow must match."""
    relevant = [s for s in statements if _applies(s, action, resource)]
    if any(s["Effect"] == "Deny" for s in relevant):
        return False
    return any(s["Effect"] == "Allow" for s in relevant)


#: actions IAM does not evaluate against the resource they act on: no resource-level permission ("*"), or a fixed
#: ARN of their own (DescribeLogGroups is checked against ``log-group::log-stream:``, which a ``log-group:NAME``
#: pattern never matches: "not authorized to perform logs:DescribeLogGroups on resource ...:log-group::log-stream:")
UNSCOPED_ACTIONS = {
    "logs:DescribeLogGroups": "log-group::log-stream:",
    "logs:DescribeResourcePolicies": "*",
    "logs:DescribeIndexPolicies": "*",
}


def evaluated_resource(action: str, resource: str) -> str:
    """The resource IAM evaluates ``action`` against: ``resource``, unless the action is unscoped."""
    fixed = UNSCOPED_ACTIONS.get(action)
    if fixed is None:
        return resource
    return "*" if fixed == "*" else _arn(action.split(":")[0], fixed)


# ---- calls -> (action, resource) ---------------------------------------------------------------------------
#: operations whose IAM action is not <prefix>:<Operation>
ACTION_EXCEPTIONS = {
    ("s3", "ListObjectsV2"): "s3:ListBucket",
    ("s3", "ListObjects"): "s3:ListBucket",
    ("s3", "HeadObject"): "s3:GetObject",
    ("s3", "HeadBucket"): "s3:ListBucket",
    ("s3", "UploadPart"): "s3:PutObject",
    ("s3", "CreateMultipartUpload"): "s3:PutObject",
    ("s3", "CompleteMultipartUpload"): "s3:PutObject",
    ("s3", "CopyObject"): "s3:PutObject",
    ("s3", "DeleteObjects"): "s3:DeleteObject",
    ("s3", "ListBuckets"): "s3:ListAllMyBuckets",
}


def recorded(log: Path) -> list[dict]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def _arn(service: str, resource: str) -> str:
    return f"arn:{PARTITION}:{service}:{REGION}:{ACCOUNT}:{resource}"


def _sagemaker_resource(params: dict) -> str:
    if "ResourceArn" in params:
        return params["ResourceArn"]
    if "PipelineExecutionArn" in params:
        return params["PipelineExecutionArn"]
    if "PipelineName" in params:
        return _arn("sagemaker", f"pipeline/{params['PipelineName'].lower()}")
    if "ModelPackageArn" in params:
        return params["ModelPackageArn"]
    if "ModelPackageName" in params:
        name = params["ModelPackageName"]
        return name if name.startswith("arn:") else _arn("sagemaker", f"model-package/{name}")
    if "ModelPackageGroupName" in params:
        return _arn("sagemaker", f"model-package-group/{params['ModelPackageGroupName']}")
    return "*"


def to_requests(call: dict) -> list[tuple[str, str]]:
    """The (action, resource ARN) pairs IAM authorizes for one recorded call (hidden PassRole included)."""
    prefix, operation, params = call["prefix"], call["operation"], call["params"] or {}
    action = ACTION_EXCEPTIONS.get((prefix, operation), f"{prefix}:{operation}")
    if prefix == "s3":
        bucket, key = params.get("Bucket"), params.get("Key")
        resource = f"arn:{PARTITION}:s3:::{bucket}" + (f"/{key}" if key and action != "s3:ListBucket" else "")
        resource = resource if bucket else "*"
    elif prefix == "sagemaker":
        resource = _sagemaker_resource(params)
    elif prefix == "ecr":
        name = params.get("repositoryName") or (params.get("repositoryNames") or [None])[0]
        resource = _arn("ecr", f"repository/{name}") if name else "*"
    elif prefix == "scheduler":
        resource = _arn("scheduler", f"schedule/{params.get('GroupName', 'default')}/{params.get('Name')}")
    elif prefix == "cloudformation" and params.get("StackName"):
        name = params["StackName"]
        resource = name if name.startswith("arn:") else _arn("cloudformation", f"stack/{name}/*")
    elif prefix == "secretsmanager":
        resource = params.get("SecretId", "*")
    else:
        resource = "*"
    requests = [(action, resource)]
    role = params.get("RoleArn") or (params.get("Target") or {}).get("RoleArn")
    if role:
        requests.append(("iam:PassRole", role))
    return requests


def denials(calls: list[dict], statements: list[dict], caller: str, role: str) -> list[str]:
    """One line per request the role does not allow, naming the caller, the action, the resource and the role."""
    lines = []
    for call in calls:
        for action, resource in to_requests(call):
            if not allowed(statements, action, resource):
                line = f"{caller}: {action} on {resource} is not allowed by role {role}"
                if line not in lines:
                    lines.append(line)
    return lines


# ---- the project stack's resources, named as CloudFormation names them -------------------------------------------
_NAME_KEYS = {
    "AWS::S3::Bucket": "BucketName",
    "AWS::ECR::Repository": "RepositoryName",
    "AWS::SageMaker::ModelPackageGroup": "ModelPackageGroupName",
    "AWS::IAM::Role": "RoleName",
    "AWS::Lambda::Function": "FunctionName",
    "AWS::Logs::LogGroup": "LogGroupName",
    "AWS::Events::Rule": "Name",
    "AWS::SQS::Queue": "QueueName",
    "AWS::SecretsManager::Secret": "Name",
}
#: resource types whose Ref is their ARN (the others' Ref is their name)
_REF_IS_ARN = ("AWS::SQS::Queue", "AWS::SecretsManager::Secret")


def _resource_arn(kind: str, name: str) -> str:
    return {
        "AWS::S3::Bucket": f"arn:{PARTITION}:s3:::{name}",
        "AWS::ECR::Repository": _arn("ecr", f"repository/{name}"),
        "AWS::SageMaker::ModelPackageGroup": _arn("sagemaker", f"model-package-group/{name}"),
        "AWS::IAM::Role": f"arn:{PARTITION}:iam::{ACCOUNT}:role/{name}",
        "AWS::Lambda::Function": _arn("lambda", f"function:{name}"),
        "AWS::Logs::LogGroup": _arn("logs", f"log-group:{name}:*"),
        "AWS::Events::Rule": _arn("events", f"rule/{name}"),
        "AWS::SQS::Queue": _arn("sqs", name),
        "AWS::SecretsManager::Secret": _arn("secretsmanager", f"secret:{name}-AbCdEf"),
    }.get(kind, "*")


def physical(template: dict, parameters: dict | None = None) -> tuple[dict, dict]:
    """Test values of each resource's Ref and ARN: its name, or a name as CloudFormation generates it."""
    parameters = PARAMETERS if parameters is None else parameters
    refs: dict = {}
    attributes: dict = {}
    for logical, resource in template["Resources"].items():
        kind, properties = resource["Type"], resource.get("Properties", {})
        key = _NAME_KEYS.get(kind)
        generated = f"{STACK}-{logical}-ABCDEF123456"[:64]
        name = Resolver(template, parameters, refs, {}).resolve(properties[key]) if key in properties else None
        name = name or (generated.lower() if kind in ("AWS::S3::Bucket", "AWS::ECR::Repository") else generated)
        arn = _resource_arn(kind, name)
        refs[logical] = arn if kind in _REF_IS_ARN else name
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


def project(overrides: dict | None = None, parameters: dict | None = None) -> tuple[dict, Resolver, dict]:
    """project.yml, a resolver with the test values (``overrides`` replace refs), and the refs."""
    parameters = PARAMETERS if parameters is None else parameters
    template = load(TEMPLATES / "project.yml")
    refs, attributes = physical(template, parameters)
    refs |= overrides or {}
    return template, Resolver(template, parameters, refs, attributes), refs


@contextmanager
def recording() -> Iterator[list[dict]]:
    """Record the AWS calls of this process's botocore sessions (new ones and boto3's default) while inside."""
    import boto3
    import botocore.session

    calls: list[dict] = []

    def record(params=None, model=None, **_):
        service = model.service_model
        prefix = service.metadata.get("signingName") or service.endpoint_prefix
        calls.append({"prefix": prefix, "operation": model.name, "params": json.loads(json.dumps(params, default=str))})

    init = botocore.session.Session.__init__

    def patched(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self.register("provide-client-params", record)

    botocore.session.Session.__init__ = patched
    default = boto3.DEFAULT_SESSION._session if boto3.DEFAULT_SESSION else None
    if default:
        default.register("provide-client-params", record)
    try:
        yield calls
    finally:
        botocore.session.Session.__init__ = init
        if default:
            default.unregister("provide-client-params", record)
