"""A new user's own data end to end: ended and new series, gaps, returns, day-first dates, non-ASCII names.

The data set is generated here (one shop, a raw export's habits): items that stop being sold, items that start
late, days without a row (no sale), negative sales (returns), dates as ``13/03/2022`` and German/Chinese/Russian
column and item names. It must go through ``train``, ``forecast``, ``split`` and both local pipelines.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from forecaster.cli.main import main
from forecaster.errors import DataValidationError, InvalidParameterError
from forecaster.io import read_json, read_table, write_table
from forecaster.pipelines.local import run_pipeline
from forecaster.registry import open_registry
from forecaster.spec import DatasetSpec

HORIZON = 7
DAYS = 140
ITEMS = ["Äpfel", "Möhren", "白菜", "помидоры", "Zwiebeln", "Gurken", "Paprika", "Kürbis", "Lauch", "Spinat"]
ENDED = {"Lauch": 100, "Spinat": 125}  # item -> last day with sales (both end before the last 2 weeks)
NEW = {"Kürbis": DAYS - 4}  # item -> first day (inside the last week: no history before the evaluation window)
SPEC = {
    "keys": ["Filiale", "Artikel"],
    "date": "Datum",
    "target": "Menge",
    "known_future": ["Rabatt_€"],
    "date_format": "%d/%m/%Y",
    "missing_days": "zero",
    "negative_target": "clip",
}
FAST = ["--hp", "num_boost_round=20", "--hp", "quantile_num_boost_round=10", "--hp", "num_leaves=7"]
FAST_PIPELINE = {
    "Horizon": HORIZON,
    "NumBoostRound": 20,
    "QuantileNumBoostRound": 10,
    "NumLeaves": 7,
    "NumThreads": 1,
    "TransformMaxConcurrent": 1,
}


def user_frame(seed: int = 0) -> pd.DataFrame:
    """One shop's daily sales with the habits of a raw export (see the module docstring)."""
    rng = np.random.default_rng(seed)
    dates = pd.date_range("2023-01-01", periods=DAYS, freq="D")
    rows = []
    for number, item in enumerate(ITEMS):
        first, last = NEW.get(item, 0), ENDED.get(item, DAYS - 1)
        level = 3.0 + 2 * number
        discount = (rng.random(DAYS) < 0.1) * 0.2
        sold = rng.poisson(level * (1 + 2 * discount) * (1 + 0.3 * (dates.dayofweek >= 5)))
        for day in range(first, last + 1):
            rows.append(("Laden-Süd", item, dates[day].strftime("%d/%m/%Y"), float(sold[day]), discount[day]))
    frame = pd.DataFrame(rows, columns=["Filiale", "Artikel", "Datum", "Menge", "Rabatt_€"])
    frame = frame[(frame["Menge"] > 0) | (rng.random(len(frame)) < 0.3)]  # most zero days have no row
    frame = frame.drop(index=frame.sample(frac=0.03, random_state=seed).index)  # and some sale days are lost
    returns = frame.sample(n=5, random_state=seed + 1).index
    frame.loc[returns, "Menge"] = -frame.loc[returns, "Menge"].clip(lower=1)
    return frame.reset_index(drop=True)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("laden") / "verkäufe"
    write_table(user_frame(), folder / "verkäufe.csv")
    (folder / "spec.json").write_text(json.dumps(SPEC, ensure_ascii=False))
    return folder


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, data_dir) -> Path:
    model = tmp_path_factory.mktemp("modell") / "modell"
    argv = ["train", "--data", str(data_dir / "verkäufe.csv"), "--model-dir", str(model), "--horizon", "7", *FAST]
    assert main(argv) == 0
    return model


def test_train_reports_gaps_and_clipped_returns(model_dir, data_dir):
    metadata = read_json(model_dir / "metadata.json")
    report = metadata["data_report"]
    assert report["missing_days_as"] == "zero"
    assert report["missing_days"] > 0 and report["series_with_gaps"] > 0
    spec = read_json(model_dir / "feature_schema.json")["spec"]  # the spec beside --data FILE was used
    assert spec["date"] == "Datum" and spec["date_format"] == "%d/%m/%Y"


