"""The hosts of a multi-host training job: who they are, where they listen, and a small all-gather between them.

SageMaker names the hosts in ``resourceconfig.json`` (``hosts``, ``current_host``; the toolkit also exports
``SM_HOSTS`` / ``SM_CURRENT_HOST``, which must agree). The hosts are put in sorted order: rank 0 (the first) writes
the model. Two ports, declared here, are opened by the containers:

- :data:`NETWORK_PORT` on every host: LightGBM's network learner (``local_listen_port``);
- :data:`EXCHANGE_PORT` on the first host: the :class:`Exchange`, where the hosts all-gather the partition
  names, the first pass's summaries and the validation rows, and wait for the model to be written.

A training job on this machine (``forecaster train --hosts N``) runs every host on 127.0.0.1, on the ports that
:data:`ADDRESSES_ENV` gives each host. Every failure names the host it concerns; the exchange carries one host's
failure to the others, so each host writes a failure file that names the host that failed.

The exchange pickles its messages (Python's ``multiprocessing.connection``, with an HMAC handshake keyed by the
job's hosts and hyperparameters): the hosts of one job trust each other, as LightGBM's own sockets do.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import resource
import socket
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from multiprocessing.connection import Connection, answer_challenge, deliver_challenge
from pathlib import Path
from typing import TYPE_CHECKING, Any

from forecaster.container import layout
from forecaster.container.layout import ContainerTree
from forecaster.errors import ForecasterError, HostError, JobStoppedError

if TYPE_CHECKING:  # the training modules are imported when a job runs, not with the entry
    from forecaster.distributed import Cluster

logger = logging.getLogger("forecaster.train")

#: LightGBM's ``local_listen_port`` on every host.
NETWORK_PORT = 12400
#: The first host's port for the exchange (all-gathers between the hosts).
EXCHANGE_PORT = 12401
#: JSON ``{"host": ["ip", network_port, exchange_port]}``: every host's address on this machine (local runs);
#: without it each host name is resolved by DNS and the ports are the ones above.
ADDRESSES_ENV = "FORECASTER_HOST_ADDRESSES"
#: Seconds a host waits for the others at each all-gather (they may build rows at different speeds).
TIMEOUT_ENV = "FORECASTER_HOST_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 3600.0
#: Seconds the other hosts still wait after the first host's connection closed, so that its container ends first.
LEADER_EXIT_GRACE_S = 3.0
#: The value of ``S3DistributionType`` in ``inputdataconfig.json`` that gives each host different objects.
SHARDED = "ShardedByS3Key"


@dataclass(frozen=True)
class HostSetup:
    """The hosts of the job as this host sees them, with their addresses (ip, network port, exchange port)."""

    current_host: str
    hosts: tuple[str, ...]  # sorted: rank order
    addresses: Mapping[str, tuple[str, int, int]]
    sharded: bool
    timeout_s: float = DEFAULT_TIMEOUT_S

    @property
    def rank(self) -> int:
        return self.hosts.index(self.current_host)

    @classmethod
    def from_job(
        cls, current_host: str, hosts: tuple[str, ...], config_dir: Path, environ: Mapping[str, str] = os.environ
    ) -> HostSetup:
        """Check the job's hosts (``resourceconfig.json`` against ``SM_HOSTS``) and find their addresses.

        Raises:
            HostError: naming the host, when the host lists disagree or a host has no address.
        """
        resources = config_dir / layout.RESOURCE_CONFIG_FILE
        listed = json.loads(resources.read_text()).get("hosts", []) if resources.is_file() else list(hosts)
        if sorted(listed) != sorted(hosts) or current_host not in hosts:
            raise HostError(
                f"Host {current_host}: the hosts of {layout.RESOURCE_CONFIG_FILE} ({sorted(listed)}) and of "
                f"{layout.HOSTS_ENV} ({sorted(hosts)}) differ, or do not include {current_host}; every host of a "
                "job must be given the same host list."
            )
        data_config = config_dir / layout.INPUT_DATA_CONFIG_FILE
        channels = json.loads(data_config.read_text()) if data_config.is_file() else {}
        sharded = channels.get(layout.train_channel(channels), {}).get("S3DistributionType") == SHARDED
        ordered = tuple(sorted(hosts))
        return cls(
            current_host=current_host,
            hosts=ordered,
            addresses=_addresses(current_host, ordered, environ),
            sharded=sharded,
            timeout_s=float(environ.get(TIMEOUT_ENV) or DEFAULT_TIMEOUT_S),
        )

    def machines(self) -> tuple[str, ...]:
        """LightGBM's ``machines``: ``ip:port`` of every host, in rank order."""
        return tuple(f"{self.addresses[h][0]}:{self.addresses[h][1]}" for h in self.hosts)


