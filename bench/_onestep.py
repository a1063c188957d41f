"""A dedicated one-step point booster for the accuracy benchmark (issue 21): trained on horizon-1 rows, recursive.

The rows are the product's own (:class:`forecaster.training_rows.PartitionData`,
:func:`forecaster.features.build_features`, stockout weights as the point booster's) with the horizon fixed to 1:
every (series, origin) whose next day is observed, no sampling. Like the direct model: an early-stopping fit on the
days up to the validation cut-off (``validation_days`` before the end), stopped on the horizon-1 rows of the
held-out days (no stockout weights), then one refit on every day for the rounds it chose. Tweedie objective and the
point booster's parameters (:func:`forecaster.model.booster_params`). Its prediction, fed back by
:func:`forecaster.recursive.recursive_points` (``predict``), is the booster's raw output clipped at 0: no P50
blend, no bias factor.

Bench only (``accuracy.py --one-step``): the product does not train nor serve it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from forecaster import training_rows as rows_
from forecaster.config import TrainConfig
from forecaster.contract import POINT_BOOSTER
from forecaster.model import ForecastModel, TrainingSet, booster_params
from forecaster.spec import DatasetSpec

ONE_STEP_COLUMN = "one_step"  # forecaster's kept predictions with --one-step: the one-step booster's recursive point


def _one_step_rows(
    data: rows_.PartitionData, first_day: int, last_day: int, config: TrainConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every (series, origin, 1) whose target day lies in [first_day, last_day], with enough history."""
    candidates = rows_.origins(last_day, config)
    candidates = candidates[candidates + 1 >= first_day]
    series, origin = (a.ravel() for a in np.meshgrid(np.arange(data.panel.n_series), candidates, indexing="ij"))
    keep = data.observed_counts[series, origin + 1] >= config.min_history_days
    return series[keep], origin[keep], np.ones(int(keep.sum()), dtype=np.int64)


def train_one_step(
    history: pd.DataFrame, spec: DatasetSpec, config: TrainConfig, model: ForecastModel
) -> tuple[Callable[[np.ndarray], np.ndarray], dict[str, Any]]:
    """The one-step booster's predict function (feature rows in ``model``'s schema order) and what it trained on."""
    if config.point_relative:
        raise SystemExit("--one-step trains on the target in units: run it without point_relative=true.")
    frame = spec.validate_frame(history, kind="history")
    summaries, totals = rows_.summarize_partitions([frame], spec, 1)
    chain = rows_.ChainSummary.combine(summaries, spec, config, totals)
    if chain.features.names != model.schema.feature_names:
        raise SystemExit("The one-step rows' features differ from the direct model's: not the same feature set.")
    data = rows_.PartitionData(frame, chain)
    del frame
    last = len(chain.dates) - 1
    cut = last - config.resolved_validation_days
    fit, _ = data.rows(*_one_step_rows(data, 0, cut, config), config)
    valid, _ = data.rows(*_one_step_rows(data, cut + 1, last, config), config.replace(stockout_handling="none"))
    params = booster_params(config, POINT_BOOSTER)
    dataset = dict(
        categorical_feature=model.schema.categorical_indices,
        feature_name=list(model.schema.feature_names),
        params={"max_bin": config.max_bin, "verbosity": -1, "num_threads": config.resolved_threads},
    )
    train_set = lgb.Dataset(fit.X, fit.y, weight=fit.weight, **dataset).construct()
    valid_set = lgb.Dataset(valid.X, valid.y, reference=train_set, **dataset).construct()
    stop = [lgb.early_stopping(config.early_stopping_rounds, verbose=False)] if config.early_stopping_rounds else []
    booster = lgb.train(params, train_set, config.num_boost_round, valid_sets=[valid_set], callbacks=stop)
    rounds = booster.best_iteration if stop and booster.best_iteration > 0 else config.num_boost_round
    fit_rows, valid_rows = len(fit), len(valid)
    del train_set, valid_set, fit, valid
    refit_rows = data.rows(*_one_step_rows(data, 0, last, config), config)[0] if config.refit else None
    if refit_rows is not None:
        refit_set = lgb.Dataset(refit_rows.X, refit_rows.y, weight=refit_rows.weight, **dataset)
        booster = lgb.train(params, refit_set, rounds)
    final = lgb.Booster(model_str=booster.model_to_string(num_iteration=rounds))

    def predict(X: np.ndarray) -> np.ndarray:
        return final.predict(np.asarray(X, dtype=np.float64)).clip(min=0.0)

    info = {
        "rows": {"early_stopping_fit": fit_rows, "validation": valid_rows, "final_fit": _len(refit_rows)},
        "rounds": rounds,
    }
    return predict, info


def _len(rows: TrainingSet | None) -> int | None:
    return None if rows is None else len(rows)