def test_training_a_folder_warns_of_the_returns_once_and_records_the_spec_it_found(data_dir, tmp_path, caplog):
    """Both passes over a partition validate it: the clipped returns were logged twice, the spec named 'default'."""
    import logging

    argv = ["train", "--data", str(data_dir), "--model-dir", str(tmp_path / "m"), "--horizon", "7", *FAST]
    with caplog.at_level(logging.WARNING, logger="forecaster.spec"):
        assert main(argv) == 0
    assert sum("(returns); counted as 0" in record.getMessage() for record in caplog.records) == 1
    assert read_json(tmp_path / "m" / "metadata.json")["hyperparameters"]["spec"] == str(data_dir / "spec.json")


def test_forecast_skips_ended_and_new_series_and_reports_them(model_dir, tmp_path, capsys):
    frame = user_frame()
    dates = pd.to_datetime(frame["Datum"], format="%d/%m/%Y")
    origin = dates.max()
    future_days = pd.date_range(origin + pd.Timedelta(days=1), periods=HORIZON, freq="D")
    planned = [item for item in ITEMS if item not in ENDED] + ["Neuheit-東"]  # a brand-new item: no history
    future = pd.DataFrame(
        [("Laden-Süd", item, day.strftime("%d/%m/%Y"), 0.0) for item in planned for day in future_days],
        columns=["Filiale", "Artikel", "Datum", "Rabatt_€"],
    )
    write_table(frame, tmp_path / "history.csv")
    write_table(future, tmp_path / "future.csv")
    out = tmp_path / "prognose.csv"
    argv = ["forecast", "--model-dir", str(model_dir), "--history", str(tmp_path / "history.csv")]
    assert main([*argv, "--future", str(tmp_path / "future.csv"), "--out", str(out)]) == 0
    forecasts = read_table(out)
    forecast_items = set(forecasts["Artikel"])
    assert forecast_items == set(planned) - {"Neuheit-東"}
    assert len(forecasts) == len(forecast_items) * HORIZON
    skipped = read_table(tmp_path / "skipped_series.csv")
    assert dict(zip(skipped["Artikel"], skipped["reason"], strict=True)) == {
        "Lauch": "ended",
        "Spinat": "ended",
        "Neuheit-東": "new",
    }
    assert "3 skipped (ended: 2, new: 1)" in capsys.readouterr().out
    # --active-days: a planned item without a sale in the last N history days is skipped too
    quiet = frame[(frame["Artikel"] != "Gurken") | (dates <= origin - pd.Timedelta(days=10))]
    write_table(quiet, tmp_path / "history.csv")
    assert main([*argv, "--future", str(tmp_path / "future.csv"), "--out", str(out), "--active-days", "10"]) == 0
    skipped = read_table(tmp_path / "skipped_series.csv")
    assert skipped.loc[skipped["Artikel"] == "Gurken", "reason"].tolist() == ["inactive"]
    assert "Gurken" not in set(read_table(out)["Artikel"])


def test_split_keeps_history_and_future_consistent(data_dir, tmp_path):
    out = tmp_path / "split"
    argv = ["split", "--input", f"data={data_dir}", "--horizon", "7"]  # the spec.json beside the data
    assert main([*argv, "--out", str(out)]) == 0
    spec = DatasetSpec.from_json(data_dir / "spec.json")
    history, future = read_table(out / "history"), read_table(out / "future")
    assert set(future["Artikel"]) <= set(history["Artikel"])  # the new item is not evaluated
    assert "Kürbis" not in set(future["Artikel"]) and "Lauch" not in set(future["Artikel"])
    assert (spec.validate_frame(history)["Menge"] >= 0).all()


def test_negative_target_can_be_refused_instead():
    spec = DatasetSpec.from_dict({**SPEC, "negative_target": "error"})
    with pytest.raises(DataValidationError, match=r"non-negative.*negative_target"):
        spec.validate_frame(user_frame())


def _skipped(keys_dir):
    """Preprocess's one skipped-series list (named after the history's first partition: here its one file)."""
    (listing,) = keys_dir.glob("skipped_series*.csv")
    return read_table(listing)


