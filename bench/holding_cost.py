"""The cost balance's holding cost share (``OrderDefaults.holding_cost_share``), replayed on FreshRetailNet.

The share prices a unit carried into the next period. On produce that is mostly freshness, which the one-period
balance does not follow day by day, so it is chosen by replay: policies (a) and (b) of ``replenishment.py`` (both
use the share) on the same folds and forecasts, for each share. **The rule:** the share with the lowest total cost
of (a) over folds 1-2 among those where (a)'s fill rate on folds 1-2 is at least (b)'s at the same share; fold 3
is the confirmation fold, reported beside the baseline share. Other delivery calendars are replayed for the
chosen and the baseline share only, to see whether the direction holds.

    .venv/bin/python bench/holding_cost.py --series 5000 --daily-forecasts --out bench/results/holding-cost-5k.json

Forecasts come from ``replenishment.py``'s kept predictions (``<out>-predictions/``, run if missing).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import replenishment as bench
from _common import markdown_table, stopwatch
from _replay_inputs import fold_arrays
from accuracy import load_frame
from forecaster.io import write_json
from forecaster.order_defaults import DEFAULT_HOLDING_COST_SHARE, OrderDefaults

NAN = float("nan")
KEPT = ("total_cost", "fill_rate", "waste_units", "lost_margin", "delivered_units")  # per policy and fold
#: lead time per weekday (Monday first; NaN: no order that day)
CALENDARS = {"daily, lead 1": (1.0,) * 7, "Mon/Wed/Fri, lead 1": (1.0, NAN, 1.0, NAN, 1.0, NAN, NAN),
             "daily, lead 2": (2.0,) * 7}  # fmt: skip
COLUMNS = [("calendar", "calendar", ""), ("share", "share", ".2f"), ("fold", "fold", "")] + [
    (f"{p}_{k}", f"({p}) {title}", spec)
    for p in ("a", "b")
    for k, title, spec in (("total_cost", "total cost", ",.0f"), ("fill_rate", "fill", ".2%"))
]


def replay(arrays: dict[int, Any], share: float, calendar: str, base: OrderDefaults) -> list[dict[str, Any]]:
    """(a) and (b) on every fold for one share and calendar (the other entries: ``base``)."""
    defaults = replace(base, holding_cost_share=share)
    rows = []
    for fold, fold_arrays_ in arrays.items():
        result = bench.run_policies(fold_arrays_, defaults, week=CALENDARS[calendar])
        row: dict[str, Any] = {"calendar": calendar, "share": share, "fold": fold}
        row["demand"] = float(fold_arrays_["demand"].sum())  # the weight of the fold's fill rate in ``choose``
        for policy, name in (("a", "forecaster"), ("b", "mlforecast_normal")):
            row |= {f"{policy}_{k}": result[name][k] for k in KEPT}
        rows.append(row)
        print(f"{calendar}, share {share}, fold {fold}: (a) {row['a_total_cost']:,.0f}", file=sys.stderr, flush=True)
    return rows


def choose(rows: list[dict[str, Any]], folds: list[int]) -> float:
    """The share with (a)'s lowest cost over ``folds`` among those where (a) fills at least as much as (b)."""

    def pooled(share: float, key: str) -> float:
        return sum(r[key] for r in rows if r["share"] == share and r["fold"] in folds)

    def fill(share: float, policy: str) -> float:  # demand-weighted: sold / demand over the folds
        picked = [r for r in rows if r["share"] == share and r["fold"] in folds]
        return sum(r[f"{policy}_fill_rate"] * r["demand"] for r in picked) / sum(r["demand"] for r in picked)

    shares = list(dict.fromkeys(r["share"] for r in rows))
    allowed = [s for s in shares if fill(s, "a") >= fill(s, "b")] or shares  # none fills as much: cost alone
    return min(allowed, key=lambda share: pooled(share, "a_total_cost"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shares", type=float, nargs="+", default=[0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1.0])
    parser.add_argument("--baseline", type=float, default=0.1, help="the share the confirmation fold is compared to")
    parser.add_argument(
        "--calendars", nargs="+", choices=list(CALENDARS), default=list(CALENDARS),
        help="calendars replayed (the first chooses the share; the others replay the chosen and the baseline)",
    )  # fmt: skip
    parser.add_argument(
        "--set", nargs="+", default=[], metavar="ENTRY=VALUE",
        help="order defaults of every replay (the JSON file's entries, e.g. pack_rounding=cost)",
    )  # fmt: skip
    own, rest = parser.parse_known_args(argv)
    options = bench.parse_args(rest)
    base = OrderDefaults.from_dict(dict(entry.partition("=")[::2] for entry in own.set), source="--set")
    with stopwatch() as wall:
        frame = load_frame(options.data, options.series, options.seed)
        arrays = {fold: fold_arrays(frame, options, fold) for fold in range(1, options.folds + 1)}
        del frame
        shares = dict.fromkeys([own.baseline, *own.shares])  # the baseline is always replayed
        rows = [row for share in shares for row in replay(arrays, share, own.calendars[0], base)]
        choosing = [f for f in arrays if f <= 2]
        chosen = choose(rows, choosing)
        for calendar in own.calendars[1:]:
            for share in dict.fromkeys((own.baseline, chosen)):
                rows += replay(arrays, share, calendar, base)
    confirmation = [f for f in arrays if f not in choosing]
    by = {(r["calendar"], r["share"], r["fold"]): r for r in rows}
    ratios = {
        calendar: {fold: by[calendar, chosen, fold]["a_total_cost"] / by[calendar, own.baseline, fold]["a_total_cost"]
                   for fold in arrays}
        for calendar in own.calendars
    }  # fmt: skip
    results = {
        "benchmark": "holding_cost",
        "data": {"series": options.series, "seed": options.seed, "folds": options.folds,
                 "forecasts": "daily" if options.daily_forecasts else "the fold's origin"},
        "defaults": dataclasses.asdict(base), "default_share": DEFAULT_HOLDING_COST_SHARE,
        "chosen_share": chosen, "baseline_share": own.baseline,
        "choosing_folds": choosing, "confirmation_folds": confirmation,
        "a_cost_chosen_over_baseline": ratios, "rows": rows, "wall_s": wall["seconds"],
        "table_markdown": markdown_table(rows, COLUMNS),
    }  # fmt: skip
    write_json(results, options.out)
    print(results["table_markdown"])
    print(
        f"\nchosen on folds {choosing}: {chosen} (default {DEFAULT_HOLDING_COST_SHARE}); (a) cost x baseline "
        f"{own.baseline}: {ratios}; wrote {options.out}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
