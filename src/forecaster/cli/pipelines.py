"""Sub-commands of the orchestration layer: ``pipeline definition|upsert|start|run`` and ``registry ...``.

``forecaster pipeline definition build --out build.json`` writes a SageMaker pipeline definition with no AWS
account and no network; ``forecaster pipeline upsert`` creates/updates it on AWS (parameter defaults from
``--param``/``--params-file``/``--approved-model``) and ``pipeline start`` starts it. ``forecaster registry``
lists, approves, rejects and resolves model versions in the local (SQLite) or SageMaker registry.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from forecaster.cli.core import add_workers_option
from forecaster.container.layout import PROCESSING_INPUT_ROOT, PROCESSING_OUTPUT_ROOT
from forecaster.errors import InvalidParameterError
from forecaster.registry import DEFAULT_REGISTRY_URL, REGISTRY_ENV, WORKDIR_REGISTRY_FILE

PIPELINE_KEYS = ("build", "inference", "model-quality")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``split``, ``pipeline`` and ``registry`` to ``subparsers``."""
    split = subparsers.add_parser("split", help="hold out the last HORIZON days: train/ history/ future/ truth/")
    split.add_argument("--input", action="append", default=[], metavar="data=PATH", help="history table(s)")
    split.add_argument(
        "--spec", help="preset name or spec JSON file (default: a spec.json next to the data, else 'default')"
    )
    split.add_argument("--horizon", required=True, type=int, help="days held out for evaluation")
    split.add_argument(
        "--out",
        type=Path,
        default=Path(PROCESSING_OUTPUT_ROOT),
        help=f"output directory of train/ history/ future/ truth/ (default: {PROCESSING_OUTPUT_ROOT}, as in a "
        "processing job)",
    )
    add_workers_option(split)
    split.set_defaults(func=_split)
    _register_pipeline(subparsers)
    _register_registry(subparsers)


def _split(args: argparse.Namespace) -> int:
    from forecaster.cli.core import parse_key_values
    from forecaster.pipelines.split import write_split
    from forecaster.spec import bundled_spec, resolve_spec

    inputs = parse_key_values(args.input, "--input")
    unknown = sorted(set(inputs) - {"data"})
    if unknown:
        raise InvalidParameterError(f"forecaster split takes only --input data=PATH. Got {unknown} too.")
    data = inputs.get("data", f"{PROCESSING_INPUT_ROOT}/data")
    spec = args.spec or bundled_spec(data) or "default"
    for name, path in write_split(data, resolve_spec(spec), args.horizon, args.out, args.workers).items():
        print(f"{name}: {path}")
    return 0


# -- pipeline ------------------------------------------------------------------------------------------------
def _pipeline_options(parser: argparse.ArgumentParser, role_required: bool) -> None:
    parser.add_argument("pipeline", choices=PIPELINE_KEYS, help="which pipeline")
    parser.add_argument("--role", required=role_required, help="IAM role ARN the jobs and the pipeline run as")
    parser.add_argument("--region", help="AWS region (default: eu-west-1 offline, the AWS configuration for upsert)")
    parser.add_argument("--bucket", help="default S3 bucket of the SageMaker session (Clarify analysis configs)")
    parser.add_argument("--name", help="pipeline name (default: forecaster-model-build, ...)")
    parser.add_argument(
        "--managed-checks",
        action="store_true",
        help="use QualityCheckStep/ClarifyCheckStep (Model Monitor/Clarify) instead of the own check steps",
    )