def test_build_and_inference_pipelines_run_on_the_users_data(data_dir, tmp_path):
    build = tmp_path / "build"
    record = run_pipeline("build", build, {**FAST_PIPELINE, "InputData": str(data_dir)}, progress=False)
    assert record["status"] == "Succeeded"
    skipped = _skipped(build / "Preprocess/output/keys")
    assert set(skipped["reason"]) <= {"ended", "new"}
    registry = record["registry"]
    open_registry(registry).approve("forecaster-demand", 1, "tested")
    frame = user_frame()
    dates = pd.to_datetime(frame["Datum"], format="%d/%m/%Y")
    cut = dates.max() - pd.Timedelta(days=HORIZON)
    quiet = (frame["Artikel"] == "Gurken") & (dates > cut - pd.Timedelta(days=10))  # no sale in the last 10 days
    write_table(frame[(dates <= cut) & ~quiet], tmp_path / "history" / "history.csv")
    future = frame.loc[dates > cut, ["Filiale", "Artikel", "Datum", "Rabatt_€"]]
    write_table(future, tmp_path / "future" / "future.csv")
    params = {"HistoryData": tmp_path / "history", "FutureData": tmp_path / "future", "TransformMaxConcurrent": 1}
    params["ActiveDays"] = 10  # the pipeline parameter of `forecaster preprocess --active-days`
    result = run_pipeline("inference", tmp_path / "inference", params, registry=registry, progress=False)
    assert result["status"] == "Succeeded"
    forecasts = read_table(tmp_path / "inference/Postprocess/output/forecasts/forecasts.csv")
    assert "Kürbis" not in set(forecasts["Artikel"]) and set(forecasts["Artikel"]) > {"Äpfel", "白菜", "помидоры"}
    skipped = _skipped(tmp_path / "inference/Preprocess/output/keys")
    assert {"Kürbis", "Lauch", "Spinat"} <= set(skipped["Artikel"])
    assert skipped.loc[skipped["Artikel"] == "Gurken", "reason"].tolist() == ["inactive"]
    assert "Gurken" not in set(forecasts["Artikel"])

    # model quality on the user's ground truth: the approved model's spec names its columns and date format
    write_table(frame[dates > cut], tmp_path / "truth" / "verkäufe.csv")
    forecast_file = tmp_path / "inference/Postprocess/output/forecasts/forecasts.csv"
    params = {"ForecastsData": forecast_file, "GroundTruthData": tmp_path / "truth"}
    quality = run_pipeline("model-quality", tmp_path / "quality", params, registry=registry, progress=False)
    assert quality["status"] == "Succeeded"
    used = Path(quality["parameters"]["ModelDataUrl"])  # the registered version's own copy of Train's model
    assert used.read_bytes() == Path(record["steps"]["Train"]["model_data"]).read_bytes()
    evaluation = read_json(tmp_path / "quality/ModelQualityCheck/output/violations/evaluation.json")
    overall = evaluation["forecast_metrics"]["overall"]
    assert overall["rows"] == len(forecasts)  # every forecast day has an actual
    assert {"p10_sold", "p50_sold", "p90_sold"} <= set(overall["coverage"])  # coverage on days with sales


def test_build_pipeline_fails_at_split_before_training_on_too_short_data(data_dir, tmp_path):
    short = tmp_path / "kurz"
    frame = user_frame()
    dates = pd.to_datetime(frame["Datum"], format="%d/%m/%Y")
    write_table(frame[dates >= dates.max() - pd.Timedelta(days=2 * HORIZON + 3)], short / "verkäufe.csv")
    (short / "spec.json").write_text(json.dumps(SPEC))
    with pytest.raises(Exception, match="Split") as error:
        run_pipeline("build", tmp_path / "run", {**FAST_PIPELINE, "InputData": str(short)}, progress=False)
    reason = str(error.value) + (tmp_path / "run" / "Split" / "log.txt").read_text()
    assert "training data covers" in reason and "min_history_days" in reason
    record = read_json(tmp_path / "run/run.json")
    assert record["steps"]["Split"]["status"] == "Failed"
    assert record["steps"].get("Train", {}).get("status") in (None, "NotExecuted", "Pending")


def test_build_pipeline_checks_training_parameters_before_any_step(data_dir, tmp_path):
    with pytest.raises(InvalidParameterError, match=r"'num_leaves' parameter of the Train step .* Got '1'"):
        run_pipeline("build", tmp_path / "run", {**FAST_PIPELINE, "NumLeaves": 1, "InputData": str(data_dir)})
    assert not (tmp_path / "run" / "Split").exists()
