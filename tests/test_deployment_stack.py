"""``deploy_stack`` against botocore's Stubber: the exact CloudFormation calls, in order, for each state of a stack."""

from __future__ import annotations

import boto3
import pytest
from botocore.stub import Stubber

from forecaster.pipelines.deployment import deploy_stack

STACK = "demand-fresh-deploy-staging"
STACK_ID = f"arn:aws:cloudformation:eu-west-1:123456789012:stack/{STACK}/abc"
TEMPLATE = {"Resources": {}}


def _stack(status: str) -> dict:
    return {"Stacks": [{"StackName": STACK, "StackId": STACK_ID, "StackStatus": status, "CreationTime": "2024-01-01"}]}


@pytest.fixture
def cloudformation():
    client = boto3.client("cloudformation", region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="y")
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def test_a_stack_whose_first_create_rolled_back_is_replaced_not_updated(cloudformation):
    """UpdateStack refuses ROLLBACK_COMPLETE: every later deploy of the stage failed until an admin deleted it."""
    client, stubber = cloudformation
    stubber.add_response("describe_stacks", _stack("ROLLBACK_COMPLETE"), {"StackName": STACK})
    stubber.add_response("delete_stack", {}, {"StackName": STACK})
    stubber.add_client_error(
        "describe_stacks",
        "ValidationError",
        f"Stack with id {STACK} does not exist",
        expected_params={"StackName": STACK},
    )  # the delete waiter's first poll: gone
    stubber.add_response(
        "create_stack", {"StackId": STACK_ID}, {"StackName": STACK, "TemplateBody": '{"Resources": {}}', "Tags": []}
    )
    stubber.add_response("describe_stacks", _stack("CREATE_COMPLETE"), {"StackName": STACK})  # create waiter
    stubber.add_response("describe_stacks", _stack("CREATE_COMPLETE"), {"StackName": STACK})  # final status
    assert deploy_stack(client, STACK, TEMPLATE, {}, delay=0) == "CREATE_COMPLETE"


def test_a_missing_stack_is_created_and_an_access_error_is_not_taken_for_a_missing_stack(cloudformation):
    client, stubber = cloudformation
    stubber.add_client_error(
        "describe_stacks", "AccessDenied", "not authorized to perform cloudformation:DescribeStacks"
    )
    with pytest.raises(client.exceptions.ClientError, match="not authorized"):  # was: CreateStack, AlreadyExists
        deploy_stack(client, STACK, TEMPLATE, {}, delay=0)
    stubber.add_client_error("describe_stacks", "ValidationError", f"Stack with id {STACK} does not exist")
    stubber.add_response("create_stack", {"StackId": STACK_ID})
    stubber.add_response("describe_stacks", _stack("CREATE_COMPLETE"))
    stubber.add_response("describe_stacks", _stack("CREATE_COMPLETE"))
    assert deploy_stack(client, STACK, TEMPLATE, {}, delay=0) == "CREATE_COMPLETE"


def test_only_an_approved_version_is_staged(tmp_path):
    """A production step waiting for its click once deployed a version rejected in the meantime."""
    from forecaster.errors import InvalidParameterError
    from forecaster.pipelines.deployment import stage_definitions
    from forecaster.registry import open_registry

    registry = open_registry(f"sqlite:///{tmp_path}/registry.db")
    version = registry.register("demand", "s3://b/model.tar.gz")
    registry.approve("demand", version.version)
    registry.reject("demand", version.version, "rollback")
    with pytest.raises(InvalidParameterError, match=r"is Rejected, not Approved: only an approved version is deployed"):
        stage_definitions(registry, version.identifier, "demand", "production", {}, "role", "eu-west-1", None)
