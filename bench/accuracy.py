"""Accuracy benchmark on FreshRetailNet-50K: forecaster vs mlforecast and baselines, rolling-origin backtest.

Fold k (1..``--folds``) forecasts the ``--test-days`` days that start ``k x test-days`` days before the end of the
data, training only on the days before that origin. Every model's fit+predict runs in its own child process (this
script with ``--only NAME --fold K``) so wall time and peak RSS are measured per model and fold; reading the data
is timed separately and excluded from fit+predict. Two tables: the project's (14 days, every day, point forecast
WAPE by slice, bias, P10/P90 coverage) and the FreshRetailNet paper's protocol (first 7 days, in-stock days only,
per-day WAPE / WPE / MAE averaged, low and high sellers).

Confirmation discipline: with two folds or more, fold 1 (the most recent) is the **confirmation fold**. Levers and
defaults are chosen on the other folds (their mean is the table's mean; ``--skip-confirmation`` runs only them);
the confirmation fold is scored for the chosen configuration and reported apart, beside the others. The reference
of the ratios is mlforecast's better point output of each fold (its Tweedie ``mean`` or its P50).

    .venv/bin/python bench/accuracy.py --folds 3                 # all 50,000 series, 3 folds (long: both cores)
    .venv/bin/python bench/accuracy.py --folds 3 --series 5000   # a seeded subsample of series
    .venv/bin/python bench/accuracy.py --models mlforecast forecaster --param tweedie_variance_power=1.3
    .venv/bin/python bench/accuracy.py --smoke --out /tmp/accuracy.json   # synthetic data, tiny models: runs?
    .venv/bin/python bench/accuracy.py --models forecaster --recursive    # + forecaster's recursive point per row
    .venv/bin/python bench/accuracy.py --models forecaster --one-step     # + a one-step booster's recursive point

Data: FreshRetailNet-50K, Dingdong Inc. (CC BY 4.0).
"""

from __future__ import annotations

import argparse
import json
import sys
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
    synthetic_freshretailnet,
)
from _models import KNOWN_FUTURE, LGB_MEAN, LGB_QUANTILE, LGB_SHARED, MODELS
from _scoring import CAMPAIGN, DATE, KEYS, STOCKOUT, TARGET, best_point, fold_means, merge, paper_scores, ratios, score
from _scoring import seller_classes as sellers

DEFAULT_DATA = Path("/work/shared/data/freshretailnet/daily_2024-03-28_2024-06-11.parquet")
DEFAULT_MODELS = ["seasonal_naive_7", "mean_28", "mlforecast", "forecaster"]
SYNTHETIC_SOURCE = "synthetic, FreshRetailNet-shaped (forecaster.synth: 3 stores x 8 items x 76 days)"
#: ``--smoke``: both learned models with a few rounds (unless --param / --lgb / --lgb-quantile say otherwise)
SMOKE_PARAMS = {"num_boost_round": 10, "quantile_num_boost_round": 10}
SMOKE_LGB = {"n_estimators": 10}
SMOKE_FOLDS = 2  # a choosing fold and the confirmation fold
CONFIRMATION_FOLD = 1  # the most recent fold: scored for the configuration chosen on the others
PEER = "mlforecast"


def confirmation_fold(folds: int) -> int | None:
    """The confirmation fold of a run of ``folds`` folds (None with one fold: nothing left to choose on)."""
    return CONFIRMATION_FOLD if folds >= 2 else None


# --------------------------------------------------------------------------------------------------- data
def load_frame(path: Path, series: int | None, seed: int) -> pd.DataFrame:
    """Read the daily parquet, optionally ``series`` series drawn (seeded) from the sorted series ids."""
    frame = pd.read_parquet(path)
    if series:
        pairs = frame[KEYS].drop_duplicates().sort_values(KEYS).reset_index(drop=True)
        if series < len(pairs):
            chosen = np.sort(np.random.default_rng(seed).choice(len(pairs), size=series, replace=False))
            frame = frame.merge(pairs.iloc[chosen], on=KEYS, how="inner")
    return frame.sort_values([*KEYS, DATE], kind="stable").reset_index(drop=True)


