"""The training phases' clock and progress bar (what takes the time, shown while it runs)."""

from __future__ import annotations

import time
from typing import Any

from tqdm.auto import tqdm

from forecaster.config import TrainConfig
from forecaster.contract import QUANTILES


class Laps:
    """Seconds spent per training phase (stored in the metadata: what takes the time)."""

    def __init__(self, started: float, first: str) -> None:
        self.seconds: dict[str, float] = {}
        self.last = started
        self(first)

    def __call__(self, phase: str) -> None:
        now = time.monotonic()
        self.seconds[phase] = round(now - self.last, 2)
        self.last = now


class Progress:
    """A progress bar over boosting rounds of all boosters (silent when stderr is not a terminal)."""

    def __init__(self, config: TrainConfig, label: str, rounds: dict[str, int] | None = None) -> None:
        budget = config.point_bags * config.num_boost_round + len(QUANTILES) * config.quantile_num_boost_round
        total = sum(rounds.values()) if rounds else budget
        self.bar = tqdm(total=total, desc=label, unit="round", disable=None, leave=False)
        self.done: dict[str, int] = {}

    def __call__(self, booster: str, iteration: int) -> None:
        self.bar.update(iteration - self.done.get(booster, 0))
        self.done[booster] = iteration

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.bar.close()
