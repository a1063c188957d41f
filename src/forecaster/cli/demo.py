"""``make demo``: the whole flow on synthetic data, on this machine, with no AWS account.

1. synthesize 8 stores x 15 items x 200 days of sales (``forecaster.synth``);
2. run the model-build pipeline locally (split, train through the SageMaker training toolkit, batch transform
   through the real server, evaluate, baselines, condition, register as ``PendingManualApproval``);
3. approve the registered version (what a reviewer does: ``forecaster registry approve``);
4. run the batch-inference pipeline for the next 14 days: forecasts and order proposals;
5. a later period in which campaign behaviour changed (campaigns 30 points deeper, selling ~2.5x more): the
   inference pipeline on the next 14 days and the model-quality pipeline with the ground truth of the first
   forecast period; the checks fire and the retrain decisions say why;
6. one HTML report over everything (``forecaster report``).

Layout of ``--workdir`` (default ``demo-output``): ``data/`` (inputs, and ``truth.csv``: the ground truth of the
first forecast period), ``runs/<n>-<pipeline>/`` (one local pipeline work directory each), ``registry.db``
and ``report.html``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from forecaster.checks.contract import DECISION_FILE
from forecaster.contract import DEFAULT_HORIZON, FORECASTS_FILE, ORDERS_FILE
from forecaster.errors import ForecasterError
from forecaster.io import read_json, write_table
from forecaster.registry import WORKDIR_REGISTRY_FILE, workdir_registry
from forecaster.spec import SPEC_FILE, DatasetSpec
from forecaster.synth import SYNTH_SPEC, generate

HORIZON = DEFAULT_HORIZON
GROUP = "forecaster-demand"
#: light training: the demo must finish in a few minutes on two cores
TRAINING = {"NumBoostRound": 150, "QuantileNumBoostRound": 80, "NumLeaves": 31, "LearningRate": 0.1}
TRANSFORM = {"TransformMaxConcurrent": 2}
#: drift limits for a data set of 120 series: the Kolmogorov-Smirnov distance of two samples of ~120 values
#: scatters by ~0.15 by chance, and features that are constant per store (store_trend, temperature at the
#: origin) have only 8 distinct values, so up to three of them cross any threshold by chance
BASELINE_CHECKS = {"DataDriftThreshold": 0.3}
DECISION = {"MinDriftedFeatures": 4}
#: the later period's change: campaigns cut prices this much deeper and sell this many times more
DEEPER_BY, UPLIFT = 0.30, 2.5


def deepen_campaigns(frame: pd.DataFrame, since: pd.Timestamp, *, seed: int = 0) -> pd.DataFrame:
    """Campaign days after ``since`` get a discount ``DEEPER_BY`` deeper and ~``UPLIFT`` x the units sold."""
    out = frame.copy()
    rows = (out["date"] > since) & (out["campaign"] == 1)
    out.loc[rows, "discount"] = (out.loc[rows, "discount"] - DEEPER_BY).clip(lower=0.2).round(2)
    rng = np.random.default_rng(seed)
    out.loc[rows, "units_sold"] = rng.poisson(out.loc[rows, "units_sold"].to_numpy() * UPLIFT)
    return out


def _stage(number: int, total: int, text: str) -> None:
    print(f"\n[{number}/{total}] {text}", flush=True)


def _code_version() -> str:
    try:
        result = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return result.stdout.strip() or "unknown"


def write_data(data: Path, stores: int, items: int, days: int, seed: int) -> dict[str, Path]:
    """Write every input of the demo into ``data`` and return their paths.

    ``period1/`` = the first ``days`` days (build and first inference), ``future1.csv`` = the plan of the next
    14 days; then campaigns change: ``history2.csv`` = everything up to the end of that forecast period,
    ``future2.csv`` = the plan of the 14 days after it, ``truth.csv`` = what the first forecast period sold.
    """
    spec = DatasetSpec.from_dict(SYNTH_SPEC)
    world = generate(stores=stores, items=items, days=days + 2 * HORIZON, seed=seed)
    world["date"] = pd.to_datetime(world["date"])
    first_day = world["date"].min()
    end1 = first_day + pd.Timedelta(days=days - 1)
    end2 = end1 + pd.Timedelta(days=HORIZON)
    changed = deepen_campaigns(world, end1, seed=seed)
    plan = [*spec.keys, spec.date, *spec.known_future, *spec.static]
    window1 = (world["date"] > end1) & (world["date"] <= end2)
    paths = {
        "history1": write_table(world[world["date"] <= end1], data / "period1" / "sales.csv"),
        "future1": write_table(world.loc[window1, plan], data / "future1.csv"),
        "truth": write_table(
            changed.loc[window1, [*spec.keys, spec.date, spec.target, spec.campaign]], data / "truth.csv"
        ),
        "history2": write_table(changed[changed["date"] <= end2], data / "history2.csv"),
        "future2": write_table(changed.loc[changed["date"] > end2, plan], data / "future2.csv"),
    }
    (data / "period1" / SPEC_FILE).write_text(json.dumps(SYNTH_SPEC, indent=2) + "\n")
    print(f"    {stores} stores x {items} items; history {first_day:%Y-%m-%d}..{end1:%Y-%m-%d}, forecast periods")
    print(f"    {end1 + pd.Timedelta(days=1):%Y-%m-%d}..{end2:%Y-%m-%d} and the 14 days after (campaigns changed)")
    return paths


def _approve(registry: str, version: int) -> None:
    from forecaster.cli.main import main as cli

    argv = ["registry", "approve", "--registry", registry, "--group", GROUP, "--version", str(version)]
    argv += ["--note", "demo: evaluation reviewed"]
    print("    $ forecaster " + " ".join(argv[:-1]) + ' "demo: evaluation reviewed"', flush=True)
    if cli(argv) != 0:
        raise ForecasterError(f"Approving version {version} of {GROUP} failed (see above).")


def _decision(path: Path) -> str:
    doc = read_json(path)
    verdict = "RETRAIN" if doc.get("retrain") else "no retraining needed"
    reasons = "".join(f"\n        - {reason}" for reason in doc.get("reasons", []))
    return f"{verdict}{reasons}"


def _inference(workdir: Path, history: Path, future: Path, registry: str) -> Path:
    """Run the inference pipeline, print its decision and return the decision file."""
    from forecaster.cli.main import run_command
    from forecaster.pipelines.local import run_pipeline

    params = {"HistoryData": history, "FutureData": future, **TRANSFORM, **DECISION}
    run_pipeline("inference", workdir, params, registry=registry, command_runner=run_command)
    decision = workdir / "DecideRetrain" / "output" / "decision" / DECISION_FILE
    print(f"    decision: {_decision(decision)}")
    return decision


def run(
    workdir: Path, stores: int, items: int, days: int, *, resume: bool = False, training: dict | None = None
) -> dict[str, Path]:
    """Run the demo in ``workdir``; return the paths of its main outputs.

    ``training`` overrides build-pipeline parameters of :data:`TRAINING` (e.g. ``{"NumThreads": 1}``).
    """
    from forecaster.checks.report import write_report
    from forecaster.cli.main import run_command
    from forecaster.pipelines.local import run_pipeline

    if workdir.exists() and not resume:
        shutil.rmtree(workdir)
    workdir = workdir.resolve()
    runs, total = workdir / "runs", 7
    registry = workdir_registry(workdir)  # its own, whatever FORECASTER_REGISTRY says
    started = time.monotonic()

    _stage(1, total, "synthesizing sales data (forecaster.synth)")
    data = write_data(workdir / "data", stores, items, days, seed=7)

    _stage(2, total, "model-build pipeline, locally: split, train, transform, evaluate, baselines, register")
    build = run_pipeline(
        "build",
        runs / "1-build",
        {
            "InputData": data["history1"].parent,
            "Horizon": HORIZON,
            **TRAINING,
            **(training or {}),
            **TRANSFORM,
            **BASELINE_CHECKS,
            "CodeVersion": _code_version(),
        },
        registry=registry,
        command_runner=run_command,
    )
    package = build["steps"]["RegisterModel"]["model_package"]
    wape = build["steps"]["CheckEvaluation"]["value"]
    print(f"    evaluation WAPE {wape:.3f} on the last {HORIZON} days; registered {GROUP} version {package['version']}")
    print(f"    as {package['status']}: nothing serves it until someone approves it")

    _stage(3, total, f"approving version {package['version']} (the manual review step)")
    _approve(registry, package["version"])

    _stage(4, total, f"batch-inference pipeline: the next {HORIZON} days with the latest approved model")
    _inference(runs / "2-inference", data["history1"], data["future1"], registry)
    forecasts = runs / "2-inference" / "Postprocess" / "output" / "forecasts"

    _stage(5, total, f"later period: campaigns now {DEEPER_BY:.0%} deeper, selling ~{UPLIFT}x; the next inference run")
    later_decision = _inference(runs / "3-inference-later", data["history2"], data["future2"], registry)

    _stage(6, total, "model-quality pipeline: the first period's forecasts against what was really sold")
    quality = runs / "4-model-quality"
    run_pipeline(
        "model-quality",
        quality,
        {"ForecastsData": forecasts / FORECASTS_FILE, "GroundTruthData": data["truth"]},
        registry=registry,
        command_runner=run_command,
    )
    decision = quality / "DecideRetrain" / "output" / "decision" / DECISION_FILE
    print(f"    decision: {_decision(decision)}")

    _stage(7, total, "HTML report (forecaster report)")
    report = write_report(workdir, workdir / "report.html")
    print(f"\ndone in {time.monotonic() - started:.0f} s")
    return {
        "report": report,
        "order proposals": forecasts / ORDERS_FILE,
        "forecasts": forecasts / FORECASTS_FILE,
        "decision": decision,
        "decision (later inference)": later_decision,
        "registry": workdir / WORKDIR_REGISTRY_FILE,
    }


def main(argv: list[str] | None = None) -> int:
    """Command-line entry of the demo."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=Path("demo-output"))
    parser.add_argument("--stores", type=int, default=8)
    parser.add_argument("--items", type=int, default=15)
    parser.add_argument("--days", type=int, default=200, help="days of history before the first forecast")
    parser.add_argument("--resume", action="store_true", help="reuse an earlier demo's finished steps")
    args = parser.parse_args(argv)
    # LightGBM's OpenMP threads spin while they wait; on a busy laptop that costs minutes (inherited by the
    # training job's subprocess)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        outputs = run(args.workdir, args.stores, args.items, args.days, resume=args.resume)
    except ForecasterError as error:
        print(f"demo failed: {error.reason}", file=sys.stderr)
        return error.exit_code
    width = max(map(len, outputs))
    for name, path in outputs.items():
        print(f"{name:>{width}}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
