"""Period-sum calibration of kept forecasts for a grid of the period-demand model's knobs (no training).

Reads the forecasts ``replenishment.py`` kept (``<out>-predictions/``) and scores, per fold, the share of actual
1-, 2- and 3-day sales sums at or below the model's P50/P80/P95 of that sum for every ``log_shift`` x
``correlation`` (``day_shape="log"``), on a seeded sample of series (the grid is cheap there; the chosen knobs
are then replayed on every series by ``replenishment.py``):

    .venv/bin/python bench/calibration_grid.py --out bench/results/replenishment-50k-3fold.json \
        --sample 10000 --correlations 0 0.1 0.25 --log-shifts 0.3 0.6 --grid-out /tmp/grid.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import replenishment as bench
from accuracy import DEFAULT_DATA, load_frame
from forecaster.io import write_json


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="the replenishment.py results JSON of the run")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the run's daily FreshRetailNet-50K parquet")
    parser.add_argument("--folds", type=int, nargs="+", default=[1, 2, 3], help="folds to score")
    parser.add_argument("--sample", type=int, default=10_000, help="seeded sample of series (0: all)")
    parser.add_argument("--correlations", type=float, nargs="+", default=[0.0, 0.1, 0.25])
    parser.add_argument("--log-shifts", type=float, nargs="+", default=[0.3, 0.6])
    parser.add_argument("--grid-out", type=Path, required=True, help="where the grid's coverage JSON goes")
    options = parser.parse_args(argv)
    replay = bench.parse_args(["--out", str(options.out), "--data", str(options.data)])
    frame = load_frame(replay.data, None, 0)
    arrays = {}
    for fold in options.folds:
        fold_arrays = bench.fold_arrays(frame, replay, fold)
        rows = slice(None)
        if options.sample and options.sample < len(fold_arrays["ours"]):
            rows = np.random.default_rng(0).choice(len(fold_arrays["ours"]), options.sample, replace=False)
        arrays[fold] = {"ours": fold_arrays["ours"][rows], "demand": fold_arrays["demand"][rows]}
    grid = bench.coverage_grid(arrays, ["log"], options.correlations, options.log_shifts)
    for knob, folds in grid.items():
        for fold, coverage in folds.items():
            print(
                f"fold {fold} {knob}: mean gap {bench.calibration_error(coverage) * 100:.2f}, "
                f"worst {bench.worst_gap(coverage) * 100:.2f} points",
                flush=True,
            )
    write_json({"sample": options.sample, "folds": options.folds, "grid": grid}, options.grid_out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
