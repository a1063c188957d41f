"""Entry point of the `forecaster` command: builds the parser and is the CLI's one error boundary."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from forecaster import __version__
from forecaster.cli import checks, core, deploy, orders, pipelines, project, serving
from forecaster.errors import AwsError, ForecasterError, MissingExtraError

#: Modules that contribute sub-commands; each has ``register(subparsers)``.
COMMAND_MODULES = (core, orders, serving, checks, pipelines, deploy, project)
#: top-level module -> the extra of ``pyproject.toml`` that installs it
EXTRA_OF_MODULE = {
    "flask": "serve", "gunicorn": "serve", "sagemaker_training": "train",
    "shap": "checks", "matplotlib": "checks", "sklearn": "checks", "numba": "checks", "jsonschema": "checks",
    "sagemaker": "pipelines", "boto3": "pipelines", "moto": "pipelines", "mlforecast": "bench", "psutil": "bench",
    "airflow": "airflow", "openpyxl": "excel",
}  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    """Return the top-level parser with every sub-command registered."""
    parser = argparse.ArgumentParser(
        prog="forecaster",
        description="Campaign-aware demand forecasts for fresh produce, on the SageMaker contract.",
    )
    parser.add_argument("--version", action="version", version=f"forecaster {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    # the parser carries the command runner: `pipeline run --local` hands it to the local runner, which runs the
    # processing steps in this process (no command module imports this one)
    parser.set_defaults(command_runner=run_command)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMAND_MODULES:
        module.register(subparsers)
    return parser


def run_command(argv: Sequence[str]) -> int:
    """Run one command in this process without the error boundary (a ForecasterError propagates).

    What the local pipeline runner is handed to run processing steps (``forecaster <command> <args>``).
    """
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; errors raised on purpose end as one line on stderr and their exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        try:
            return int(args.func(args) or 0)
        except ModuleNotFoundError as error:
            extra = EXTRA_OF_MODULE.get((error.name or "").split(".")[0])
            if extra is None:
                raise
            raise MissingExtraError(
                f"This command needs the {extra!r} extra (module {error.name!r} is not installed). Install it with "
                f"pip install 'forecaster[{extra}]' (in a checkout: make venv, or "
                f".venv/bin/pip install -e '.[{extra}]')."
            ) from error
    except ForecasterError as error:
        print(f"forecaster {args.command}: error: {error.reason}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt as error:  # Ctrl-C, or SIGTERM where a command turns it into one: no traceback
        print(f"forecaster {args.command}: stopped ({str(error) or 'interrupted'})", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `forecaster registry list | head`: the reader is gone, nothing left to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except OSError as error:  # a path that is a folder, not writable, ...: the system's words and the path
        print(f"forecaster {args.command}: error: {error.strerror or error}: {error.filename or ''}", file=sys.stderr)
        return 1
    except Exception as error:
        if not type(error).__module__.startswith(("botocore.", "boto3.")):
            raise
        failed = AwsError(
            f"AWS: {error} ({type(error).__name__}). Check the credentials (aws configure, AWS_PROFILE), the region "
            "(AWS_DEFAULT_REGION) and that AWS can be reached; a refused call names the permission it lacks."
        )
        print(f"forecaster {args.command}: error: {failed.reason}", file=sys.stderr)
        return failed.exit_code


if __name__ == "__main__":
    sys.exit(main())
