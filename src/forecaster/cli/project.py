"""``forecaster project init|bundle``: the seed repositories of the SageMaker project template."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``project`` to ``subparsers``."""
    from forecaster.project.seed import DEFAULT_WORKSPACE

    project = subparsers.add_parser("project", help="seed repositories of the SageMaker project template")
    commands = project.add_subparsers(dest="project_command", metavar="ACTION", required=True)
    init = commands.add_parser("init", help="write NAME-model-build/ and NAME-model-deploy/ (git, one commit)")
    init.add_argument("--name", required=True, help="project name (3-32 of a-z 0-9 -)")
    init.add_argument("--out", required=True, type=Path, help="directory to write the two repositories into")
    init.add_argument("--bitbucket-workspace", default=DEFAULT_WORKSPACE, help="Bitbucket workspace (for the docs)")
    init.set_defaults(func=_init)
    bundle = commands.add_parser("bundle", help="write the seed bundle (zip) the seeding Lambda reads from S3")
    bundle.add_argument("--out", required=True, type=Path, help="zip file to write")
    bundle.set_defaults(func=_bundle)


def _init(args: argparse.Namespace) -> int:
    from forecaster.project.seed import init

    for key, (path, commit) in init(args.name, args.out, args.bitbucket_workspace).items():
        print(f"{key}: {path} (commit {commit})")
    return 0


def _bundle(args: argparse.Namespace) -> int:
    from forecaster.project.seed import bundle

    print(f"wrote {bundle(args.out)}")
    return 0
