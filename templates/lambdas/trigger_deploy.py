"""EventBridge target: a model version was approved -> run the deploy repository's custom Bitbucket pipeline.

The project's EventBridge rule sends "SageMaker Model Package State Change" events of the project's model
package group. Only ``ModelApprovalStatus == "Approved"`` of that group starts anything: the custom pipeline
``PIPELINE`` on branch ``BRANCH`` of the deploy repository, with variable ``MODEL_PACKAGE_ARN``. Any other state
change is logged and ignored.

Environment: SECRET_ARN (Bitbucket credentials), BITBUCKET_WORKSPACE, DEPLOY_REPOSITORY (slug),
MODEL_PACKAGE_GROUP, PIPELINE (default ``deploy-approved-model``), BRANCH (default ``main``).
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from bitbucket_api import Bitbucket, load_secret

LOG = logging.getLogger()
LOG.setLevel(logging.INFO)
APPROVED = "Approved"


def handler(event: dict, context: Any) -> dict:
    """Lambda entry point; returns what it did (for the logs and the tests)."""
    detail = event.get("detail", {})
    group, status = detail.get("ModelPackageGroupName"), detail.get("ModelApprovalStatus")
    arn = detail.get("ModelPackageArn", "")
    if group != os.environ["MODEL_PACKAGE_GROUP"] or status != APPROVED:
        LOG.info("ignored: %s of group %s is %s", arn, group, status)
        return {"started": False, "reason": f"{group} {status}"}
    deadline = time.monotonic() + context.get_remaining_time_in_millis() / 1000 - 5
    api = Bitbucket(load_secret(os.environ["SECRET_ARN"]), deadline=deadline)
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
    run = api.request("POST", path, body)
    LOG.info("started %s #%s for %s", pipeline, run.get("build_number"), arn)
    return {"started": True, "uuid": run["uuid"], "build_number": run.get("build_number")}
