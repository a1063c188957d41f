"""One fold's replay inputs for ``replenishment.py`` and ``calibration_grid.py``.

Both models' forecasts (run by ``accuracy.py``'s children unless kept), the day-indexed arrays of forecasts, sales
and stockouts, and policy (b), the order rule on mlforecast's point forecast with a normal safety stock.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import ndtr

from _common import run_child
from _reforecast import ORIGIN
from _scoring import DATE, KEYS, STOCKOUT, TARGET
from accuracy import split
from forecaster.order_defaults import OrderDefaults
from forecaster.order_policy import round_to_packs, usable_stock
from forecaster.orders_inputs import FORECAST_VALUES
from forecaster.replenishment import Day, day_matrix, stock_buckets
from forecaster.simulation import forecasts_by_order_day

FULL_TRAIN_ROWS = 2_000_000  # forecaster's max_train_rows for 50,000 series (scaled with --series)


# ------------------------------------------------------------------------------------------------ forecasts
def fold_predictions(options: argparse.Namespace, fold: int) -> dict[str, pd.DataFrame]:
    """forecaster's and mlforecast's predictions of ``fold`` (and mlforecast's residual std), run if not kept."""
    workdir = options.out.parent / f"{options.out.stem}-predictions"
    workdir.mkdir(parents=True, exist_ok=True)
    frames = {}
    for name in ("forecaster", "mlforecast"):
        stem = workdir / f"{name}-fold{fold}"
        residuals = stem.with_name(f"{stem.name}-residuals.parquet")
        daily = stem.with_name(f"{stem.name}-daily.parquet")
        missing = not stem.with_suffix(".parquet").exists() or (name == "mlforecast" and not residuals.exists())
        if missing or (options.daily_forecasts and not daily.exists()):
            print(f"fold {fold}: running {name} ...", file=sys.stderr, flush=True)
            args = [str(Path(__file__).with_name("accuracy.py")), "--only", name, "--fold", str(fold)]
            args += ["--workdir", str(workdir), "--data", str(options.data), "--seed", str(options.seed)]
            args += ["--threads", str(options.threads), "--test-days", str(options.test_days), "--residuals"]
            args += ["--reforecast"] if options.daily_forecasts else []
            if options.series:
                rows = max(20_000, FULL_TRAIN_ROWS * options.series // 50_000)
                args += ["--series", str(options.series), "--param", f"max_train_rows={rows}"]
            run_child(args)
        frames[name] = pd.read_parquet(stem.with_suffix(".parquet"))
        if name == "mlforecast":
            frames["residuals"] = pd.read_parquet(residuals)
        if options.daily_forecasts:
            frames[f"{name}_daily"] = pd.read_parquet(daily)
    return frames


# ------------------------------------------------------------------------------------------------ policy (b)
def normal_policy(mean: np.ndarray, sigma: np.ndarray, items: Any, defaults: OrderDefaults) -> Any:
    """The same order-up-to rule on a normal period demand: mean = the point forecasts' sum, sd = sigma x sqrt(days)."""
    margin = items.unit_price - items.unit_cost + defaults.stockout_penalty
    waste = items.unit_cost + defaults.disposal_cost
    hold = defaults.holding_cost_share * waste
    cumulative = np.cumsum(mean, axis=1)

    def window(rows: np.ndarray, t: int, days: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        end = np.minimum(t + days, mean.shape[1] - 1)
        start = cumulative[rows, t] if t >= 0 else 0.0
        over = np.maximum(t + days - (mean.shape[1] - 1), 0) * mean[rows, -1]  # past the forecasts: the last day
        return cumulative[rows, end] - start + over, np.maximum(sigma[rows] * np.sqrt(days), 1e-6)

    def policy(day: Day) -> np.ndarray:
        rows = day.rows
        mu_k, sd_k = window(rows, day.t, day.days_covered)
        mu_g, sd_g = window(rows, day.t, np.minimum(day.days_covered, day.life_days))
        mu_l, sd_l = window(rows, day.t, day.life_days)
        low, high = np.zeros(rows.size), mu_l + 8 * sd_l + 1.0
        for _ in range(50):
            mid = (low + high) / 2
            gain = margin[rows] * (1 - ndtr((mid - mu_g) / sd_g))
            cost = hold[rows] * ndtr((mid - mu_k) / sd_k) + waste[rows] * ndtr((mid - mu_l) / sd_l)
            up = gain > cost
            low, high = np.where(up, mid, low), np.where(up, high, mid)
        ahead = mean[rows, day.t + 1 :] if day.t + 1 < mean.shape[1] else mean[rows, -1:]
        counted, _ = usable_stock(stock_buckets(day.stock), rows.size, ahead, day.days_covered)
        position, pack, floor = counted + day.on_order, items.pack_size[rows], items.min_display_units[rows]
        order = round_to_packs(np.maximum(high, floor) - position, pack)
        if defaults.pack_rounding == "cost":  # as forecaster.order_policy.order_up_to, on the normal period demands
            one_less = np.maximum(order - pack, 0.0)

            def cost(units: np.ndarray) -> np.ndarray:
                return (
                    margin[rows] * _shortfall(units, mu_g, sd_g)
                    + hold[rows] * (units - mu_k + _shortfall(units, mu_k, sd_k))
                    + waste[rows] * (units - mu_l + _shortfall(units, mu_l, sd_l))
                )

            cheaper = (position + one_less >= floor - 1e-9) & (cost(position + one_less) < cost(position + order))
            order = np.where(cheaper, one_less, order)
        return order

    return policy


def _shortfall(units: np.ndarray, mu: np.ndarray, sd: np.ndarray) -> np.ndarray:
    """E(D - units)+ of a normal demand D with mean ``mu`` and standard deviation ``sd``."""
    z = (units - mu) / sd
    return sd * (np.exp(-0.5 * z * z) / np.sqrt(2 * np.pi) - z * (1 - ndtr(z)))


# ------------------------------------------------------------------------------------------------ one fold
def fold_arrays(frame: pd.DataFrame, options: argparse.Namespace, fold: int) -> dict[str, Any]:
    history, _, actuals = split(frame, options.test_days, fold)
    predictions = fold_predictions(options, fold)
    series = actuals[KEYS].drop_duplicates().sort_values(KEYS).reset_index(drop=True)
    dates = pd.DatetimeIndex(np.sort(actuals[DATE].unique()))
    _, observed, _ = day_matrix(actuals, KEYS, DATE, [TARGET, STOCKOUT], series, dates)
    _, ours, _ = day_matrix(predictions["forecaster"], KEYS, DATE, list(FORECAST_VALUES), series, dates)
    _, peer, _ = day_matrix(predictions["mlforecast"], KEYS, DATE, list(FORECAST_VALUES), series, dates)
    ids = series["store_id"].astype(np.int64) * 1000 + series["product_id"].astype(np.int64)
    spread = predictions["residuals"].set_index("unique_id")["residual_std"].reindex(ids).to_numpy()
    spread = np.where(np.isnan(spread), np.nanmedian(spread), spread)
    past = history[history[DATE] >= history[DATE].max() - pd.Timedelta(days=27)]
    _, last28, _ = day_matrix(past, KEYS, DATE, [TARGET], series)
    for name, values in (("forecaster", ours), ("mlforecast", peer), ("actuals", observed)):
        if np.isnan(values).any():
            raise SystemExit(f"fold {fold}: the {name} do not cover every series and day of the fold")
    days = options.replay_days or len(dates)  # replay the first days only: forecasts at most that old
    observed, ours, peer, dates = observed[:, :, :days], ours[:, :, :days], peer[:, :, :days], dates[:days]
    daily = {}
    if options.daily_forecasts:  # each day's orders use the forecast made that day, through the product's function
        for name in ("forecaster", "mlforecast"):
            daily[name] = forecasts_by_order_day_of(predictions, name, series, dates)
    return {
        "series": series,
        "dates": dates,
        "demand": observed[:, 0],
        "in_stock": observed[:, 1] == 0,
        "ours": ours,
        "peer_mean": peer[:, 3],
        "peer_sigma": spread,
        "last28": last28[:, 0],
        **({"ours_daily": daily["forecaster"], "peer_mean_daily": [a[:, 3] for a in daily["mlforecast"]]}
           if daily else {}),
    }  # fmt: skip


def forecasts_by_order_day_of(
    predictions: dict[str, pd.DataFrame], name: str, series: pd.DataFrame, dates: pd.DatetimeIndex
) -> list[np.ndarray]:
    """Per order day, the (n, 4, T) forecast of ``name`` it uses, as ``forecaster orders simulate`` picks it.

    Origin k read the fold's first k days: it was made at the close of the fold's day k - 1 (origin 0, the fold's
    own forecast, the day before the fold). ``series`` and ``dates`` are the replay's, sorted by ``KEYS``.
    """
    first_day = dates[0] - pd.Timedelta(days=1)
    stacked = pd.concat([predictions[name].assign(**{ORIGIN: 0}), predictions[f"{name}_daily"]], ignore_index=True)
    stacked[ORIGIN] = first_day + pd.to_timedelta(stacked[ORIGIN], unit="D")
    stacked = stacked.sort_values([*KEYS, ORIGIN, DATE], kind="stable").reset_index(drop=True)
    got, days, made, use = forecasts_by_order_day(stacked, KEYS, DATE, ORIGIN, dates[-1])
    if not (np.array_equal(got[KEYS].to_numpy(), series[KEYS].to_numpy()) and days.equals(dates)):
        raise SystemExit(f"the {name} forecasts made every day cover other series or days than the fold")
    made = [np.nan_to_num(values) for values in made]  # days before a forecast's origin: 0 (policy (b) sums them)
    return [made[k] for k in use]
