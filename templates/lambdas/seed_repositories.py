"""CloudFormation custom resource: the project's Bitbucket project and its model-build and model-deploy repos.

Create/Update: make sure the Bitbucket project and both repositories exist (private), commit the seed code into a
repository that has no ``main`` branch yet (an Update never overwrites the team's work), enable Pipelines, set
the repository variables (``secured: true`` for the secret's ``secured_variables``), and the deployment
variables of the deploy repository's staging and production environments. Returns the workspace, repository
and environment UUIDs, which the OIDC roles' trust policies pin, and the OIDC audience of the workspace.

Delete: keeps the repositories (they hold the team's code) unless ``DeleteRepositories`` is ``"true"``; either
way a repeated Delete, or one after a failed Create, succeeds. Every request, failed or not, is answered on the
CloudFormation response URL, so a stack never waits an hour for a timeout.

Properties: ProjectName, BitbucketWorkspace, BitbucketProjectKey, SecretArn, SeedBucket, SeedKey,
RepositoryVariables ``{"build": {NAME: value}, "deploy": {...}}``, DeploymentVariables
``{"staging": {NAME: value}, "production": {...}}``, DeleteRepositories.
"""

from __future__ import annotations

import io
import json
import logging
import time
import urllib.request
import zipfile
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from bitbucket_api import Bitbucket, load_secret

LOG = logging.getLogger()
LOG.setLevel(logging.INFO)
BRANCH = "main"
ENVIRONMENTS = ("Staging", "Production")
#: the repositories: PROJECT-model-build, PROJECT-model-deploy (the seed bundle's manifest must agree)
REPOSITORY_SUFFIXES = ("model-build", "model-deploy")
_SAFETY_MS = 20_000  # time kept back to answer CloudFormation


def handler(event: dict, context: Any) -> dict:
    """Lambda entry point: run the request and always answer CloudFormation."""
    properties = event.get("ResourceProperties", {})
    physical_id = event.get("PhysicalResourceId") or (
        f"{properties.get('BitbucketWorkspace', 'unknown')}/{properties.get('ProjectName', 'unknown')}"
    )
    try:
        if event["RequestType"] == "Delete" and not _deletes_repositories(properties):
            LOG.info("DeleteRepositories is not true: the Bitbucket repositories are kept")
            respond(event, physical_id, "SUCCESS", data={})  # no secret needed: a deleted one never blocks it
            return {}
        deadline = time.monotonic() + (context.get_remaining_time_in_millis() - _SAFETY_MS) / 1000
        secret = load_secret(properties["SecretArn"])
        api = Bitbucket(secret, deadline=deadline)
        if event["RequestType"] == "Delete":
            data = delete(api, properties)
        else:
            data = create_or_update(api, properties, secret)
        respond(event, physical_id, "SUCCESS", data=data)
        return data
    except Exception as error:
        LOG.exception("%s failed", event.get("RequestType"))
        respond(event, physical_id, "FAILED", reason=f"{type(error).__name__}: {error}")
        return {}