def split(frame: pd.DataFrame, test_days: int, fold: int) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """History before fold ``fold``'s origin, its future frame (known-future columns only) and its actuals."""
    dates = np.sort(frame[DATE].unique())
    first_test = len(dates) - fold * test_days
    if first_test < 28:
        raise ValueError(
            f"The data has {len(dates)} days: fold {fold} of {test_days} days leaves {first_test} days of history "
            "(at least 28 needed). Use fewer --folds or a shorter --test-days."
        )
    start, end = dates[first_test], dates[first_test + test_days - 1]
    history = frame.loc[frame[DATE] < start].reset_index(drop=True)
    test = frame.loc[(frame[DATE] >= start) & (frame[DATE] <= end)].reset_index(drop=True)
    future = test[[*KEYS, DATE, *KNOWN_FUTURE]].copy()
    actuals = test[[*KEYS, DATE, TARGET, CAMPAIGN, STOCKOUT]].merge(sellers(history), on=KEYS, how="left")
    return history, future, actuals


# ------------------------------------------------------------------------------------------------ tables
FOLD_COLUMNS = [
    ("label", "model", ""),
    ("fold_label", "fold", ""),
    ("wape", "WAPE", ".1%"),
    ("vs_peer_best", "× peer best", ".3f"),
    ("wape_campaign", "campaign", ".1%"),
    ("wape_no_stockout", "no stockout", ".1%"),
    ("wape_low_seller", "low sellers", ".1%"),
    ("wape_high_seller", "high sellers", ".1%"),
    ("bias", "bias", "+.1%"),
    ("coverage_p10", "≤ P10", ".1%"),
    ("coverage_p90", "≤ P90", ".1%"),
    ("fit_predict_s", "fit+predict s", ".1f"),
    ("peak_rss_gib", "peak RSS GiB", ".2f"),
]
MEAN_COLUMNS = [column for column in FOLD_COLUMNS if column[0] != "fold_label"]
PAPER_COLUMNS = [
    ("label", "model", ""),
    *(
        (f"paper_{metric}_{group}", f"{metric.upper()} {group}", "+.1%" if metric == "wpe" else ".1%")
        for group in ("all", "low", "high")
        for metric in ("wape", "wpe")
    ),
    *((f"paper_mae_{group}", f"MAE {group}", ".3f") for group in ("all", "low", "high")),
]
RATIO_KEYS = (
    "wape",
    "wape_campaign",
    "wape_no_stockout",
    "wape_low_seller",
    "wape_high_seller",
    "fit_predict_s",
    "peak_rss_bytes",
)


# ------------------------------------------------------------------------------------------------ processes
def child_main(options: argparse.Namespace) -> None:
    """Child mode: load data (timed apart), fit+predict one model on one fold (timed), write predictions and stats."""
    with stopwatch() as load:
        frame = load_frame(options.data, options.series, options.seed)
        history, future, _ = split(frame, options.test_days, options.fold)
        if options.reforecast:  # every column of the fold's days: the history of its later origins
            options.test_frame = frame[frame[DATE].isin(future[DATE].unique())].reset_index(drop=True)
        del frame
    rss_after_load, load_peak = current_rss_bytes(), peak_rss_bytes()
    peak_reset = reset_peak_rss()  # so the fit+predict peak excludes the parquet reader's transient peak
    _, runner = MODELS[options.only]
    with stopwatch() as fit_predict:
        predictions = runner(history, future, options)
    stem = Path(options.workdir) / f"{options.only}-fold{options.fold}"
    predictions.to_parquet(stem.with_suffix(".parquet"), index=False)
    if getattr(options, "residual_std", None) is not None:
        options.residual_std.to_parquet(stem.with_name(f"{stem.name}-residuals.parquet"), index=False)
    if getattr(options, "reforecasts", None) is not None:
        options.reforecasts.to_parquet(stem.with_name(f"{stem.name}-daily.parquet"), index=False)
    stats = {
        "load_s": load["seconds"],
        # the bench's own extras (forecaster's recursive point, --recursive) are timed apart, not as fit+predict
        "fit_predict_s": fit_predict["seconds"] - getattr(options, "untimed_s", 0.0),
        "rss_after_load_bytes": rss_after_load,
        "peak_rss_bytes": peak_rss_since_reset_bytes() if peak_reset else peak_rss_bytes(),
        "peak_rss_includes_load": not peak_reset,
        "load_peak_rss_bytes": load_peak,
        **({"model": options.model_info} if getattr(options, "model_info", None) else {}),
    }
    stem.with_suffix(".json").write_text(json.dumps(stats))


