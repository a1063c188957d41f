"""The ordering policy: forecasts + stock + deliveries + shelf life + cost → the order of each store x item.

For a series that orders on day D (ordered at the close of D, on the shelf on D + L) and next orders on D + r
(on the shelf on D + r + L'), the order must carry the shelf until the next delivery: it covers the demand of
days D + 1 … D + r + L' - 1 (``days_covered``; with L = 1 that is the protection period from this arrival to the
next). Their demand is the sum of the daily demands, each distributed as the forecast says (a two-piece normal
through P10, P50 and P90, cut at 0), the days tied by a Gaussian copula with one correlation (``correlation`` of
:class:`~forecaster.order_defaults.OrderDefaults`, chosen on backtests by ``bench/replenishment.py``); its
quantiles come from Monte Carlo draws. The target (order-up-to level) S balances the two costs of one more unit:

    margin x P(demand until the next delivery > S)
        = holding cost x P(demand until the next delivery < S) + waste cost x P(demand over its shelf life < S)

(with a shelf life no longer than the days covered, the classic critical fractile margin / (margin + cost +
holding cost)); a longer shelf life lets leftovers sell later, so the target rises, up to margin / (margin +
holding cost). The holding cost (``holding_cost_share`` of the waste cost per period carried over) stands mostly
for freshness: a unit carried over displaces a fresher one of the next order. The order is S minus the
usable stock (on-hand units that sell before they expire, first in first out, at the forecast's expected demand)
minus open orders arriving in the days covered, in whole packs (rounded up, or to the cheaper of the two nearest
pack counts: ``pack_rounding``), floored at 0. :mod:`forecaster.orders` turns it into order lines.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import ndtri

from forecaster.contract import DEFAULT_SERVICE_LEVEL, QUANTILE_COLUMNS, QUANTILES, SERVICE_LEVELS
from forecaster.errors import InvalidParameterError
from forecaster.order_defaults import DEFAULT_LOG_SHIFT, OrderDefaults
from forecaster.params import coerce

#: normal score of the outer quantile levels (P10 and P90 sit at -/+ Z_OUTER)
Z_OUTER = float(ndtri(QUANTILES[-1]))
_CHUNK = 2048  # series per block of Monte Carlo draws (memory: chunk x draws x days x 4 bytes)


# ------------------------------------------------------------------------------------------------- the model
def copula_normals(draws: int, days: int, correlation: float, seed: int = 0) -> np.ndarray:
    """(draws, days) standard normals with correlation ``correlation`` between days (one common factor).

    Every series shares these draws, so they are balanced rather than random: the common factor and each day's
    own noise are stratified (one draw per 1/half of probability, Latin hypercube) and every draw comes with its
    mirror image, so the quantiles of a sum carry no shared Monte Carlo bias.
    """
    rng = np.random.default_rng(seed)
    half = max(draws // 2, 1)
    strata = ndtri((np.arange(half) + 0.5) / half)
    common = rng.permutation(strata)
    own = np.stack([rng.permutation(strata) for _ in range(days)], axis=1)
    z = np.sqrt(correlation) * common[:, None] + np.sqrt(1.0 - correlation) * own
    return np.concatenate([z, -z])


def daily_quantile(
    p10: np.ndarray,
    p50: np.ndarray,
    p90: np.ndarray,
    z: np.ndarray,
    shape: str = "log",
    log_shift: float = DEFAULT_LOG_SHIFT,
) -> np.ndarray:
    """Demand at normal score ``z`` of a day with those quantiles, cut at 0.

    ``shape="normal"``: a two-piece normal (linear in z between and beyond the quantiles); ``"log"``: the same in
    log space, ``log(demand + shift)`` two-piece linear in z with ``shift = log_shift x (P50 + (P90 - P10) / 3)``,
    so the upper tail stretches the way sales jump (multiplicatively). Both pass through P10, P50 and P90. Arrays
    broadcast: ``p*`` (n, 1, days) against ``z`` (draws, days) gives (n, draws, days).
    """
    low, high = np.minimum(p10, p50), np.maximum(p90, p50)
    if shape == "normal":
        scale = np.where(z > 0, (high - p50) / Z_OUTER, (p50 - low) / Z_OUTER)
        return np.maximum(p50 + scale * z, 0.0)
    shift = log_shift * (p50 + (high - low) / 3) + 1e-9
    middle = np.log(p50 + shift)
    slope = np.where(z > 0, np.log(high + shift) - middle, middle - np.log(low + shift)) / Z_OUTER
    return np.maximum(np.exp(middle + slope * z) - shift, 0.0)


def period_draws(quantiles: np.ndarray, z: np.ndarray, defaults: OrderDefaults) -> np.ndarray:
    """Cumulative demand draws: ``quantiles`` (n, 3, days) of P10/P50/P90 → (n, draws, days) running sums."""
    p10, p50, p90 = (quantiles[:, i, None, :] for i in range(3))
    days = daily_quantile(p10, p50, p90, z[None, :, :], defaults.day_shape, defaults.log_shift)
    return np.cumsum(days, axis=2, dtype=np.float32)


def order_up_to(
    quantiles: np.ndarray,
    days_covered: np.ndarray,
    life_days: np.ndarray,
    margin: np.ndarray,
    waste_cost: np.ndarray,
    defaults: OrderDefaults,
    service_level: float | None = None,
    *,
    position: np.ndarray,
    pack_size: np.ndarray,
    min_units: np.ndarray,
    before: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(target S, service level P(demand of the days covered <= S), order units) per series.

    ``quantiles``: (n, 3, days) P10/P50/P90 of days 1, 2, … after the order day (at least
    max(days_covered, life_days) days); ``life_days``: the last day after the order day a delivered unit sells.
    ``service_level`` given: S is that quantile of the demand of the days covered (costs and shelf life unused).
    The order is S minus ``position`` (usable stock and open orders) in whole packs of ``pack_size``, S never
    below ``min_units``: rounded up, or with ``defaults.pack_rounding == "cost"`` (and no ``service_level``) to
    whichever of the two nearest pack counts has the lower expected cost (:func:`_expected_cost`).
    ``before``: the days covered before the delivery arrives (lead time - 1). Their demand is met by ``position``
    only: what it cannot meet is lost (no back orders), so each demand path is lowered by that shortfall before
    S is chosen; the order never buys the days its delivery comes too late for.
    """
    n = len(quantiles)
    width = int(max(days_covered.max(initial=1), life_days.max(initial=1)))
    z = copula_normals(defaults.draws, width, defaults.correlation)
    target, level, order = np.zeros(n), np.zeros(n), np.zeros(n)
    for start in range(0, n, _CHUNK):
        rows = slice(start, min(start + _CHUNK, n))
        cum = period_draws(quantiles[rows, :, :width], z, defaults)
        period = _draws_at(cum, np.minimum(days_covered[rows], width) - 1)
        draws = (
            _draws_at(cum, np.minimum(days_covered[rows], life_days[rows]) - 1),
            period,
            _draws_at(cum, life_days[rows] - 1),
        )  # demand until the next delivery (or expiry), period, life
        if before is not None and (before[rows] > 0).any():
            early = before[rows]
            pre = np.where(early[:, None] > 0, _draws_at(cum, np.maximum(early, 1) - 1), 0.0)
            lost = np.maximum(pre - position[rows, None], 0.0)  # the shelf runs empty before the delivery
            draws = tuple(d - lost for d in draws)
            period = draws[1]
        costs = margin[rows], defaults.holding_cost_share * waste_cost[rows], waste_cost[rows]
        if service_level is None:
            s = np.maximum(_balance(*draws, *costs), min_units[rows])
        else:
            s = np.maximum(np.quantile(period, service_level, axis=1), min_units[rows])
        target[rows] = s
        level[rows] = (period <= s[:, None] + 1e-9).mean(axis=1)
        order[rows] = round_to_packs(s - position[rows], pack_size[rows])
        if service_level is None and defaults.pack_rounding == "cost":
            one_less = np.maximum(order[rows] - pack_size[rows], 0.0)
            low, high = position[rows] + one_less, position[rows] + order[rows]
            cheaper = (low >= min_units[rows] - 1e-9) & (
                _expected_cost(low, *draws, *costs) < _expected_cost(high, *draws, *costs)
            )
            order[rows] = np.where(cheaper, one_less, order[rows])
    return target, level, order


