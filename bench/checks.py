"""Timings and findings of the checks on FreshRetailNet-50K (needs ../shared/data/freshretailnet).

Baseline on the first two weeks (50,000 series x 14 days = 700 k rows), check the last two weeks; check the
baseline data against itself (must find nothing); train a small model on a subset of series, forecast the last
week, evaluate it and explain 10 k feature rows (interventional TreeSHAP, 10 k-means centres). Prints a table
and writes bench/results/checks.json (or ``--out``). Data: "FreshRetailNet-50K, Dingdong Inc." (CC BY 4.0);
``--smoke``: a small synthetic set with its columns and a few boosting rounds instead (checks the script runs).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS_DIR, synthetic_freshretailnet

DATA = (
    Path(os.environ.get("FRESHRETAILNET", Path(__file__).resolve().parents[1] / "../shared/data/freshretailnet"))
    / "daily_2024-03-28_2024-06-11.parquet"
)
CATEGORICAL = [
    "city_id",
    "store_id",
    "management_group_id",
    "first_category_id",
    "second_category_id",
    "third_category_id",
    "product_id",
]
EXPLAIN_SERIES = 1500
TRAIN = {"horizon": 7, "num_boost_round": 200}
SMOKE_TRAIN = {"horizon": 7, "num_boost_round": 20, "quantile_num_boost_round": 20}


def _timed(results: dict, name: str, func, *args, **kwargs):
    started = time.perf_counter()
    value = func(*args, **kwargs)
    results["seconds"][name] = round(time.perf_counter() - started, 2)
    print(f"{name:<34} {results['seconds'][name]:>8.2f} s", flush=True)
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA, help="the FreshRetailNet-50K daily parquet")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "checks.json", help="results JSON")
    parser.add_argument("--explain-series", type=int, default=EXPLAIN_SERIES, help="series of the model part")
    parser.add_argument("--smoke", action="store_true", help="a small synthetic set, few rounds: checks the script")
    options = parser.parse_args(argv)
    from forecaster.checks import jobs
    from forecaster.config import TrainConfig
    from forecaster.forecasting import build_inference_features, predictions_frame
    from forecaster.model import ForecastModel
    from forecaster.spec import DatasetSpec
    from forecaster.training import fit_artifact

    data = options.data
    if options.smoke:
        data = synthetic_freshretailnet(options.out.parent / f"{options.out.stem}-synthetic.parquet", stores=4)
    if not data.is_file():
        print(f"skipped: {data} not found")
        return 0
    spec = DatasetSpec.preset("freshretailnet")
    frame = pd.read_parquet(data)
    frame[spec.date] = pd.to_datetime(frame[spec.date])
    days = np.sort(frame[spec.date].unique())
    first, last = frame[frame[spec.date] <= days[13]], frame[frame[spec.date] >= days[-14]]
    columns = [c for c in frame.columns if c != spec.date]
    results: dict = {
        "data": "synthetic (--smoke)" if options.smoke else str(data),
        "rows_baseline": len(first),
        "rows_check": len(last),
        "columns": len(columns),
        "seconds": {},
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
        "machine": platform.machine(),
    }
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        first[columns].to_parquet(tmp / "first.parquet")
        last[columns].to_parquet(tmp / "last.parquet")
        _timed(
            results,
            "baseline data-quality (700k)",
            jobs.run_baseline_data_quality,
            tmp / "first.parquet",
            tmp / "baseline",
            categorical=CATEGORICAL,
        )
        found = _timed(
            results,
            "check data-quality (700k)",
            jobs.run_check_data_quality,
            tmp / "baseline",
            tmp / "last.parquet",
            tmp / "check",
            categorical=CATEGORICAL,
        )
        same = _timed(
            results,
            "check data-quality, same data",
            jobs.run_check_data_quality,
            tmp / "baseline",
            tmp / "first.parquet",
            tmp / "same",
            categorical=CATEGORICAL,
        )
        drift = json.loads((tmp / "check" / "feature_drift.json").read_text())["features"]
        results["violations_last_vs_first"] = found["violations"]
        results["violations_same_data"] = len(same["violations"])
        results["drift"] = {r["feature_name"]: round(r["distance"], 4) for r in drift}

        # model part: a subset of series, train on all but the last week, explain the last week's feature rows
        rng = np.random.default_rng(0)
        series = frame[list(spec.keys)].drop_duplicates()
        n_series = min(options.explain_series, len(series))
        chosen = series.iloc[np.sort(rng.choice(len(series), n_series, replace=False))]
        subset = frame.merge(chosen, on=list(spec.keys))
        cutoff = days[-8]
        history, future = subset[subset[spec.date] <= cutoff], subset[subset[spec.date] > cutoff]
        config = TrainConfig.from_hyperparameters(SMOKE_TRAIN if options.smoke else TRAIN)
        model_dir = tmp / "model"
        _timed(results, f"train ({n_series} series)", fit_artifact, history, spec, config, model_dir)
        features, keys = build_inference_features(model_dir, history, future.drop(columns=[spec.target]))
        predictions = predictions_frame(ForecastModel.load(model_dir), features, keys)
        features.to_csv(tmp / "features.csv", header=False, index=False)
        predictions.to_parquet(tmp / "predictions.parquet")
        future.to_parquet(tmp / "truth.parquet")
        evaluation = _timed(
            results,
            "evaluate",
            jobs.run_evaluate,
            tmp / "predictions.parquet",
            tmp / "truth.parquet",
            tmp / "eval",
            spec=spec,
        )
        results["evaluation"] = {k: evaluation["forecast_metrics"][k]["wape"] for k in evaluation["forecast_metrics"]}
        results["explain_rows"] = len(features)
        for method in ("interventional", "tree_path_dependent"):
            analysis = _timed(
                results,
                f"explain {method} ({len(features)} rows)",
                jobs.run_explain,
                model_dir,
                tmp / "features.csv",
                tmp / f"explain-{method}",
                method=method,
                num_clusters=10,
            )
            top = sorted(
                analysis["explanations"]["kernel_shap"]["label0"]["global_shap_values"].items(), key=lambda kv: -kv[1]
            )[:5]
            results[f"top_features_{method}"] = [name for name, _ in top]
        ndcg = _timed(
            results,
            "check attribution-drift",
            jobs.run_attribution_drift,
            tmp / "explain-interventional",
            tmp / "explain-tree_path_dependent",
            tmp / "ndcg",
        )
        results["ndcg_interventional_vs_path_dependent_violations"] = len(ndcg["violations"])
    options.out.parent.mkdir(parents=True, exist_ok=True)
    options.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nviolations last two weeks vs first two: {len(results['violations_last_vs_first'])}")
    for item in results["violations_last_vs_first"]:
        print(f"  {item['feature_name']:<22} {item['constraint_check_type']:<26} {item['description'][:60]}")
    print(f"violations same data: {results['violations_same_data']}; wrote {options.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
