"""Replenishment benchmark on FreshRetailNet-50K: forecasts turned into orders, replayed as waste and availability.

Each backtest fold of ``accuracy.py`` (14 days; fold 1 the newest) is replayed day by day for four policies, each
series starting at the policy's own target level (the data has no stock): orders every day, on the shelf the next
day, sales first in, first out, expiry after the shelf life (``OrderDefaults``: 3 days for every category, pack 1,
cost = 0.6 x price). Actual sales are the demand; days with stockout hours in the data are reported apart.

- (a) ``forecaster``: this product's policy (period-demand quantiles from P10/P50/P90 tied by a Gaussian copula,
  the shelf-life-aware critical fractile, FIFO usable stock);
- (b) ``mlforecast_normal``: the same rule fed by mlforecast's point forecast with a normal safety stock from its
  in-sample residual standard deviation (days independent);
- (c) ``rule_of_thumb``: mean of the last 28 days' sales x (days covered + 1 day of safety stock), all stock counted;
- (d) ``daily_quantile``: today's proposals, each day's P80 ordered whatever is on the shelf.

The period-demand model's knobs (day shape, copula correlation, log shift) are chosen on folds 1-2 by the smallest
worst cell of the period-sum calibration (P50/P80/P95 of 1-, 2- and 3-day sums) and confirmed on fold 3.
Forecasts come from ``accuracy.py``'s child processes (kept in ``<out>-predictions/``).

    .venv/bin/python bench/replenishment.py --series 5000 --folds 3
    .venv/bin/python bench/replenishment.py --series 500 --folds 1 --out /tmp/r.json      # smoke size

Data: FreshRetailNet-50K, Dingdong Inc. (CC BY 4.0).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS_DIR, machine_info, markdown_table, stopwatch
from _replay_inputs import fold_arrays, normal_policy
from _scoring import KEYS
from accuracy import DEFAULT_DATA, load_frame
from forecaster.io import write_json
from forecaster.order_defaults import OrderDefaults
from forecaster.order_items import read_item_master
from forecaster.replenishment import (
    Replay,
    daily_quantile_policy,
    forecast_policy,
    per_order_day,
    period_coverage,
    rule_of_thumb_policy,
    simulate,
)

POLICIES = {
    "forecaster": "(a) forecaster: period quantiles, shelf-life critical fractile",
    "mlforecast_normal": "(b) mlforecast point + normal safety stock",
    "rule_of_thumb": "(c) rule of thumb: mean 28 d x cover + 1 day",
    "daily_quantile": "(d) today's per-day P80 proposals",
}
ADDITIVE = ("demand_units", "sold_units", "delivered_units", "waste_units", "waste_value", "lost_units", "lost_margin")


def run_policies(
    arrays: dict[str, Any],
    defaults: OrderDefaults,
    trace: bool = False,
    levels: tuple[float, ...] = (),
    week: tuple[float, ...] | None = None,
) -> dict[str, dict[str, Any]]:
    """The four policies (and policy (a) ordering to each of ``levels`` instead of the cost balance) on one fold.

    ``week``: the lead time of an order placed on each weekday (Monday first, NaN: no order that day); default:
    every day, ``defaults.lead_time_days``.
    """
    series = arrays["series"].astype(str)
    items = read_item_master(None, series, KEYS, defaults)
    week = week or (float(defaults.lead_time_days),) * 7
    leads = np.tile(np.asarray(week, dtype=float), (len(series), 1))
    replay = Replay(arrays["demand"], arrays["in_stock"], items, leads, arrays["dates"].weekday.to_numpy())
    ours = arrays.get("ours_daily", [arrays["ours"]])  # one array per origin (daily forecasts) or the fold's own
    peer = arrays.get("peer_mean_daily", [arrays["peer_mean"]])

    def every_day(make: Any, forecasts: list[np.ndarray]) -> Any:
        return per_order_day([make(values) for values in forecasts])

    policies = {
        "forecaster": every_day(lambda q: forecast_policy(q, items, defaults), ours),
        "mlforecast_normal": every_day(lambda m: normal_policy(m, arrays["peer_sigma"], items, defaults), peer),
        "rule_of_thumb": rule_of_thumb_policy(arrays["last28"], arrays["demand"], safety_days=1.0),
        "daily_quantile": every_day(lambda q: daily_quantile_policy(q[:, :3]), ours),
        **{
            f"forecaster@{level}": every_day(lambda q, level=level: forecast_policy(q, items, defaults, level), ours)
            for level in levels
        },
    }
    results = {}
    for name, policy in policies.items():
        with stopwatch() as clock:
            results[name] = simulate(replay, policy, trace=trace and name == "forecaster")
        results[name]["simulate_s"] = clock["seconds"]
    return results


def calibration_error(coverage: dict[str, float]) -> float:
    """Mean absolute gap between coverage and the nominal level over the all-days cells (``"k=2 P80"`` -> 0.80)."""
    return float(np.mean(_gaps(coverage)))


def worst_gap(coverage: dict[str, float]) -> float:
    """The largest absolute gap of one all-days cell: what issue 20's acceptance bounds (3 points on every fold)."""
    return float(np.max(_gaps(coverage)))


