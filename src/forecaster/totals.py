"""Group totals: daily target sums and observed-day counts of every item (over all its stores) and store.

The hierarchy features (``item_mean_*``, ``item_trend``, ``store_trend``, ``item_campaign_uplift``) read the
totals of a series' item and store. On one table they are computed from its panel; on partitioned data each
partition contributes its share in a cheap first pass (:meth:`GroupTotals.from_panel`), the shares are added up
(:meth:`GroupTotals.combine`), and every partition's features read the chain-wide totals.

Statistics (each a (groups × days) table of sums and one of counts):

- ``item``: observed target of the item's series; ``store`` (two or more keys): of the store's series;
- ``item_on`` / ``item_off`` (with a campaign column): observed target on campaign days / on other days.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from forecaster.errors import DataValidationError
from forecaster.io import atomic_path
from forecaster.panel import Panel
from forecaster.spec import DatasetSpec

TOTALS_FILE = "group_totals.npz"


@dataclass(frozen=True)
class GroupStat:
    """Daily sums and observed-day counts, one row per group label, one column per day from ``start``."""

    labels: pd.Index
    sums: np.ndarray
    counts: np.ndarray


@dataclass(frozen=True)
class GroupTotals:
    """The group statistics of a data set; day 0 of every table is ``start``."""

    start: pd.Timestamp
    stats: dict[str, GroupStat]

    @classmethod
    def from_panel(cls, panel: Panel, spec: DatasetSpec) -> GroupTotals:
        """Totals of the series in ``panel``."""
        observed = ~np.isnan(panel.target)
        item = panel.series[spec.keys[-1]].astype(str)
        masks = {"item": (item, observed)}
        if len(spec.keys) > 1:
            masks["store"] = (panel.series[spec.keys[0]].astype(str), observed)
        if spec.campaign:
            on = (np.nan_to_num(panel.covariates[spec.campaign]) > 0) & observed
            masks["item_on"] = (item, on)
            masks["item_off"] = (item, observed & ~on)
        stats = {}
        for name, (groups, mask) in masks.items():
            codes, labels = pd.factorize(groups, sort=True)
            values = np.where(mask, panel.target, 0.0)
            sums = pd.DataFrame(values).groupby(codes).sum().to_numpy()
            counts = pd.DataFrame(mask.astype(np.float64)).groupby(codes).sum().to_numpy()
            stats[name] = GroupStat(pd.Index(labels), sums, counts)
        return cls(pd.Timestamp(panel.dates[0]), stats)

    @property
    def n_days(self) -> int:
        return max((stat.sums.shape[1] for stat in self.stats.values()), default=0)

    def check_covers(self, last_origin: pd.Timestamp) -> None:
        """Raise when the totals end before ``last_origin``: the hierarchy features of later days would be empty."""
        end = self.start + pd.Timedelta(days=self.n_days - 1)
        if end < last_origin:
            raise DataValidationError(
                f"The group totals end on {end.date()}, but the history runs to {pd.Timestamp(last_origin).date()}: "
                "compute them from the same history (forecaster group-totals) as the feature rows."
            )

    @classmethod
    def combine(cls, parts: list[GroupTotals]) -> GroupTotals:
        """Add up the totals of disjoint sets of series (partitions)."""
        if not parts:
            raise DataValidationError("No data: group totals need at least one partition.")
        start = min(part.start for part in parts)
        end = max(part.start + pd.Timedelta(days=part.n_days) for part in parts)
        n_days = int((end - start).days)
        stats = {}
        for name in parts[0].stats:
            labels = pd.Index(sorted(set().union(*(part.stats[name].labels for part in parts))))
            sums = np.zeros((len(labels), n_days))
            counts = np.zeros((len(labels), n_days))
            for part in parts:
                stat = part.stats[name]
                rows = labels.get_indexer(stat.labels)
                first = int((part.start - start).days)
                columns = slice(first, first + stat.sums.shape[1])
                sums[rows, columns] += stat.sums
                counts[rows, columns] += stat.counts
            stats[name] = GroupStat(labels, sums, counts)
        return cls(start, stats)

    def window(
        self, name: str, dates: pd.DatetimeIndex, groups: pd.Series
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(group row of each series, daily sums, daily counts) of statistic ``name`` on the days ``dates``.

        Raises:
            DataValidationError: when a series' group has no totals (totals of other data).
        """
        stat = self.stats[name]
        codes = stat.labels.get_indexer(groups.astype(str))
        if (codes < 0).any():
            missing = groups.iloc[int(np.flatnonzero(codes < 0)[0])]
            raise DataValidationError(
                f"The group totals have no {name!r} group {missing!r}; compute them from the same history "
                "(forecaster group-totals) as the feature rows."
            )
        first = int((dates[0] - self.start).days)
        sums = np.zeros((len(stat.labels), len(dates)))
        counts = np.zeros_like(sums)
        lo, hi = max(first, 0), min(first + len(dates), stat.sums.shape[1])
        if hi > lo:
            sums[:, lo - first : hi - first] = stat.sums[:, lo:hi]
            counts[:, lo - first : hi - first] = stat.counts[:, lo:hi]
        return codes, sums, counts

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the totals to ``path`` (a ``.npz`` file), atomically."""
        arrays: dict[str, np.ndarray] = {"start": np.array(str(self.start.date()))}
        for name, stat in self.stats.items():
            arrays[f"{name}.labels"] = np.asarray(stat.labels.astype(str), dtype=str)
            arrays[f"{name}.sums"] = stat.sums
            arrays[f"{name}.counts"] = stat.counts
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)
        with atomic_path(path) as tmp:
            tmp.write_bytes(buffer.getvalue())
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> GroupTotals:
        """Read totals written by :meth:`save`; ``path`` may be the file or the folder holding it."""
        path = Path(path)
        path = path / TOTALS_FILE if path.is_dir() else path
        try:
            with np.load(path, allow_pickle=False) as data:
                names = sorted({key.rsplit(".", 1)[0] for key in data.files if key != "start"})
                stats = {
                    name: GroupStat(pd.Index(data[f"{name}.labels"]), data[f"{name}.sums"], data[f"{name}.counts"])
                    for name in names
                }
                return cls(pd.Timestamp(str(data["start"])), stats)
        except (OSError, ValueError, KeyError) as error:
            raise DataValidationError(
                f"{path} is not a group-totals file ({error}); write it with `forecaster group-totals`."
            ) from error
