"""A stage's deployment as a CloudFormation stack: its pipelines, their schedules and the model they run.

One stack per stage, ``<group>-deploy-<stage>``, holds the stage's batch-inference and model-quality pipelines
(``AWS::SageMaker::Pipeline`` with the definition built for one model package) and their schedules
(``AWS::Scheduler::Schedule``). The stack records the model package ARN in its outputs and tags, the pipelines
in their tags and in the inference pipeline's ``ModelPackageArn`` parameter. Deleting the stack (the project's
cleanup does) deletes all of it.

Which model a run deploys (:func:`choose_model`): the approved version the event names; a rejected version that
is deployed rolls back to the newest approved one; a rejected version that is not deployed changes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from forecaster.errors import ForecasterError, InvalidParameterError
from forecaster.pipelines import sdk
from forecaster.pipelines.definitions import build_pipeline, pipeline_spec
from forecaster.pipelines.executions import schedule_request
from forecaster.pipelines.resolve import parameters_for
from forecaster.registry.base import ApprovalStatus, ModelRegistry

#: the pipelines of a stage's deployment stack, in order
STAGE_PIPELINES = ("inference", "model-quality")
#: stack output and tag naming the deployed model package
MODEL_OUTPUT = "ModelPackageArn"
MODEL_TAG = "forecaster:model-package-arn"
#: tag naming the stage; the SageMaker project tags
STAGE_TAG, PROJECT_NAME_TAG, PROJECT_ID_TAG = "stage", "sagemaker:project-name", "sagemaker:project-id"
_LOGICAL = {"inference": "BatchInference", "model-quality": "ModelQuality"}
_PIPELINE_NAMES = {"inference": "batch-inference", "model-quality": "model-quality"}


class DeploymentError(ForecasterError):
    """A deployment stack did not reach a complete state."""


def stack_name(group: str, stage: str) -> str:
    """The deployment stack of ``stage`` (the deploy roles may act on ``<group>-deploy-*`` only)."""
    return f"{group}-deploy-{stage}"


def pipeline_name(group: str, key: str, stage: str) -> str:
    """``<group>-batch-inference-<stage>`` and ``<group>-model-quality-<stage>``."""
    return f"{group}-{_PIPELINE_NAMES[key]}-{stage}"


def deployed_model(cloudformation: Any, stack: str) -> str | None:
    """The model package ARN a deployment stack records; None when the stack does not exist."""
    try:
        found = cloudformation.describe_stacks(StackName=stack)["Stacks"]
    except cloudformation.exceptions.ClientError as error:
        if "does not exist" in str(error):
            return None
        raise
    outputs = {o["OutputKey"]: o["OutputValue"] for o in found[0].get("Outputs", [])}
    return outputs.get(MODEL_OUTPUT)


def choose_model(registry: ModelRegistry, group: str, event_arn: str, deployed: list[str]) -> tuple[str, str]:
    """The model package to deploy for an event, and why; ``("", why)`` when nothing is to be deployed.

    Args:
        registry: the group's registry.
        group: the model package group.
        event_arn: the version the approval event names ("" for a run started by hand: the newest approved).
        deployed: the ARNs the stages' stacks run now.
    """
    if not event_arn:
        version = registry.latest_approved(group)
        return version.identifier, f"newest approved version {version.version} (no event: started by hand)"
    summary = next((v for v in registry.list_versions(group) if v.identifier == event_arn), None)
    if summary is None:
        raise InvalidParameterError(f"MODEL_PACKAGE_ARN {event_arn} is no version of model package group {group!r}.")
    if summary.status is ApprovalStatus.APPROVED:
        return event_arn, f"version {summary.version} approved"
    if event_arn not in deployed:
        return "", f"version {summary.version} is {summary.status.value} and not deployed: nothing to do"
    version = registry.latest_approved(group)
    return version.identifier, f"version {summary.version} {summary.status.value}: roll back to {version.version}"


def stack_template(
    group: str,
    stage: str,
    model_arn: str,
    definitions: Mapping[str, str],
    role: str,
    schedules: Mapping[str, str | None],
    scheduler_role: str | None,
    region: str,
    timezone: str = "UTC",
) -> dict:
    """The deployment stack's template: one ``AWS::SageMaker::Pipeline`` per definition, a schedule per cron."""
    tags = [{"Key": MODEL_TAG, "Value": model_arn}, {"Key": STAGE_TAG, "Value": stage}]
    resources: dict[str, Any] = {}
    for key, body in definitions.items():
        name, logical = pipeline_name(group, key, stage), _LOGICAL[key]
        resources[logical] = {
            "Type": "AWS::SageMaker::Pipeline",
            "Properties": {
                "PipelineName": name,
                "PipelineDescription": pipeline_spec(key).description,
                "PipelineDefinition": {"PipelineDefinitionBody": body},
                "RoleArn": role,
                "Tags": tags,
            },
        }
        expression = schedules.get(key)
        if expression:
            if not scheduler_role:
                raise InvalidParameterError(f"The {stage} schedules {key}: pass --schedule-role too.")
            arn = {"Fn::Sub": f"arn:${{AWS::Partition}}:sagemaker:${{AWS::Region}}:${{AWS::AccountId}}:pipeline/{name}"}
            request = schedule_request(name, "ARN", expression, scheduler_role, timezone)
            request["Target"]["Arn"] = arn
            resources[f"{logical}Schedule"] = {
                "Type": "AWS::Scheduler::Schedule",
                "DependsOn": logical,
                "Properties": request,
            }
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": f"forecaster deployment of {group} to {stage} ({region}): pipelines and schedules",
        "Resources": resources,
        "Outputs": {MODEL_OUTPUT: {"Value": model_arn}},
    }


