"""EventBridge target: a model version was approved or rejected -> run the deploy repository's custom pipeline.

The project's EventBridge rule sends "SageMaker Model Package State Change" events of the project's model
package group with ``ModelApprovalStatus`` ``Approved`` or ``Rejected``. Either starts the custom pipeline
``PIPELINE`` on branch ``BRANCH`` of the deploy repository with variable ``MODEL_PACKAGE_ARN``: the pipeline's
``forecaster deploy resolve`` deploys an approved version, rolls back to the newest approved version when the
rejected one is deployed, and does nothing for a rejected version that is not deployed (only the deploy role
can see the deployments, so the decision is made there). Any other state change is logged and ignored.

One event id gives one run: before starting, the handler claims ``s3://EVENTS_BUCKET/EVENTS_PREFIX<event id>``
with a conditional write (``If-None-Match: *``). A retried delivery of the same event finds the claim and starts
nothing; when starting the run fails, the claim is removed so that EventBridge's retry can start it.

Environment: SECRET_ARN (Bitbucket credentials), BITBUCKET_WORKSPACE, DEPLOY_REPOSITORY (slug),
MODEL_PACKAGE_GROUP, EVENTS_BUCKET, EVENTS_PREFIX (default ``deploy-events/``), PIPELINE (default
``deploy-approved-model``), BRANCH (default ``main``).
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any

from bitbucket_api import Bitbucket, load_secret

LOG = logging.getLogger()
LOG.setLevel(logging.INFO)
#: the approval states that start a deploy run (a rejection may roll back)
DEPLOYING = ("Approved", "Rejected")


def _claim(event: dict) -> str | None:
    """Claim the event id (the key written), or None when another delivery of the event has claimed it."""
    import boto3

    key = os.environ.get("EVENTS_PREFIX", "deploy-events/") + event["id"]
    body = json.dumps({"detail": event.get("detail", {}), "time": event.get("time")}).encode()
    s3 = boto3.client("s3")
    try:
        s3.put_object(Bucket=os.environ["EVENTS_BUCKET"], Key=key, Body=body, IfNoneMatch="*")
    except s3.exceptions.ClientError as error:
        if error.response.get("Error", {}).get("Code") in ("PreconditionFailed", "ConditionalRequestConflict"):
            return None
        raise
    return key


def handler(event: dict, context: Any) -> dict:
    """Lambda entry point; returns what it did (for the logs and the tests)."""
    detail = event.get("detail", {})
    group, status = detail.get("ModelPackageGroupName"), detail.get("ModelApprovalStatus")
    arn = detail.get("ModelPackageArn", "")
    if group != os.environ["MODEL_PACKAGE_GROUP"] or status not in DEPLOYING:
        LOG.info("ignored: %s of group %s is %s", arn, group, status)
        return {"started": False, "reason": f"{group} {status}"}
    claim = _claim(event)
    if claim is None:
        LOG.info("ignored: event %s was delivered before and has started its run", event["id"])
        return {"started": False, "reason": f"event {event['id']} seen before"}
    deadline = time.monotonic() + context.get_remaining_time_in_millis() / 1000 - 5
    pipeline = os.environ.get("PIPELINE", "deploy-approved-model")
    body = {
        "target": {
            "type": "pipeline_ref_target",
            "ref_type": "branch",
            "ref_name": os.environ.get("BRANCH", "main"),
            "selector": {"type": "custom", "pattern": pipeline},
        },
        "variables": [{"key": "MODEL_PACKAGE_ARN", "value": arn}],
    }
    path = f"repositories/{os.environ['BITBUCKET_WORKSPACE']}/{os.environ['DEPLOY_REPOSITORY']}/pipelines"
    try:
        api = Bitbucket(load_secret(os.environ["SECRET_ARN"]), deadline=deadline)
        run = api.request("POST", path, body)
    except Exception:
        import boto3

        boto3.client("s3").delete_object(Bucket=os.environ["EVENTS_BUCKET"], Key=claim)  # let the retry start it
        raise
    LOG.info("started %s #%s for %s (%s, event %s)", pipeline, run.get("build_number"), arn, status, event["id"])
    return {"started": True, "uuid": run["uuid"], "build_number": run.get("build_number")}