def respond(
    event: Mapping[str, Any], physical_id: str, status: str, data: dict | None = None, reason: str = ""
) -> None:
    """PUT the custom resource's answer to the pre-signed CloudFormation response URL."""
    body = {
        "Status": status,
        "Reason": (reason or "see the Lambda's CloudWatch logs")[:3500],
        "PhysicalResourceId": physical_id,
        "StackId": event["StackId"],
        "RequestId": event["RequestId"],
        "LogicalResourceId": event["LogicalResourceId"],
        "NoEcho": False,
        "Data": data or {},
    }
    request = urllib.request.Request(
        event["ResponseURL"], json.dumps(body).encode(), {"Content-Type": ""}, method="PUT"
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        LOG.info("CloudFormation answer %s: HTTP %s", status, answer.status)


def seed_bundle(bucket: str, key: str, values: Mapping[str, str], client: Any = None) -> dict[str, dict[str, str]]:
    """Return repository key -> {path: rendered text} from the seed bundle (``forecaster project bundle``).

    The bundle's ``manifest.json`` names the repositories (key -> name suffix) and the tokens to fill
    (token -> the property of ``values`` that replaces it).
    """
    if client is None:
        import boto3

        client = boto3.client("s3")
    archive = zipfile.ZipFile(io.BytesIO(client.get_object(Bucket=bucket, Key=key)["Body"].read()))
    manifest = json.loads(archive.read("manifest.json"))
    repositories: dict[str, dict[str, str]] = {name: {} for name in manifest["repositories"]}
    for name in sorted(archive.namelist()):
        repository, _, path = name.partition("/")
        if repository in repositories and path and not name.endswith("/"):
            text = archive.read(name).decode()
            for token, prop in manifest["tokens"].items():
                text = text.replace(token, values[prop])
            repositories[repository][path] = text
    if tuple(manifest["repositories"].values()) != REPOSITORY_SUFFIXES:
        raise ValueError(f"Seed bundle s3://{bucket}/{key} names repositories {manifest['repositories']}.")
    return repositories


def create_or_update(api: Bitbucket, props: Mapping[str, Any], secret: Mapping[str, Any]) -> dict[str, str]:
    """Create what is missing, seed empty repositories, set variables; return the UUIDs."""
    workspace, project = props["BitbucketWorkspace"], props["ProjectName"]
    files = seed_bundle(props["SeedBucket"], props["SeedKey"], props)
    workspace_uuid = api.request("GET", f"workspaces/{workspace}")["uuid"]
    # the audience of the workspace's OIDC tokens; their subject is {repository uuid}[{environment uuid}]:{step}
    data = {"WorkspaceUuid": workspace_uuid, "Audience": f"ari:cloud:bitbucket::workspace/{workspace_uuid.strip('{}')}"}
    key = props["BitbucketProjectKey"]
    if api.request("GET", f"workspaces/{workspace}/projects/{key}", missing_ok=True) is None:
        api.request("POST", f"workspaces/{workspace}/projects", {"name": project, "key": key, "is_private": True})
    secured = secret.get("secured_variables", {})
    for repository, suffix in zip(files, REPOSITORY_SUFFIXES, strict=True):
        slug = f"{project}-{suffix}"
        path = f"repositories/{workspace}/{slug}"
        found = api.request("GET", path, missing_ok=True)
        if found is None:
            found = api.request("POST", path, {"scm": "git", "is_private": True, "project": {"key": key}})
        data[f"{repository.capitalize()}RepositoryUuid"] = found["uuid"]
        if api.request("GET", f"{path}/refs/branches/{BRANCH}", missing_ok=True) is None:
            form = {"message": f"Seed {slug} (forecaster project template)", "branch": BRANCH}
            api.request("POST", f"{path}/src", form=form | files[repository])
        api.request("PUT", f"{path}/pipelines_config", {"enabled": True})
        plain = props.get("RepositoryVariables", {}).get(repository, {})
        _set_variables(api, f"{path}/pipelines_config/variables", plain, secured)
        if repository == "deploy":
            for name, uuid in _environments(api, path).items():
                data[f"{name}EnvironmentUuid"] = uuid
                variables = props.get("DeploymentVariables", {}).get(name.lower(), {})
                environment = f"{path}/deployments_config/environments/{quote(uuid)}/variables"
                _set_variables(api, environment, variables, {})
    return data


def _set_variables(api: Bitbucket, path: str, plain: Mapping[str, str], secured: Mapping[str, str]) -> None:
    """Create or update variables at ``path``: ``plain`` unsecured, ``secured`` with ``secured: true``."""
    existing = {item["key"]: item["uuid"] for item in api.pages(path)}
    values = [(k, v, False) for k, v in plain.items()] + [(k, v, True) for k, v in secured.items()]
    for name, value, is_secured in values:
        body = {"key": name, "value": str(value), "secured": is_secured}
        if name in existing:
            api.request("PUT", f"{path}/{quote(existing[name])}", body)
        else:
            api.request("POST", path, body)


def _environments(api: Bitbucket, path: str) -> dict[str, str]:
    """Return {Staging: uuid, Production: uuid}, creating an environment that is missing."""
    found = {item["name"].lower(): item["uuid"] for item in api.pages(f"{path}/environments")}
    uuids = {}
    for name in ENVIRONMENTS:
        if name.lower() not in found:
            kind = {"type": "deployment_environment_type", "name": name}
            body = {"type": "deployment_environment", "name": name, "environment_type": kind}
            found[name.lower()] = api.request("POST", f"{path}/environments", body)["uuid"]
        uuids[name] = found[name.lower()]
    return uuids


def _deletes_repositories(props: Mapping[str, Any]) -> bool:
    return str(props.get("DeleteRepositories", "false")).lower() == "true"


def delete(api: Bitbucket, props: Mapping[str, Any]) -> dict[str, str]:
    """Delete the repositories and the project only when asked to; a missing one is fine (idempotent)."""
    if not _deletes_repositories(props):
        LOG.info("DeleteRepositories is not true: the Bitbucket repositories are kept")
        return {}
    workspace, project = props["BitbucketWorkspace"], props["ProjectName"]
    for suffix in REPOSITORY_SUFFIXES:
        api.request("DELETE", f"repositories/{workspace}/{project}-{suffix}", missing_ok=True)
    api.request("DELETE", f"workspaces/{workspace}/projects/{props['BitbucketProjectKey']}", missing_ok=True)
    return {}