def _draws_at(cum: np.ndarray, day_index: np.ndarray) -> np.ndarray:
    """(n, draws) of the running demand sums ``cum`` (n, draws, days) at each row's day index."""
    return np.take_along_axis(cum, day_index[:, None, None], axis=2)[:, :, 0]


def _expected_cost(
    units: np.ndarray,
    gain: np.ndarray,
    period: np.ndarray,
    life: np.ndarray,
    margin: np.ndarray,
    hold: np.ndarray,
    waste: np.ndarray,
) -> np.ndarray:
    """Expected cost of stocking ``units``: the cost balance's three terms, integrated (its slope is the balance).

    margin x E(demand before the next delivery - units)+ + hold x E(units - demand of the days covered)+
    + waste x E(units - demand over the shelf life)+, over the draws.
    """
    units = units[:, None]
    return (
        margin * np.maximum(gain - units, 0.0).mean(axis=1)
        + hold * np.maximum(units - period, 0.0).mean(axis=1)
        + waste * np.maximum(units - life, 0.0).mean(axis=1)
    )


def _balance(
    gain: np.ndarray, period: np.ndarray, life: np.ndarray, margin: np.ndarray, hold: np.ndarray, waste: np.ndarray
) -> np.ndarray:
    """The smallest S among ``gain``'s draws with margin x P(gain > S) <= hold x P(period < S) + waste x P(life < S).

    Exact on the draws' empirical distributions: one sort per array, the counts by one search over all rows.
    """
    n, draws = gain.shape
    candidates = np.sort(gain, axis=1).astype(float)
    above = 1.0 - np.arange(1, draws + 1) / draws  # P(gain > the j-th smallest draw)
    over = hold[:, None] * _share_below(period, candidates) + waste[:, None] * _share_below(life, candidates)
    stop = margin[:, None] * above[None, :] <= over
    first = np.where(stop.any(axis=1), stop.argmax(axis=1), draws - 1)
    return candidates[np.arange(n), first]


