"""``make demo``: the whole flow on a bundled synthetic data set, on this machine, with no AWS account."""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import pandas as pd

from forecaster.errors import ForecasterError
from forecaster.forecasting import forecast
from forecaster.io import read_table, write_table
from forecaster.local_training import run_training_job, write_job_tree
from forecaster.spec import DatasetSpec
from forecaster.synth import write_dataset

HORIZON = 14


def _step(message: str) -> float:
    print(f"==> {message}", flush=True)
    return time.monotonic()


def run(workdir: Path, stores: int, items: int, days: int) -> dict[str, Path]:
    """Synthesize data, train through the SageMaker training entry, forecast the next 14 days."""
    if workdir.exists():
        shutil.rmtree(workdir)
    started = _step(f"synthesizing {stores} stores x {items} items x {days} days")
    data_dir = write_dataset(workdir / "data", stores=stores, items=items, days=days, seed=7)
    spec = DatasetSpec.from_json(data_dir / "spec.json")
    frame = read_table(data_dir / "sales.csv")
    frame[spec.date] = pd.to_datetime(frame[spec.date])
    cut = frame[spec.date].max() - pd.Timedelta(days=HORIZON)
    history = frame[frame[spec.date] <= cut]
    future = frame.loc[frame[spec.date] > cut, [*spec.keys, spec.date, *spec.known_future]]
    train_dir = workdir / "train-channel"
    write_table(history, train_dir / "sales.csv")
    shutil.copy2(data_dir / "spec.json", train_dir / "spec.json")
    write_table(future, workdir / "future.csv")

    _step("training through the SageMaker training entry (sagemaker-training toolkit, SAGEMAKER_PROGRAM=train.py)")
    job = write_job_tree(workdir / "opt" / "ml", {"horizon": HORIZON}, {"train": train_dir})
    result = run_training_job(job)
    if result.returncode != 0:
        failure = (job / "output" / "failure").read_text() if (job / "output" / "failure").exists() else ""
        raise ForecasterError(f"training job failed: {failure or result.stderr[-2000:]}")
    for line in result.stdout.splitlines():
        if line.startswith("validation:wape"):
            print(f"    {line}")

    _step(f"forecasting the next {HORIZON} days")
    predictions = forecast(job / "model", history, future)
    out = write_table(predictions, workdir / "forecast.csv")
    print(f"done in {time.monotonic() - started:.0f} s")
    return {"model": job / "model", "forecast": out}


def main(argv: list[str] | None = None) -> int:
    """Command-line entry of the demo."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workdir", type=Path, default=Path("demo-output"))
    parser.add_argument("--stores", type=int, default=10)
    parser.add_argument("--items", type=int, default=20)
    parser.add_argument("--days", type=int, default=240)
    args = parser.parse_args(argv)
    try:
        outputs = run(args.workdir, args.stores, args.items, args.days)
    except ForecasterError as error:
        print(f"demo failed: {error.reason}", file=sys.stderr)
        return error.exit_code
    for name, path in outputs.items():
        print(f"{name:>10}: {path.resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
