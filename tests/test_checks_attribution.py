import json

import numpy as np
import pytest
from sklearn.metrics import ndcg_score

from forecaster.checks import attribution, schemas
from forecaster.cli.main import main
from forecaster.errors import DataValidationError

BASE = {"promo_flag": 0.40, "lag_7": 0.30, "price": 0.20, "day_of_week": 0.10}


def test_documented_worked_example():
    score = attribution.ndcg({"SAT": 0.70, "GPA": 0.50, "rank": 0.05}, {"SAT": 0.10, "GPA": 0.20, "rank": 0.70})
    assert score == pytest.approx(0.6876, abs=1e-4)


def test_forecaster_examples():
    swapped = {"lag_7": 0.45, "promo_flag": 0.35, "price": 0.15, "day_of_week": 0.05}
    assert attribution.ndcg(BASE, swapped) == pytest.approx(0.9496, abs=1e-4)
    promo_last = {"day_of_week": 0.40, "lag_7": 0.30, "price": 0.20, "promo_flag": 0.05}
    assert attribution.ndcg(BASE, promo_last) == pytest.approx(0.7668, abs=1e-4)


def test_same_ranking_scores_one_and_magnitudes_do_not_matter():
    assert attribution.ndcg(BASE, BASE) == pytest.approx(1.0)
    assert attribution.ndcg(BASE, {k: v * 100 for k, v in BASE.items()}) == pytest.approx(1.0)


def test_equals_sklearn_including_ties_and_missing_features():
    rng = np.random.default_rng(0)
    for _ in range(50):
        base = rng.random(12)
        cur = np.round(rng.random(12), 1)  # many ties
        names = [f"f{i}" for i in range(12)]
        current = {n: c for n, c in zip(names, cur, strict=True) if c > 0.15}  # absent -> 0
        expected = ndcg_score([base], [[current.get(n, 0.0) for n in names]])
        assert attribution.ndcg(dict(zip(names, base, strict=True)), current) == pytest.approx(expected)


def test_negative_baseline_is_rejected():
    with pytest.raises(DataValidationError, match="non-negative"):
        attribution.ndcg({"a": -1.0}, {"a": 1.0})


@pytest.mark.parametrize(
    ("current", "match"),
    [
        ({"promo_flag": float("nan"), "lag_7": 0.3}, "finite, non-negative"),  # scored 0.99, a pass
        ({"promo_flag": -0.4, "lag_7": 0.3}, "finite, non-negative"),
        ({"other": 0.4, "names": 0.3}, "name none of the baseline's features"),  # scored 0.87, called drift
    ],
)
def test_current_attributions_that_cannot_be_compared_are_refused(current, match):
    with pytest.raises(DataValidationError, match=match):
        attribution.ndcg(BASE, current)


def _analysis(values, expected=1.0):
    return {
        "version": "1.0",
        "explanations": {"kernel_shap": {"label0": {"global_shap_values": values, "expected_value": expected}}},
    }


def test_cli_reordered_attributions_violate_identical_do_not(tmp_path):
    (tmp_path / "base").mkdir()
    (tmp_path / "cur").mkdir()
    (tmp_path / "base" / "analysis.json").write_text(json.dumps(_analysis(BASE)))
    (tmp_path / "cur" / "analysis.json").write_text(json.dumps(_analysis(BASE)))
    args = [
        "check",
        "attribution-drift",
        "--input",
        f"baseline={tmp_path / 'base'}",
        "--input",
        f"current={tmp_path / 'cur'}",
        "--out",
        str(tmp_path / "v"),
    ]
    assert main(args) == 0
    doc = json.loads((tmp_path / "v" / "constraint_violations.json").read_text())
    schemas.validate(doc, "attribution_violations", "test")
    assert doc["violations"] == []
    reordered = dict(zip(BASE, reversed(list(BASE.values())), strict=True))
    (tmp_path / "cur" / "analysis.json").write_text(json.dumps(_analysis(reordered)))
    assert main([*args, "--fail-on-violation"]) == 1
    doc = json.loads((tmp_path / "v" / "constraint_violations.json").read_text())
    schemas.validate(doc, "attribution_violations", "test")
    assert len(doc["violations"]) == 1
    (violation,) = doc["violations"]
    assert violation["label"] == "label0" and violation["constraint_check_type"] == "feature_attribution_drift_check"
    ndcg = json.loads((tmp_path / "v" / "ndcg.json").read_text())["labels"][0]["ndcg"]
    assert ndcg < 0.9 and str(ndcg) in violation["description"]


def test_threshold_is_validated(tmp_path):
    with pytest.raises(Exception, match="'threshold' parameter"):
        attribution.drift(_analysis(BASE), _analysis(BASE), threshold=1.5)