def _child_args(options: argparse.Namespace, name: str, fold: int, workdir: str) -> list[str]:
    args = [__file__, "--only", name, "--fold", str(fold), "--workdir", workdir, "--data", str(options.data)]
    args += ["--test-days", str(options.test_days), "--seed", str(options.seed), "--threads", str(options.threads)]
    args += ["--recursive"] if options.recursive else []
    args += ["--one-step"] if options.one_step else []
    if options.series:
        args += ["--series", str(options.series)]
    for flag, values in (("--param", options.params), ("--lgb", options.lgb), ("--lgb-quantile", options.lgb_quantile)):
        for key, value in values.items():
            args += [flag, f"{key}={json.dumps(value)}"]
    return args


def parent_main(options: argparse.Namespace) -> dict[str, Any]:
    """Run every model on every fold in its own child, score them on the same actuals, print and write results."""
    frame = load_frame(options.data, options.series, options.seed)
    confirm = confirmation_fold(options.folds)
    numbers = [f for f in range(1, options.folds + 1) if not (options.skip_confirmation and f == confirm)]
    folds = {fold: split(frame, options.test_days, fold)[2] for fold in numbers}
    shape = {"series": frame.groupby(KEYS).ngroups, "rows": len(frame), "days": frame[DATE].nunique()}
    del frame
    rows: list[dict[str, Any]] = []
    workdir = options.out.parent / f"{options.out.stem}-predictions"  # kept: rescoring needs no rerun
    workdir.mkdir(parents=True, exist_ok=True)
    for fold, actuals in folds.items():
        for name in options.models:
            print(f"fold {fold}: running {name} ...", file=sys.stderr, flush=True)
            if not options.rescore:
                run_child(_child_args(options, name, fold, str(workdir)))
            stem = workdir / f"{name}-fold{fold}"
            stats = json.loads(stem.with_suffix(".json").read_text())
            merged = merge(actuals, pd.read_parquet(stem.with_suffix(".parquet")))
            row = {"name": name, "label": MODELS[name][0], "fold": fold, **stats, **score(merged)}
            row["confirmation"] = fold == confirm
            row["fold_label"] = f"{fold} (confirmation)" if fold == confirm else str(fold)
            row.update(paper_scores(merged))
            row["peak_rss_gib"] = gib(row["peak_rss_bytes"])
            rows.append(row)
            print(
                f"  {name}: WAPE {row['wape']:.4f}, fit+predict {row['fit_predict_s']:.1f} s, "
                f"peak RSS {row['peak_rss_gib']:.2f} GiB",
                file=sys.stderr,
                flush=True,
            )
            _write(options, rows, shape)  # partial results survive a later failure
    results = _write(options, rows, shape)
    print(f"Mean of the choosing folds ({results['choosing_folds']}):\n")
    print(results["table_markdown"])
    print("\nPer fold (the confirmation fold marked):\n")
    print(results["fold_table_markdown"])
    print("\nFreshRetailNet paper protocol (first 7 days, in-stock days, per-day metrics averaged; mean of folds):\n")
    print(results["paper_table_markdown"])
    for name, ratio in results["vs_mlforecast"].items():
        per_fold = ", ".join(
            f"fold {fold} x{value['wape_vs_best']:.3f} (peer {value['peer_best_point']})"
            for fold, value in ratio["per_fold"].items()
        )
        mean = ratio["mean"]
        if not mean:  # only the confirmation fold was scored
            continue
        print(
            f"\n{name} vs mlforecast's better point output: WAPE x{mean['wape_vs_best']:.3f} on the choosing folds "
            f"({per_fold}); vs its Tweedie point: WAPE x{mean['wape']:.3f}, campaign x{mean['wape_campaign']:.3f}, "
            f"no stockout x{mean['wape_no_stockout']:.3f}, low sellers x{mean['wape_low_seller']:.3f}, "
            f"high sellers x{mean['wape_high_seller']:.3f}, fit+predict time x{mean['fit_predict_s']:.2f}, "
            f"peak RSS x{mean['peak_rss_bytes']:.2f}"
        )
    print(f"\nwrote {options.out}", file=sys.stderr)
    return results


