"""Whether a validated history can train a model, checked before any feature is built (the validate phase).

:func:`check_trainable` says what is too short and how to fix it; :func:`with_validation` joins a validation
channel to the training data it must follow day after day.
"""

from __future__ import annotations

import pandas as pd

from forecaster.config import TrainConfig
from forecaster.errors import DataValidationError
from forecaster.spec import DatasetSpec


def check_trainable(frame: pd.DataFrame, spec: DatasetSpec, config: TrainConfig, cut_date: pd.Timestamp) -> None:
    """Fail fast, before any feature is built, when a validated history cannot train a model.

    Training needs ``min_history_days`` observed days of at least one series before ``cut_date`` (the start of
    the validation window) and an observed target after it.

    Raises:
        DataValidationError: saying what is too short and how to fix it.
    """
    before = frame[frame[spec.date] <= cut_date]
    span = int((cut_date - frame[spec.date].min()).days) + 1 if not before.empty else 0
    observed = before[before[spec.target].notna()].groupby(list(spec.keys), sort=False, observed=True).size()
    if span <= config.min_history_days or observed.empty or observed.max() < config.min_history_days:
        raise DataValidationError(
            f"The training data covers {span} days before the {config.resolved_validation_days}-day validation "
            f"window (longest series: {int(observed.max()) if not observed.empty else 0} observed days); at least "
            f"{config.min_history_days + 1} are needed, {config.min_history_days} of them observed in one series "
            f"(min_history_days={config.min_history_days}). Provide a longer history or lower min_history_days / "
            "validation_days."
        )
    after = frame[(frame[spec.date] > cut_date) & frame[spec.target].notna()]
    if after.empty:
        raise DataValidationError(
            f"The validation window after {cut_date.date()} has no observed target values; check the data's dates."
        )


def with_validation(frame: pd.DataFrame, valid_frame: pd.DataFrame, spec: DatasetSpec) -> pd.DataFrame:
    """``frame`` followed by ``valid_frame`` (which must start after it), keys and statics still categorical."""
    if valid_frame[spec.date].min() <= frame[spec.date].max():
        raise DataValidationError(
            f"The validation data must start after the training data ends ({frame[spec.date].max().date()}); "
            f"it starts on {valid_frame[spec.date].min().date()}. Split by date, never at random."
        )
    gap = (valid_frame[spec.date].min() - frame[spec.date].max()).days - 1
    if gap and spec.missing_days == "zero":  # the days between would count as days without a sale
        raise DataValidationError(
            f"The validation data starts on {valid_frame[spec.date].min().date()}, {gap} days after the training "
            f"data ends ({frame[spec.date].max().date()}); with the spec's missing_days 'zero' those days would "
            "count as 0 sales. Give the days in between to one of the two channels, or set missing_days to "
            "'unobserved'."
        )
    for column in (*spec.keys, *spec.static):  # one category set, so the concatenation stays categorical
        categories = frame[column].cat.categories.union(valid_frame[column].cat.categories)
        frame[column] = frame[column].cat.set_categories(categories)
        valid_frame[column] = valid_frame[column].cat.set_categories(categories)
    return pd.concat([frame, valid_frame], ignore_index=True)