def _register_pipeline(subparsers: argparse._SubParsersAction) -> None:
    pipeline = subparsers.add_parser("pipeline", help="SageMaker pipeline definitions (SDK v3)")
    commands = pipeline.add_subparsers(dest="pipeline_command", metavar="ACTION", required=True)

    definition = commands.add_parser("definition", help="write a pipeline definition JSON (offline, no AWS)")
    _pipeline_options(definition, role_required=False)
    definition.add_argument("--out", required=True, type=Path, help="JSON file to write")
    definition.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="parameter default (repeatable), e.g. StockData=s3://... to include that optional input",
    )
    definition.set_defaults(func=_definition)

    upsert = commands.add_parser("upsert", help="create or update the pipeline on AWS (your AWS credentials)")
    _pipeline_options(upsert, role_required=True)
    upsert.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE", help="pipeline tag (repeatable)")
    upsert.add_argument(
        "--skip-role-validation",
        action="store_true",
        help="do not let the SDK check the role with IAM (SAGEMAKER_VALIDATE_ROLE=false)",
    )
    _value_options(upsert, "parameter default")
    upsert.add_argument("--schedule-file", type=Path, help="JSON {pipeline: 'cron(...)'}: schedule this pipeline")
    upsert.add_argument("--schedule-role", help="role ARN EventBridge Scheduler starts the pipeline as")
    upsert.add_argument("--schedule-timezone", default="UTC", help="time zone of the schedule (default: UTC)")
    upsert.set_defaults(func=_upsert)

    start = commands.add_parser("start", help="start an execution on AWS (your AWS credentials)")
    start.add_argument("pipeline", choices=PIPELINE_KEYS, help="which pipeline")
    start.add_argument("--region", help="AWS region (default: the AWS configuration's)")
    start.add_argument("--name", help="pipeline name (default: forecaster-model-build, ...)")
    start.add_argument("--display-name", help="execution display name (e.g. the commit)")
    start.add_argument("--wait", action="store_true", help="wait for the execution; exit 1 unless it succeeds")
    start.add_argument("--timeout", type=float, default=3600.0, help="seconds --wait waits (default: 3600)")
    _value_options(start, "execution parameter")
    start.set_defaults(func=_start)
    # `pipeline run ... --local`: the local runner walking forecaster.pipelines.catalog
    run = commands.add_parser("run", help="run a pipeline on this machine (--local): same steps, local folders")
    run.add_argument("pipeline", choices=PIPELINE_KEYS, help="which pipeline")
    run.add_argument("--local", action="store_true", help="run here (required: executions on AWS start there)")
    run.add_argument("--workdir", required=True, type=Path, help="work directory: step outputs and run.json")
    run.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="pipeline parameter")
    run.add_argument(
        "--registry", help=f"registry URL (default: ${REGISTRY_ENV}, else <workdir>/{WORKDIR_REGISTRY_FILE})"
    )
    run.add_argument(
        "--group",
        help="model package group: the one a build registers in (its ModelPackageGroupName), the one the inference "
        "and model-quality pipelines take the approved model from (default: forecaster-demand)",
    )
    run.add_argument("--no-progress", action="store_true", help="no progress bar and step lines")
    run.set_defaults(func=_run)


def _value_options(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help=f"{what} (repeatable)")
    parser.add_argument("--params-file", type=Path, help=f"JSON object of {what}s (--param wins)")
    parser.add_argument(
        "--approved-model",
        metavar="GROUP",
        help="add the model parameters of GROUP's latest approved version (inference, model-quality)",
    )
    parser.add_argument("--registry", help="registry URL for --approved-model (default: sagemaker://REGION)")


def _values(args: argparse.Namespace) -> dict:
    """Parameter values of ``upsert``/``start``: --params-file, then --param, then the approved model's."""
    import sys

    from forecaster.cli.core import parse_key_values
    from forecaster.pipelines.executions import read_params_file

    values = read_params_file(args.params_file) if args.params_file else {}
    values |= parse_key_values(args.param, "--param")
    if args.approved_model:
        from forecaster.pipelines.resolve import parameters_for
        from forecaster.pipelines.sdk import resolve_region
        from forecaster.registry import open_registry

        url = args.registry or f"sagemaker://{resolve_region(args.region)}"
        version = open_registry(url).latest_approved(args.approved_model)
        resolved = parameters_for(version, args.pipeline)
        clash = sorted(set(resolved) & set(values))
        if clash:
            raise InvalidParameterError(f"--approved-model sets {', '.join(clash)}: do not pass them as well.")
        print(f"latest approved: {version.identifier} (version {version.version})", file=sys.stderr)
        values |= resolved
    return values


