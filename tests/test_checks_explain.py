import itertools
import json
import math

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
import shap

from forecaster.checks import explain, schemas, treeshap
from forecaster.cli.main import main


@pytest.fixture(scope="module")
def model_and_features(tmp_path_factory):
    """A small trained model and its inference feature rows (header-less CSV, schema order)."""
    from forecaster.config import TrainConfig
    from forecaster.forecasting import build_inference_features
    from forecaster.spec import DatasetSpec
    from forecaster.synth import SYNTH_SPEC, generate
    from forecaster.training import fit_artifact

    frame = generate(stores=3, items=4, days=120, seed=0)
    cutoff = frame["date"].max() - pd.Timedelta(days=7)
    history, future = frame[frame["date"] <= cutoff], frame[frame["date"] > cutoff]
    model_dir = tmp_path_factory.mktemp("model")
    spec = DatasetSpec.from_dict(SYNTH_SPEC)
    fit_artifact(history, spec, TrainConfig.from_hyperparameters({"horizon": 7, "num_boost_round": 30}), model_dir)
    features, _ = build_inference_features(model_dir, history, future.drop(columns=[spec.target]))
    path = model_dir.parent / "features.csv"
    features.to_csv(path, header=False, index=False)
    return model_dir, path, features


def _categorical_model(seed=0):
    rng = np.random.default_rng(seed)
    n = 3000
    X = np.column_stack([rng.integers(0, 6, n), rng.normal(size=n), rng.normal(size=n), rng.integers(0, 3, n)])
    X = X.astype(float)
    X[rng.random(n) < 0.1, 1] = np.nan
    y = np.array([3, -1, 0, 2, -2, 1])[X[:, 0].astype(int)] + np.nan_to_num(X[:, 1]) * X[:, 2] + X[:, 3]
    params = {"objective": "regression", "verbosity": -1, "num_leaves": 8, "min_data_in_leaf": 20, "seed": 0}
    booster = lgb.train(params, lgb.Dataset(X, y, categorical_feature=[0, 3]), 40)
    return booster, X


def test_flat_trees_predict_like_lightgbm_with_categorical_and_missing():
    booster, X = _categorical_model()
    X = X.copy()
    X[:50, 0] = np.nan  # missing category
    X[50:60, 0] = 17  # unseen category
    assert np.allclose(treeshap.predict_raw(treeshap.flatten(booster), X), booster.predict(X, raw_score=True))


@pytest.mark.slow
def test_interventional_shap_equals_brute_force_shapley_with_categorical_splits():
    booster, X = _categorical_model()
    rows, background = X[:5], X[100:104]
    values = treeshap.interventional_shap(treeshap.flatten(booster), rows, background)
    p = X.shape[1]
    for i, x in enumerate(rows):
        exact = np.zeros(p)
        for r in background:

            def v(subset, x=x, r=r):
                hybrid = r.copy()
                hybrid[list(subset)] = x[list(subset)]
                return booster.predict(hybrid[None, :], raw_score=True)[0]

            for j in range(p):
                others = [k for k in range(p) if k != j]
                for size in range(p):
                    weight = math.factorial(size) * math.factorial(p - size - 1) / math.factorial(p)
                    for subset in itertools.combinations(others, size):
                        exact[j] += weight * (v((*subset, j)) - v(subset))
        exact /= len(background)
        assert np.allclose(values[i, :-1], exact, atol=1e-9)
    assert values[0, -1] == pytest.approx(booster.predict(background, raw_score=True).mean())


def test_interventional_matches_shap_without_categorical_splits():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(1000, 5))
    X[rng.random(X.shape) < 0.1] = np.nan
    y = 2 * X[:, 0] + np.nan_to_num(X[:, 1]) * X[:, 2]
    booster = lgb.train({"objective": "regression", "verbosity": -1}, lgb.Dataset(X, y), 30)
    ours = treeshap.interventional_shap(treeshap.flatten(booster), X[:100], X[500:510])
    reference = shap.TreeExplainer(booster, data=X[500:510], feature_perturbation="interventional")
    assert np.abs(ours[:, :-1] - reference.shap_values(X[:100])).max() < 1e-6
    assert ours[0, -1] == pytest.approx(reference.expected_value)


def test_pred_contrib_equals_shap_tree_path_dependent(model_and_features):
    from forecaster.model import ForecastModel

    model_dir, _, features = model_and_features
    model = ForecastModel.load(model_dir)
    X = features.to_numpy(float)
    reference = shap.TreeExplainer(model.boosters["mean"], feature_perturbation="tree_path_dependent")
    contrib = model.contributions(X)
    assert np.abs(contrib[:, :-1] - reference.shap_values(X)).max() <= 1e-6
    assert contrib[0, -1] == pytest.approx(reference.expected_value, abs=1e-6)


