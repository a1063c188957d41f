"""``forecaster deploy resolve|stage``: the deploy repository's steps (one model package through the stages).

``deploy resolve`` decides which model package an approval or rejection event deploys and writes its ARN to a
file (the Bitbucket artifact the production step reads); ``deploy stage`` deploys that ARN to one stage as the
CloudFormation stack ``<group>-deploy-<stage>`` (:mod:`forecaster.pipelines.deployment`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from forecaster.errors import InvalidParameterError


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``deploy`` to ``subparsers``."""
    deploy = subparsers.add_parser("deploy", help="deploy one model package to a stage (CloudFormation stack)")
    commands = deploy.add_subparsers(dest="deploy_command", metavar="ACTION", required=True)

    resolve = commands.add_parser("resolve", help="which model package an approval/rejection event deploys")
    resolve.add_argument("--group", required=True, help="model package group")
    resolve.add_argument("--event-arn", default="", help="the version the event names (empty: newest approved)")
    resolve.add_argument("--stage", action="append", default=[], help="a stage whose deployment counts (repeatable)")
    resolve.add_argument("--out", required=True, type=Path, help="file to write the ARN to (empty: nothing to do)")
    resolve.add_argument("--region", help="AWS region (default: the AWS configuration's)")
    resolve.set_defaults(func=_resolve)

    stage = commands.add_parser("stage", help="deploy a model package's pipelines and schedules to a stage")
    stage.add_argument("--stage", required=True, help="stage name (staging, production)")
    stage.add_argument("--group", required=True, help="model package group (the project name)")
    stage.add_argument("--project-id", required=True, help="SageMaker project id (tags)")
    stage.add_argument("--model-package-arn", required=True, help="the model package to deploy (empty: nothing)")
    stage.add_argument("--config-dir", required=True, type=Path, help="inference.json, model-quality.json, ...")
    stage.add_argument("--role", required=True, help="IAM role ARN the pipelines run as")
    stage.add_argument("--bucket", help="S3 bucket the SDK uploads the steps' code to")
    stage.add_argument("--schedule-role", help="role ARN EventBridge Scheduler starts the pipelines as")
    stage.add_argument("--region", help="AWS region (default: the AWS configuration's)")
    stage.set_defaults(func=_stage)


def _clients(region: str | None):
    import boto3

    from forecaster.pipelines.sdk import resolve_region
    from forecaster.registry.sagemaker import SageMakerRegistry

    resolved = resolve_region(region)
    return boto3.client("cloudformation", region_name=resolved), SageMakerRegistry(region=resolved)


def _resolve(args: argparse.Namespace) -> int:
    from forecaster.io import atomic_path
    from forecaster.pipelines.deployment import choose_model, deployed_model, stack_name

    cloudformation, registry = _clients(args.region)
    deployed = [deployed_model(cloudformation, stack_name(args.group, stage)) for stage in args.stage]
    arn, why = choose_model(registry, args.group, args.event_arn, [a for a in deployed if a])
    print(f"{why}: {arn or 'no deployment'}", file=sys.stderr)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.out) as tmp:
        tmp.write_text(arn)
    print(arn)
    return 0


def _stage(args: argparse.Namespace) -> int:
    from forecaster.pipelines import deployment
    from forecaster.pipelines.executions import read_params_file, read_schedule

    if not args.model_package_arn:
        print(f"no model package to deploy to {args.stage}: nothing changed")
        return 0
    folder = args.config_dir
    if not folder.is_dir():
        raise InvalidParameterError(f"--config-dir {folder} is no directory (config/<stage>/ of the repository).")
    values = {key: read_params_file(folder / f"{key}.json") for key in deployment.STAGE_PIPELINES}
    schedules_file = folder / "schedules.json"
    schedules = {
        key: read_schedule(schedules_file, key) if schedules_file.exists() else None
        for key in deployment.STAGE_PIPELINES
    }
    cloudformation, registry = _clients(args.region)
    region = cloudformation.meta.region_name
    bodies = deployment.stage_definitions(
        registry, args.model_package_arn, args.group, args.stage, values, args.role, region, args.bucket
    )
    template = deployment.stack_template(
        args.group, args.stage, args.model_package_arn, bodies, args.role, schedules, args.schedule_role, region
    )
    tags = {
        deployment.PROJECT_NAME_TAG: args.group,
        deployment.PROJECT_ID_TAG: args.project_id,
        deployment.STAGE_TAG: args.stage,
        deployment.MODEL_TAG: args.model_package_arn,
    }
    stack = deployment.stack_name(args.group, args.stage)
    status = deployment.deploy_stack(cloudformation, stack, template, tags)
    print(f"{stack}: {status} ({args.model_package_arn})")
    return 0