def _gaps(coverage: dict[str, float]) -> list[float]:
    cells = {key: value for key, value in coverage.items() if key.startswith("k=")}
    return [abs(value - int(key.split("P")[1]) / 100) for key, value in cells.items()]


def coverage_grid(
    arrays: dict[int, dict[str, Any]], shapes: list[str], correlations: list[float], log_shifts: list[float]
) -> dict[str, dict[int, dict[str, float]]]:
    """Period-sum coverage of forecaster's forecasts per knob (``"log 0.1 0.6"``: shape, correlation, shift) and fold.

    ``arrays``: per fold, ``fold_arrays``' ``ours`` and ``demand`` (and ``in_stock``, for the in-stock cells, when
    present). The shift moves the log shape only: ``normal`` is scored with the first shift alone.
    """
    grid: dict[str, dict[int, dict[str, float]]] = {}
    for shape, rho, shift in itertools.product(shapes, correlations, log_shifts):
        if shape == "log" or shift == log_shifts[0]:
            defaults = OrderDefaults(day_shape=shape, correlation=rho, log_shift=shift)
            grid[f"{shape} {rho} {shift}"] = {
                fold: period_coverage(a["ours"][:, :3], a["demand"], defaults, in_stock=a.get("in_stock"))
                for fold, a in arrays.items()
            }
    return grid


