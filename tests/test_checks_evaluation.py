import json

import numpy as np
import pandas as pd
import pytest

from forecaster import metrics
from forecaster.checks import evaluation, schemas
from forecaster.cli.main import main
from forecaster.errors import DataValidationError


def _frames(n_series=30, days=10, seed=0):
    rng = np.random.default_rng(seed)
    dates = pd.date_range("2024-05-01", periods=days)
    keys = pd.MultiIndex.from_product([[f"S{i}" for i in range(n_series)], dates], names=["store_id", "date"])
    truth = keys.to_frame(index=False)
    truth["item_id"] = "I1"
    truth["campaign"] = rng.integers(0, 2, len(truth))
    truth["units_sold"] = rng.poisson(5 + 10 * truth["campaign"])
    truth["discount"] = 0.0
    truth["holiday"] = 0
    pred = truth[["store_id", "item_id", "date"]].copy()
    pred["mean"] = truth["units_sold"] * 0.9 + 1
    pred["p10"] = pred["mean"] * 0.5
    pred["p50"] = pred["mean"] * 0.95  # the point forecast (mean) is what is scored, not p50
    pred["p90"] = pred["mean"] * 1.6
    pred["date"] = pred["date"].dt.strftime("%Y-%m-%d")  # CSV-style dates must still join
    return pred, truth


def test_metrics_match_reference_and_split_by_campaign():
    pred, truth = _frames()
    doc = evaluation.evaluate(
        pred, truth, id_cols=["store_id", "item_id"], time_col="date", target_col="units_sold", campaign_col="campaign"
    )
    schemas.validate(doc, "evaluation", "test")
    y, yhat = truth["units_sold"].to_numpy(float), pred["mean"].to_numpy(float)
    assert doc["point_forecast"] == "mean"
    assert doc["regression_metrics"]["mae"]["value"] == pytest.approx(metrics.mae(y, yhat))
    assert doc["regression_metrics"]["r2"]["value"] == pytest.approx(metrics.r2(y, yhat))
    assert isinstance(doc["regression_metrics"]["rmse"]["standard_deviation"], float)  # 300 rows >= 200
    overall = doc["forecast_metrics"]["overall"]
    assert overall["wape"] == pytest.approx(metrics.wape(y, yhat))
    assert overall["pinball"]["p90"] == pytest.approx(metrics.pinball(y, pred["p90"], 0.9))
    inside = ((y >= pred["p10"]) & (y <= pred["p90"])).mean()
    assert overall["coverage"]["p10_p90"] == pytest.approx(inside)
    sold = y > 0  # coverage on days with sales: zero sales do not count as hits
    assert (~sold).sum() > 0 and overall["coverage"]["p10_sold"] == pytest.approx((y[sold] <= pred["p10"][sold]).mean())
    camp = truth["campaign"].to_numpy() == 1
    assert doc["forecast_metrics"]["campaign"]["rows"] == camp.sum()
    assert doc["forecast_metrics"]["campaign"]["wape"] == pytest.approx(metrics.wape(y[camp], yhat[camp]))
    assert doc["forecast_metrics"]["non_campaign"]["bias"] == pytest.approx(metrics.bias(y[~camp], yhat[~camp]))


def test_small_sample_has_nan_standard_deviation_and_unmatched_count():
    pred, truth = _frames(n_series=3, days=5)
    truth = truth.iloc[:-2]
    doc = evaluation.evaluate(pred, truth, id_cols=["store_id", "item_id"], time_col="date", target_col="units_sold")
    assert doc["regression_metrics"]["mae"]["standard_deviation"] == "NaN"
    assert doc["dataset"]["unmatched_predictions"] == 2
    assert set(doc["forecast_metrics"]) == {"overall"}  # no campaign column given


def test_no_overlap_is_a_clear_error():
    pred, truth = _frames(n_series=2, days=3)
    truth["date"] = truth["date"] + pd.Timedelta(days=30)
    with pytest.raises(DataValidationError, match="None of the 6 predictions has an actual"):
        evaluation.evaluate(pred, truth, id_cols=["store_id", "item_id"], time_col="date", target_col="units_sold")