def _write(options: argparse.Namespace, rows: list[dict[str, Any]], shape: dict[str, int]) -> dict[str, Any]:
    from forecaster.io import write_json

    numeric = [key for key, _, spec in FOLD_COLUMNS + PAPER_COLUMNS if spec] + ["peak_rss_bytes"]
    peers = {row["fold"]: best_point(row) for row in rows if row["name"] == PEER}
    for row in rows:  # the point WAPE over the peer's better point output (Tweedie or P50) of the same fold
        row["vs_peer_best"] = row["wape"] / peers[row["fold"]][1] if row["fold"] in peers else None
    confirm = confirmation_fold(options.folds)
    choosing = [row for row in rows if not row.get("confirmation")]
    means = fold_means(choosing, numeric)
    results = {
        "benchmark": "accuracy",
        "data": {
            "path": str(options.data),
            "source": SYNTHETIC_SOURCE if options.smoke else "FreshRetailNet-50K, Dingdong Inc. (CC BY 4.0)",
            **shape,
            "test_days": options.test_days,
            "folds": options.folds,
            "confirmation_fold": confirm,
            "confirmation_skipped": bool(options.skip_confirmation),
            "series_sample": options.series,
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
        "choosing_folds": sorted({row["fold"] for row in choosing}),
        "mean_over_folds": means,  # the choosing folds only: the confirmation fold is in "confirmation"
        "confirmation": [row for row in rows if row.get("confirmation")],
        "peer_best_point": {fold: name for fold, (name, _) in peers.items()},
        "vs_mlforecast": ratios(rows, RATIO_KEYS, PEER, confirm),
        "table_markdown": markdown_table(means, MEAN_COLUMNS),
        "fold_table_markdown": markdown_table(rows, FOLD_COLUMNS),
        "paper_table_markdown": markdown_table(means, PAPER_COLUMNS),
    }
    write_json(results, options.out)
    return results


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
    parser.add_argument("--series", "--sample-series", type=int, default=None, help="seeded sample of N series")
    parser.add_argument("--seed", type=int, default=0, help="seed of the series sample")
    parser.add_argument("--folds", type=int, default=3, help="rolling origins, test-days apart, newest first")
    parser.add_argument("--test-days", type=int, default=14, help="days forecast per fold")
    parser.add_argument("--threads", type=int, default=2, help="LightGBM / feature threads for both learned models")
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=DEFAULT_MODELS, help="what to run")
    parser.add_argument("--param", action="append", type=_key_value, default=[], help="forecaster hyperparameter")
    parser.add_argument("--lgb", action="append", type=_key_value, default=[], help="mlforecast point-model arg")
    parser.add_argument(
        "--lgb-quantile", action="append", type=_key_value, default=[], help="mlforecast quantile-model arg"
    )
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "accuracy.json", help="results JSON")
    parser.add_argument("--rescore", action="store_true", help="score the kept predictions again, fit nothing")
    parser.add_argument(
        "--skip-confirmation", action="store_true",
        help="run only the choosing folds (2..K), never the confirmation fold (1): for choosing levers",
    )  # fmt: skip
    parser.add_argument("--only", choices=list(MODELS), help=argparse.SUPPRESS)
    parser.add_argument("--fold", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    parser.add_argument(
        "--smoke", action="store_true",
        help="checks the script runs: a small synthetic set with FreshRetailNet's columns instead of --data, "
        "2 folds (one of them the confirmation fold), 1 thread, 10 rounds per model",
    )  # fmt: skip
    parser.add_argument(
        "--recursive", action="store_true",
        help="forecaster also keeps its recursive point per row (column `recursive`, for bench/levers.py's "
        "recursive_blend); its time is reported apart (model.inference_seconds), not in fit+predict",
    )  # fmt: skip
    parser.add_argument(
        "--one-step", action="store_true",
        help="forecaster also trains a one-step booster (horizon-1 rows) and keeps its recursive point per row "
        "(column `one_step`, for bench/levers.py's one_step_blend); its fit and recursion times are reported "
        "apart (model.inference_seconds), not in fit+predict",
    )  # fmt: skip
    parser.add_argument("--residuals", action="store_true", help=argparse.SUPPRESS)  # mlforecast: keep residual std
    # forecast from every day of the fold too (bench/_reforecast.py; untimed): replenishment.py --daily-forecasts
    parser.add_argument("--reforecast", action="store_true", help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.smoke:  # the data is written next to the results; the children read it as --data
        options.data = synthetic_freshretailnet(options.out.parent / f"{options.out.stem}-synthetic.parquet")
        options.folds, options.threads = SMOKE_FOLDS, 1
        options.param = [*SMOKE_PARAMS.items(), *options.param]
        options.lgb = [*SMOKE_LGB.items(), *options.lgb]
        options.lgb_quantile = [*SMOKE_LGB.items(), *options.lgb_quantile]
    if not options.data.exists():
        parser.error(f"{options.data} does not exist; pass --data PATH to the FreshRetailNet-50K daily parquet.")
    if options.folds < 1:
        parser.error(f"--folds must be at least 1. Got {options.folds} instead.")
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
