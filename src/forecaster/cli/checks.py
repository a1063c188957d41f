"""Sub-commands of the checks layer: evaluate, baseline/check groups, explain, decide-retrain, report.

Each works as a SageMaker processing step (a ``Processor`` running the training image): inputs default to
``/opt/ml/processing/input/<name>``, the output to ``/opt/ml/processing/output/<name>``; ``--input NAME=PATH``
and ``--out DIR`` override them. Heavy imports happen inside the handlers so ``forecaster --help`` stays fast.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from forecaster.checks.contract import DEFAULT_DRIFT_THRESHOLD, DEFAULT_MODEL_QUALITY_TOLERANCE, DEFAULT_NDCG_THRESHOLD
from forecaster.cli.core import whole_number
from forecaster.container.layout import PROCESSING_INPUT_ROOT, PROCESSING_OUTPUT_ROOT


def _common(parser: argparse.ArgumentParser, inputs: str, output: str) -> None:
    parser.add_argument(
        "--input",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help=f"input path by name ({inputs}); default {PROCESSING_INPUT_ROOT}/<name>",
    )
    parser.add_argument("--out", help=f"output directory (default {PROCESSING_OUTPUT_ROOT}/{output})")


def _spec_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--spec", default="default", help="dataset spec: preset name or JSON file (default: default)")
    parser.add_argument("--model-dir", type=Path, help="take the spec from this model's feature_schema.json")
    parser.add_argument("--seed", type=whole_number(0), default=0, help="seed of the standard-deviation subsamples")


def _categorical(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model-dir", type=Path, help="name header-less columns from <dir>/feature_schema.json")
    parser.add_argument(
        "--categorical", default="", help="comma-separated columns to treat as categorical (String) values"
    )
    parser.add_argument(
        "--spec",
        help="dataset spec (preset or JSON file; default: the model's with --model-dir) for raw data with a header: "
        "its date column is not profiled, its keys and static columns are categorical",
    )


def _data_spec(args: argparse.Namespace) -> object | None:
    """The spec given with --spec, else the model's (None when neither names one)."""
    from forecaster.checks import jobs
    from forecaster.errors import DataValidationError

    if args.spec:
        return jobs.load_dataset_spec(args.spec)
    try:
        return jobs.load_dataset_spec(None, args.model_dir) if args.model_dir else None
    except DataValidationError:  # a feature schema without a spec only names the columns
        return None


def _inputs(args: argparse.Namespace, known: tuple[str, ...]) -> dict[str, list[Path]]:
    from forecaster.checks import processing_io

    caller = f"forecaster {args.command_path}"
    inputs = processing_io.parse_inputs(args.input, caller)
    processing_io.check_unknown_inputs(inputs, known, caller)
    return inputs


def _path(args: argparse.Namespace, inputs: dict[str, list[Path]], name: str) -> Path:
    from forecaster.checks import processing_io

    return processing_io.input_path(inputs, name, f"forecaster {args.command_path}")


def _out(args: argparse.Namespace, name: str, inputs: dict[str, list[Path]]) -> Path:
    from forecaster.checks import processing_io

    read = dict(inputs)
    if getattr(args, "model_dir", None):
        read["--model-dir"] = [args.model_dir]
    return processing_io.output_dir(args.out, name, read, f"forecaster {args.command_path}")


def _names(text: str) -> list[str]:
    return [n.strip() for n in text.split(",") if n.strip()]


# ---------------------------------------------------------------------------------------------------- handlers
def _evaluate(args: argparse.Namespace) -> int:
    from forecaster.checks import jobs

    inputs = _inputs(args, ("predictions", "truth"))
    jobs.run_evaluate(
        _path(args, inputs, "predictions"),
        _path(args, inputs, "truth"),
        _out(args, "evaluation", inputs),
        spec=jobs.load_dataset_spec(args.spec, args.model_dir),
        seed=args.seed,
    )
    return 0


def _baseline_data_quality(args: argparse.Namespace) -> int:
    from forecaster.checks import jobs

    inputs = _inputs(args, ("dataset",))
    jobs.run_baseline_data_quality(
        _path(args, inputs, "dataset"),
        _out(args, "baseline", inputs),
        model_dir=args.model_dir,
        categorical=_names(args.categorical),
        spec=_data_spec(args),
        comparison_threshold=args.comparison_threshold,
        categorical_comparison_threshold=args.categorical_comparison_threshold,
    )
    return 0