def test_forecasts_that_are_no_finite_numbers_are_refused_not_scored_as_nan():
    """A gate once passed (0 violations) on all-NaN predictions: every metric was NaN and no check fired."""
    pred, truth = _frames(n_series=2, days=3)
    columns = {"id_cols": ["store_id", "item_id"], "time_col": "date", "target_col": "units_sold"}
    for column, value in (("mean", np.nan), ("p10", np.inf), ("p90", "abc")):
        bad = pred.astype({column: object})
        bad.loc[4, column] = value
        with pytest.raises(DataValidationError, match=rf"row 5, column .{column}.: .* not a finite number"):
            evaluation.evaluate(bad, truth, **columns)


def test_a_prediction_given_twice_is_refused_not_scored_twice():
    """Two files with the same forecasts (a re-run beside the first) once doubled every row's weight."""
    pred, truth = _frames(n_series=2, days=3)
    twice = pd.concat([pred, pred.iloc[[4]].assign(date="2024-05-02T00:00:00")], ignore_index=True)
    columns = {"id_cols": ["store_id", "item_id"], "time_col": "date", "target_col": "units_sold"}
    with pytest.raises(
        DataValidationError,
        match=r"predictions have more than one row for store_id=S1, item_id=I1, "
        r"date=2024-05-02 \(row 7\); keep one forecast per series and day",
    ):
        evaluation.evaluate(twice, truth, **columns)


def test_missing_truth_column_names_it():
    pred, truth = _frames(n_series=2, days=3)
    with pytest.raises(DataValidationError, match="'units_sold'"):
        evaluation.evaluate(
            pred, truth.drop(columns="units_sold"), id_cols=["store_id"], time_col="date", target_col="units_sold"
        )


