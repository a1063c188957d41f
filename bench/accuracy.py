"""Accuracy benchmark on FreshRetailNet-50K: forecaster vs seasonal naive, mean-28 and mlforecast, in one run.

Train on all but the last ``--test-days`` days, forecast those days for every series, and score WAPE (overall, on
campaign days, on non-campaign days, on days without stockout), bias, P10/P90 coverage and pinball loss. Every
model's fit+predict runs in its own child process (this script with ``--only NAME``) so wall time and peak RSS are
measured per model; reading the data is timed separately and excluded from fit+predict.

    .venv/bin/python bench/accuracy.py                       # all 50,000 series (minutes, both cores)
    .venv/bin/python bench/accuracy.py --sample-series 2000  # quick run
    .venv/bin/python bench/accuracy.py --models forecaster --param num_boost_round=400

Data: FreshRetailNet-50K, Dingdong Inc. (CC BY 4.0).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    RESULTS_DIR,
    current_rss_bytes,
    gib,
    machine_info,
    markdown_table,
    peak_rss_bytes,
    peak_rss_since_reset_bytes,
    reset_peak_rss,
    run_child,
    stopwatch,
)
from forecaster.contract import QUANTILES, quantile_column

DEFAULT_DATA = Path("/work/shared/data/freshretailnet/daily_2024-03-28_2024-06-11.parquet")
KEYS = ["store_id", "product_id"]
DATE = "dt"
TARGET = "sale_amount"
CAMPAIGN = "activity_flag"
STOCKOUT = "stockout_hours"
KNOWN_FUTURE = ["activity_flag", "discount", "holiday_flag"]
STATIC = ["city_id", "management_group_id", "first_category_id", "second_category_id", "third_category_id"]
QUANTILE_COLUMNS = {quantile_column(q): q for q in QUANTILES}
PREDICTION_COLUMNS = ["p10", "p50", "p90", "mean"]

# mlforecast's LGBMRegressor arguments: forecaster's TrainConfig defaults translated (learning_rate, num_leaves,
# min_data_in_leaf, feature_fraction, lambda_l2, max_bin, tweedie_variance_power). mlforecast has no validation
# split for early stopping, so every model gets a fixed 300 rounds (forecaster's quantile_num_boost_round; its
# point model stops early below a cap of 600). Override with --lgb / --lgb-quantile KEY=VALUE.
LGB_SHARED = {
    "learning_rate": 0.05,
    "num_leaves": 127,
    "min_child_samples": 100,
    "colsample_bytree": 0.8,
    "reg_lambda": 1.0,
    "max_bin": 255,
}
LGB_MEAN = {"objective": "tweedie", "tweedie_variance_power": 1.2, "n_estimators": 300}
LGB_QUANTILE = {"objective": "quantile", "n_estimators": 300}


# --------------------------------------------------------------------------------------------------- data
def load_frame(path: Path, sample_series: int | None, seed: int) -> pd.DataFrame:
    """Read the daily parquet (optionally a random sample of series), sorted by series and date."""
    frame = pd.read_parquet(path)
    if sample_series:
        pairs = frame[KEYS].drop_duplicates()
        if sample_series < len(pairs):
            pairs = pairs.sample(n=sample_series, random_state=seed)
            frame = frame.merge(pairs, on=KEYS, how="inner")
    frame = frame.sort_values([*KEYS, DATE], kind="stable").reset_index(drop=True)
    return frame


def split(frame: pd.DataFrame, test_days: int) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """History (all columns, before the cutoff), future (keys, date, known-future columns only), actuals."""
    dates = np.sort(frame[DATE].unique())
    if len(dates) <= test_days:
        raise ValueError(f"The data has {len(dates)} days; --test-days must be smaller. Got {test_days} instead.")
    cutoff = dates[-test_days]
    in_test = frame[DATE] >= cutoff
    history = frame.loc[~in_test].reset_index(drop=True)
    test = frame.loc[in_test].reset_index(drop=True)
    future = test[[*KEYS, DATE, *KNOWN_FUTURE]].copy()
    actuals = test[[*KEYS, DATE, TARGET, CAMPAIGN, STOCKOUT]].copy()
    return history, future, actuals


def _grid(history: pd.DataFrame, future: pd.DataFrame) -> tuple[np.ndarray, int]:
    """History target as an (n_series, n_days) matrix; checks the grid is complete (every series every day)."""
    n_series = history.groupby(KEYS, sort=False).ngroups
    n_days = history[DATE].nunique()
    if len(history) != n_series * n_days or len(future) != n_series * future[DATE].nunique():
        raise ValueError("The baselines need every series on every day (a complete grid); fill the gaps first.")
    return history[TARGET].to_numpy(dtype=float).reshape(n_series, n_days), n_series


# ------------------------------------------------------------------------------------------------ models
def run_seasonal_naive(history: pd.DataFrame, future: pd.DataFrame, options: argparse.Namespace) -> pd.DataFrame:
    """Repeat each series' last 7 days."""
    values, _ = _grid(history, future)
    horizon = future[DATE].nunique()
    last_week = values[:, -7:]
    point = np.tile(last_week, (1, -(-horizon // 7)))[:, :horizon]
    out = future[[*KEYS, DATE]].copy()
    out["p50"] = out["mean"] = point.ravel()
    return out


def run_mean28(history: pd.DataFrame, future: pd.DataFrame, options: argparse.Namespace) -> pd.DataFrame:
    """Mean of each series' last 28 days; P10/P90 are the empirical quantiles of those 28 days."""
    values, _ = _grid(history, future)
    horizon = future[DATE].nunique()
    window = values[:, -28:]
    out = future[[*KEYS, DATE]].copy()
    out["mean"] = out["p50"] = np.repeat(window.mean(axis=1), horizon)
    out["p10"] = np.repeat(np.quantile(window, 0.1, axis=1), horizon)
    out["p90"] = np.repeat(np.quantile(window, 0.9, axis=1), horizon)
    return out


def _series_id(frame: pd.DataFrame) -> pd.Series:
    return frame["store_id"].astype(np.int64) * 1000 + frame["product_id"].astype(np.int64)


def run_mlforecast(history: pd.DataFrame, future: pd.DataFrame, options: argparse.Namespace) -> pd.DataFrame:
    """mlforecast 1.1.0, recursive LightGBM: one Tweedie model (mean) and three quantile models (P10/P50/P90)."""
    import lightgbm as lgb
    from mlforecast import MLForecast
    from mlforecast.lag_transforms import RollingMean

    shared = {**LGB_SHARED, "n_jobs": options.threads, "verbosity": -1, "random_state": 0}
    models = {"mean": lgb.LGBMRegressor(**{**shared, **LGB_MEAN, **options.lgb})}
    for name, alpha in QUANTILE_COLUMNS.items():
        models[name] = lgb.LGBMRegressor(**{**shared, **LGB_QUANTILE, **options.lgb_quantile, "alpha": alpha})
    fcst = MLForecast(
        models=models,
        freq="D",
        lags=[7, 14, 21, 28],
        lag_transforms={1: [RollingMean(window_size=7), RollingMean(window_size=28)], 7: [RollingMean(window_size=7)]},
        date_features=["dayofweek"],
        num_threads=options.threads,
    )
    static = [*KEYS, *STATIC]  # the same categoricals forecaster uses (keys_as_features=True)
    train = history[[DATE, TARGET, *KNOWN_FUTURE, *static]].rename(columns={DATE: "ds", TARGET: "y"})
    train.insert(0, "unique_id", _series_id(history))
    for column in static:
        train[column] = train[column].astype("category")
    fcst.fit(train, static_features=static)
    x_df = future[[DATE, *KNOWN_FUTURE]].rename(columns={DATE: "ds"})
    x_df.insert(0, "unique_id", _series_id(future))
    predictions = fcst.predict(future[DATE].nunique(), X_df=x_df)
    predictions["store_id"] = (predictions["unique_id"] // 1000).astype(history["store_id"].dtype)
    predictions["product_id"] = (predictions["unique_id"] % 1000).astype(history["product_id"].dtype)
    predictions[PREDICTION_COLUMNS] = predictions[PREDICTION_COLUMNS].clip(lower=0.0)  # sales are never negative
    return predictions.rename(columns={"ds": DATE})[[*KEYS, DATE, *PREDICTION_COLUMNS]]


def run_forecaster(history: pd.DataFrame, future: pd.DataFrame, options: argparse.Namespace) -> pd.DataFrame:
    """Forecaster: train the artifact on the history, then forecast the future frame (known-future columns only)."""
    from forecaster.config import TrainConfig
    from forecaster.forecasting import forecast
    from forecaster.spec import DatasetSpec
    from forecaster.training import fit_artifact

    spec = DatasetSpec.preset("freshretailnet")
    hyperparameters = {"horizon": future[DATE].nunique(), "num_threads": options.threads, **options.params}
    config = TrainConfig.from_hyperparameters(hyperparameters)
    with tempfile.TemporaryDirectory(prefix="forecaster-bench-") as tmp:
        model_dir = Path(tmp) / "model"
        fit_artifact(history, spec, config, model_dir)
        predictions = forecast(model_dir, history, future)
    # forecaster returns keys and dates as strings (its vocabularies are strings): back to the input's dtypes
    for key in KEYS:
        predictions[key] = predictions[key].astype(history[key].dtype)
    predictions[DATE] = pd.to_datetime(predictions[DATE]).astype(history[DATE].dtype)
    return predictions[[*KEYS, DATE, *PREDICTION_COLUMNS]]


def _forecaster_none(history: pd.DataFrame, future: pd.DataFrame, options: argparse.Namespace) -> pd.DataFrame:
    options.params = {**options.params, "stockout_handling": "none"}
    return run_forecaster(history, future, options)


MODELS: dict[str, tuple[str, Callable[[pd.DataFrame, pd.DataFrame, argparse.Namespace], pd.DataFrame]]] = {
    "seasonal_naive_7": ("seasonal naive 7", run_seasonal_naive),
    "mean_28": ("mean 28 (P10/P90: empirical)", run_mean28),
    "forecaster": ("forecaster", run_forecaster),
    "mlforecast": ("mlforecast 1.1.0 (LightGBM, recursive)", run_mlforecast),
    "forecaster_no_stockout_handling": ("forecaster, stockout_handling=none", _forecaster_none),
}
LEARNED = ("mlforecast", "forecaster", "forecaster_no_stockout_handling")


# ------------------------------------------------------------------------------------------------ scoring
def score(actuals: pd.DataFrame, predictions: pd.DataFrame) -> dict[str, float]:
    """WAPE overall / campaign / non-campaign / no-stockout, bias, coverage and pinball of one model."""
    from forecaster.metrics import bias, coverage, pinball, wape

    merged = actuals.merge(predictions, on=[*KEYS, DATE], how="left", validate="one_to_one")
    missing = merged["p50"].isna().sum()
    if missing:
        raise ValueError(f"{missing} of {len(merged)} (series, day) pairs have no P50 forecast.")
    y = merged[TARGET].to_numpy(dtype=float)
    point = merged["p50"].to_numpy(dtype=float)
    campaign = merged[CAMPAIGN].to_numpy() == 1
    no_stockout = merged[STOCKOUT].to_numpy() == 0
    result = {
        "wape": wape(y, point),
        "wape_campaign": wape(y[campaign], point[campaign]),
        "wape_non_campaign": wape(y[~campaign], point[~campaign]),
        "wape_no_stockout": wape(y[no_stockout], point[no_stockout]),
        "bias": bias(y, point),
        "wape_mean": wape(y, merged["mean"]),
        "bias_mean": bias(y, merged["mean"]),
    }
    if "p10" in merged and merged["p10"].notna().all():
        result["coverage_p10"] = coverage(y, merged["p10"])
        result["coverage_p90"] = coverage(y, merged["p90"])
        result["pinball_p10"] = pinball(y, merged["p10"], 0.1)
        result["pinball_p90"] = pinball(y, merged["p90"], 0.9)
    result["pinball_p50"] = pinball(y, point, 0.5)
    return result


TABLE_COLUMNS = [
    ("label", "model", ""),
    ("wape", "WAPE", ".1%"),
    ("wape_campaign", "WAPE campaign", ".1%"),
    ("wape_non_campaign", "WAPE non-campaign", ".1%"),
    ("wape_no_stockout", "WAPE no stockout", ".1%"),
    ("bias", "bias", "+.1%"),
    ("wape_mean", "WAPE (mean col.)", ".1%"),
    ("coverage_p10", "≤ P10", ".1%"),
    ("coverage_p90", "≤ P90", ".1%"),
    ("fit_predict_s", "fit+predict s", ".1f"),
    ("peak_rss_gib", "peak RSS GiB", ".2f"),
]


# ------------------------------------------------------------------------------------------------ processes
def child_main(options: argparse.Namespace) -> None:
    """Child mode: load data (timed apart), fit+predict one model (timed), write predictions and stats."""
    with stopwatch() as load:
        frame = load_frame(options.data, options.sample_series, options.seed)
        history, future, _ = split(frame, options.test_days)
        del frame
    rss_after_load, load_peak = current_rss_bytes(), peak_rss_bytes()
    peak_reset = reset_peak_rss()  # so the fit+predict peak excludes the parquet reader's transient peak
    _, runner = MODELS[options.only]
    with stopwatch() as fit_predict:
        predictions = runner(history, future, options)
    workdir = Path(options.workdir)
    predictions.to_parquet(workdir / f"{options.only}.parquet", index=False)
    stats = {
        "load_s": load["seconds"],
        "fit_predict_s": fit_predict["seconds"],
        "rss_after_load_bytes": rss_after_load,
        "peak_rss_bytes": peak_rss_since_reset_bytes() if peak_reset else peak_rss_bytes(),
        "peak_rss_includes_load": not peak_reset,
        "load_peak_rss_bytes": load_peak,
    }
    (workdir / f"{options.only}.json").write_text(json.dumps(stats))


def _child_args(options: argparse.Namespace, name: str, workdir: str) -> list[str]:
    args = [__file__, "--only", name, "--workdir", workdir, "--data", str(options.data)]
    args += ["--test-days", str(options.test_days), "--seed", str(options.seed), "--threads", str(options.threads)]
    if options.sample_series:
        args += ["--sample-series", str(options.sample_series)]
    for key, value in options.params.items():
        args += ["--param", f"{key}={json.dumps(value)}"]
    for key, value in options.lgb.items():
        args += ["--lgb", f"{key}={json.dumps(value)}"]
    for key, value in options.lgb_quantile.items():
        args += ["--lgb-quantile", f"{key}={json.dumps(value)}"]
    return args


def parent_main(options: argparse.Namespace) -> dict[str, Any]:
    """Run every requested model in its own child, score them on the same actuals, print and write results."""
    frame = load_frame(options.data, options.sample_series, options.seed)
    _, _, actuals = split(frame, options.test_days)
    n_series = frame.groupby(KEYS).ngroups
    n_rows = len(frame)
    del frame
    rows: list[dict[str, Any]] = []
    workdir = options.out.parent / f"{options.out.stem}-predictions"  # kept: rescoring needs no rerun
    workdir.mkdir(parents=True, exist_ok=True)
    for name in options.models:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        run_child(_child_args(options, name, str(workdir)))
        stats = json.loads(Path(workdir, f"{name}.json").read_text())
        predictions = pd.read_parquet(Path(workdir, f"{name}.parquet"))
        row = {"name": name, "label": MODELS[name][0], **stats, **score(actuals, predictions)}
        row["peak_rss_gib"] = gib(row["peak_rss_bytes"])
        rows.append(row)
        print(
            f"  {name}: WAPE {row['wape']:.4f}, fit+predict {row['fit_predict_s']:.1f} s, "
            f"peak RSS {row['peak_rss_gib']:.2f} GiB",
            file=sys.stderr,
            flush=True,
        )
        _write(options, rows, n_series, n_rows)  # partial results survive a later failure
    results = _write(options, rows, n_series, n_rows)
    print(results["table_markdown"])
    for name, ratio in results["vs_mlforecast"].items():
        print(
            f"\n{name} vs mlforecast: WAPE x{ratio['wape']:.3f}, campaign WAPE x{ratio['wape_campaign']:.3f}, "
            f"fit+predict time x{ratio['fit_predict_s']:.2f}, peak RSS x{ratio['peak_rss_bytes']:.2f}"
        )
    print(f"\nwrote {options.out}", file=sys.stderr)
    return results


def _write(options: argparse.Namespace, rows: list[dict[str, Any]], n_series: int, n_rows: int) -> dict[str, Any]:
    from forecaster.io import write_json

    table = markdown_table(rows, TABLE_COLUMNS)
    results = {
        "benchmark": "accuracy",
        "data": {
            "path": str(options.data),
            "source": "FreshRetailNet-50K, Dingdong Inc. (CC BY 4.0)",
            "series": n_series,
            "rows": n_rows,
            "test_days": options.test_days,
            "sample_series": options.sample_series,
            "seed": options.seed,
        },
        "machine": machine_info(),
        "threads": options.threads,
        "forecaster_params": options.params,
        "mlforecast_lgb": {
            "mean": {**LGB_SHARED, **LGB_MEAN, **options.lgb},
            "quantile": {**LGB_SHARED, **LGB_QUANTILE, **options.lgb_quantile},
        },
        "models": rows,
        "vs_mlforecast": _ratios(rows),
        "table_markdown": table,
    }
    write_json(results, options.out)
    return results


def _ratios(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    by_name = {row["name"]: row for row in rows}
    peer = by_name.get("mlforecast")
    if peer is None:
        return {}
    keys = ("wape", "wape_campaign", "wape_no_stockout", "fit_predict_s", "peak_rss_bytes")
    return {
        name: {key: row[key] / peer[key] for key in keys}
        for name, row in by_name.items()
        if name.startswith("forecaster")
    }


def _key_value(text: str) -> tuple[str, Any]:
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"Expected KEY=VALUE. Got {text!r} instead.")
    try:
        return key, json.loads(raw)
    except json.JSONDecodeError:
        return key, raw


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="daily FreshRetailNet-50K parquet")
    parser.add_argument("--sample-series", type=int, default=None, help="random sample of N series (quick runs)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the series sample")
    parser.add_argument("--test-days", type=int, default=14, help="days held out and forecast")
    parser.add_argument("--threads", type=int, default=2, help="LightGBM / feature threads for both learned models")
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS), help="what to run")
    parser.add_argument("--param", action="append", type=_key_value, default=[], help="forecaster hyperparameter")
    parser.add_argument("--lgb", action="append", type=_key_value, default=[], help="mlforecast point-model arg")
    parser.add_argument(
        "--lgb-quantile", action="append", type=_key_value, default=[], help="mlforecast quantile-model arg"
    )
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "accuracy.json", help="results JSON")
    parser.add_argument("--only", choices=list(MODELS), help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if not options.data.exists():
        parser.error(f"{options.data} does not exist; pass --data PATH to the FreshRetailNet-50K daily parquet.")
    options.params = dict(options.param)
    options.lgb = dict(options.lgb)
    options.lgb_quantile = dict(options.lgb_quantile)
    return options


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    if options.only:
        child_main(options)
    else:
        parent_main(options)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
