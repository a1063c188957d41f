"""Training rows of a history that is one table or many partitions, built partition by partition.

Two passes over the partitions (each in worker processes, :func:`~forecaster.partitions.map_partitions`):

1. :func:`summarize` (cheap): per partition its series (keys + statics), first/last day, target sum and count,
   group totals and a content hash. Combined into a :class:`ChainSummary`: the chain's days, vocabularies, item and
   store totals, and how many rows to sample.
2. :func:`partition_rows`: the partition's panel over the chain's days, its sampled training rows (target day <=
   the validation cut-off), its validation rows (every series at the cut-off) and its refit rows (all days).

Row sampling is a hash of (series keys, origin date, horizon, seed) against the chain-wide sampling rate, and the
gathered rows are put in the chain's series order, so the rows, and so the model, do not depend on how the
history is partitioned nor on the worker count. Memory: one partition's panel per worker plus the sampled rows.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from forecaster.artifact import frame_hash
from forecaster.config import TrainConfig
from forecaster.errors import DataValidationError
from forecaster.features import FeatureSet, build_features, feature_set
from forecaster.model import TrainingSet
from forecaster.panel import Panel, build_panel
from forecaster.partitions import Partition, iter_partitions
from forecaster.partitions import shared_series as partition_shared_series
from forecaster.spec import DatasetSpec
from forecaster.totals import GroupTotals

#: A partition on disk, or an in-memory table (one partition).
Source = Partition | pd.DataFrame
_CANDIDATES_PER_CHUNK = 4_000_000  # (series, origin, horizon) candidates hashed at a time (~0.3 GB of temporaries)
#: the early-stopping fit of a refit run draws at least this many rows (or all there are)
MIN_SAMPLE_ROWS = 100_000


def load(source: Source, spec: DatasetSpec, *, again: bool = False) -> pd.DataFrame:
    """The validated history rows of ``source`` (an in-memory table is validated already).

    ``again``: the second read of a pass that read it before, whose warnings (returns clipped, ...) were logged then.
    """
    if not isinstance(source, Partition):
        return source
    if not again:
        return source.validated(spec)
    spec_logger = logging.getLogger(DatasetSpec.__module__)
    level = spec_logger.level
    spec_logger.setLevel(logging.ERROR)
    try:
        return source.validated(spec)
    finally:
        spec_logger.setLevel(level)


@dataclass(frozen=True)
class PartitionSummary:
    """What the first pass learns about one partition."""

    series: pd.DataFrame
    first: pd.Timestamp
    last: pd.Timestamp
    target_sum: float
    target_count: int
    totals: GroupTotals | None  # None once folded into the chain's totals (:func:`summarize_partitions`)
    digest: str
    series_with_gaps: int
    missing_days: int


def summarize_partitions(
    sources: list[Source], spec: DatasetSpec, workers: int | None
) -> tuple[list[PartitionSummary], GroupTotals]:
    """The first pass: each partition's summary (without its totals) and the totals of them all.

    The totals are added up as the summaries arrive, so memory holds one partition's totals, not every one.
    """
    summaries, totals = [], None
    for summary in iter_partitions(summarize, [(source, spec) for source in sources], workers):
        totals = summary.totals if totals is None else GroupTotals.combine([totals, summary.totals])
        summaries.append(dataclasses.replace(summary, totals=None))
    return summaries, totals


def summarize(job: tuple[Source, DatasetSpec]) -> PartitionSummary:
    """First pass over one partition."""
    source, spec = job
    frame = load(source, spec)
    panel = build_panel(spec, frame)
    observed = panel.target[~np.isnan(panel.target)]
    return PartitionSummary(
        series=panel.series,
        first=panel.dates[0],
        last=panel.dates[-1],
        target_sum=float(observed.sum()),
        target_count=int(observed.size),
        totals=GroupTotals.from_panel(panel, spec),
        digest=frame_hash(frame),
        series_with_gaps=int((panel.gaps > 0).sum()) if panel.gaps is not None else 0,
        missing_days=int(panel.gaps.sum()) if panel.gaps is not None else 0,
    )


def shared_series(parts: list[PartitionSummary], spec: DatasetSpec) -> str | None:
    """``"Series k=v, ..."`` of the first series with rows in two partitions, else None."""
    return partition_shared_series([part.series for part in parts], list(spec.keys))


@dataclass(frozen=True)
class ChainSummary:
    """The whole history as the second pass needs it."""

    spec: DatasetSpec
    features: FeatureSet
    dates: pd.DatetimeIndex
    vocabularies: dict[str, list[str]]
    totals: GroupTotals
    series: pd.DataFrame  # keys + statics of every series, sorted by keys (the chain's series order)
    level: float  # mean observed target
    digest: str
    series_with_gaps: int
    missing_days: int

    @classmethod
    def combine(
        cls, parts: list[PartitionSummary], spec: DatasetSpec, config: TrainConfig, totals: GroupTotals | None = None
    ) -> ChainSummary:
        """Combine the partitions' summaries; raise DataValidationError when a series lies in two partitions.

        ``totals``: the partitions' totals added up already (else those of ``parts``).
        """
        keys = list(spec.keys)
        shared = shared_series(parts, spec)
        if shared:
            raise DataValidationError(
                f"{shared} has rows in two partitions; a partition must hold whole series (partition the data by "
                "store, or by another key column)."
            )
        series = pd.concat([part.series for part in parts], ignore_index=True)
        series = series.sort_values(keys, kind="stable").reset_index(drop=True)
        features = feature_set(spec, config.keys_as_features, config.level_features)
        count = sum(part.target_count for part in parts)
        digest = hashlib.sha256("".join(part.digest for part in parts).encode()).hexdigest()
        return cls(
            spec=spec,
            features=features,
            dates=pd.date_range(min(p.first for p in parts), max(p.last for p in parts), freq="D"),
            vocabularies={c: sorted(series[c].dropna().astype(str).unique()) for c in features.categorical},
            totals=totals if totals is not None else GroupTotals.combine([p.totals for p in parts]),
            series=series,
            level=sum(part.target_sum for part in parts) / count if count else 0.0,
            digest=parts[0].digest if len(parts) == 1 else digest,
            series_with_gaps=sum(part.series_with_gaps for part in parts),
            missing_days=sum(part.missing_days for part in parts),
        )

    def ranks(self, series: pd.DataFrame) -> np.ndarray:
        """Position of each of ``series`` (key columns) in the chain's series order."""
        keys = list(self.spec.keys)
        return pd.MultiIndex.from_frame(self.series[keys]).get_indexer(pd.MultiIndex.from_frame(series[keys]))


