"""Custom resource: on the project's deletion, delete what the deploy steps created and the model versions.

The deploy repository deploys each stage as the CloudFormation stack ``<project>-deploy-<stage>`` (its
pipelines and schedules), outside the project's stack. This resource's Delete removes those stacks (waiting
for each) and the pipelines created outside any stack (the build repository's model-build pipeline), then
deletes every model package of the project's group so that CloudFormation can delete the
group. Create and Update only answer SUCCESS. The model artifacts stay in the (retained) artifact bucket.

Resource properties: ProjectName, Stacks (the deployment stacks' names), Pipelines (names), ModelPackageGroup,
DeleteModelVersions ("true"/"false").
"""

from __future__ import annotations

import hashlib
import logging
import time
from typing import Any

from seed_repositories import respond

LOG = logging.getLogger()
LOG.setLevel(logging.INFO)
_SAFETY_S = 20


def delete_stacks(cloudformation: Any, names: list[str], deadline: float, poll: float = 5.0) -> list[str]:
    """Delete the stacks that exist and wait until they are gone; return the names deleted."""
    deleted = []
    for name in names:
        try:
            cloudformation.describe_stacks(StackName=name)
        except cloudformation.exceptions.ClientError as error:
            if "does not exist" in str(error):
                continue
            raise
        cloudformation.delete_stack(StackName=name)
        deleted.append(name)
    for name in deleted:
        while True:
            try:
                status = cloudformation.describe_stacks(StackName=name)["Stacks"][0]["StackStatus"]
            except cloudformation.exceptions.ClientError as error:
                if "does not exist" in str(error):
                    break
                raise
            if status == "DELETE_COMPLETE":
                break
            if status == "DELETE_FAILED":
                raise RuntimeError(f"stack {name} could not be deleted (DELETE_FAILED): see its events")
            if time.monotonic() > deadline:
                raise TimeoutError(f"stack {name} still {status}")
            time.sleep(poll)
    return deleted


#: pipeline execution states that keep SageMaker from deleting the pipeline
_RUNNING = ("Executing", "Stopping")


def delete_pipelines(sagemaker: Any, names: list[str], deadline: float, poll: float = 5.0) -> list[str]:
    """Delete the pipelines that exist (outside any stack: the build repository upserts its own); return them.

    SageMaker deletes a pipeline only when none of its executions runs: running ones are stopped first (a build
    that went on would register a model version after the versions were deleted, and the group's deletion fail).
    """
    deleted = []
    for name in names:
        try:
            _stop_executions(sagemaker, name, deadline, poll)
            sagemaker.delete_pipeline(PipelineName=name)
        except sagemaker.exceptions.ResourceNotFound:
            continue
        except sagemaker.exceptions.ClientError as error:
            if "does not exist" in str(error):  # ValidationException, as some endpoints answer for a missing one
                continue
            raise
        deleted.append(name)
    return deleted


def _token(arn: str) -> str:
    """An idempotency token of the stop request: letters and digits (SageMaker's pattern), the same for one ARN."""
    return "cleanup" + hashlib.sha256(arn.encode()).hexdigest()[:40]


def _stop_executions(sagemaker: Any, name: str, deadline: float, poll: float) -> None:
    running = [
        execution["PipelineExecutionArn"]
        for page in sagemaker.get_paginator("list_pipeline_executions").paginate(PipelineName=name)
        for execution in page["PipelineExecutionSummaries"]
        if execution.get("PipelineExecutionStatus") in _RUNNING
    ]
    for arn in running:
        if sagemaker.describe_pipeline_execution(PipelineExecutionArn=arn)["PipelineExecutionStatus"] == "Executing":
            sagemaker.stop_pipeline_execution(PipelineExecutionArn=arn, ClientRequestToken=_token(arn))
        while sagemaker.describe_pipeline_execution(PipelineExecutionArn=arn)["PipelineExecutionStatus"] in _RUNNING:
            if time.monotonic() > deadline:
                raise TimeoutError(f"execution {arn} of pipeline {name} is still stopping")
            time.sleep(poll)


def delete_model_versions(sagemaker: Any, group: str) -> int:
    """Delete every model package of ``group``; return how many."""
    arns = []
    for page in sagemaker.get_paginator("list_model_packages").paginate(ModelPackageGroupName=group):
        arns += [item["ModelPackageArn"] for item in page["ModelPackageSummaryList"]]
    for arn in arns:
        sagemaker.delete_model_package(ModelPackageName=arn)
    return len(arns)


def handler(event: dict, context: Any) -> dict:
    """Lambda entry point: run the request and always answer CloudFormation."""
    import boto3

    properties = event.get("ResourceProperties", {})
    physical_id = event.get("PhysicalResourceId") or f"{properties.get('ProjectName', 'unknown')}-deployments"
    data: dict = {}
    try:
        if event["RequestType"] == "Delete":
            deadline = time.monotonic() + context.get_remaining_time_in_millis() / 1000 - _SAFETY_S
            deleted = delete_stacks(boto3.client("cloudformation"), list(properties["Stacks"]), deadline)
            data["DeletedStacks"] = ",".join(deleted)
            pipelines = delete_pipelines(boto3.client("sagemaker"), list(properties.get("Pipelines", [])), deadline)
            data["DeletedPipelines"] = ",".join(pipelines)
            if properties.get("DeleteModelVersions", "true") == "true":
                count = delete_model_versions(boto3.client("sagemaker"), properties["ModelPackageGroup"])
                data["DeletedModelVersions"] = str(count)
            LOG.info("deleted %s", data)
        respond(event, physical_id, "SUCCESS", data=data)
    except Exception as error:
        LOG.exception("%s failed", event.get("RequestType"))
        respond(event, physical_id, "FAILED", reason=f"{type(error).__name__}: {error}")
    return data