def _definition(args: argparse.Namespace) -> int:
    from forecaster.cli.core import parse_key_values
    from forecaster.pipelines import definitions, sdk

    document = definitions.definition(
        args.pipeline,
        role=args.role or sdk.PLACEHOLDER_ROLE,
        region=args.region or sdk.DEFAULT_REGION,
        bucket=args.bucket or sdk.PLACEHOLDER_BUCKET,
        managed_checks=args.managed_checks,
        name=args.name,
        defaults=parse_key_values(args.param, "--param"),
    )
    out = definitions.write_definition(document, args.out)
    steps = ", ".join(step["Name"] for step in document["Steps"])
    print(f"wrote {out} ({len(document['Parameters'])} parameters; steps: {steps})")
    return 0


def _upsert(args: argparse.Namespace) -> int:
    from forecaster.cli.core import parse_key_values
    from forecaster.pipelines import definitions, executions, sdk

    if args.schedule_file:  # fail before the pipeline changes
        executions.read_schedule(args.schedule_file, args.pipeline)

    arn = definitions.upsert(
        args.pipeline,
        role=args.role,
        region=args.region,
        bucket=args.bucket,
        managed_checks=args.managed_checks,
        name=args.name,
        tags=parse_key_values(args.tag, "--tag"),
        validate_role=not args.skip_role_validation,
        defaults=_values(args),
    )
    print(arn)
    expression = executions.read_schedule(args.schedule_file, args.pipeline) if args.schedule_file else None
    if expression:
        import boto3

        if not args.schedule_role:
            raise InvalidParameterError(f"{args.schedule_file} schedules {args.pipeline}: pass --schedule-role too.")
        scheduler = boto3.client("scheduler", region_name=sdk.resolve_region(args.region))
        name = arn.rsplit("/", 1)[-1]
        print(executions.schedule(scheduler, name, arn, expression, args.schedule_role, args.schedule_timezone))
    return 0


def _start(args: argparse.Namespace) -> int:
    from forecaster.pipelines import executions, sdk
    from forecaster.pipelines.definitions import pipeline_spec

    sdk.require("boto3")  # a plain API call: no SageMaker SDK needed
    import boto3

    spec = pipeline_spec(args.pipeline)
    values = _values(args)
    client = boto3.client("sagemaker", region_name=sdk.resolve_region(args.region))
    arn = executions.start(client, spec, args.name, values, args.display_name)
    print(arn)
    if args.wait:
        print(executions.wait(client, arn, args.timeout))
    return 0


def _run(args: argparse.Namespace) -> int:
    from forecaster.cli.core import parse_key_values
    from forecaster.pipelines.local import RUN_FILE, run_pipeline

    if not args.local:
        raise InvalidParameterError(
            "forecaster pipeline run needs --local: it runs the pipeline on this machine. On AWS, create the "
            "pipeline with `forecaster pipeline upsert` and start executions there."
        )
    record = run_pipeline(
        args.pipeline,
        args.workdir,
        parse_key_values(args.param, "--param"),
        registry=args.registry,
        group=args.group,
        progress=not args.no_progress,
        command_runner=args.command_runner,
    )
    print(f"{record['name']}: {record['status']} in {record['seconds']:.1f} s; record: {args.workdir / RUN_FILE}")
    for name, step in record["steps"].items():
        for output, path in step.get("outputs", {}).items():
            print(f"  {name}/{output}: {path}")
    return 0


