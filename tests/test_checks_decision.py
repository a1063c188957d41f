import json

import pytest

from forecaster.checks import decision, schemas
from forecaster.cli.main import main
from forecaster.errors import DataValidationError


def _put(directory, document, name="constraint_violations.json"):
    directory.mkdir(parents=True, exist_ok=True)
    (directory / name).write_text(json.dumps(document))
    return directory


def test_no_violations_no_retrain(tmp_path):
    a = _put(tmp_path / "dq", {"violations": []})
    b = tmp_path / "empty"
    b.mkdir()  # no file = no violation
    assert (
        main(
            ["decide-retrain", "--input", f"violations={a}", "--input", f"violations={b}", "--out", str(tmp_path / "d")]
        )
        == 0
    )
    doc = json.loads((tmp_path / "d" / "decision.json").read_text())
    schemas.validate(doc, "decision", "d")
    assert doc["retrain"] is False and doc["reasons"] == []


def test_each_kind_of_violation(tmp_path):
    dq = _put(
        tmp_path / "dq",
        {
            "violations": [
                {"feature_name": "discount", "constraint_check_type": "baseline_drift_check", "description": "d"},
                {"feature_name": "x", "constraint_check_type": "missing_column_check", "description": "m"},
            ]
        },
    )
    doc = decision.decide([dq])
    assert doc["retrain"] is True and doc["reasons"] == ["data drift on 1 feature(s): discount"]
    assert doc["data_issues"] == ["missing_column_check on x: m"]
    assert decision.decide([dq], min_drifted_features=2)["retrain"] is False

    schema_only = _put(
        tmp_path / "schema",
        {"violations": [{"feature_name": "x", "constraint_check_type": "extra_column_check", "description": "e"}]},
    )
    assert decision.decide([schema_only])["retrain"] is False

    mq = _put(
        tmp_path / "mq",
        {
            "violations": [
                {"metric_name": "mae", "constraint_check_type": "GreaterThanThreshold", "description": "Metric mae ..."}
            ]
        },
    )
    shap = _put(
        tmp_path / "shap",
        {
            "version": "1.0",
            "violations": [
                {
                    "label": "label0",
                    "metric_name": "shap",
                    "constraint_check_type": "feature_attribution_drift_check",
                    "description": "Feature attribution drift 0.7 exceeds threshold 0.9",
                }
            ],
        },
    )
    doc = decision.decide([mq, shap])
    assert doc["retrain"] is True
    assert doc["violation_counts"] == {"data_quality": 0, "model_quality": 1, "attribution": 1}
    assert any(r.startswith("model quality") for r in doc["reasons"])
    assert any(r.startswith("feature attribution drift") for r in doc["reasons"])


def test_max_wape_rule(tmp_path):
    ev = _put(tmp_path / "mq", {"forecast_metrics": {"overall": {"wape": 0.5}}}, name="evaluation.json")
    assert decision.decide([ev])["retrain"] is False
    assert decision.decide([ev], max_wape=0.4)["retrain"] is True
    nan = _put(tmp_path / "nan", {"forecast_metrics": {"overall": {"wape": "NaN"}}}, name="evaluation.json")
    doc = decision.decide([nan], max_wape=0.4)
    assert doc["retrain"] is True and "is 'NaN', not a number: the limit 0.4 cannot be checked" in doc["reasons"][0]
    # an evaluation of a window without sales writes null (strict JSON): not a pass either
    null = _put(tmp_path / "null", {"forecast_metrics": {"overall": {"wape": None}}}, name="evaluation.json")
    doc = decision.decide([null], max_wape=0.4)
    assert doc["retrain"] is True
    assert "is null (no sales in the window?), not a number: the limit 0.4" in doc["reasons"][0]
    data_quality = _put(tmp_path / "dq", {"dataset": {"item_count": 3}, "features": []}, name="statistics.json")
    assert decision.decide([data_quality], max_wape=0.4)["reasons"] == []  # no forecast metrics: nothing to check
    _put(tmp_path / "mq", {"forecast_metrics": {"overall": {"wape": 0.5}}}, name="statistics.json")  # check's pair
    assert len(decision.decide([ev], max_wape=0.4)["reasons"]) == 1  # one folder, one reason (was listed twice)
    alone = _put(tmp_path / "stats", {"forecast_metrics": {"overall": {"wape": 0.5}}}, name="statistics.json")
    assert decision.decide([alone], max_wape=0.4)["retrain"] is True  # statistics.json alone still counts


def test_malformed_violation_file(tmp_path, capsys):
    bad = _put(tmp_path / "bad", {"oops": 1})
    assert main(["decide-retrain", "--input", f"violations={bad}", "--out", str(tmp_path / "d")]) == 3
    assert "needs a top-level 'violations' list" in capsys.readouterr().err


def test_a_file_given_by_path_is_read_whatever_its_name_and_a_missing_path_is_an_error(tmp_path, capsys):
    """my.json with 22 drift violations once decided "no retrain": only *violations*.json names were read."""
    drift = [{"feature_name": "discount", "constraint_check_type": "baseline_drift_check", "description": "moved"}]
    mine = _put(tmp_path / "in", {"violations": drift}, name="my.json") / "my.json"
    assert main(["decide-retrain", "--input", f"violations={mine}", "--out", str(tmp_path / "d")]) == 0
    assert json.loads((tmp_path / "d" / "decision.json").read_text())["retrain"] is True
    (tmp_path / "in" / "empty.json").write_text("")
    assert (
        main(
            ["decide-retrain", "--input", f"violations={tmp_path / 'in' / 'empty.json'}", "--out", str(tmp_path / "e")]
        )
        == 3
    )
    assert "empty.json" in capsys.readouterr().err and not (tmp_path / "e").exists()
    assert main(["decide-retrain", "--input", f"violations={tmp_path / 'typo'}", "--out", str(tmp_path / "f")]) == 3
    assert "typo. Pass --input violations=PATH with an existing path" in capsys.readouterr().err
    with pytest.raises(DataValidationError, match="typo does not exist"):  # the Python API says the same
        decision.decide([tmp_path / "typo"])