def test_kmeans_background_keeps_categorical_codes_whole():
    rng = np.random.default_rng(0)
    X = np.column_stack([rng.integers(0, 5, 500), rng.normal(size=500)]).astype(float)
    X[::7, 1] = np.nan
    centres = explain.kmeans_background(X, [0], num_clusters=4, sample=300, seed=0)
    assert centres.shape == (4, 2)
    assert np.all(np.mod(centres[:, 0], 1) == 0) and not np.isnan(centres).any()
    assert np.array_equal(centres, explain.kmeans_background(X, [0], num_clusters=4, sample=300, seed=0))


def test_cli_explain_writes_clarify_analysis(model_and_features, tmp_path):
    from forecaster.model import ForecastModel

    model_dir, features_path, features = model_and_features
    out = tmp_path / "explain"
    assert (
        main(
            [
                "explain",
                "--model-dir",
                str(model_dir),
                "--input",
                f"dataset={features_path}",
                "--out",
                str(out),
                "--num-clusters",
                "5",
                "--max-rows",
                "50",
            ]
        )
        == 0
    )
    analysis = json.loads((out / "analysis.json").read_text())
    schemas.validate(analysis, "analysis", "analysis.json")
    label = analysis["explanations"]["kernel_shap"]["label0"]
    assert list(label["global_shap_values"]) == list(features.columns)
    local = pd.read_csv(out / "explanations_shap" / "out.csv")
    assert len(local) == 50 and analysis["forecaster"]["background_rows"] == 5
    model = ForecastModel.load(model_dir)
    X = features.to_numpy(float)[local["row_index"]]
    raw = model.boosters["mean"].predict(X, raw_score=True)
    # local accuracy: expected value + row sum = raw score
    assert np.allclose(local.drop(columns="row_index").sum(axis=1) + label["expected_value"], raw)
    means = local.drop(columns="row_index").abs().mean()
    assert means.to_dict() == pytest.approx(label["global_shap_values"])


def test_explain_same_data_twice_has_no_attribution_drift(model_and_features, tmp_path):
    model_dir, features_path, _ = model_and_features
    for name in ("a", "b"):
        assert (
            main(
                [
                    "explain",
                    "--model-dir",
                    str(model_dir),
                    "--input",
                    f"dataset={features_path}",
                    "--out",
                    str(tmp_path / name),
                    "--method",
                    "tree_path_dependent",
                    "--no-local",
                ]
            )
            == 0
        )
    assert not (tmp_path / "a" / "explanations_shap").exists()
    assert (
        main(
            [
                "check",
                "attribution-drift",
                "--input",
                f"baseline={tmp_path / 'a'}",
                "--input",
                f"current={tmp_path / 'b'}",
                "--out",
                str(tmp_path / "v"),
                "--fail-on-violation",
            ]
        )
        == 0
    )


def test_bad_parameters_are_named(model_and_features, tmp_path, capsys):
    model_dir, features_path, _ = model_and_features
    assert (
        main(
            [
                "explain",
                "--model-dir",
                str(model_dir),
                "--input",
                f"dataset={features_path}",
                "--out",
                str(tmp_path / "x"),
                "--num-clusters",
                "0",
            ]
        )
        == 2
    )
    assert "'num_clusters' parameter of explain" in capsys.readouterr().err


def test_an_infinite_feature_value_is_named_not_a_kmeans_traceback(model_and_features, tmp_path, capsys):
    """What the server refuses, explain refuses with the same words (once: KMeans' "Input X contains NaN")."""
    model_dir, _, features = model_and_features
    bad = features.copy()
    bad.iloc[2, 3] = np.inf
    path = tmp_path / "features.csv"
    bad.to_csv(path, header=False, index=False)
    args = ["explain", "--model-dir", str(model_dir), "--input", f"dataset={path}", "--out", str(tmp_path / "x")]
    assert main(args) == 3
    err = capsys.readouterr().err
    assert f"{path}: Row 3, column 4 ({features.columns[3]}): inf is not a finite number" in err
    assert not (tmp_path / "x").exists()


def test_too_few_rows_for_their_own_background_are_refused_unless_a_background_is_given(
    model_and_features, tmp_path, capsys
):
    """One row explained against itself gave every attribution 0, and the drift check a false violation."""
    model_dir, path, features = model_and_features
    one = tmp_path / "one.csv"
    features.head(1).to_csv(one, header=False, index=False)
    args = ["explain", "--model-dir", str(model_dir), "--input", f"dataset={one}"]
    assert main([*args, "--out", str(tmp_path / "x")]) == 3
    assert "holds one distinct row" in capsys.readouterr().err and not (tmp_path / "x").exists()
    assert main([*args, "--input", f"background={path}", "--out", str(tmp_path / "y")]) == 0
    values = json.loads((tmp_path / "y" / "analysis.json").read_text())["explanations"]["kernel_shap"]["label0"]
    assert any(v > 0 for v in values["global_shap_values"].values())
