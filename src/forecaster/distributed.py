"""Data-parallel training across hosts: each host's share of the partitions, LightGBM's network learner.

A :class:`Cluster` is what a training run on several hosts needs from its host: its rank among the hosts, the
LightGBM network (``machines``, ``local_listen_port``) and an ``allgather`` (every host's object, in rank order;
:mod:`forecaster.container.hosts` runs it over TCP). The training lifecycle (:mod:`forecaster.training`) calls it
at three points, the same on every host:

1. the first pass: each host summarizes its partitions, the summaries are all-gathered, so every host combines the
   same chain-wide :class:`~forecaster.training_rows.ChainSummary` (days, vocabularies, group totals, sampling rate);
2. the validation rows: each host builds those of its partitions, all of them are all-gathered (they are small:
   one origin per series), so every host evaluates early stopping, calibration and the metrics on the same rows:
   LightGBM does not sync validation metrics between machines, and different stopping rounds would deadlock;
3. the fit and the refit: the training rows stay on their host (``pre_partition=True``); LightGBM syncs the bin
   boundaries while the train Dataset is built (so the network is joined first) and the histograms per split.

Row sampling is chain-wide (a hash against the chain's rate), so the hosts' rows together are the rows one host
would build: the model differs from a single-host one only by LightGBM's distributed binning.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pandas as pd

from forecaster.config import TrainConfig
from forecaster.errors import DataValidationError
from forecaster.partitions import Partition, partitions
from forecaster.spec import DatasetSpec
from forecaster.totals import GroupTotals
from forecaster.training_rows import ChainSummary, summarize_partitions

logger = logging.getLogger(__name__)

T = TypeVar("T")
#: Minutes LightGBM waits for the other machines when the network is joined (its ``time_out``).
NETWORK_TIMEOUT_MIN = 30


@dataclass(frozen=True)
class Cluster:
    """One host's view of a multi-host training run."""

    hosts: tuple[str, ...]  # in rank order; hosts[0] writes the model
    rank: int
    machines: tuple[str, ...]  # "ip:port" of each host, in rank order
    allgather: Callable[[Any], list[Any]] = field(repr=False, compare=False)
    tree_learner: str  # "data" or "voting" (TrainConfig.tree_learner; "feature" needs every row on every host)
    sharded: bool = False  # the train channel is ShardedByS3Key
    report: dict[str, Any] = field(default_factory=dict, compare=False)  # this host's figures, filled by training

    @property
    def host(self) -> str:
        return self.hosts[self.rank]

    @property
    def is_leader(self) -> bool:
        """The first host: it writes the model."""
        return self.rank == 0

    @property
    def listen_port(self) -> int:
        return int(self.machines[self.rank].rsplit(":", 1)[1])

    def lightgbm_params(self) -> dict[str, Any]:
        """Parameters of every Dataset and booster: the parallel learner over pre-partitioned rows.

        ``machines`` is left out on purpose: lightgbm's ``Booster`` would join (and on deletion leave) the network
        itself, per booster, after the Dataset was binned; :func:`network` joins it once, before.
        """
        return {"tree_learner": self.tree_learner, "num_machines": len(self.hosts), "pre_partition": True}

    def exchange(self, mine: Any, phase: str) -> list[Any]:
        """:attr:`allgather`, its wait (for the slowest host) added to ``report["wait_seconds"][phase]``."""
        started = time.monotonic()
        gathered = self.allgather(mine)
        waits = self.report.setdefault("wait_seconds", {})
        waits[phase] = round(waits.get(phase, 0.0) + time.monotonic() - started, 2)
        return gathered

    def gather(self, mine: list[T], phase: str = "features") -> list[T]:
        """Every host's ``mine`` lists, concatenated in rank order."""
        return [item for items in self.exchange(mine, phase) for item in items]


def own_partitions(cluster: Cluster, train: Any, validation: Any = None) -> list[Partition]:
    """The partitions of ``train`` (this host's channel: a path) that this host builds rows of (see :func:`shares`).

    Raises:
        DataValidationError: naming the host, when a host has no partition (its channel empty or unreadable).
    """
    if validation is not None or isinstance(train, pd.DataFrame):
        raise DataValidationError(
            "Training on several hosts reads the train channel's partitions (a folder or file, no validation "
            "channel): leave the validation channel out (the last validation_days are held out), or train on one host."
        )
    try:
        sources, problem = partitions(train), ""
    except DataValidationError as error:  # an empty share of a sharded channel: said below, naming the host
        sources, problem = [], error.reason
    gathered = cluster.exchange(([s.name for s in sources], problem), "validate")
    mine = shares([names for names, _ in gathered], cluster.hosts, cluster.sharded, [p for _, p in gathered])
    cluster.report["partitions"] = mine[cluster.rank]
    logger.info(
        "host %s builds the rows of %d partitions: %s",
        cluster.host,
        len(mine[cluster.rank]),
        ", ".join(mine[cluster.rank]),
    )
    return [source for source in sources if source.name in mine[cluster.rank]]


