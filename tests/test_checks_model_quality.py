import json

import numpy as np
import pandas as pd
import pytest

from forecaster.checks import model_quality, schemas
from forecaster.cli.main import main


def _write(tmp_path, scale=1.0, seed=0):
    rng = np.random.default_rng(seed)
    n = 400
    truth = pd.DataFrame(
        {
            "store_id": np.arange(n) % 20,
            "item_id": "I1",
            "date": pd.Timestamp("2024-05-01") + pd.to_timedelta(np.arange(n) // 20, "D"),
            "units_sold": rng.poisson(10, n),
            "campaign": rng.integers(0, 2, n),
            "discount": 1.0,
            "holiday": 0,
        }
    )
    noise = rng.normal(0, 2 * scale, n)
    pred = truth[["store_id", "item_id", "date"]].assign(mean=truth["units_sold"] + noise)
    pred = pred.assign(p10=pred["mean"] - 3, p50=pred["mean"], p90=pred["mean"] + 3)
    pred.to_csv(tmp_path / f"pred{scale}.csv", index=False)
    truth.to_csv(tmp_path / "truth.csv", index=False)
    return tmp_path / f"pred{scale}.csv", tmp_path / "truth.csv"


def test_baseline_and_check_round_trip(tmp_path):
    pred, truth = _write(tmp_path)
    assert (
        main(
            ["evaluate", "--input", f"predictions={pred}", "--input", f"truth={truth}", "--out", str(tmp_path / "eval")]
        )
        == 0
    )
    assert (
        main(["baseline", "model-quality", "--input", f"evaluation={tmp_path / 'eval'}", "--out", str(tmp_path / "mq")])
        == 0
    )
    constraints = json.loads((tmp_path / "mq" / "constraints.json").read_text())
    schemas.validate(constraints, "model_quality_constraints", "c")
    schemas.validate(json.loads((tmp_path / "mq" / "statistics.json").read_text()), "model_quality_statistics", "s")
    evaluation = json.loads((tmp_path / "eval" / "evaluation.json").read_text())
    mae = evaluation["regression_metrics"]["mae"]["value"]
    assert constraints["regression_constraints"]["mae"] == {
        "threshold": pytest.approx(mae * 1.1),
        "comparison_operator": "GreaterThanThreshold",
    }
    assert constraints["regression_constraints"]["r2"]["comparison_operator"] == "LessThanThreshold"
    assert "wape" in constraints["regression_constraints"]

    check = ["check", "model-quality", "--input", f"baseline={tmp_path / 'mq'}", "--input", f"truth={truth}"]
    assert main([*check, "--input", f"predictions={pred}", "--out", str(tmp_path / "same")]) == 0
    same = json.loads((tmp_path / "same" / "constraint_violations.json").read_text())
    assert same == {"violations": []}

    worse, _ = _write(tmp_path, scale=3.0)
    assert (
        main([*check, "--input", f"predictions={worse}", "--out", str(tmp_path / "worse"), "--fail-on-violation"]) == 1
    )
    doc = json.loads((tmp_path / "worse" / "constraint_violations.json").read_text())
    schemas.validate(doc, "model_quality_violations", "v")
    assert {v["metric_name"] for v in doc["violations"]} >= {"mae", "rmse", "r2", "wape"}
    assert "+/-" in doc["violations"][0]["description"]
    for name in ("evaluation.json", "statistics.json"):
        assert (tmp_path / "worse" / name).is_file()


def test_tolerance_zero_is_model_monitor_behaviour():
    doc = {"regression_metrics": {m: {"value": 2.0, "standard_deviation": 0.1} for m in ("mae", "mse", "rmse", "r2")}}
    constraints = model_quality.suggest_constraints(doc, tolerance=0)
    assert constraints["regression_constraints"]["mae"]["threshold"] == 2.0
    assert model_quality.check(doc, constraints) == {"violations": []}
    with pytest.raises(Exception, match="'tolerance' parameter"):
        model_quality.suggest_constraints(doc, tolerance=-1)


def test_check_reads_the_ground_truth_with_the_spec_and_reports_coverage_on_days_with_sales(tmp_path):
    """A user's truth file: own column names, day-first dates (``01/05/2024`` is the 1st of May), many zero days."""
    pred, truth = _write(tmp_path)
    evaluation = tmp_path / "eval"
    assert (
        main(["evaluate", "--input", f"predictions={pred}", "--input", f"truth={truth}", "--out", str(evaluation)]) == 0
    )
    assert (
        main(["baseline", "model-quality", "--input", f"evaluation={evaluation}", "--out", str(tmp_path / "mq")]) == 0
    )
    spec = {"keys": ["Filiale", "Artikel"], "date": "Datum", "target": "Menge", "date_format": "%d/%m/%Y"}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    names = {"store_id": "Filiale", "item_id": "Artikel", "date": "Datum", "units_sold": "Menge"}
    users = pd.read_csv(truth).rename(columns=names)
    users["Menge"] = users["Menge"].where(np.arange(len(users)) % 3 > 0, 0)  # a third of the days sold nothing
    users["Datum"] = pd.to_datetime(users["Datum"]).dt.strftime("%d/%m/%Y")
    users.to_csv(tmp_path / "users_truth.csv", index=False)
    pd.read_csv(pred).rename(columns=names).to_csv(tmp_path / "users_pred.csv", index=False)  # ISO dates
    check = ["check", "model-quality", "--input", f"baseline={tmp_path / 'mq'}", "--spec", str(tmp_path / "spec.json")]
    inputs = [
        "--input",
        f"truth={tmp_path / 'users_truth.csv'}",
        "--input",
        f"predictions={tmp_path / 'users_pred.csv'}",
    ]
    assert main([*check, *inputs, "--out", str(tmp_path / "out")]) == 0
    document = json.loads((tmp_path / "out" / "evaluation.json").read_text())
    assert document["dataset"] == {**document["dataset"], "item_count": len(users), "unmatched_predictions": 0}
    coverage = document["forecast_metrics"]["overall"]["coverage"]
    sold = users["Menge"].to_numpy() > 0
    p10 = pd.read_csv(pred)["p10"].to_numpy()
    assert coverage["p10_sold"] == pytest.approx(np.mean(users["Menge"].to_numpy()[sold] <= p10[sold]))
    assert coverage["p10"] > coverage["p10_sold"]  # every zero day counts as below P10
    statistics = json.loads((tmp_path / "out" / "statistics.json").read_text())
    assert statistics["forecast_metrics"]["overall"]["coverage"]["p90_sold"] == coverage["p90_sold"]


def test_a_constrained_metric_that_cannot_be_computed_is_a_violation():
    """All-zero actuals make WAPE NaN (and constant ones R2): the gate passed them as if they were within bounds."""
    baseline = {
        "regression_metrics": {m: {"value": 2.0, "standard_deviation": 0.1} for m in ("mae", "mse", "rmse", "r2")},
        "forecast_metrics": {"overall": {"wape": 0.3}},
    }
    constraints = model_quality.suggest_constraints(baseline)
    current = json.loads(json.dumps(baseline))
    current["regression_metrics"]["r2"]["value"] = "NaN"
    current["forecast_metrics"]["overall"]["wape"] = float("nan")
    violations = model_quality.check(current, constraints)["violations"]
    assert {v["metric_name"] for v in violations} == {"r2", "wape"}
    assert all("could not be computed" in v["description"] for v in violations)
    assert model_quality.check(baseline, constraints) == {"violations": []}
