"""Helpers for the pipeline-definition tests: build offline with the network blocked, read the JSON."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

GOLDEN = Path(__file__).parent / "golden"
#: set FORECASTER_UPDATE_GOLDEN=1 to rewrite the golden files (then review the diff)
UPDATE_GOLDEN = os.environ.get("FORECASTER_UPDATE_GOLDEN") == "1"
#: tiny, fast training through the pipelines' own parameters (one LightGBM thread: the CI machine is busy)
FAST_PIPELINE_PARAMETERS: dict[str, Any] = {
    "Horizon": 7,
    "NumBoostRound": 20,
    "QuantileNumBoostRound": 10,
    "NumLeaves": 7,
    "NumThreads": 1,
    "TransformMaxConcurrent": 1,
}


class NetworkBlocked(AssertionError):
    pass


def build_offline(tmp_dir: Path, key: str, *extra: str) -> dict:
    """Run ``forecaster pipeline definition KEY --out FILE`` with every socket connection refused."""
    from forecaster.cli.main import main

    attempts: list[Any] = []
    original = socket.socket.connect

    def refuse(self, address):
        attempts.append(address)
        raise NetworkBlocked(f"definition tried to connect to {address}")

    out = tmp_dir / f"{key}.json"
    socket.socket.connect = refuse
    try:
        assert main(["pipeline", "definition", key, "--out", str(out), *extra]) == 0
    finally:
        socket.socket.connect = original
    assert attempts == []
    return json.loads(out.read_text())


def walk(node: Any) -> Iterator[Any]:
    """Every dict, list and scalar inside ``node``."""
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def all_steps(document: dict) -> dict[str, dict]:
    """Steps by name, including those nested in a condition's branches."""
    found = {}
    for node in walk(document["Steps"]):
        if isinstance(node, dict) and "Name" in node and "Type" in node and "Arguments" in node:
            found[node["Name"]] = node
    return found


def references(node: Any, prefix: str) -> set[str]:
    """The ``{"Get": "<prefix>..."}`` targets inside ``node`` (e.g. prefix ``Parameters.`` or ``Steps.``)."""
    return {
        item["Get"]
        for item in walk(node)
        if isinstance(item, dict) and isinstance(item.get("Get"), str) and item["Get"].startswith(prefix)
    }


def upstream(step: dict) -> set[str]:
    """Names of the steps whose properties ``step`` reads, plus its DependsOn."""
    names = {ref.split(".")[1] for ref in references(step, "Steps.")}
    return names | set(step.get("DependsOn", []))


def check_golden(document: dict, name: str) -> None:
    from forecaster.pipelines.definitions import normalise

    path = GOLDEN / f"{name}.json"
    normalised = normalise(document)
    if UPDATE_GOLDEN:
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps(normalised, indent=2, sort_keys=True) + "\n")
    assert path.exists(), f"{path} is missing: generate it with FORECASTER_UPDATE_GOLDEN=1 and review it"
    assert normalised == json.loads(path.read_text()), (
        f"{name} definition differs from {path}; if the change is intended, rerun with FORECASTER_UPDATE_GOLDEN=1 "
        "and review the diff"
    )