def _check_data_quality(args: argparse.Namespace) -> int:
    from forecaster.checks import jobs

    inputs = _inputs(args, ("baseline", "dataset"))
    violations = jobs.run_check_data_quality(
        _path(args, inputs, "baseline"),
        _path(args, inputs, "dataset"),
        _out(args, "violations", inputs),
        model_dir=args.model_dir,
        categorical=_names(args.categorical),
        spec=_data_spec(args),
    )
    return 1 if args.fail_on_violation and violations["violations"] else 0


def _baseline_model_quality(args: argparse.Namespace) -> int:
    from forecaster.checks import jobs

    inputs = _inputs(args, ("evaluation",))
    jobs.run_baseline_model_quality(
        _path(args, inputs, "evaluation"), _out(args, "baseline", inputs), tolerance=args.tolerance
    )
    return 0


def _check_model_quality(args: argparse.Namespace) -> int:
    from forecaster.checks import jobs

    inputs = _inputs(args, ("baseline", "predictions", "truth"))
    violations = jobs.run_check_model_quality(
        _path(args, inputs, "baseline"),
        _path(args, inputs, "predictions"),
        _path(args, inputs, "truth"),
        _out(args, "violations", inputs),
        spec=jobs.load_dataset_spec(args.spec, args.model_dir),
        seed=args.seed,
    )
    return 1 if args.fail_on_violation and violations["violations"] else 0


def _check_attribution_drift(args: argparse.Namespace) -> int:
    from forecaster.checks import jobs

    inputs = _inputs(args, ("baseline", "current"))
    violations = jobs.run_attribution_drift(
        _path(args, inputs, "baseline"),
        _path(args, inputs, "current"),
        _out(args, "violations", inputs),
        threshold=args.threshold,
    )
    return 1 if args.fail_on_violation and violations["violations"] else 0


def _explain(args: argparse.Namespace) -> int:
    from forecaster.checks import jobs
    from forecaster.checks.processing_io import default_input

    inputs = _inputs(args, ("dataset", "background"))
    model_dir = args.model_dir or default_input("model")
    background = inputs.get("background")
    jobs.run_explain(
        model_dir,
        _path(args, inputs, "dataset"),
        _out(args, "explanations", inputs),
        background=background[0] if background else None,
        num_clusters=args.num_clusters,
        max_rows=args.max_rows,
        background_sample=args.background_sample,
        seed=args.seed,
        method=args.method,
        save_local=not args.no_local,
    )
    return 0


def _decide(args: argparse.Namespace) -> int:
    from forecaster.checks import jobs, processing_io

    inputs = _inputs(args, ("violations",))
    directories = processing_io.input_paths(inputs, "violations", "forecaster decide-retrain")
    jobs.run_decide(
        directories,
        _out(args, "decision", inputs),
        min_drifted_features=args.min_drifted_features,
        max_wape=args.max_wape,
    )
    return 0


def _report(args: argparse.Namespace) -> int:
    from forecaster.checks import report

    report.write_report(args.workdir, args.out, spec=args.spec, max_series=args.series)
    return 0


