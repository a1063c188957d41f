"""Level levers on the kept predictions of ``accuracy.py``: the held-out factors shrunk toward 1, fit nothing.

forecaster's point forecast is multiplied by ``point_scale`` (Σ actuals ÷ Σ forecasts on the held-out window, the
last days before the origin) and its quantiles by the calibration factors of that window. Both are fitted on days
before the fold's origin and applied to the days after it. ``point_bias_weight`` / ``quantile_calibration_weight``
(``TrainConfig``) store ``factor ** weight`` instead. This script rescales the kept predictions of a run with
weight 1 (the factors are in the run's JSON: ``models[].model``) to each weight of ``--weights``, scores every fold,
**chooses** the weight on the choosing folds (not the confirmation fold, see ``accuracy.py``) and then reports
the confirmation fold for the chosen weight beside weight 1.

    .venv/bin/python bench/levers.py --results bench/results/accuracy.json --weights 0 0.25 0.5 0.75 1

Offline, so approximate for the quantiles: the P50 inside the point blend keeps its factor, and the rows' sort of
P10 ≤ P50 ≤ P90 is not redone (the point lever is exact: the point forecast is a product with ``point_scale``).
``recursive_blend`` (issue 21) blends the point forecast with the recursive point that forecaster's child of
``accuracy.py`` keeps per row (the ``recursive`` column, :mod:`forecaster.recursive`): ``(1 − w) × mean +
w × recursive``, exact offline (the recursion reuses the trained model). ``one_step_blend`` does the same with the
``one_step`` column of an ``accuracy.py --one-step`` run: a separately trained one-step booster's recursive point
(``bench/_onestep.py``); ``one_step_level_blend`` first scales that point so that its total over the fold's rows
equals the point forecast's (forecasts only, no actuals: a chain-wide level match, not a per-row one).

Choice rules: the point weight with the lowest mean WAPE ratio to mlforecast's better point output on the choosing
folds (to its own WAPE where a fold has no mlforecast predictions); the recursive weight with the lowest mean WAPE
ratio to weight 0 (the direct point alone) of the same fold; the quantile weight with the lowest mean
|P10 coverage − 10 %| + |P90 coverage − 90 %| there. mlforecast's predictions come from the results JSON's run, or,
for a forecaster-only run, from ``--peer-predictions DIR`` (its ``mlforecast-fold<K>.parquet``, same series sample).

    .venv/bin/python bench/accuracy.py --folds 3 --series 4000 --param max_train_rows=160000 --models forecaster \
        --recursive --out /tmp/rec/acc.json
    .venv/bin/python bench/levers.py --results /tmp/rec/acc.json --levers recursive_blend \
        --peer-predictions /tmp/acc-runs/base-predictions
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

from _common import markdown_table
from _models import ONE_STEP_COLUMN, RECURSIVE_COLUMN
from _scoring import best_point, merge, score
from accuracy import PEER, confirmation_fold, load_frame, split

NAME = "forecaster"
LEVERS = (
    "point_bias_weight",
    "quantile_calibration_weight",
    "recursive_blend",
    "one_step_blend",
    "one_step_level_blend",
)
#: the blend levers: the kept column each one blends into the point forecast, and the accuracy.py flag that keeps it
BLENDS = {
    "recursive_blend": (RECURSIVE_COLUMN, "--recursive"),
    "one_step_blend": (ONE_STEP_COLUMN, "--one-step"),
    "one_step_level_blend": (ONE_STEP_COLUMN, "--one-step"),
}
#: what each lever is chosen on (the mean over the choosing folds, lowest wins)
LOSSES = {
    "point_bias_weight": "vs_peer_best",
    "quantile_calibration_weight": "coverage",
    **dict.fromkeys(BLENDS, "vs_off"),
}
COLUMNS = [
    ("lever", "lever", ""),
    ("fold_label", "fold", ""),
    ("vs_peer_best", "WAPE × peer best", ".3f"),
    ("vs_off", "WAPE × weight 0", ".4f"),
    ("wape", "WAPE", ".2%"),
    ("bias", "bias", "+.1%"),
    ("coverage_p10", "≤ P10", ".1%"),
    ("coverage_p90", "≤ P90", ".1%"),
    ("factor", "factor(s) applied", ""),
]


def rescaled(predictions: pd.DataFrame, model: dict[str, Any], lever: str, weight: float) -> tuple[pd.DataFrame, str]:
    """The predictions as if trained with ``lever``'s weight ``weight`` instead of 1; the factors now applied."""
    out = predictions.copy()
    if lever in BLENDS:
        other = out[BLENDS[lever][0]]
        level = out["mean"].sum() / other.sum() if lever == "one_step_level_blend" and other.sum() > 0 else 1.0
        out["mean"] = (1.0 - weight) * out["mean"] + weight * level * other
        return out, f"w={weight:g}" + (f", level {level:.3f}" if level != 1.0 else "")
    if lever == "point_bias_weight":
        scale = float(model["point_scale"])
        out["mean"] = out["mean"] * scale ** (weight - 1.0)
        return out, f"{scale**weight:.3f}"
    factors = [float(f) for f in model["quantile_calibration"]]
    for column, factor in zip(("p10", "p50", "p90"), factors, strict=True):
        out[column] = out[column] * factor ** (weight - 1.0)
    return out, " / ".join(f"{f**weight:.3f}" for f in factors)


def coverage_error(row: dict[str, Any]) -> float:
    """|P10 coverage − 10 %| + |P90 coverage − 90 %|."""
    return abs(row["coverage_p10"] - 0.1) + abs(row["coverage_p90"] - 0.9)


