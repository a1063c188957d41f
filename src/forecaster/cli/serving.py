"""Sub-commands ``serve`` (the inference server, what ``docker run IMAGE serve`` runs) and ``transform``."""

from __future__ import annotations

import argparse
import os

from forecaster.container.layout import DEFAULT_MODEL_DIR, MODEL_DIR_ENV
from forecaster.contract import ALL_QUANTILES, DEFAULT_MAX_PAYLOAD_MB, MAX_PAYLOAD_CEILING_MB, QUANTILE_CHOICES


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add this module's sub-commands to ``subparsers``."""
    serve = subparsers.add_parser(
        "serve",
        help="run the inference server (gunicorn + flask) on the SageMaker serving contract",
        description="Serve /ping, /invocations and /execution-parameters. Settings come from the SAGEMAKER_* "
        "environment variables (see docs/serving.md#environment); flags override them.",
    )
    serve.add_argument(
        "--model-dir",
        default=os.environ.get(MODEL_DIR_ENV, DEFAULT_MODEL_DIR),
        help=f"model artifact directory (default: ${MODEL_DIR_ENV} or {DEFAULT_MODEL_DIR})",
    )
    serve.add_argument("--host", default="0.0.0.0", help="address to bind (default: 0.0.0.0)")
    serve.add_argument("--port", type=int, default=None, help="port (default: $SAGEMAKER_BIND_TO_PORT or 8080)")
    serve.add_argument(
        "--workers",
        type=int,
        default=None,
        help="worker processes (default: $SAGEMAKER_MODEL_SERVER_WORKERS, else the CPU count)",
    )
    serve.set_defaults(func=_serve)

    transform = subparsers.add_parser(
        "transform",
        help="local batch transform: split files by line, post mini-batches to a local server, write <file>.out",
        description="Run a batch transform like SageMaker's CreateTransformJob (SplitType=Line, MultiRecord, "
        "AssembleWith=Line) against a local server process started for the job.",
    )
    transform.add_argument("--model-dir", required=True, help="model artifact directory")
    transform.add_argument("--input", required=True, help="input file, or a directory of input files")
    transform.add_argument("--output", required=True, help="output directory for <file>.out")
    transform.add_argument(
        "--max-payload-mb",
        type=int,
        default=DEFAULT_MAX_PAYLOAD_MB,
        help=f"MaxPayloadInMB, 1-{MAX_PAYLOAD_CEILING_MB} (default: {DEFAULT_MAX_PAYLOAD_MB})",
    )
    transform.add_argument(
        "--concurrency", type=int, default=None, help="MaxConcurrentTransforms (default: the server's answer)"
    )
    transform.add_argument("--join-source", choices=("none", "input"), default="none", help="JoinSource")
    transform.add_argument("--content-type", choices=("text/csv", "application/jsonlines"), default="text/csv")
    transform.add_argument("--accept", choices=("text/csv", "application/jsonlines"), default="text/csv")
    transform.add_argument(
        "--quantiles",
        choices=QUANTILE_CHOICES,
        default=None,
        help=f"{ALL_QUANTILES} = every quantile and the point forecast mean (the batch default); p50 = one column",
    )
    transform.set_defaults(func=_transform)


def _serve(args: argparse.Namespace) -> int:
    from forecaster.serving.environment import ServingEnvironment
    from forecaster.serving.server import serve

    serve(ServingEnvironment.from_env(model_dir=args.model_dir, host=args.host, port=args.port, workers=args.workers))
    return 0


def _transform(args: argparse.Namespace) -> int:
    from forecaster.serving.transform import run_transform

    written = run_transform(
        args.model_dir,
        args.input,
        args.output,
        max_payload_mb=args.max_payload_mb,
        concurrency=args.concurrency,
        join_source=args.join_source,
        content_type=args.content_type,
        accept=args.accept,
        quantiles=args.quantiles,
    )
    for path in written:
        print(path)
    return 0