@dataclass(frozen=True)
class RowPlan:
    """Which rows the second pass builds: day indices into the chain's days and the sampling rate."""

    cut: int  # last day of the training rows; validation rows start the day after
    fit_rate: float
    refit_rate: float
    refit: bool


@dataclass
class PartitionRows:
    """The second pass's rows of one partition, each with its series' rank in the chain."""

    fit: TrainingSet
    fit_rank: np.ndarray
    valid: TrainingSet
    valid_rank: np.ndarray
    refit: TrainingSet | None
    refit_rank: np.ndarray | None


def origins(last_day: int, config: TrainConfig) -> np.ndarray:
    """Candidate forecast origins whose rows may have a target day <= ``last_day``, newest first.

    Raises:
        DataValidationError: when the history is too short for any origin.
    """
    candidates = np.arange(config.min_history_days - 1, last_day, config.origin_stride)[::-1]
    if candidates.size == 0:
        window = config.resolved_validation_days
        why = f"validation_days={config.validation_days}" if config.validation_days else f"horizon={config.horizon}"
        raise DataValidationError(
            f"The training data leaves {max(last_day + 1, 0)} days before the validation window of the last {window} "
            f"days ({why}); at least {config.min_history_days + 1} are needed (min_history_days="
            f"{config.min_history_days}). Provide a longer history, or lower min_history_days, validation_days "
            "or horizon."
        )
    return candidates


def sampling_rate(n_series: int, last_day: int, config: TrainConfig, share: float = 1.0) -> float:
    """Share of (series, origin, horizon) candidates to draw: rows whose target day is <= ``last_day``.

    About ``share x min(candidates, config.train_rows(n_series))`` rows, but never fewer than
    ``MIN_SAMPLE_ROWS`` (or all candidates when there are fewer).
    """
    total = n_series * origins(last_day, config).size * config.horizon
    wanted = min(total, config.train_rows(n_series))
    return max(share * wanted, min(wanted, MIN_SAMPLE_ROWS)) / total


def _uniform(series_hash: np.ndarray, day: np.ndarray, horizon: np.ndarray, salt: int) -> np.ndarray:
    """A uniform [0, 1) number per (series, day, horizon): splitmix64 of the mixed inputs."""
    with np.errstate(over="ignore"):
        x = series_hash ^ (day.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15))
        x = x ^ (horizon.astype(np.uint64) * np.uint64(0xC2B2AE3D27D4EB4F)) ^ np.uint64(salt)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    return (x >> np.uint64(11)).astype(np.float64) / float(2**53)