# -- registry ------------------------------------------------------------------------------------------------
def _register_registry(subparsers: argparse._SubParsersAction) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--registry",
        help=f"sqlite:///PATH or sagemaker://[REGION] (default: ${REGISTRY_ENV}, else {DEFAULT_REGISTRY_URL})",
    )
    common.add_argument("--json", action="store_true", help="print JSON")
    registry = subparsers.add_parser("registry", help="model registry: versions, approval, latest approved")
    commands = registry.add_subparsers(dest="registry_command", metavar="ACTION", required=True)

    listing = commands.add_parser("list", parents=[common], help="list groups, or the versions of a group")
    listing.add_argument("--group", help="model package group (omit to list the groups)")
    listing.add_argument("--status", help="only versions in this status (Approved, Rejected, PendingManualApproval)")
    listing.set_defaults(func=_list)

    for action, verb in (("approve", "approve"), ("reject", "reject (roll back)")):
        sub = commands.add_parser(action, parents=[common], help=f"{verb} a version")
        sub.add_argument("--group", required=True)
        sub.add_argument("--version", required=True, type=int)
        sub.add_argument("--note", default="", help="approval description")
        sub.set_defaults(func=_change_status, status=action)

    latest = commands.add_parser("latest", parents=[common], help="the newest created approved version")
    latest.add_argument("--group", required=True)
    latest.add_argument(
        "--parameters",
        choices=("inference", "model-quality"),
        help="print the pipeline parameters for this version (JSON) instead",
    )
    latest.set_defaults(func=_latest)

    add = commands.add_parser("register", parents=[common], help="register a model version")
    add.add_argument("--group", required=True)
    add.add_argument("--model-data", required=True, help="model.tar.gz URL or model directory")
    add.add_argument("--image", default="", help="inference image URI")
    add.add_argument("--status", default="PendingManualApproval")
    add.add_argument("--metrics", type=Path, help="JSON file of scalar metrics ({name: number})")
    add.add_argument("--baseline", action="append", default=[], metavar="KIND=URI", help="repeatable")
    add.add_argument("--lineage", action="append", default=[], metavar="KEY=VALUE", help="repeatable")
    add.add_argument("--description", default="")
    add.set_defaults(func=_register_version)


def _open(args: argparse.Namespace):
    from forecaster.registry import open_registry

    return open_registry(args.registry, create=args.func is _register_version)  # a typo must not make a new file


def _show(versions: list, as_json: bool) -> None:
    if as_json:
        print(json.dumps([v.to_dict() for v in versions], indent=2))
        return
    print(f"{'group':<24} {'version':>7}  {'status':<22} {'created (UTC)':<26} model data")
    for v in versions:
        created = v.created_at.strftime("%Y-%m-%d %H:%M:%S.%f")
        print(f"{v.group:<24} {v.version:>7}  {v.status.value:<22} {created:<26} {v.model_data_url}")


def _list(args: argparse.Namespace) -> int:
    registry = _open(args)
    if not args.group:
        groups = registry.list_groups()
        print(json.dumps(groups) if args.json else "\n".join(groups))
        return 0
    _show(registry.list_versions(args.group, args.status), args.json)
    return 0


def _change_status(args: argparse.Namespace) -> int:
    registry = _open(args)
    change = registry.approve if args.status == "approve" else registry.reject
    _show([change(args.group, args.version, args.note)], args.json)
    return 0


def _latest(args: argparse.Namespace) -> int:
    registry = _open(args)
    version = registry.latest_approved(args.group)
    if args.parameters:
        from forecaster.pipelines.resolve import parameters_for

        print(json.dumps(parameters_for(version, args.parameters), indent=2))
        return 0
    if args.json:
        print(json.dumps(version.to_dict(), indent=2))
    else:
        _show([version], False)
    return 0


def _location(value: str, flag: str) -> str:
    """A URL as given; a local path absolute, and refused unless it exists (a version must not depend on the cwd)."""
    if "://" in value:
        return value
    path = Path(value).expanduser()
    if not value.strip() or not path.exists():
        raise InvalidParameterError(
            f"{flag} {value!r} names no existing file or directory. Give the path of one, or a URL (s3://...)."
        )
    return str(path.resolve())


def _register_version(args: argparse.Namespace) -> int:
    from forecaster.cli.core import parse_key_values

    metrics = {}
    if args.metrics:
        try:
            metrics = json.loads(args.metrics.read_text())
        except (OSError, ValueError) as error:
            raise InvalidParameterError(f"--metrics {args.metrics}: not a readable JSON object ({error}).") from None
        if not isinstance(metrics, dict):
            raise InvalidParameterError(f"--metrics {args.metrics} must hold a JSON object {{name: number}}.")
    baselines = parse_key_values(args.baseline, "--baseline")
    version = _open(args).register(
        args.group,
        _location(args.model_data, "--model-data"),
        image_uri=args.image,
        status=args.status,
        metrics=metrics,
        baselines={kind: _location(path, f"--baseline {kind}") for kind, path in baselines.items()},
        lineage=parse_key_values(args.lineage, "--lineage"),
        description=args.description,
    )
    _show([version], args.json)
    return 0
