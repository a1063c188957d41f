"""Airflow tests: real Airflow with a SQLite metadata DB in a temporary AIRFLOW_HOME (run by ``make airflow-test``).

Airflow reads its configuration when it is first imported, so the environment is set here, before any test
module imports it. Without Airflow (the main venv) these tests are not collected.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DAGS = REPO / "pipeline" / "airflow"

if importlib.util.find_spec("airflow") is None:
    collect_ignore_glob = ["test_*.py"]
else:
    _HOME = Path(tempfile.mkdtemp(prefix="forecaster-airflow-home-"))
    os.environ.update(
        AIRFLOW_HOME=str(_HOME),
        AIRFLOW__CORE__DAGS_FOLDER=str(DAGS),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{_HOME / 'airflow.db'}",
        AIRFLOW__CORE__UNIT_TEST_MODE="False",
        AIRFLOW_CONN_AWS_DEFAULT="aws://",
        OMP_WAIT_POLICY="PASSIVE",
    )


@pytest.fixture(scope="session", autouse=True)
def airflow_db():
    """``airflow db migrate`` once into the temporary home; removed at the end."""
    home = Path(os.environ["AIRFLOW_HOME"])
    result = subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    from forecaster.orchestration.dags import SAGEMAKER_POOL

    pool = [sys.executable, "-m", "airflow", "pools", "set", SAGEMAKER_POOL, "4", "SageMaker pipeline executions"]
    result = subprocess.run(pool, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    yield home
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def forecaster_cli() -> str:
    """The main venv's ``forecaster`` (the local backend runs it: the SDK extra does not fit Airflow's pins)."""
    cli = os.environ.get("FORECASTER_CLI") or str(REPO / ".venv" / "bin" / "forecaster")
    assert Path(cli).is_file(), f"{cli} is missing: run `make venv` (or set FORECASTER_CLI)"
    return cli


@pytest.fixture(scope="session")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS))


@pytest.fixture(scope="session")
def flow(tmp_path_factory, dagbag, forecaster_cli):
    """The local flow of test_local_flow.py (its model and outputs also feed the sagemaker-backend tests)."""
    from dags.helpers import (
        FIRST_DAY,
        QUALITY_DAY,
        SECOND_DAY,
        TRAIN_DAY,
        local_config,
        run_dag,
        write_source,
    )

    tmp = tmp_path_factory.mktemp("flow")
    write_source(tmp / "source")
    config = local_config(tmp, tmp / "source", forecaster_cli)
    result = {"tmp": tmp, "config": config}
    with pytest.MonkeyPatch.context() as mp:
        result["retrain"] = run_dag(
            dagbag, mp, "forecaster_retrain", TRAIN_DAY, config, backend="local", auto_approve=True
        )
        result["first"] = run_dag(dagbag, mp, "forecaster_daily_forecast", FIRST_DAY, config)
        result["second"] = run_dag(dagbag, mp, "forecaster_daily_forecast", SECOND_DAY, config)
        result["quality"] = run_dag(dagbag, mp, "forecaster_model_quality", QUALITY_DAY, config)
        for key, day in (("first_files", FIRST_DAY), ("second_files", SECOND_DAY)):
            folder = tmp / "deliveries" / str(day)
            result[key] = {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}
        result["rerun"] = run_dag(dagbag, mp, "forecaster_daily_forecast", FIRST_DAY, config)
    return result