def test_cli_evaluate_writes_evaluation_json(tmp_path):
    pred, truth = _frames()
    pred.to_csv(tmp_path / "pred.csv", index=False)
    truth.to_parquet(tmp_path / "truth.parquet")
    out = tmp_path / "eval"
    rc = main(
        [
            "evaluate",
            "--input",
            f"predictions={tmp_path / 'pred.csv'}",
            "--input",
            f"truth={tmp_path / 'truth.parquet'}",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    doc = json.loads((out / "evaluation.json").read_text())
    schemas.validate(doc, "evaluation", "cli")
    assert {"campaign", "non_campaign"} <= set(doc["forecast_metrics"])
    rows = pd.read_csv(out / "evaluation.csv")  # the managed model-quality baseline's dataset
    assert list(rows.columns) == ["mean", "actual"] and len(rows) == doc["dataset"]["item_count"]
    assert abs((rows["mean"] - rows.actual).abs().mean() - doc["regression_metrics"]["mae"]["value"]) < 1e-9


def test_cli_unknown_input_name_is_rejected(tmp_path, capsys):
    rc = main(["evaluate", "--input", f"prediction={tmp_path}", "--out", str(tmp_path / "o")])
    assert rc == 2
    assert "Unknown input 'prediction'" in capsys.readouterr().err
    rc = main(["evaluate", "--input", "predictions", "--out", str(tmp_path / "o")])
    assert rc == 2


def test_cli_evaluate_reads_a_postprocess_folder_without_its_order_proposals(tmp_path):
    pred, truth = _frames()
    truth.to_parquet(tmp_path / "truth.parquet")
    folder = tmp_path / "forecasts"  # what Postprocess writes: forecasts.csv and order_proposals.csv
    folder.mkdir()
    pred.to_csv(folder / "forecasts.csv", index=False)
    pred.assign(order_units=1.0).to_csv(folder / "order_proposals.csv", index=False)
    outs = {}
    for name, predictions in (("file", folder / "forecasts.csv"), ("folder", folder)):
        outs[name] = tmp_path / name
        args = ["evaluate", "--input", f"predictions={predictions}", "--input", f"truth={tmp_path / 'truth.parquet'}"]
        assert main([*args, "--out", str(outs[name])]) == 0
    documents = [json.loads((out / "evaluation.json").read_text()) for out in outs.values()]
    assert documents[0]["forecast_metrics"] == documents[1]["forecast_metrics"]
    assert len(pd.read_csv(outs["folder"] / "evaluation.csv")) == len(pred)


def test_cli_evaluate_joins_zero_padded_codes_of_a_csv_with_the_truth(tmp_path):
    pred, truth = _frames()
    codes = {f"S{i}": f"{i:03d}" for i in range(30)}  # 000, 001, ...: a type guess would read 0, 1, ...
    pred, truth = (frame.assign(store_id=frame["store_id"].map(codes)) for frame in (pred, truth))
    pred.to_csv(tmp_path / "pred.csv", index=False)
    truth.to_parquet(tmp_path / "truth.parquet")
    out = tmp_path / "eval"
    args = ["evaluate", "--input", f"predictions={tmp_path / 'pred.csv'}", "--input"]
    assert main([*args, f"truth={tmp_path / 'truth.parquet'}", "--out", str(out)]) == 0
    assert json.loads((out / "evaluation.json").read_text())["dataset"]["item_count"] == len(truth)


def test_actuals_given_twice_that_differ_or_that_are_text_are_refused_naming_the_row(caplog):
    pred, truth = _frames(n_series=2, days=3)
    columns = {"id_cols": ["store_id", "item_id"], "time_col": "date", "target_col": "units_sold"}
    same = evaluation.evaluate(pred, pd.concat([truth, truth], ignore_index=True), **columns)
    assert same == evaluation.evaluate(pred, truth, **columns)  # the same export twice: one row each
    other = pd.concat([truth, truth.assign(units_sold=truth["units_sold"] * 10 + 1)], ignore_index=True)
    with pytest.raises(DataValidationError, match=r"truth have more than one row for store_id=S0.*keep one actual"):
        evaluation.evaluate(pred, other, **columns)  # the last copy won silently
    text = truth.astype({"units_sold": object})
    text.loc[4, "units_sold"] = "abc"
    with pytest.raises(DataValidationError, match=r"truth's row 5: the actual 'abc' is not a number"):
        evaluation.evaluate(pred, text, **columns)
    unknown = truth.astype({"units_sold": float})
    unknown.loc[unknown.index[:4], "units_sold"] = np.nan  # not known yet: not scored, and said
    with caplog.at_level("INFO", logger="forecaster.checks.evaluation"):
        document = evaluation.evaluate(pred, unknown, **columns)
    assert document["dataset"]["unmatched_predictions"] == 4 and "2 of 6 predictions have an actual" in caplog.text
    assert "WARNING" in caplog.text  # under half


def test_cli_evaluate_reads_a_forecast_folder_without_its_skipped_series(tmp_path):
    pred, truth = _frames()
    truth.to_parquet(tmp_path / "truth.parquet")
    folder = tmp_path / "forecasts"  # what `forecaster forecast` writes when a series was not forecast
    folder.mkdir()
    pred.to_csv(folder / "forecasts.csv", index=False)
    pd.DataFrame({"store_id": ["S99"], "item_id": ["I1"], "reason": ["inactive"]}).to_csv(
        folder / "skipped_series.csv", index=False
    )
    args = ["evaluate", "--input", f"predictions={folder}", "--input", f"truth={tmp_path / 'truth.parquet'}"]
    assert main([*args, "--out", str(tmp_path / "out")]) == 0
    assert len(pd.read_csv(tmp_path / "out" / "evaluation.csv")) == len(pred)


def test_negative_actuals_count_as_zero_as_in_training_or_are_refused_as_the_spec_says(caplog):
    """Returns in the truth were scored as they are; training and split clip them (negative_target)."""
    pred, truth = _frames()
    truth.loc[3, "units_sold"] = -5
    columns = {"id_cols": ["store_id", "item_id"], "time_col": "date", "target_col": "units_sold"}
    doc = evaluation.evaluate(pred, truth, **columns)
    y, yhat = truth["units_sold"].clip(lower=0).to_numpy(float), pred["mean"].to_numpy(float)
    assert doc["forecast_metrics"]["overall"]["wape"] == pytest.approx(metrics.wape(y, yhat))
    assert "1 of 300 actuals are negative (returns); counted as 0" in caplog.text
    with pytest.raises(DataValidationError, match=r"The truth's row 4: the actual -5 is negative \(returns\)"):
        evaluation.evaluate(pred, truth, **columns, negative_target="error")