def combine(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Totals over folds of one policy, its ratios recomputed from the totals."""
    total = {key: sum(row[key] for row in rows) for key in ADDITIVE}
    demand = max(total["demand_units"], 1e-12)
    return {
        **total,
        "waste_share_of_delivered": total["waste_units"] / max(total["delivered_units"], 1e-12),
        "fill_rate": total["sold_units"] / demand,
        "fill_rate_in_stock_days": float(np.average([r["fill_rate_in_stock_days"] for r in rows],
                                                    weights=[r["demand_units"] for r in rows])),
        "empty_shelf_share": float(np.mean([r["empty_shelf_share"] for r in rows])),
        "empty_shelf_share_in_stock_days": float(np.mean([r["empty_shelf_share_in_stock_days"] for r in rows])),
        "total_cost": total["waste_value"] + total["lost_margin"],
        "mean_days_of_cover": float(np.average([r["mean_days_of_cover"] for r in rows],
                                               weights=[r["demand_units"] for r in rows])),
    }  # fmt: skip


TABLE = [
    ("label", "policy", ""),
    ("waste_units", "waste units", ",.0f"),
    ("waste_value", "waste value", ",.0f"),
    ("waste_share_of_delivered", "waste % delivered", ".1%"),
    ("fill_rate", "fill rate", ".1%"),
    ("fill_rate_in_stock_days", "fill rate (in-stock days)", ".1%"),
    ("empty_shelf_share", "empty-shelf days", ".1%"),
    ("lost_margin", "lost margin", ",.0f"),
    ("total_cost", "total cost", ",.0f"),
    ("mean_days_of_cover", "days of cover", ".2f"),
]
CALIBRATION = [
    ("fold", "fold", ""),
    *((f"k={k} P{p}", f"{k}-day P{p}", ".1%") for k in (1, 2, 3) for p in (50, 80, 95)),
]
IN_STOCK = [
    (f"in-stock {key}", title, spec) if key != "fold" else (key, title, spec) for key, title, spec in CALIBRATION
]


# ------------------------------------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    load_start = os.getloadavg()
    with stopwatch() as wall:
        frame = load_frame(options.data, options.series, options.seed)
        arrays = {fold: fold_arrays(frame, options, fold) for fold in range(1, options.folds + 1)}
        del frame
        with stopwatch() as calibrate:
            grid = coverage_grid(arrays, options.shapes, options.correlations, options.log_shifts)
        choose = [f for f in arrays if f <= 2] or list(arrays)
        # the knobs whose worst cell on the choosing folds is smallest (ties: the smaller mean gap)
        chosen = min(
            grid,
            key=lambda knob: (
                round(max(worst_gap(grid[knob][f]) for f in choose), 4),
                np.mean([calibration_error(grid[knob][f]) for f in choose]),
            ),
        )
        shape, rho, shift = chosen.split()
        defaults = OrderDefaults(day_shape=shape, correlation=float(rho), log_shift=float(shift))
        per_fold = {}
        for fold, fold_arrays_ in arrays.items():
            print(f"fold {fold}: replaying {len(fold_arrays_['series'])} series ...", file=sys.stderr, flush=True)
            trace = options.plot is not None and fold == 1
            per_fold[fold] = run_policies(fold_arrays_, defaults, trace, tuple(options.service_levels))
        if options.plot is not None:
            plot(arrays[1], per_fold[1]["forecaster"].pop("trace"), options.plot)
    results = report(options, arrays, grid, chosen, choose, per_fold, defaults)
    if options.daily_forecasts:  # each start day scored on the forecast its orders used (made the day before)
        daily = [
            {"fold": fold, **period_coverage([q[:, :3] for q in a["ours_daily"]], a["demand"], defaults,
                                              in_stock=a["in_stock"])}
            for fold, a in arrays.items()
        ]  # fmt: skip
        results["calibration_daily"] = daily
        results["calibration_daily_markdown"] = markdown_table(daily, CALIBRATION)
    results["wall_s"], results["calibration_s"] = wall["seconds"], calibrate["seconds"]
    results["load_average"] = {"start": load_start, "end": os.getloadavg()}
    write_json(results, options.out)
    print(results["table_markdown"] + "\n\n" + results["calibration_markdown"])
    print("\nwindows whose every day was in stock:\n\n" + results["calibration_in_stock_markdown"])
    if "calibration_daily_markdown" in results:
        print("\nthe forecast each day's orders used (made that day):\n\n" + results["calibration_daily_markdown"])
    print(json_ratios(results), f"\nwrote {options.out}", file=sys.stderr)
    return 0


def report(options, arrays, grid, chosen, choose, per_fold, defaults) -> dict[str, Any]:
    rows = []
    for name, label in POLICIES.items():
        combined = combine([per_fold[f][name] for f in per_fold])
        rows.append({"name": name, "label": label, **combined})
    by = {row["name"]: row for row in rows}
    ratios = {
        "total_cost_a_over_b": by["forecaster"]["total_cost"] / by["mlforecast_normal"]["total_cost"],
        "fill_rate_a_minus_b": by["forecaster"]["fill_rate"] - by["mlforecast_normal"]["fill_rate"],
        "waste_a_over_c": by["forecaster"]["waste_units"] / by["rule_of_thumb"]["waste_units"],
        "fill_rate_a_minus_c": by["forecaster"]["fill_rate"] - by["rule_of_thumb"]["fill_rate"],
    }
    coverage = [{"fold": fold, **grid[chosen][fold]} for fold in arrays]
    ratios["matched_fill"] = matched_fill(per_fold, choose, options.service_levels)
    return {
        "benchmark": "replenishment",
        "data": {"path": str(options.data), "series_sample": options.series, "seed": options.seed,
                 "folds": options.folds, "test_days": options.test_days,
                 "forecasts": "daily (origin = the order day)" if options.daily_forecasts else "the fold's origin",
                 "series": len(arrays[1]["series"]), "days_per_fold": int(arrays[1]["demand"].shape[1])},
        "machine": machine_info(),
        "defaults": dataclasses.asdict(defaults),
        "correlation": {"chosen": chosen, "chosen_on_folds": choose, "grid": grid,
                        "mean_abs_error": {knob: {f: calibration_error(g[f]) for f in g} for knob, g in grid.items()},
                        "worst_gap": {knob: {f: worst_gap(g[f]) for f in g} for knob, g in grid.items()}},
        "policies": rows,
        "per_fold": {fold: per_fold[fold] for fold in per_fold},
        "ratios": ratios,
        "calibration": coverage,
        "table_markdown": markdown_table(rows, TABLE),
        "calibration_markdown": markdown_table(coverage, CALIBRATION),
        "calibration_in_stock_markdown": markdown_table(coverage, IN_STOCK),
    }  # fmt: skip


def matched_fill(per_fold: dict[int, Any], choose: list[int], levels: list[float]) -> dict[str, Any]:
    """(a)'s waste against (c)'s at a fill rate no lower than (c)'s: the lowest service level whose fill rate on the
    choice folds reaches (c)'s there, then its waste ratio per fold (the other folds confirm)."""

    def pooled(name: str, folds: list[int]) -> dict[str, Any]:
        return combine([per_fold[f][name] for f in folds])

    thumb = pooled("rule_of_thumb", choose)
    fits = [
        level for level in sorted(levels) if pooled(f"forecaster@{level}", choose)["fill_rate"] >= thumb["fill_rate"]
    ]
    if not fits:
        return {"level": None, "note": f"no level in {levels} reaches the rule of thumb's fill rate"}
    level = fits[0]
    per = {
        f: {
            "waste_a_over_c": per_fold[f][f"forecaster@{level}"]["waste_units"]
            / per_fold[f]["rule_of_thumb"]["waste_units"],
            "fill_rate_a": per_fold[f][f"forecaster@{level}"]["fill_rate"],
            "fill_rate_c": per_fold[f]["rule_of_thumb"]["fill_rate"],
            "total_cost_a_over_c": per_fold[f][f"forecaster@{level}"]["total_cost"]
            / per_fold[f]["rule_of_thumb"]["total_cost"],
        }
        for f in per_fold
    }
    return {"level": level, "chosen_on_folds": choose, "per_fold": per}


def json_ratios(results: dict[str, Any]) -> str:
    r = results["ratios"]
    return (
        f"(a)/(b) total cost x{r['total_cost_a_over_b']:.3f} (fill rate {r['fill_rate_a_minus_b']:+.1%}), "
        f"(a)/(c) waste x{r['waste_a_over_c']:.3f} (fill rate {r['fill_rate_a_minus_c']:+.1%}); "
        f"correlation {results['correlation']['chosen']} (chosen on folds {results['correlation']['chosen_on_folds']})"
        f"; at (c)'s fill rate: {json.dumps(r['matched_fill'])}"
    )


def plot(arrays: dict[str, Any], trace: dict[str, np.ndarray], path: Path, count: int = 3) -> None:
    """Stock at the close, deliveries and sales (and demand) per day of ``count`` mid-selling series (fold 1)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    level = arrays["demand"].mean(axis=1)
    order = np.argsort(level)
    picks = order[np.linspace(len(order) // 2, len(order) - 1 - len(order) // 20, count).astype(int)]
    days = arrays["dates"]
    figure, axes = plt.subplots(count, 1, figsize=(9, 2.6 * count), sharex=True)
    for axis, row in zip(np.atleast_1d(axes), picks, strict=True):
        keys = ", ".join(f"{k} {arrays['series'][k].iat[row]}" for k in KEYS)
        axis.bar(days, trace["delivered"][row], width=0.35, color="#9ecae1", label="delivered (ordered the day before)")
        axis.step(days, trace["end_stock"][row], where="mid", color="#3182bd", label="stock at close")
        axis.plot(days, trace["sold"][row], "o-", color="#31a354", label="sold")
        axis.plot(days, arrays["demand"][row], "x", color="#e6550d", label="actual sales in the data")
        axis.bar(days, -trace["waste"][row], width=0.35, color="#de2d26", label="thrown away (expired)")
        axis.set_title(keys, fontsize=9)
        axis.axhline(0, color="black", linewidth=0.5)
    np.atleast_1d(axes)[0].legend(fontsize=7, ncol=3, loc="upper left")
    figure.suptitle("forecaster's orders replayed on FreshRetailNet (fold 1): units per day")
    figure.autofmt_xdate()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="daily FreshRetailNet-50K parquet")
    parser.add_argument("--series", type=int, default=None, help="seeded sample of N series (default: all)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the series sample")
    parser.add_argument("--folds", type=int, default=3, help="rolling origins, newest first")
    parser.add_argument("--test-days", type=int, default=14, help="days per fold")
    parser.add_argument("--threads", type=int, default=2, help="LightGBM threads of both learned models")
    parser.add_argument(
        "--correlations", type=float, nargs="+", default=[0.0, 0.25, 0.5, 0.75, 1.0], help="copula grid"
    )
    parser.add_argument("--shapes", nargs="+", default=["log", "normal"], help="day shapes tried (day_shape)")
    parser.add_argument(
        "--log-shifts", type=float, nargs="+", default=[0.3, 0.6], help="shifts of the log shape tried (log_shift)"
    )
    parser.add_argument(
        "--service-levels", type=float, nargs="+", default=[0.9, 0.93, 0.95], help="(a) at these levels too"
    )
    parser.add_argument("--replay-days", type=int, help="replay only the first N days of each fold (default: all)")
    parser.add_argument(
        "--daily-forecasts", action="store_true",
        help="(a), (b) and (d) order each day from a forecast made that day (the fold's models, trained once, "
        "forecast again from every day's sales, as the daily batch does); default: the fold's first forecast",
    )  # fmt: skip
    parser.add_argument("--plot", type=Path, help="PNG of stock, orders and sales of a few series (fold 1)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "replenishment.json", help="results JSON")
    options = parser.parse_args(argv)
    if not options.data.exists():
        parser.error(f"{options.data} does not exist; pass --data PATH to the FreshRetailNet-50K daily parquet.")
    return options


if __name__ == "__main__":
    raise SystemExit(main())
