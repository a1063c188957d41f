"""Training on several hosts: real toolkit processes on 127.0.0.1, LightGBM's network learner, bad host lists, ports."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from forecaster.container import hosts
from forecaster.container.local_job import free_ports, host_names, run_hosts_job, write_job_tree
from forecaster.distributed import shares
from forecaster.errors import DataValidationError
from forecaster.io import write_table

pytestmark = pytest.mark.slow

HP = {"horizon": 7, "num_boost_round": 40, "quantile_num_boost_round": 25, "num_leaves": 15, "num_threads": 1}
FAST_FAIL = {hosts.TIMEOUT_ENV: "20"}  # a host that never comes is reported after 20 s, not an hour


@pytest.fixture(scope="module")
def chain(tmp_path_factory, synthetic_spec):
    """A history of 4 stores, one partition (Hive folder) per store, with its spec.json."""
    from forecaster.synth import generate

    root = tmp_path_factory.mktemp("chain")
    frame = generate(stores=4, items=5, days=150, seed=1)
    for store, rows in frame.groupby("store_id", observed=True):
        write_table(rows, root / f"store_id={store}" / "part-0.parquet")
    (root / "spec.json").write_text(json.dumps(synthetic_spec.to_dict()))
    return root


def _log(result: subprocess.CompletedProcess) -> str:
    return result.stdout + result.stderr


def _failure(root, host) -> str:
    return (root / host / "output" / "failure").read_text()


@pytest.mark.parametrize("sharded", [False, True], ids=["replicated", "sharded"])
def test_two_hosts_train_one_model_within_one_point_of_wape_of_one_host(tmp_path, chain, synthetic_spec, sharded):
    from forecaster.config import TrainConfig
    from forecaster.model import ForecastModel
    from forecaster.training import fit_artifact

    results = run_hosts_job(tmp_path, HP, {"train": chain}, 2, sharded=sharded, timeout=400)
    for host, result in results.items():
        assert result.returncode == 0, f"{host}: {_log(result)[-4000:]}"
    logs = {host: _log(result) for host, result in results.items()}
    built = {}
    for rank, host in enumerate(host_names(2)):
        assert f"host {host} joined the LightGBM network: rank {rank} of 2 machines" in logs[host], logs[host][-3000:]
        report = json.loads((tmp_path / host / "output" / "data" / hosts.HOST_REPORT_FILE).read_text())
        assert report["training_rows"]["early_stopping_fit"] > 0 and report["peak_rss_bytes"] > 0
        assert f"host {host} builds the rows of 2 partitions" in logs[host]
        built[host] = report["partitions"]
    assert sorted(built["algo-1"] + built["algo-2"]) == [f"store_id=S00{i}" for i in range(1, 5)]  # each once
    if sharded:  # each host trains on what its channel holds
        for host in built:
            assert sorted(p.name for p in (tmp_path / host / "input" / "data" / "train").glob("store_id=*")) == sorted(
                built[host]
            )
    # one model, written by the first host only
    assert list((tmp_path / "algo-2" / "model").iterdir()) == []
    model = ForecastModel.load(tmp_path / "algo-1" / "model")
    assert json.loads((tmp_path / "algo-1" / "model" / "metadata.json").read_text())["hosts"] == ["algo-1", "algo-2"]
    scores = [json.loads((tmp_path / h / "output" / "data" / "validation_metrics.json").read_text()) for h in built]
    assert scores[0] == scores[1]  # every host evaluated the same validation rows with the same model
    single = fit_artifact(chain, synthetic_spec, TrainConfig.from_hyperparameters(HP), tmp_path / "single")
    assert abs(scores[0]["wape"] - single["wape"]) <= 0.01, (scores[0]["wape"], single["wape"])
    assert model.schema.feature_names == ForecastModel.load(tmp_path / "single").schema.feature_names


def test_a_host_without_partitions_fails_every_host_naming_it(tmp_path, chain):
    results = run_hosts_job(tmp_path, HP, {"train": chain}, 5, timeout=300, environ=FAST_FAIL)  # 4 partitions
    for host, result in results.items():
        assert result.returncode != 0, host
        assert "Host algo-5 has no partition of the train channel" in _failure(tmp_path, host), _failure(tmp_path, host)
        assert list((tmp_path / host / "model").iterdir()) == []


def test_a_port_in_use_fails_every_host_naming_the_host(tmp_path, chain):
    ports = free_ports(4)
    network, exchange = ports[:2], ports[2:]
    addresses = {h: ["127.0.0.1", network[i], exchange[i]] for i, h in enumerate(host_names(2))}
    with socket.create_server(("127.0.0.1", network[1])):  # algo-2's LightGBM port is taken
        environ = {hosts.ADDRESSES_ENV: json.dumps(addresses), **FAST_FAIL}
        results = run_hosts_job(tmp_path, HP, {"train": chain}, 2, timeout=300, environ=environ)
    for host, result in results.items():
        assert result.returncode != 0, host
        failure = _failure(tmp_path, host)
        assert f"Host algo-2: port {network[1]} (LightGBM network) is in use" in failure, failure


def test_the_first_hosts_exchange_port_in_use_names_the_first_host(tmp_path, chain):
    ports = free_ports(4)
    network, exchange = ports[:2], ports[2:]
    addresses = {h: ["127.0.0.1", network[i], exchange[i]] for i, h in enumerate(host_names(2))}
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", exchange[0]))  # bound, not listening: connections are refused
    try:
        environ = {hosts.ADDRESSES_ENV: json.dumps(addresses), hosts.TIMEOUT_ENV: "5"}
        results = run_hosts_job(tmp_path, HP, {"train": chain}, 2, timeout=300, environ=environ)
    finally:
        blocker.close()
    assert results["algo-1"].returncode != 0 and results["algo-2"].returncode != 0
    assert f"Host algo-1: port {exchange[0]} (the hosts' exchange) is in use" in _failure(tmp_path, "algo-1")
    assert "Host algo-1 did not accept host algo-2's connection" in _failure(tmp_path, "algo-2")


def test_resourceconfig_hosts_that_differ_from_sm_hosts_fail_naming_the_host(tmp_path, chain):
    base = write_job_tree(tmp_path / "opt" / "ml", HP, {"train": chain}, hosts=("algo-1", "algo-2"))
    environ = {
        **os.environ,
        "SAGEMAKER_BASE_DIR": str(base),
        "SM_CURRENT_HOST": "algo-1",
        "SM_HOSTS": '["algo-1", "algo-3"]',
        "SM_CHANNELS": '["train"]',
        "SM_HPS": json.dumps(HP),
    }
    command = [sys.executable, "-c", "import sys; from forecaster.container.train import main; sys.exit(main())"]
    result = subprocess.run(command, env=environ, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode != 0
    failure = (base / "output" / "failure").read_text()
    expected = "HostError: Host algo-1: the hosts of resourceconfig.json (['algo-1', 'algo-2'])"
    assert failure.startswith(expected), failure


def test_cli_trains_on_hosts_with_the_voting_learner(tmp_path, chain):
    from forecaster.cli.main import main
    from forecaster.model import ForecastModel

    hp = [arg for key, value in HP.items() if key != "horizon" for arg in ("--hp", f"{key}={value}")]
    argv = ["train", "--data", str(chain), "--model-dir", str(tmp_path / "m"), "--horizon", "7", "--hosts", "2"]
    assert main([*argv, *hp, "--hp", "tree_learner=voting"]) == 0
    assert ForecastModel.load(tmp_path / "m").schema.horizon == 7
    metadata = json.loads((tmp_path / "m" / "metadata.json").read_text())
    assert metadata["hosts"] == ["algo-1", "algo-2"] and metadata["hyperparameters"]["tree_learner"] == "voting"
    log = (tmp_path / "m.hosts" / "algo-2" / "output" / "data" / hosts.HOST_REPORT_FILE).read_text()
    assert json.loads(log)["partitions"] == ["store_id=S002", "store_id=S004"]


def test_shares_split_replicated_partitions_by_index_and_keep_sharded_ones():
    names = ["a", "b", "c", "d", "e"]
    assert shares([names, names], ["h1", "h2"], sharded=False) == [["a", "c", "e"], ["b", "d"]]
    assert shares([names, names], ["h1", "h2"], sharded=True) == [["a", "c", "e"], ["b", "d"]]  # copied whole
    assert shares([["b", "a"], ["c"]], ["h1", "h2"], sharded=True) == [["a", "b"], ["c"]]
    with pytest.raises(DataValidationError, match="Host h2: partition 'b' of the train channel is also on host h1"):
        shares([["a", "b"], ["b", "c"]], ["h1", "h2"], sharded=True)
    with pytest.raises(DataValidationError, match=r"Host h2 has no partition of the train channel to train on \(x\)"):
        shares([["a"], []], ["h1", "h2"], sharded=True, problems=["", "x"])
