"""The core commands end to end through the real `forecaster` console script."""

import subprocess
import sys

import pandas as pd
import pytest

from forecaster.cli.main import main


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "forecaster.cli.main", *map(str, args)], capture_output=True, text=True, check=False
    )


@pytest.mark.slow
def test_synth_train_preprocess_postprocess_forecast(tmp_path):
    assert main(["synth", "--out", str(tmp_path / "data"), "--stores", "2", "--items", "3", "--days", "90"]) == 0
    frame = pd.read_csv(tmp_path / "data" / "sales.csv", parse_dates=["date"])
    cut = frame.date.max() - pd.Timedelta(days=7)
    frame[frame.date <= cut].to_csv(tmp_path / "data" / "sales.csv", index=False)
    future = frame.loc[frame.date > cut, ["store_id", "item_id", "date", "campaign", "discount", "holiday"]]
    future.to_parquet(tmp_path / "future.parquet")
    trained = _cli(
        "train", "--data", tmp_path / "data", "--model-dir", tmp_path / "model", "--horizon", "7",
        "--hp", "num_boost_round=10", "--hp", "quantile_num_boost_round=5", "--hp", "num_threads=1",
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    assert '"wape"' in trained.stdout
    history = tmp_path / "data" / "sales.csv"
    future_path, out = tmp_path / "future.parquet", tmp_path / "forecast.csv"
    result = _cli(
        "forecast", "--model-dir", tmp_path / "model", "--history", history, "--future", future_path, "--out", out
    )
    assert result.returncode == 0, result.stderr
    forecast = pd.read_csv(tmp_path / "forecast.csv")
    assert list(forecast.columns) == ["store_id", "item_id", "date", "p10", "p50", "p90", "mean"]
    assert len(forecast) == 2 * 3 * 7
    for target in (future_path, tmp_path / "data" / "forecast.csv"):  # over --future, into --history's folder
        before = future_path.read_bytes()
        refused = _cli("forecast", "--model-dir", tmp_path / "model", "--history", tmp_path / "data", "--future",
                       future_path, "--out", target)  # fmt: skip
        assert refused.returncode == 2 and "Choose an --out outside the input files and folders" in refused.stderr
        assert future_path.read_bytes() == before and not (tmp_path / "data" / "forecast.csv").exists()


@pytest.mark.slow
def test_errors_are_one_line_with_the_reason_and_a_nonzero_exit(tmp_path):
    result = _cli("train", "--data", tmp_path / "missing.csv", "--model-dir", tmp_path / "m", "--spec", "default")
    assert result.returncode == 3
    assert result.stderr.strip().splitlines()[-1].startswith("forecaster train: error: Input path")
    result = _cli("train", "--data", tmp_path, "--model-dir", tmp_path / "m", "--hp", "horizon")
    assert result.returncode == 2 and "must look like KEY=VALUE" in result.stderr
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("command", ["train", "preprocess", "group-totals", "split"])
@pytest.mark.parametrize("workers", ["0", "-2", "two"])
def test_a_worker_count_below_one_is_refused_before_anything_runs(tmp_path, capsys, command, workers):
    with pytest.raises(SystemExit) as stopped:
        main([command, "--workers", workers, "--help-never-reached"])
    assert stopped.value.code == 2
    error = capsys.readouterr().err
    assert "argument --workers: must be a whole number of at least 1" in error and repr(workers) in error
    assert not any(tmp_path.iterdir())