def evaluate(
    results: dict[str, Any],
    workdir: Path,
    weights: list[float],
    levers: tuple[str, ...] | None = None,
    peer_predictions: Path | None = None,
) -> dict[str, Any]:
    """Every lever × weight × fold scored; the weights chosen on the choosing folds; the confirmation fold apart.

    ``levers``: default every lever the kept predictions allow (a blend lever needs its column: :data:`BLENDS`).
    """
    data = results["data"]
    frame = load_frame(Path(data["path"]), data["series_sample"], data["seed"])
    rows = {(row["name"], row["fold"]): row for row in results["models"]}
    folds = sorted(fold for name, fold in rows if name == NAME)
    columns = [set(pd.read_parquet(workdir / f"{NAME}-fold{fold}.parquet").columns) for fold in folds]
    missing = {lever for lever, (column, _) in BLENDS.items() if not all(column in kept for kept in columns)}
    if levers is None:
        levers = tuple(lever for lever in LEVERS if lever not in missing)
    for lever in sorted(missing & set(levers)):
        column, flag = BLENDS[lever]
        raise SystemExit(
            f"{workdir} holds no {column!r} column in forecaster's predictions: rerun accuracy.py with {flag} to "
            f"score the {lever} lever."
        )
    confirm = data.get("confirmation_fold", confirmation_fold(data["folds"]))  # results written before it was kept
    scored: list[dict[str, Any]] = []
    for fold in folds:
        actuals = split(frame, data["test_days"], fold)[2]
        predictions = pd.read_parquet(workdir / f"{NAME}-fold{fold}.parquet")
        peer = _peer_best(rows.get((PEER, fold)), actuals, peer_predictions, fold)
        for lever in levers:
            off = None
            for weight in sorted(weights):
                changed, factor = rescaled(predictions, rows[(NAME, fold)]["model"], lever, weight)
                row = {"lever": f"{lever}={weight:g}", "name": lever, "weight": weight, "fold": fold}
                row.update(score(merge(actuals, changed)), factor=factor, confirmation=fold == confirm)
                row["fold_label"] = f"{fold} (confirmation)" if fold == confirm else str(fold)
                row["vs_peer_best"] = row["wape"] / peer if peer else None
                off = off if off is not None else (row["wape"] if weight == 0 else None)
                row["vs_off"] = row["wape"] / off if off else None
                scored.append(row)
    chosen = {}
    for lever in levers:
        loss = LOSSES[lever]
        means = {
            weight: float(np.mean([_loss(r, loss) for r in scored if r["name"] == lever and r["weight"] == weight
                                   and not r["confirmation"]]))
            for weight in weights
        }  # fmt: skip
        off_weight = 0.0 if lever in BLENDS else 1.0  # ties: the weight that changes nothing
        best = min(means, key=lambda w: (round(means[w], 6), abs(w - off_weight)))
        chosen[lever] = {"weight": best, "choosing_folds_loss": means, "loss": loss}
    return {"rows": scored, "chosen": chosen, "confirmation_fold": confirm}


def _peer_best(row: dict[str, Any] | None, actuals: pd.DataFrame, directory: Path | None, fold: int) -> float | None:
    """mlforecast's better point WAPE of ``fold``: from its results row, else from its kept predictions, else None."""
    if row is not None:
        return best_point(row)[1]
    path = directory / f"{PEER}-fold{fold}.parquet" if directory else None
    if path is None or not path.exists():
        return None
    return best_point(score(merge(actuals, pd.read_parquet(path))))[1]


def _loss(row: dict[str, Any], loss: str) -> float:
    if loss == "coverage":
        return coverage_error(row)
    return row["wape"] if row[loss] is None else row[loss]  # no peer on that fold: the WAPE itself


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, required=True, help="an accuracy.py results JSON (weights 1)")
    parser.add_argument("--weights", type=float, nargs="+", default=[0.0, 0.25, 0.5, 0.75, 1.0])
    parser.add_argument("--levers", nargs="+", choices=LEVERS, help="which levers to score (default: all it can)")
    parser.add_argument("--peer-predictions", type=Path, help="mlforecast-fold<K>.parquet of a forecaster-only run")
    parser.add_argument("--out", type=Path, help="results JSON (default: <results>-levers.json)")
    options = parser.parse_args(argv)
    results = json.loads(options.results.read_text())
    workdir = options.results.parent / f"{options.results.stem}-predictions"
    levers = tuple(options.levers) if options.levers else None
    evaluation = evaluate(results, workdir, options.weights, levers, options.peer_predictions)
    table = markdown_table(sorted(evaluation["rows"], key=lambda r: (r["name"], r["weight"], r["fold"])), COLUMNS)
    print(table)
    for lever, choice in evaluation["chosen"].items():
        print(f"\n{lever}: chosen {choice['weight']:g} on the choosing folds ({choice['loss']}: "
              + ", ".join(f"{w:g} {v:.4f}" for w, v in choice["choosing_folds_loss"].items()) + ")")  # fmt: skip
        for row in evaluation["rows"]:  # the confirmation fold, for the chosen weight only
            if row["name"] == lever and row["weight"] == choice["weight"] and row["confirmation"]:
                print(f"  confirmation fold {row['fold']}: WAPE {row['wape']:.4f}, bias {row['bias']:+.2%}, "
                      f"x{row['vs_off'] or float('nan'):.4f} of weight 0, x{row['vs_peer_best'] or float('nan'):.3f} "
                      "of mlforecast's better point")  # fmt: skip
    out = options.out or options.results.with_name(f"{options.results.stem}-levers.json")
    from forecaster.io import write_json

    write_json({"benchmark": "levers", "source": str(options.results), **evaluation, "table_markdown": table}, out)
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