def _share_below(draws: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Per row, the share of ``draws`` strictly below each of ``points`` (rows searched at once, offset apart)."""
    n, count = draws.shape
    span = float(max(draws.max(initial=0.0), points.max(initial=0.0))) + 1.0
    offset = (np.arange(n) * span)[:, None]
    flat = np.sort(draws.astype(float), axis=1) + offset
    found = np.searchsorted(flat.ravel(), (points + offset).ravel(), side="left").reshape(points.shape)
    return (found - np.arange(n)[:, None] * count) / count


def usable_stock(
    buckets: np.ndarray, n: int, mean: np.ndarray, days_covered: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(units counted, units not counted) per series of stock rows ``(series, units, days_left)``.

    First in, first out: the oldest units sell first, at the forecast's expected daily demand ``mean`` (n, days);
    units with ``d`` days left count as far as the expected demand of days 1 … d is left for them once the older
    units are sold. Units still sellable after the days covered count in full.
    """
    counted, total = np.zeros(n), np.zeros(n)
    if len(buckets) == 0:
        return counted, total
    rows = buckets[np.lexsort((buckets[:, 2], buckets[:, 0]))]
    series, units, left = rows[:, 0].astype(np.int64), rows[:, 1], rows[:, 2]
    np.add.at(total, series, units)
    cum = np.concatenate([np.zeros((n, 1)), np.cumsum(mean, axis=1)], axis=1)
    rank = pd.Series(series).groupby(series).cumcount().to_numpy()
    for r in range(int(rank.max()) + 1):
        at = np.flatnonzero(rank == r)
        s = series[at]
        full = left[at] >= days_covered[s]
        reach = cum[s, np.minimum(np.where(np.isfinite(left[at]), left[at], 0), cum.shape[1] - 1).astype(np.int64)]
        counted[s] += np.where(full, units[at], np.clip(reach - counted[s], 0.0, units[at]))
    return counted, total - counted


def round_to_packs(units: np.ndarray, pack_size: np.ndarray) -> np.ndarray:
    """Up to whole packs, floored at 0; a ratio a hair above a whole number (float noise) is that number.

    The tolerance is relative: an absolute one (rounding to 9 decimals) turned 5 units in a pack of 1e12 into 0.
    """
    with np.errstate(over="ignore"):  # a pack of 1e-320 units: an infinite order, refused by the caller
        packs = np.ceil((units / pack_size) * (1.0 - 1e-9))
        return np.where(units > 1e-9, packs, 0.0) * pack_size  # a remainder of 1e-13 units is no order


def order_proposals(
    forecasts: pd.DataFrame, service_level: float = DEFAULT_SERVICE_LEVEL, pack_size: float = 1.0
) -> pd.DataFrame:
    """Proposed order per series and day: the demand quantile at ``service_level``, rounded up to whole packs.

    The point forecast (``mean``) is kept next to the order. Between P10 and P90 the quantile is interpolated
    linearly; beyond them (``service_level`` in (0, 1)) it follows the order policy's day shape
    (:func:`forecaster.order_policy.daily_quantile`, which passes through P10, P50 and P90). 0.8 covers demand on
    about four days out of five.
    """
    coerce("service_level", service_level, [SERVICE_LEVELS], "postprocess")
    if not (np.isfinite(pack_size) and pack_size > 0):
        raise InvalidParameterError(
            f"The 'pack_size' parameter of postprocess must be a finite number > 0. Got {pack_size!r} instead."
        )
    levels = np.array(QUANTILES)
    values = forecasts[list(QUANTILE_COLUMNS)].to_numpy(dtype=float)
    upper = int(np.clip(np.searchsorted(levels, service_level), 1, len(levels) - 1))
    weight = (service_level - levels[upper - 1]) / (levels[upper] - levels[upper - 1])
    demand = values[:, upper - 1] + weight * (values[:, upper] - values[:, upper - 1])
    if not levels[0] <= service_level <= levels[-1]:  # beyond the outer quantiles: the day shape's tails
        demand = daily_quantile(values[:, 0], values[:, 1], values[:, 2], np.asarray(ndtri(service_level)))
    out = forecasts.drop(columns=list(QUANTILE_COLUMNS))
    out["order_units"] = np.ceil(np.round(demand / pack_size, 9)) * pack_size
    out["service_level"] = service_level
    return out