def _addresses(current: str, hosts: tuple[str, ...], environ: Mapping[str, str]) -> dict[str, tuple[str, int, int]]:
    if environ.get(ADDRESSES_ENV):
        given = json.loads(environ[ADDRESSES_ENV])
        missing = [host for host in hosts if host not in given]
        if missing:
            raise HostError(f"Host {current}: {ADDRESSES_ENV} has no address for host {missing[0]}.")
        return {host: (str(given[host][0]), int(given[host][1]), int(given[host][2])) for host in hosts}
    addresses = {}
    for host in hosts:
        try:
            addresses[host] = (socket.gethostbyname(host), NETWORK_PORT, EXCHANGE_PORT)
        except OSError as error:
            raise HostError(f"Host {current}: host {host} of the job does not resolve ({error}).") from error
    return addresses


def check_port_free(host: str, port: int, what: str) -> None:
    """Raise HostError naming ``host`` when ``port`` cannot be listened on."""
    try:
        with socket.create_server(("", port)):
            pass
    except OSError as error:
        raise HostError(
            f"Host {host}: port {port} ({what}) is in use ({error.strerror}); stop what listens on it, or run one "
            "training job per instance."
        ) from error


class Exchange:
    """All-gathers between the hosts of a job, through the first host (a star: few, small messages)."""

    def __init__(self, setup: HostSetup, authkey: bytes) -> None:
        self.setup = setup
        self.authkey = authkey
        self.peers: dict[str, Connection] = {}  # the leader: one connection per other host; others: the leader's

    @property
    def leader(self) -> str:
        return self.setup.hosts[0]

    def open(self) -> Exchange:
        """Connect every host to the first one (it listens on its exchange port)."""
        setup = self.setup
        ip, _, port = setup.addresses[self.leader]
        deadline = time.monotonic() + setup.timeout_s
        if setup.rank == 0:
            try:
                server = socket.create_server((ip if ip.startswith("127.") else "", port))
            except OSError as error:
                raise HostError(
                    f"Host {self.leader}: port {port} (the hosts' exchange) is in use ({error.strerror}); stop what "
                    "listens on it."
                ) from error
            with server:
                while len(self.peers) < len(setup.hosts) - 1:
                    server.settimeout(max(deadline - time.monotonic(), 0.01))
                    try:
                        sock, _ = server.accept()
                    except TimeoutError as error:
                        absent = [h for h in setup.hosts[1:] if h not in self.peers]
                        raise HostError(
                            f"Host {absent[0]} did not connect to host {self.leader} (port {port}) within "
                            f"{setup.timeout_s:g} s; check that it started and reaches {self.leader}."
                        ) from error
                    sock.settimeout(None)
                    connection = Connection(sock.detach())
                    deliver_challenge(connection, self.authkey)
                    self.peers[connection.recv()] = connection
        else:
            while True:
                try:
                    sock = socket.create_connection((ip, port), timeout=5)
                    break
                except OSError as error:
                    if time.monotonic() > deadline:
                        raise HostError(
                            f"Host {self.leader} did not accept host {setup.current_host}'s connection on port "
                            f"{port} within {setup.timeout_s:g} s ({error}); check that it started."
                        ) from error
                    time.sleep(0.5)
            sock.settimeout(None)
            connection = Connection(sock.detach())
            answer_challenge(connection, self.authkey)
            connection.send(setup.current_host)
            self.peers[self.leader] = connection
        return self

    def _receive(self, host: str) -> Any:
        connection = self.peers[host]
        if not connection.poll(self.setup.timeout_s):
            raise HostError(f"Host {host} did not answer within {self.setup.timeout_s:g} s.")
        try:
            return connection.recv()
        except (EOFError, OSError) as error:
            raise HostError(f"Host {host} left the job (its process ended) before training finished.") from error

    def allgather(self, mine: Any) -> list[Any]:
        """Every host's ``mine``, in rank order; raise HostError naming a host that failed instead."""
        if self.setup.rank != 0:
            self.peers[self.leader].send(("ok", mine))
            status, *rest = self._receive(self.leader)
            if status == "error":
                raise HostError(f"Host {rest[0]} failed: {rest[1]}")
            return rest[0]
        gathered = [mine]
        for host in self.setup.hosts[1:]:
            try:
                status, payload = self._receive(host)
            except HostError as error:
                self._broadcast(("error", host, error.reason))
                raise
            if status == "error":
                self._broadcast(("error", host, payload))
                raise HostError(f"Host {host} failed: {payload}")
            gathered.append(payload)
        self._broadcast(("ok", gathered))
        return gathered

    def abort(self, reason: str) -> None:
        """Tell the other hosts that this one failed (best effort: they may be gone)."""
        message = ("error", reason) if self.setup.rank != 0 else ("error", self.setup.current_host, reason)
        self._broadcast(message)

    def _broadcast(self, message: tuple) -> None:
        for connection in self.peers.values():
            with contextlib.suppress(OSError, ValueError):
                connection.send(message)

    def wait_for_leader_exit(self) -> None:
        """A host other than the first: wait until the first host's process has ended (or the timeout).

        SIGTERM meanwhile (compose stopping this container as the first one exited) ends the wait: the job is done.
        """
        if self.setup.rank != 0:
            with contextlib.suppress(EOFError, OSError, HostError, JobStoppedError):
                self._receive(self.leader)
            # the connection closes as the first host's process begins to exit; its container ends a moment later
            with contextlib.suppress(JobStoppedError):
                time.sleep(LEADER_EXIT_GRACE_S)

    def close(self) -> None:
        for connection in self.peers.values():
            connection.close()


