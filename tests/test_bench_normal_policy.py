"""bench/_replay_inputs.py's policy (b): the cost balance on a normal period demand, pack rounding up or by cost."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from forecaster.order_defaults import OrderDefaults
from forecaster.replenishment import Day

BENCH = str(Path(__file__).resolve().parents[1] / "bench")
sys.path.insert(0, BENCH)  # only while importing: bench/docker.py would shadow the Docker SDK for later tests
try:
    from _replay_inputs import normal_policy
finally:  # accuracy.py, imported on the way, inserts the folder once more
    while BENCH in sys.path:
        sys.path.remove(BENCH)

ITEMS = SimpleNamespace(
    unit_price=np.array([1.0]), unit_cost=np.array([0.6]), pack_size=np.array([6.0]), min_display_units=np.array([0.0])
)
MEAN, SIGMA = np.full((1, 6), 10.0), np.array([3.0])


def day(stock: float) -> Day:
    shelf = np.zeros((1, 3))
    shelf[0, 2] = stock  # sells for 3 more days: counted in full
    return Day(0, np.array([0]), np.array([1]), np.array([3]), shelf, np.zeros(1), np.array([1]))


def monte_carlo_cost(units: float, defaults: OrderDefaults) -> float:
    """The balance's expected cost of stocking ``units``, from draws: an oracle apart from the closed form."""
    z = np.random.default_rng(0).standard_normal(400_000)
    one_day, life = 10 + 3 * z, 30 + 3 * np.sqrt(3) * z
    hold = defaults.holding_cost_share * 0.6
    return float(
        0.4 * np.maximum(one_day - units, 0).mean()
        + hold * np.maximum(units - one_day, 0).mean()
        + 0.6 * np.maximum(units - life, 0).mean()
    )


@pytest.mark.parametrize("stock", np.arange(0.0, 14.0, 0.5))
def test_cost_rounding_orders_the_cheaper_of_the_two_nearest_pack_counts(stock):
    up, by_cost = OrderDefaults(), OrderDefaults(pack_rounding="cost")
    rounded_up = normal_policy(MEAN, SIGMA, ITEMS, up)(day(stock))[0]
    chosen = normal_policy(MEAN, SIGMA, ITEMS, by_cost)(day(stock))[0]
    assert rounded_up % 6 == 0 and chosen % 6 == 0
    assert chosen in (rounded_up, max(rounded_up - 6, 0.0))
    other = rounded_up if chosen != rounded_up else max(rounded_up - 6, 0.0)
    assert monte_carlo_cost(stock + chosen, by_cost) <= monte_carlo_cost(stock + other, by_cost) + 1e-3


def test_cost_rounding_saves_a_pack_just_over_a_boundary():
    """Stock 4 leaves the target (about 11.8) 7.8 units short: one pack ends 1.8 short, two packs 4.2 over."""
    assert normal_policy(MEAN, SIGMA, ITEMS, OrderDefaults())(day(4.0))[0] == 12
    assert normal_policy(MEAN, SIGMA, ITEMS, OrderDefaults(pack_rounding="cost"))(day(4.0))[0] == 6
