"""Training configuration: hyperparameters as a typed, validated, read-only object.

Hyperparameter names are the CLI flags' names (``forecaster train --horizon 14 --hp num_leaves=63``). Values may
be Python objects, raw strings or JSON-encoded strings (as SageMaker delivers them): see :mod:`forecaster.params`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from forecaster.contract import DEFAULT_HORIZON, HORIZON_RANGE, MAX_POINT_BAGS
from forecaster.params import Boolean, Interval, Options, Text, validate_params

#: floor of the rows ``rows_per_series`` draws (tiny data sets keep enough rows for the boosters)
MIN_TRAIN_ROWS = 100_000

#: Constraints of every hyperparameter, as data.
HYPERPARAMETER_CONSTRAINTS: dict[str, list[Any]] = {
    "horizon": [Interval(int, *HORIZON_RANGE)],
    "spec": [Text(256)],
    "objective": [Options(("tweedie", "poisson", "regression"))],
    "tweedie_variance_power": [Interval(float, 1.0, 2.0, closed="neither")],
    "num_boost_round": [Interval(int, 1, 20000)],
    "quantile_num_boost_round": [Interval(int, 1, 20000)],
    "early_stopping_rounds": [Interval(int, 0, 10000)],
    "learning_rate": [Interval(float, 0.0, 1.0, closed="right")],
    "num_leaves": [Interval(int, 2, 131072)],
    "quantile_num_leaves": [Interval(int, 2, 131072)],
    "quantile_bagging_fraction": [Interval(float, 0.0, 1.0, closed="right")],
    "quantile_feature_fraction": [Interval(float, 0.0, 1.0, closed="right")],
    "min_data_in_leaf": [Interval(int, 1, 2**31 - 1)],  # LightGBM reads an int32: a larger one wrapped around
    "feature_fraction": [Interval(float, 0.0, 1.0, closed="right")],
    "lambda_l2": [Interval(float, 0.0, None)],
    "max_bin": [Interval(int, 2, 65535)],
    "max_train_rows": [Interval(int, 1000, None)],
    "rows_per_series": [Interval(int, 0, None)],
    "origin_stride": [Interval(int, 1, 366)],
    "min_history_days": [Interval(int, 1, 3660)],
    "validation_days": [Interval(int, 0, 366)],
    "refit": [Boolean()],
    "validation_sample": [Interval(float, 0.0, 1.0, closed="right")],
    "point_blend": [Interval(float, 0.0, 1.0)],
    "point_bias_correction": [Boolean()],
    "point_bias_weight": [Interval(float, 0.0, 1.0)],
    "quantile_calibration_weight": [Interval(float, 0.0, 1.0)],
    "level_features": [Boolean()],
    "point_relative": [Boolean()],
    "point_bags": [Interval(int, 1, MAX_POINT_BAGS)],
    "stockout_handling": [Options(("exclude", "weight", "recover", "none"))],
    "stockout_max_hours": [Interval(float, 0.0, 24.0)],
    "keys_as_features": [Boolean()],
    "seed": [Interval(int, 0, 2**31 - 1)],
    "num_threads": [Interval(int, 0, 1024)],
    "tree_learner": [Options(("data", "voting"))],
}


@dataclass(frozen=True)
class TrainConfig:
    """Every knob of a training run, with production defaults."""

    horizon: int = DEFAULT_HORIZON
    spec: str = "default"
    objective: str = "tweedie"
    tweedie_variance_power: float = 1.2
    num_boost_round: int = 500
    quantile_num_boost_round: int = 100
    early_stopping_rounds: int = 30
    learning_rate: float = 0.1
    num_leaves: int = 63
    quantile_num_leaves: int = 31
    quantile_bagging_fraction: float = 0.5
    quantile_feature_fraction: float = 0.8
    min_data_in_leaf: int = 100
    feature_fraction: float = 0.4
    lambda_l2: float = 1.0
    max_bin: int = 255
    max_train_rows: int = 2_000_000
    rows_per_series: int = 400
    origin_stride: int = 1
    min_history_days: int = 7
    validation_days: int = 0
    refit: bool = True
    validation_sample: float = 0.25
    point_blend: float = 0.25
    point_bias_correction: bool = True
    point_bias_weight: float = 0.0
    quantile_calibration_weight: float = 1.0
    level_features: bool = False
    point_relative: bool = False
    point_bags: int = 1
    stockout_handling: str = "weight"
    stockout_max_hours: float = 0.0
    keys_as_features: bool = True
    seed: int = 42
    num_threads: int = 0
    tree_learner: str = "data"  # LightGBM's parallel learner when the job has several hosts

    @classmethod
    def from_hyperparameters(cls, values: Mapping[str, Any], caller: str = "train") -> TrainConfig:
        """Validate ``values`` (raw or JSON-encoded strings allowed) and return the config.

        Keys starting with ``sagemaker_`` are the toolkit's own and are ignored.
        """
        ours = {k: v for k, v in values.items() if not k.startswith("sagemaker_")}
        return cls(**validate_params(ours, HYPERPARAMETER_CONSTRAINTS, caller))

    def replace(self, **changes: Any) -> TrainConfig:
        """Return a copy with ``changes`` validated and applied."""
        return TrainConfig.from_hyperparameters({**asdict(self), **changes})

    @property
    def resolved_threads(self) -> int:
        """Thread count LightGBM uses: ``num_threads``, or the CPU count when it is 0."""
        return self.num_threads or len(os.sched_getaffinity(0))

    def train_rows(self, n_series: int) -> int:
        """Feature rows to draw for ``n_series`` series.

        ``rows_per_series`` each (at least ``MIN_TRAIN_ROWS`` in all), never more than ``max_train_rows``;
        ``rows_per_series=0`` draws ``max_train_rows``. Small data trains in seconds: a shop's 250 series
        give ~1 M (origin, horizon) rows per year, mostly near-copies of each other (consecutive origins
        share their history features).
        """
        if not self.rows_per_series:
            return self.max_train_rows
        return min(self.max_train_rows, max(self.rows_per_series * n_series, MIN_TRAIN_ROWS))

    @property
    def resolved_validation_days(self) -> int:
        """Days held out for early stopping and validation metrics (``horizon`` when 0)."""
        return self.validation_days or self.horizon

    def to_dict(self) -> dict[str, Any]:
        """Return the hyperparameters as a JSON-ready dict."""
        return asdict(self)
