"""Deliver: per-store order proposals and forecasts, written atomically and idempotently per logical date.

Layout of the destination (a folder or an ``s3://`` prefix)::

    <destination>/<YYYY-MM-DD>/orders/<store column>=<store>.csv      order proposals of one store
    <destination>/<YYYY-MM-DD>/forecasts/<store column>=<store>.csv   P10/P50/P90 of one store
    <destination>/<YYYY-MM-DD>/decision.json                          the retrain decision of that run
    <destination>/<YYYY-MM-DD>/manifest.json                          written last: files, rows, execution, model
    <destination>/latest.json                                         the newest delivered date

A rerun of a date replaces that date's folder as a whole (locally by renaming a staged folder into place; on
S3 object by object, stale objects removed, the manifest last) and touches nothing of other dates:
``latest.json`` only moves forward.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from forecaster.checks.contract import DECISION_FILE
from forecaster.errors import DataValidationError
from forecaster.io import atomic_directory, read_table, write_json, write_table
from forecaster.orchestration.storage import Storage, is_s3, join

MANIFEST = "manifest.json"
LATEST = "latest.json"


def _safe(value: Any) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(value)) or "_"


def _frame(storage: Storage, location: str) -> pd.DataFrame:
    with storage.local_copy(location) as local:
        return read_table(local, dtype=str)


def split_by_store(frame: pd.DataFrame, store_column: str, folder: Path) -> list[str]:
    """Write one CSV per store into ``folder``; return the file names."""
    if store_column not in frame.columns:
        raise DataValidationError(
            f"The pipeline output has no store column {store_column!r} (columns: {list(frame.columns)})."
        )
    names = []
    for store, rows in frame.groupby(store_column, sort=True, observed=True):
        name = f"{_safe(store_column)}={_safe(store)}.csv"
        write_table(rows, folder / name)
        names.append(name)
    return names


def deliver(
    storage: Storage,
    destination: str,
    day: dt.date,
    *,
    forecasts: str,
    orders: str,
    decision: str,
    store_column: str,
    date_column: str,
    execution: str = "",
    model: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Deliver the files of ``day``; return the manifest (``decision`` holds the decision document).

    ``execution`` (the pipeline execution ARN or local run id) and ``model`` (``model_package``: the model package
    ARN, ``model``: its artifact) say what made the files; model-quality checks that model.
    """
    decision_doc = json.loads(storage.read_bytes(decision))
    forecast_frame, order_frame = _frame(storage, forecasts), _frame(storage, orders)
    target = join(destination, str(day))
    with tempfile.TemporaryDirectory(prefix="forecaster-deliver-") as tmp:
        stage = Path(tmp) / str(day)
        files = [f"forecasts/{n}" for n in split_by_store(forecast_frame, store_column, stage / "forecasts")]
        files += [f"orders/{n}" for n in split_by_store(order_frame, store_column, stage / "orders")]
        write_json(decision_doc, stage / DECISION_FILE)
        manifest = {
            "date": str(day),
            "stores": int(forecast_frame[store_column].nunique()),
            "forecast_rows": len(forecast_frame),
            "order_rows": len(order_frame),
            "first_day": str(forecast_frame[date_column].min()),
            "days": int(forecast_frame[date_column].nunique()),
            "files": sorted([*files, DECISION_FILE]),
            "execution": execution,
            "model_package": (model or {}).get("model_package", ""),
            "model": (model or {}).get("model", ""),
            "decision": decision_doc,
            "delivered_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
        write_json(manifest, stage / MANIFEST)
        _publish(storage, stage, target, [*manifest["files"], MANIFEST])
    _advance_latest(storage, destination, day)
    return manifest


def _publish(storage: Storage, stage: Path, target: str, names: list[str]) -> None:
    """Make ``target`` hold exactly the staged files (manifest last)."""
    if not is_s3(target):
        with atomic_directory(target) as folder:
            for name in names:
                (Path(folder) / name).parent.mkdir(parents=True, exist_ok=True)
                (stage / name).rename(Path(folder) / name)
        return
    old = set(storage.list(target))
    for name in names:  # the manifest is last in names: readers that wait for it see a complete date
        storage.put_file(stage / name, join(target, name))
    for stale in sorted(old - {join(target, name) for name in names}):
        storage.delete(stale)


def _advance_latest(storage: Storage, destination: str, day: dt.date) -> bool:
    """Point ``latest.json`` at ``day`` unless it already names a later date (reruns never move it back)."""
    location = join(destination, LATEST)
    if storage.exists(location):
        current = json.loads(storage.read_bytes(location)).get("date", "")
        if current > str(day):
            return False
    storage.put_bytes(json.dumps({"date": str(day), "manifest": join(str(day), MANIFEST)}).encode(), location)
    return True


def read_manifest(storage: Storage, destination: str, day: dt.date) -> dict[str, Any] | None:
    """The manifest of ``day``'s delivery, or None when that date was not delivered (completely)."""
    location = join(destination, str(day), MANIFEST)
    if not storage.exists(location):
        return None
    return json.loads(storage.read_bytes(location))


def delivered_forecasts(storage: Storage, destination: str, day: dt.date) -> pd.DataFrame:
    """The forecasts delivered for ``day``, all stores in one frame."""
    manifest = read_manifest(storage, destination, day)
    if manifest is None:
        raise DataValidationError(f"No complete delivery for {day} in {destination} (no {MANIFEST}).")
    names = [name for name in manifest["files"] if name.startswith("forecasts/")]
    return pd.concat([_frame(storage, join(destination, str(day), n)) for n in names], ignore_index=True)