@contextlib.contextmanager
def join(setup: HostSetup, hyperparameters: Mapping[str, Any], tree_learner: str) -> Iterator[Cluster]:
    """The :class:`Cluster` of this host for the block: ports checked, exchange open, hosts' setups compared.

    On an error inside the block the other hosts are told (their next all-gather raises, naming this host). At
    the end of the block every host waits for the others (the first host has written the model by then), and
    the other hosts wait until the first host's process has ended: SDK local mode stops every container of a
    job as soon as one of them exits.
    """
    from forecaster.distributed import Cluster

    key = json.dumps([setup.hosts, dict(hyperparameters)], sort_keys=True, default=str)
    exchange = Exchange(setup, hashlib.sha256(key.encode()).digest())
    problem = None
    try:
        check_port_free(setup.current_host, setup.addresses[setup.current_host][1], "LightGBM network")
    except HostError as error:
        problem = error.reason
    exchange.open()
    try:
        hellos = exchange.allgather((problem, setup.hosts, setup.sharded))
        for host, (host_problem, hosts, _) in zip(setup.hosts, hellos, strict=True):
            if host_problem:
                raise HostError(host_problem)
            if hosts != setup.hosts:
                raise HostError(
                    f"Host {host} was given the hosts {list(hosts)}, host {setup.current_host} {list(setup.hosts)}; "
                    "every host of a job must be given the same host list."
                )
        cluster = Cluster(
            hosts=setup.hosts, rank=setup.rank, machines=setup.machines(), allgather=exchange.allgather,
            tree_learner=tree_learner, sharded=any(sharded for _, _, sharded in hellos),
        )  # fmt: skip
        logger.info(
            "host %s (rank %d of %s) joined the exchange; train channel %s", setup.current_host, setup.rank,
            list(setup.hosts), "sharded (ShardedByS3Key)" if cluster.sharded else "replicated",
        )  # fmt: skip
        yield cluster
        exchange.allgather(None)  # the first host has written the model
        exchange.wait_for_leader_exit()
    except BaseException as error:
        exchange.abort(getattr(error, "reason", None) or f"{type(error).__name__}: {error}")
        raise
    finally:
        exchange.close()


#: What each host writes into its ``output/data``: its partitions, rows, phase times and peak memory.
HOST_REPORT_FILE = "host_report.json"


def train_on_hosts(job: Any, run: Callable[[Any, Cluster], Any]) -> None:
    """Run ``run(job, cluster)`` as one host of the job (``job``: the training entry's ``JobEnvironment``).

    Raises:
        ForecasterError: of the same kind, its reason prefixed with this host's name.
    """
    from forecaster.config import TrainConfig

    config = TrainConfig.from_hyperparameters(job.hyperparameters)
    setup = HostSetup.from_job(job.current_host, job.hosts, ContainerTree.from_env().config_dir)
    try:
        with join(setup, job.hyperparameters, config.tree_learner) as cluster:
            run(job, cluster)
    except ForecasterError as error:
        if isinstance(error, HostError) or error.reason.startswith("Host "):
            raise
        raise type(error)(f"Host {job.current_host}: {error.reason}") from error


def shared_spec(cluster: Cluster, spec_file: Path | None) -> Path | None:
    """The ``spec.json`` of the train channel, wherever it is (a sharded channel hands it to one host)."""
    from forecaster.spec import SPEC_FILE

    texts = cluster.allgather(spec_file.read_text() if spec_file is not None else None)
    if spec_file is not None or not any(texts):
        return spec_file
    path = Path(tempfile.mkdtemp(prefix="spec-")) / SPEC_FILE
    path.write_text(next(text for text in texts if text))
    return path


def host_report(cluster: Cluster) -> dict[str, Any]:
    """This host's report (:data:`HOST_REPORT_FILE`): the training's figures plus the peak RSS of the process."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    return {**cluster.report, "rank": cluster.rank, "peak_rss_bytes": own, "children_peak_rss_bytes": children}
