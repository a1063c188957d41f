"""Synthetic source drops and a dag.test() runner for the Airflow tests."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from forecaster.io import write_table
from forecaster.synth import SYNTH_SPEC, generate

HORIZON = 7
START = dt.date(2024, 1, 1)
TRAIN_DAY = START + dt.timedelta(days=100)  # the first model trains on the 100 days before it
FIRST_DAY = TRAIN_DAY  # the first daily forecast, right after training
SECOND_DAY = FIRST_DAY + dt.timedelta(days=14)  # campaigns got deeper in the week before it
QUALITY_DAY = SECOND_DAY + dt.timedelta(days=HORIZON)  # checks the second forecast against its ground truth
FAST = {"NumBoostRound": 20, "QuantileNumBoostRound": 10, "NumLeaves": 7, "NumThreads": 1, "TransformMaxConcurrent": 1}


def deep_campaigns(frame: pd.DataFrame, since: dt.date) -> pd.DataFrame:
    """From ``since`` on every series is on campaign at half price and sells ~2.5x (what a chain-wide push does)."""
    out = frame.copy()
    rows = out["date"] >= pd.Timestamp(since)
    out.loc[rows, "campaign"] = 1
    out.loc[rows, "discount"] = 0.5
    rng = np.random.default_rng(0)
    out.loc[rows, "units_sold"] = rng.poisson(out.loc[rows, "units_sold"].to_numpy() * 2.5 + 1)
    return out


def write_source(root: Path, *, stores: int = 3, items: int = 4) -> pd.DataFrame:
    """``sales/<day>.csv`` for every day up to QUALITY_DAY and ``plan/<day>.csv`` of the two forecast days."""
    days = (QUALITY_DAY - START).days + HORIZON
    world = generate(stores=stores, items=items, days=days, seed=3, start=str(START))
    world["date"] = pd.to_datetime(world["date"])
    world = deep_campaigns(world, SECOND_DAY - dt.timedelta(days=7))
    for day, rows in world.groupby(world["date"].dt.date):
        if day < QUALITY_DAY:
            write_table(rows.assign(date=rows["date"].dt.strftime("%Y-%m-%d")), root / "sales" / f"{day}.csv")
    plan_columns = ["store_id", "item_id", "date", *SYNTH_SPEC["known_future"]]
    for day in (FIRST_DAY, SECOND_DAY):
        window = (world["date"] >= pd.Timestamp(day)) & (world["date"] < pd.Timestamp(day + dt.timedelta(days=HORIZON)))
        plan = world.loc[window, plan_columns]
        write_table(plan.assign(date=plan["date"].dt.strftime("%Y-%m-%d")), root / "plan" / f"{day}.csv")
    return world


def local_config(tmp: Path, source: Path | str, cli: str, **extra: Any) -> dict[str, Any]:
    """The forecaster_config of the local backend for the tests: tiny, fast training; drift limits for 12 series.

    With 12 series the history features take 12 values each, so by chance 3 of them drift by more than 0.55 from
    the training window's baseline on the first day; the deep campaigns move 24 features by more than that.
    """
    spec = tmp / "spec.json"
    spec.write_text(json.dumps(SYNTH_SPEC))
    return {
        "backend": "local",
        "spec": str(spec),
        "source": str(source),
        "destination": str(tmp / "deliveries"),
        "workdir": str(tmp / "work"),
        "history_days": 100,
        "train_days": 100,
        "forecaster_cli": cli,
        "parameters": {
            "build": {
                **FAST,
                "Horizon": HORIZON,
                "MaxWape": 5,
                "ModelQualityTolerance": 0.5,
                "DataDriftThreshold": 0.35,
            },
            "inference": {"TransformMaxConcurrent": 1, "MinDriftedFeatures": 10, "NdcgThreshold": 0.7},
        },
        **extra,
    }


def run_dag(
    dagbag: Any, monkeypatch: Any, dag_id: str, day: dt.date, config: dict[str, Any], *, same_run_id=False, **conf: Any
) -> dict:
    """``dag.test()`` of ``dag_id`` for ``day`` with ``config`` as the forecaster_config Variable.

    Returns ``{task_id: state}``, read at once: a later dag.test() of the same logical date replaces the run.
    ``same_run_id``: run_after is the logical date, so every such call has the same run id (a rerun of the run).
    """
    import pendulum

    monkeypatch.setenv("AIRFLOW_VAR_FORECASTER_CONFIG", json.dumps(config))
    dag = dagbag.get_dag(dag_id)
    logical = pendulum.datetime(day.year, day.month, day.day, tz="UTC")
    # the backend always given ("": the config's): without it, test_bad_drop.py after test_sagemaker_backend.py
    # ran on the sagemaker backend of the earlier tests' runs (same DAG object and metadata DB)
    run_conf = {"backend": "", **conf}
    dag_run = dag.test(logical_date=logical, run_conf=run_conf, run_after=logical if same_run_id else None)
    return {ti.task_id: getattr(ti.state, "value", ti.state) for ti in dag_run.get_task_instances()}