def stage_definitions(
    registry: ModelRegistry,
    model_arn: str,
    group: str,
    stage: str,
    values: Mapping[str, Mapping[str, Any]],
    role: str,
    region: str | None,
    bucket: str | None,
) -> dict[str, str]:
    """The stage's pipeline definitions (JSON) for one model package: ``values[key]`` plus the model's parameters.

    Built with the caller's credentials: the SDK uploads the steps' code to ``bucket``.
    """
    version = next((v for v in registry.list_versions(group) if v.identifier == model_arn), None)
    if version is None:
        raise InvalidParameterError(f"Model package {model_arn} is no version of model package group {group!r}.")
    if version.status is not ApprovalStatus.APPROVED:  # e.g. rejected while a production step waited for its click
        raise InvalidParameterError(
            f"Model package {model_arn} is {version.status.value}, not Approved: only an approved version is "
            f"deployed. Approve it, or deploy the latest approved version of {group!r} (forecaster deploy resolve)."
        )
    bodies = {}
    with sdk.sdk_environment(region, validate_role=False) as resolved:
        for key in STAGE_PIPELINES:
            resolved_values = parameters_for(version, key)
            clash = sorted(set(resolved_values) & set(values.get(key, {})))
            if clash:
                raise InvalidParameterError(f"The model package sets {', '.join(clash)}: remove them from {key}.")
            defaults = {**values.get(key, {}), **resolved_values}
            name = pipeline_name(group, key, stage)
            pipeline = build_pipeline(key, role=role, region=resolved, bucket=bucket, name=name, defaults=defaults)
            bodies[key] = pipeline.definition()
    return bodies


def deploy_stack(cloudformation: Any, stack: str, template: dict, tags: Mapping[str, str], delay: int = 5) -> str:
    """Create or update ``stack`` and wait; return its final status.

    Raises:
        DeploymentError: when the stack rolls back or fails, naming the failed resources and reasons.
    """
    request = {
        "StackName": stack,
        "TemplateBody": json.dumps(template),
        "Tags": [{"Key": k, "Value": v} for k, v in tags.items()],
    }
    status = _status(cloudformation, stack)
    if status == "ROLLBACK_COMPLETE":  # a first create that failed: the stack cannot be updated, only replaced
        cloudformation.delete_stack(StackName=stack)
        cloudformation.get_waiter("stack_delete_complete").wait(
            StackName=stack, WaiterConfig={"Delay": delay, "MaxAttempts": 720}
        )
        status = None
    exists = status is not None
    try:
        if exists:
            cloudformation.update_stack(**request)
        else:
            cloudformation.create_stack(**request)
    except cloudformation.exceptions.ClientError as error:
        if "No updates are to be performed" in str(error):
            return "UPDATE_COMPLETE (no changes)"
        raise
    waiter = cloudformation.get_waiter("stack_update_complete" if exists else "stack_create_complete")
    try:
        waiter.wait(StackName=stack, WaiterConfig={"Delay": delay, "MaxAttempts": 720})
    except Exception as error:
        raise DeploymentError(f"Stack {stack} did not complete: {_failures(cloudformation, stack) or error}") from None
    return cloudformation.describe_stacks(StackName=stack)["Stacks"][0]["StackStatus"]


def _status(cloudformation: Any, stack: str) -> str | None:
    """The stack's status, None when it does not exist (any other error, e.g. access denied, is raised)."""
    try:
        return cloudformation.describe_stacks(StackName=stack)["Stacks"][0]["StackStatus"]
    except cloudformation.exceptions.ClientError as error:
        if "does not exist" in str(error):
            return None
        raise


def _failures(cloudformation: Any, stack: str) -> str:
    events = cloudformation.describe_stack_events(StackName=stack)["StackEvents"]
    failed = [e for e in events if e.get("ResourceStatus", "").endswith("FAILED")]
    return "; ".join(f"{e['LogicalResourceId']}: {e.get('ResourceStatusReason', '')}" for e in failed[:5])
