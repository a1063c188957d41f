"""Small data is fast: training time and accuracy on one shop (250 series x 3 years), today's vs scaled defaults.

Two configurations are trained in the same run, each in its own child process with the same thread count:

- ``unscaled``: the training size before issue 10 (``rows_per_series=0``: ``max_train_rows`` = 2 M rows drawn);
- ``scaled``: the current defaults (``rows_per_series`` rows per series, at least 100 k, at most 2 M).

Data sets: a synthetic one-shop set with a raw export's habits (``forecaster.synth`` with 1 store x 250 items
x 1095 days, items that end or start late, most zero-sale days without a row, a few returns) and a random
subsample of FreshRetailNet-50K series (``--frn-series``; the whole set needs more than the shared CPUs allow).
The last ``--test-days`` days are forecast from the rest; reported: training seconds (wall) and the CPU seconds of
the child up to the end of training (data generation excluded; on a busy shared machine wall time inflates, CPU
time hardly: with 2 threads an idle 2-core machine needs at most that much wall time), the phases that take them
(from the model's ``metadata.json``), training rows, WAPE of P50 and of the mean, bias, P10/P90 coverage
(all days and days with sales) and the mean pinball loss.

    python bench/small_shop.py                      # table on stdout, JSON in bench/results/small_shop.json
    python bench/small_shop.py --frn-series 0       # the one-shop set only
    python bench/small_shop.py --frn-series 0 --configs scaled --hp lr:learning_rate=0.05   # try a lever
    python bench/small_shop.py --smoke --out /tmp/small_shop.json   # tiny sets, few rounds: the script runs?

``--smoke``: one shop of 8 items x 120 days, 10 series of a synthetic set with FreshRetailNet's columns (in place
of ``--frn``), the ``scaled`` configuration with 10 boosting rounds, 1 thread.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO_ROOT, RESULTS_DIR, machine_info, markdown_table, synthetic_freshretailnet

FRN = Path("/work/shared/data/freshretailnet/daily_2024-03-28_2024-06-11.parquet")
CONFIGS = {"unscaled": {"rows_per_series": 0}, "scaled": {}, "scaled-1000": {"rows_per_series": 1000}}
SMOKE = {"items": 8, "days": 120, "frn_series": 10, "threads": 1, "configs": "scaled"}
SMOKE_ROUNDS = {"num_boost_round": 10, "quantile_num_boost_round": 10}


def one_shop(items: int = 250, days: int = 1095, seed: int = 7) -> tuple[pd.DataFrame, dict]:
    """A one-shop history with ended and new items, absent zero-sale days and returns; and its spec."""
    from forecaster.synth import SYNTH_SPEC, generate

    frame = generate(stores=1, items=items, days=days, seed=seed)
    rng = np.random.default_rng(seed)
    day = (frame["date"] - frame["date"].min()).dt.days.to_numpy()
    item_no = pd.factorize(frame["item_id"])[0]
    ends = np.where(rng.random(items) < 0.08, rng.integers(days // 3, days - 30, items), days)  # items delisted
    starts = np.where(rng.random(items) < 0.08, rng.integers(30, days - 60, items), 0)  # items listed later
    alive = (day < ends[item_no]) & (day >= starts[item_no])
    absent = (frame["units_sold"].to_numpy() == 0) & (rng.random(len(frame)) < 0.8)  # exports list sales only
    frame = frame[alive & ~absent].reset_index(drop=True)
    returns = rng.choice(len(frame), size=50, replace=False)
    frame.loc[returns, "units_sold"] = -1.0
    return frame, {**SYNTH_SPEC, "missing_days": "zero"}


def freshretailnet(path: Path, series: int, seed: int = 0) -> tuple[pd.DataFrame, dict]:
    """A random sample of FreshRetailNet-50K series and its preset spec."""
    from forecaster.spec import DatasetSpec

    spec = DatasetSpec.preset("freshretailnet")
    frame = pd.read_parquet(path)
    pairs = frame[list(spec.keys)].drop_duplicates().sample(n=series, random_state=seed)
    return frame.merge(pairs, on=list(spec.keys)), spec.to_dict()


def child(data: Path, spec_file: Path, config: str, test_days: int, threads: int, out: Path, hp: dict) -> None:
    """Train one configuration on all but the last ``test_days`` days, forecast them, write scores as JSON."""
    from forecaster import metrics as m
    from forecaster.config import TrainConfig
    from forecaster.forecasting import forecast
    from forecaster.io import read_json
    from forecaster.spec import DatasetSpec
    from forecaster.training import fit_artifact

    spec = DatasetSpec.from_json(spec_file)
    frame = spec.validate_frame(pd.read_parquet(data))
    cut = frame[spec.date].max() - pd.Timedelta(days=test_days)
    history = frame[frame[spec.date] <= cut]
    test = frame[frame[spec.date] > cut]
    if spec.missing_days == "zero":  # absent days of series still sold count as 0, in the test window too
        alive = test[list(spec.keys)].drop_duplicates()
        days = pd.DataFrame({spec.date: pd.date_range(cut + pd.Timedelta(days=1), periods=test_days)})
        grid = alive.merge(days, how="cross").merge(test, on=[*spec.keys, spec.date], how="left")
        test = grid.fillna({spec.target: 0.0, **dict.fromkeys(spec.known_future, 0.0)})
    hp = {"horizon": test_days, "num_threads": threads, **hp}
    model_dir = out.with_suffix("")
    fit_artifact(history, spec, TrainConfig.from_hyperparameters(hp), model_dir)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    metadata = read_json(model_dir / "metadata.json")
    forecasts = forecast(model_dir, history, test[[*spec.keys, spec.date, *spec.known_future]])
    forecasts[spec.date] = pd.to_datetime(forecasts[spec.date])
    joined = forecasts.merge(test[[*spec.keys, spec.date, spec.target]], on=[*spec.keys, spec.date])
    y = joined[spec.target].to_numpy(dtype=float)
    sold = y > 0
    result = {
        "config": config,
        "train_seconds": metadata["training_seconds"],
        "cpu_seconds": usage.ru_utime + usage.ru_stime,  # of this process up to the end of training
        "phases": metadata["phase_seconds"],
        "training_rows": metadata["data_report"]["training_rows"],
        "boost_rounds": sum(metadata["boost_rounds"].values()),
        "wape_p50": m.wape(y, joined["p50"].to_numpy()),
        "wape_mean": m.wape(y, joined["mean"].to_numpy()),
        "bias_p50": m.bias(y, joined["p50"].to_numpy()),
        "coverage_p10": m.coverage(y, joined["p10"].to_numpy()),
        "coverage_p90": m.coverage(y, joined["p90"].to_numpy()),
        "coverage_p10_sold": m.coverage(y[sold], joined["p10"].to_numpy()[sold]),
        "coverage_p90_sold": m.coverage(y[sold], joined["p90"].to_numpy()[sold]),
        "pinball": float(np.mean([m.pinball(y, joined[f"p{q}"].to_numpy(), q / 100) for q in (10, 50, 90)])),
        "forecast_rows": len(joined),
    }
    out.write_text(json.dumps({k: (float(v) if isinstance(v, np.floating) else v) for k, v in result.items()}))


def run(name: str, frame: pd.DataFrame, spec: dict, options: argparse.Namespace, workdir: Path) -> list[dict]:
    """Both configurations on one data set, each in a child process."""
    data, spec_file = workdir / f"{name}.parquet", workdir / f"{name}.spec.json"
    frame.to_parquet(data, index=False)
    spec_file.write_text(json.dumps(spec))
    rows = []
    for config, hp in options.configs.items():
        out = workdir / f"{name}-{config}.json"
        args = [str(data), str(spec_file), config, str(options.test_days), str(options.threads), str(out)]
        args.append(json.dumps(hp))
        env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
        subprocess.run([sys.executable, __file__, "--child", *args], cwd=REPO_ROOT, env=env, check=True)
        result = json.loads(out.read_text())
        rows.append({"data": name, "series": int(frame.groupby(spec["keys"]).ngroups), "hp": hp, **result})
        print(f"{name} {config}: {rows[-1]['train_seconds']:.1f} s", file=sys.stderr)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=250, help="series of the one-shop set (250)")
    parser.add_argument("--days", type=int, default=1095, help="days of the one-shop set (1095 = 3 years)")
    parser.add_argument("--frn-series", type=int, default=1000, help="FreshRetailNet series sampled (0: skip)")
    parser.add_argument("--frn", type=Path, default=FRN, help="the FreshRetailNet-50K daily parquet")
    parser.add_argument("--test-days", type=int, default=14, help="days forecast and scored (14)")
    parser.add_argument("--threads", type=int, default=2, help="LightGBM threads (2)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "small_shop.json")
    parser.add_argument(
        "--configs", default=",".join(CONFIGS), help=f"comma-separated configurations to train ({','.join(CONFIGS)})"
    )
    parser.add_argument(
        "--hp", action="append", default=[], metavar="NAME:KEY=VALUE",
        help="an extra configuration NAME with hyperparameter KEY=VALUE (repeatable); trained after --configs",
    )  # fmt: skip
    parser.add_argument("--smoke", action="store_true", help="tiny data sets and models: checks the script runs")
    parser.add_argument("--child", nargs=7, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.child:
        data, spec_file, config, test_days, threads, out, hp = options.child
        child(Path(data), Path(spec_file), config, int(test_days), int(threads), Path(out), json.loads(hp))
        return
    if options.smoke:
        vars(options).update(SMOKE)
    configs = {name: CONFIGS[name] for name in options.configs.split(",") if name}
    for entry in options.hp:
        name, _, pair = entry.partition(":")
        key, _, value = pair.partition("=")
        configs.setdefault(name, {})[key] = value
    options.configs = {name: {**hp, **SMOKE_ROUNDS} for name, hp in configs.items()} if options.smoke else configs
    rows = []
    with tempfile.TemporaryDirectory(prefix="small-shop-") as tmp:
        rows += run("one shop (synthetic)", *one_shop(options.items, options.days), options, Path(tmp))
        frn = synthetic_freshretailnet(Path(tmp) / "frn.parquet") if options.smoke else options.frn
        if options.frn_series and frn.is_file():
            name = f"FreshRetailNet {options.frn_series} series" + (" (synthetic)" if options.smoke else "")
            rows += run(name, *freshretailnet(frn, options.frn_series), options, Path(tmp))
    for row in rows:
        row["phases"] = " ".join(f"{k} {v:.1f}" for k, v in row["phases"].items())
    columns = [
        ("data", "data", ""), ("config", "config", ""), ("train_seconds", "train s", ".1f"),
        ("cpu_seconds", "CPU s", ".1f"),
        ("phases", "phases (s)", ""), ("training_rows", "rows", ",d"), ("boost_rounds", "rounds", "d"),
        ("wape_p50", "WAPE p50", ".3f"), ("wape_mean", "WAPE mean", ".3f"), ("bias_p50", "bias", "+.3f"),
        ("coverage_p10", "cov p10", ".2f"), ("coverage_p10_sold", "cov p10 sold", ".2f"),
        ("coverage_p90", "cov p90", ".2f"), ("coverage_p90_sold", "cov p90 sold", ".2f"), ("pinball", "pinball", ".3f"),
    ]  # fmt: skip
    print(markdown_table(rows, columns))
    options.out.parent.mkdir(parents=True, exist_ok=True)
    options.out.write_text(json.dumps({"machine": machine_info(), "threads": options.threads, "rows": rows}, indent=2))
    print(f"wrote {options.out}")


if __name__ == "__main__":
    main()
