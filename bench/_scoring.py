"""Scores of the accuracy benchmark: the project's table (14 days, all days) and the FreshRetailNet paper's protocol.

Every model is scored on its **point forecast** (the ``mean`` column: forecaster's documented point forecast;
the baselines' and mlforecast's point forecasts are put in the same column) and on its P10/P90 coverage.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

KEYS = ["store_id", "product_id"]
DATE = "dt"
TARGET = "sale_amount"
CAMPAIGN = "activity_flag"
STOCKOUT = "stockout_hours"
POINT = "mean"
LOW_SELLER = "low_seller"  # mean daily sales < 1 over the fold's history
PAPER_DAYS = 7


def seller_classes(history: pd.DataFrame) -> pd.DataFrame:
    """One row per series: keys and ``low_seller`` (mean daily sales over ``history`` below 1)."""
    level = history.groupby(KEYS, observed=True, sort=False)[TARGET].mean()
    return (level < 1.0).rename(LOW_SELLER).reset_index()


def merge(actuals: pd.DataFrame, predictions: pd.DataFrame) -> pd.DataFrame:
    """Actuals joined one-to-one with a model's predictions; raises when a (series, day) has no point forecast."""
    merged = actuals.merge(predictions, on=[*KEYS, DATE], how="left", validate="one_to_one")
    missing = int(merged[POINT].isna().sum())
    if missing:
        raise ValueError(f"{missing} of {len(merged)} (series, day) pairs have no point forecast ({POINT!r}).")
    return merged


def score(merged: pd.DataFrame) -> dict[str, float]:
    """WAPE of the point forecast overall and by slice, its bias, P10/P90 coverage and pinball losses."""
    from forecaster.metrics import bias, coverage, pinball, wape

    y = merged[TARGET].to_numpy(dtype=float)
    point = merged[POINT].to_numpy(dtype=float)
    slices = {
        "campaign": merged[CAMPAIGN].to_numpy() == 1,
        "non_campaign": merged[CAMPAIGN].to_numpy() != 1,
        "no_stockout": merged[STOCKOUT].to_numpy() == 0,
        "low_seller": merged[LOW_SELLER].to_numpy(dtype=bool),
        "high_seller": ~merged[LOW_SELLER].to_numpy(dtype=bool),
    }
    result = {"wape": wape(y, point), "bias": bias(y, point)}
    result.update({f"wape_{name}": wape(y[rows], point[rows]) for name, rows in slices.items()})
    if "p50" in merged:
        result["wape_p50"] = wape(y, merged["p50"])
    if "p10" in merged and merged["p10"].notna().all():
        for column, level in (("p10", 0.1), ("p50", 0.5), ("p90", 0.9)):
            result[f"pinball_{column}"] = pinball(y, merged[column], level)
        result["coverage_p10"] = coverage(y, merged["p10"])
        result["coverage_p90"] = coverage(y, merged["p90"])
    return result


def paper_scores(merged: pd.DataFrame) -> dict[str, float]:
    """The FreshRetailNet paper's protocol: first 7 days, in-stock days only, per-day WAPE/WPE/MAE averaged.

    Split by sellers: ``low`` (mean daily sales < 1 before the origin), ``high`` (the rest) and ``all``.
    """
    days = np.sort(merged[DATE].unique())[:PAPER_DAYS]
    scored = merged[merged[DATE].isin(days) & (merged[STOCKOUT] == 0)]
    result: dict[str, float] = {}
    for group, rows in (
        ("all", scored),
        ("low", scored[scored[LOW_SELLER]]),
        ("high", scored[~scored[LOW_SELLER]]),
    ):
        error = rows[POINT].to_numpy(dtype=float) - rows[TARGET].to_numpy(dtype=float)
        frame = pd.DataFrame({"day": rows[DATE].to_numpy(), "error": error, "y": rows[TARGET].to_numpy(dtype=float)})
        frame["abs"] = frame["error"].abs()
        per_day = frame.groupby("day").agg(abs=("abs", "sum"), error=("error", "sum"), y=("y", "sum"), n=("y", "size"))
        result[f"paper_wape_{group}"] = float((per_day["abs"] / per_day["y"]).mean())
        result[f"paper_wpe_{group}"] = float((per_day["error"] / per_day["y"]).mean())
        result[f"paper_mae_{group}"] = float((per_day["abs"] / per_day["n"]).mean())
    return result


def fold_means(rows: list[dict[str, Any]], keys: list[str]) -> list[dict[str, Any]]:
    """One row per model: the mean over folds of every numeric key (the rows carry ``name``, ``label``, ``fold``)."""
    by_name: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_name.setdefault(row["name"], []).append(row)
    means = []
    for name, group in by_name.items():
        mean = {"name": name, "label": group[0]["label"], "folds": len(group)}
        for key in keys:
            values = [row[key] for row in group if isinstance(row.get(key), int | float)]
            mean[key] = float(np.mean(values)) if values else None
        means.append(mean)
    return means


def best_point(row: dict[str, Any]) -> tuple[str, float]:
    """The better point output of a model's fold row: its ``mean`` column or its P50, whichever has the lower WAPE."""
    if isinstance(row.get("wape_p50"), float) and row["wape_p50"] < row["wape"]:
        return "p50", row["wape_p50"]
    return POINT, row["wape"]


def ratios(
    rows: list[dict[str, Any]], keys: tuple[str, ...], peer: str = "mlforecast", confirmation: int | None = None
) -> dict[str, Any]:
    """Per fold ratios of every forecaster row to the peer's row of the same fold; their mean without ``confirmation``.

    ``wape_vs_best`` is the point WAPE over the peer's better point output of that fold (:func:`best_point`); the
    ratios of the confirmation fold are kept apart under ``confirmation`` (``mean`` is over the other folds).
    """
    peers = {row["fold"]: row for row in rows if row["name"] == peer}
    out: dict[str, Any] = {}
    for row in rows:
        if not row["name"].startswith("forecaster") or row["fold"] not in peers:
            continue
        entry = out.setdefault(row["name"], {"per_fold": {}, "mean": {}})
        other = peers[row["fold"]]
        fold = {k: row[k] / other[k] for k in keys if other.get(k)}
        fold["wape_vs_best"] = row["wape"] / best_point(other)[1]
        fold["peer_best_point"] = best_point(other)[0]
        entry["per_fold"][row["fold"]] = fold
    for entry in out.values():
        folds = [f for fold, f in entry["per_fold"].items() if fold != confirmation]
        if confirmation in entry["per_fold"]:
            entry["confirmation"] = {"fold": confirmation, **entry["per_fold"][confirmation]}
        numeric = (*keys, "wape_vs_best")
        entry["mean"] = {
            k: float(np.mean([f[k] for f in folds if k in f])) for k in numeric if any(k in f for f in folds)
        }
    return out