class PartitionData:
    """One partition's panel over the chain's days, and its rows."""

    def __init__(self, frame: pd.DataFrame, chain: ChainSummary) -> None:
        self.chain = chain
        self.panel: Panel = build_panel(chain.spec, frame, dates=chain.dates)
        self.observed_counts = np.zeros((self.panel.n_series, len(self.panel.dates) + 1))
        np.cumsum(~np.isnan(self.panel.target), axis=1, out=self.observed_counts[:, 1:])
        keys = self.panel.series[list(chain.spec.keys)]
        self.series_hash = pd.util.hash_pandas_object(keys, index=False).to_numpy(dtype=np.uint64)
        self.epoch_day = int((self.panel.dates[0] - pd.Timestamp("1970-01-01")).days)

    def sample(self, last_day: int, rate: float, salt: int, config: TrainConfig) -> tuple[np.ndarray, ...]:
        """(series, origin, horizon) rows drawn with probability ``rate`` whose target day is <= ``last_day``."""
        candidates = origins(last_day, config)
        horizons = np.arange(1, config.horizon + 1)
        per_series = candidates.size * horizons.size
        step = max(1, _CANDIDATES_PER_CHUNK // per_series)
        picked = []
        for first in range(0, self.panel.n_series, step):
            series = np.arange(first, min(first + step, self.panel.n_series))
            s, o, h = (a.ravel() for a in np.meshgrid(series, candidates, horizons, indexing="ij"))
            u = _uniform(self.series_hash[s], o + self.epoch_day, h, salt)
            keep = np.flatnonzero(u < rate)
            picked.append((s[keep], o[keep], h[keep]))
        series, origin, horizon = (np.concatenate(parts) for parts in zip(*picked, strict=True))
        enough = self.observed_counts[series, origin + 1] >= config.min_history_days
        keep = (origin + horizon <= last_day) & enough
        return series[keep], origin[keep], horizon[keep]

    def window(self, origin: int, config: TrainConfig) -> tuple[np.ndarray, ...]:
        """Every series at ``origin`` for horizons 1..H that fall inside the data."""
        horizons = np.arange(1, min(config.horizon, len(self.panel.dates) - 1 - origin) + 1)
        series = np.repeat(np.arange(self.panel.n_series), horizons.size)
        return series, np.full(series.size, origin), np.tile(horizons, self.panel.n_series)

    def rows(self, series: np.ndarray, origins: np.ndarray, horizons: np.ndarray, config: TrainConfig) -> Any:
        """(feature rows with targets and stockout weights, their series); unknown targets are dropped."""
        spec, panel = self.chain.spec, self.panel
        days = origins + horizons
        target = panel.target[series, days]
        weight = np.ones_like(target)
        if spec.stockout and config.stockout_handling != "none":
            hours = np.nan_to_num(panel.covariates[spec.stockout][series, days])
            if config.stockout_handling == "exclude":
                weight = np.where(hours > config.stockout_max_hours, 0.0, 1.0)
            else:  # weight (and recover): a day counts in proportion to its hours in stock
                weight = 1.0 - np.clip(hours, 0, 24) / 24.0
            if config.stockout_handling == "recover":  # sales / in-stock share, at most 2x: demand, not sales
                target = target / np.clip(weight, 0.5, 1.0)
        keep = ~np.isnan(target) & (weight > 0)
        series, origins, horizons = series[keep], origins[keep], horizons[keep]
        X = build_features(  # float32: half the memory; LightGBM bins float32 directly
            panel, spec, self.chain.features, self.chain.vocabularies, series, origins, horizons, config.horizon,
            dtype=np.float32, totals=self.chain.totals,
        )  # fmt: skip
        return TrainingSet(X=X, y=target[keep], weight=weight[keep]), series


def partition_rows(job: tuple[Source, ChainSummary, RowPlan, TrainConfig]) -> PartitionRows:
    """Second pass over one partition: its fit, validation and refit rows."""
    source, chain, plan, config = job
    data = PartitionData(load(source, chain.spec, again=True), chain)
    ranks = chain.ranks(data.panel.series)
    fit, fit_series = data.rows(*data.sample(plan.cut, plan.fit_rate, config.seed, config), config)
    valid, valid_series = data.rows(*data.window(plan.cut, config), config.replace(stockout_handling="none"))
    refit = refit_series = None
    if plan.refit:
        last = len(chain.dates) - 1
        refit, refit_series = data.rows(*data.sample(last, plan.refit_rate, config.seed + 1, config), config)
    return PartitionRows(
        fit=fit,
        fit_rank=ranks[fit_series],
        valid=valid,
        valid_rank=ranks[valid_series],
        refit=refit,
        refit_rank=None if refit_series is None else ranks[refit_series],
    )


def gather(parts: list[tuple[TrainingSet, np.ndarray]]) -> TrainingSet:
    """Concatenate the partitions' rows in the chain's series order (a stable sort by series rank)."""
    rank = np.concatenate([r for _, r in parts])
    order = np.argsort(rank, kind="stable")
    if len(parts) == 1:
        rows = parts[0][0]
        return rows if np.all(order[:-1] < order[1:]) else TrainingSet(rows.X[order], rows.y[order], rows.weight[order])
    return TrainingSet(
        X=np.concatenate([rows.X for rows, _ in parts])[order],
        y=np.concatenate([rows.y for rows, _ in parts])[order],
        weight=np.concatenate([rows.weight for rows, _ in parts])[order],
    )