def chain_summary(
    cluster: Cluster, sources: list[Partition], spec: DatasetSpec, config: TrainConfig, workers: int | None
) -> ChainSummary:
    """The first pass, chain-wide: this host summarizes its partitions, every host combines all hosts' summaries.

    The summaries are combined in the partitions' name order, as one host over the whole chain does.
    """
    summaries, totals = summarize_partitions(sources, spec, workers)
    gathered = cluster.exchange(([s.name for s in sources], summaries, totals), "summary")
    named = sorted(
        ((name, summary) for names, parts, _ in gathered for name, summary in zip(names, parts, strict=True)),
        key=lambda pair: pair[0],
    )
    chain_totals = GroupTotals.combine([part_totals for _, _, part_totals in gathered])
    return ChainSummary.combine([summary for _, summary in named], spec, config, chain_totals)


def shares(
    names_per_host: Sequence[Sequence[str]], hosts: Sequence[str], sharded: bool, problems: Sequence[str] = ()
) -> list[list[str]]:
    """The partitions each host builds rows of, given the partition names each host sees in its channel.

    Every host sees the same partitions (a ``FullyReplicated`` channel, or a sharded one that was copied whole, as
    SDK local mode does): host ``r`` takes the partitions whose index in the sorted names is ``r`` mod the host
    count. Disjoint sets (``ShardedByS3Key``): each host takes its own.

    Raises:
        DataValidationError: naming the host, when the sets overlap without being equal, or a host gets none.
    """
    sets = [sorted(names) for names in names_per_host]
    if all(names == sets[0] for names in sets):
        if sharded and len(hosts) > 1:
            logger.warning("the sharded channel gave every host all %d partitions: sharing them by index", len(sets[0]))
        assigned = [[n for i, n in enumerate(sets[0]) if i % len(hosts) == r] for r in range(len(hosts))]
    else:
        seen: dict[str, str] = {}
        for host, names in zip(hosts, sets, strict=True):
            for name in names:
                if name in seen:
                    raise DataValidationError(
                        f"Host {host}: partition {name!r} of the train channel is also on host {seen[name]}; a "
                        "ShardedByS3Key channel must give each host different whole partitions (one object per "
                        "partition, or a FullyReplicated channel)."
                    )
                seen[name] = host
        assigned = sets
    for rank, (host, names) in enumerate(zip(hosts, assigned, strict=True)):
        if not names:
            total = len({n for names in sets for n in names})
            problem = f" ({problems[rank]})" if rank < len(problems) and problems[rank] else ""
            raise DataValidationError(
                f"Host {host} has no partition of the train channel to train on{problem} ({total} partitions for "
                f"{len(hosts)} hosts); use at most as many instances as partitions (TrainingInstanceCount), or "
                "partition the history more finely."
            )
    return assigned


@contextlib.contextmanager
def network(cluster: Cluster | None) -> Iterator[None]:
    """Join LightGBM's network for the block (nothing without a cluster); every host must enter it.

    Raises:
        DataValidationError: naming the host and its port when the network cannot be joined.
    """
    if cluster is None:
        yield
        return
    import lightgbm as lgb

    library = lgb.basic._LIB  # the C API; lightgbm's Python API joins only inside Booster.__init__ (see above)
    status = library.LGBM_NetworkInit(
        lgb.basic._c_str(",".join(cluster.machines)),
        ctypes.c_int(cluster.listen_port),
        ctypes.c_int(NETWORK_TIMEOUT_MIN),
        ctypes.c_int(len(cluster.hosts)),
    )
    if status != 0:
        raise DataValidationError(
            f"Host {cluster.host} could not join the LightGBM network on port {cluster.listen_port} "
            f"(machines {','.join(cluster.machines)}): {library.LGBM_GetLastError().decode()}. Check that the "
            "port is free and the hosts reach each other."
        )
    logger.info(
        "host %s joined the LightGBM network: rank %d of %d machines (%s), tree_learner=%s",
        cluster.host, cluster.rank, len(cluster.hosts), ",".join(cluster.machines), cluster.tree_learner,
    )  # fmt: skip
    try:
        yield
    finally:
        library.LGBM_NetworkFree()


def record(cluster: Cluster, metadata: dict[str, Any]) -> None:
    """Put this host's rows and phase times into ``cluster.report`` and the log (the leader's go in the metadata)."""
    phases, waits = metadata["phase_seconds"], cluster.report.get("wait_seconds", {})
    own = sum(phases.get(p, 0.0) - waits.get(p, 0.0) for p in ("summary", "features"))
    cluster.report.update(
        host=cluster.host, training_rows=metadata["training_rows"], phase_seconds=phases, row_build_own_s=round(own, 2)
    )
    metadata["hosts"] = list(cluster.hosts)
    logger.info(
        "host %s: training rows %s; rows built in %.1f s of its own (first pass + rows, %.1f s with the waits "
        "for the other hosts)", cluster.host, metadata["training_rows"], own,
        phases.get("summary", 0.0) + phases.get("features", 0.0),
    )  # fmt: skip