# ---------------------------------------------------------------------------------------------------- parsers
def _fail_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--fail-on-violation", action="store_true", help="exit 1 when a violation is found (QualityCheckStep style)"
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add this module's sub-commands to ``subparsers``."""
    p = subparsers.add_parser("evaluate", help="score predictions against ground truth -> evaluation.json")
    _common(p, "predictions, truth", "evaluation")
    _spec_args(p)
    p.set_defaults(func=_evaluate, command_path="evaluate")

    baseline = subparsers.add_parser("baseline", help="suggest Model Monitor baselines (statistics + constraints)")
    groups = baseline.add_subparsers(dest="baseline_command", metavar="KIND", required=True)
    p = groups.add_parser("data-quality", help="profile a data set -> statistics.json, constraints.json")
    _common(p, "dataset", "baseline")
    _categorical(p)
    p.add_argument(
        "--comparison-threshold", type=float, default=DEFAULT_DRIFT_THRESHOLD, help="numeric drift distance limit"
    )
    p.add_argument(
        "--categorical-comparison-threshold",
        type=float,
        default=DEFAULT_DRIFT_THRESHOLD,
        help="categorical L-inf limit",
    )
    p.set_defaults(func=_baseline_data_quality, command_path="baseline data-quality")
    p = groups.add_parser("model-quality", help="model-quality constraints from an evaluation")
    _common(p, "evaluation", "baseline")
    p.add_argument(
        "--tolerance",
        type=float,
        default=DEFAULT_MODEL_QUALITY_TOLERANCE,
        help="relative slack on the baseline metrics",
    )
    p.set_defaults(func=_baseline_model_quality, command_path="baseline model-quality")

    check = subparsers.add_parser("check", help="check new data / predictions / attributions against a baseline")
    groups = check.add_subparsers(dest="check_command", metavar="KIND", required=True)
    p = groups.add_parser("data-quality", help="-> constraint_violations.json, statistics.json, feature_drift.json")
    _common(p, "baseline, dataset", "violations")
    _categorical(p)
    _fail_flag(p)
    p.set_defaults(func=_check_data_quality, command_path="check data-quality")
    p = groups.add_parser("model-quality", help="evaluate late ground truth and compare with the thresholds")
    _common(p, "baseline, predictions, truth", "violations")
    _spec_args(p)
    _fail_flag(p)
    p.set_defaults(func=_check_model_quality, command_path="check model-quality")
    p = groups.add_parser("attribution-drift", help="NDCG of current vs baseline global SHAP values")
    _common(p, "baseline, current", "violations")
    p.add_argument(
        "--threshold",
        type=float,
        default=DEFAULT_NDCG_THRESHOLD,
        help="NDCG below this is a violation (default %(default)s)",
    )
    _fail_flag(p)
    p.set_defaults(func=_check_attribution_drift, command_path="check attribution-drift")

    p = subparsers.add_parser("explain", help="TreeSHAP explanations -> Clarify-style analysis.json")
    _common(p, "dataset, background", "explanations")
    p.add_argument("--model-dir", type=Path, help=f"model directory (default {PROCESSING_INPUT_ROOT}/model)")
    p.add_argument("--num-clusters", type=int, default=10, help="k-means centres of the SHAP background")
    p.add_argument("--background-sample", type=int, default=10_000, help="rows sampled before k-means")
    p.add_argument("--max-rows", type=int, default=10_000, help="rows explained (a seeded sample beyond it)")
    p.add_argument("--seed", type=whole_number(0), default=42)
    p.add_argument("--method", choices=("interventional", "tree_path_dependent"), default="interventional")
    p.add_argument("--no-local", action="store_true", help="do not write per-row explanations_shap/out.csv")
    p.set_defaults(func=_explain, command_path="explain")

    p = subparsers.add_parser("decide-retrain", help="violation files -> decision.json {retrain, reasons}")
    _common(p, "violations (repeatable)", "decision")
    p.add_argument("--min-drifted-features", type=int, default=1, help="drifted features needed to retrain")
    p.add_argument("--max-wape", type=float, help="retrain when a found evaluation's overall WAPE is above this")
    p.set_defaults(func=_decide, command_path="decide-retrain")

    p = subparsers.add_parser(
        "report",
        help="one self-contained HTML report of a pipeline work directory",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="One self-contained HTML report of a work directory. Files are found by name anywhere under "
        "--workdir;\neach section is drawn from what exists (a note replaces a missing one):\n"
        "  decision.json                         retrain decision\n"
        "  predictions/ or forecasts/ + truth/   forecast vs actual plots (a CSV/Parquet table in each folder,\n"
        "                                        or predictions.csv / forecasts.csv / truth.csv; spec columns)\n"
        "  evaluation.json                       metrics table and model-quality trend\n"
        "  analysis.json                         SHAP importances\n"
        "  feature_drift.json, ndcg.json         drift distances\n"
        "  *violations*.json                     every violation\n"
        "  feature_schema.json                   the spec, when --spec is not given",
    )
    p.add_argument("--workdir", type=Path, required=True, help="work directory of the local pipeline runner")
    p.add_argument("--out", type=Path, required=True, help="HTML file to write")
    p.add_argument("--spec", default=None, help="dataset spec (default: from the model, else 'default')")
    p.add_argument("--series", type=int, default=4, help="sample series plotted")
    p.set_defaults(func=_report, command_path="report")
