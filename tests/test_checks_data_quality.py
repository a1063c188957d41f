import json

import numpy as np
import pandas as pd
import pytest

from forecaster.artifact import FeatureSchema
from forecaster.checks import data_quality, profile, schemas
from forecaster.cli.main import main
from forecaster.errors import DataValidationError
from forecaster.spec import DatasetSpec


def _features(n=5000, seed=0):
    rng = np.random.default_rng(seed)
    lag = rng.gamma(2.0, 3.0, n)
    lag[rng.random(n) < 0.05] = np.nan  # short histories: lags missing
    return pd.DataFrame(
        {
            "horizon": rng.integers(1, 8, n),
            "lag_7": lag,
            "discount": rng.choice([1.0, 0.9, 0.8], n, p=[0.7, 0.2, 0.1]),
            "temperature": rng.normal(18, 5, n),
            "store_id": rng.choice(["S1", "S2", "S3", "S4"], n),
        }
    )


def _check(base, current, declared=None):
    stats, constraints = data_quality.baseline(base, declared)
    violations, cur_stats, drift = data_quality.check(current, stats, constraints, declared)
    schemas.validate(violations, "data_quality_violations", "test")
    schemas.validate(cur_stats, "data_quality_statistics", "test")
    return [(v["feature_name"], v["constraint_check_type"]) for v in violations["violations"]], drift


def test_baseline_files_follow_model_monitor_layout():
    stats, constraints = data_quality.baseline(_features())
    schemas.validate(stats, "data_quality_statistics", "stats")
    schemas.validate(constraints, "data_quality_constraints", "constraints")
    by_name = {f["name"]: f for f in stats["features"]}
    assert by_name["horizon"]["inferred_type"] == "Integral"
    assert by_name["lag_7"]["inferred_type"] == "Fractional"
    assert by_name["store_id"]["inferred_type"] == "String"
    lag = by_name["lag_7"]["numerical_statistics"]
    assert lag["common"]["num_missing"] > 0
    buckets = lag["distribution"]["kll"]["buckets"]
    assert len(buckets) == 10 and sum(b["count"] for b in buckets) == lag["common"]["num_present"]
    assert buckets[0]["lower_bound"] == lag["min"] and buckets[-1]["upper_bound"] == lag["max"]
    cons = {f["name"]: f for f in constraints["features"]}
    assert cons["store_id"]["string_constraints"]["domains"] == ["S1", "S2", "S3", "S4"]
    assert cons["lag_7"]["completeness"] < 1.0
    assert constraints["monitoring_config"]["distribution_constraints"]["comparison_threshold"] == 0.1


def test_identical_and_resampled_data_have_no_violations():
    base = _features(seed=0)
    assert _check(base, base.copy())[0] == []
    assert _check(base, _features(seed=1).dropna(subset=["lag_7"]))[0] == []  # same distribution, new sample


def test_shifted_discount_is_drift_on_discount_only():
    base = _features(seed=0)
    current = _features(seed=1).dropna(subset=["lag_7"])
    current["discount"] = current["discount"] - 0.1  # deeper campaign discounts
    found, drift = _check(base, current)
    assert found == [("discount", "baseline_drift_check")]
    rows = {r["feature_name"]: r for r in drift}
    assert rows["discount"]["distance"] > 0.5 and not rows["temperature"]["drifted"]


def test_new_category_is_a_categorical_values_violation_only():
    base = _features(seed=0)
    current = base.copy()
    current.loc[current.index[:20], "store_id"] = "S99"  # 0.4 %: below the drift threshold
    found, _ = _check(base, current)
    assert found == [("store_id", "categorical_values_check")]


def test_dropped_and_added_columns():
    base = _features()
    found, _ = _check(base, base.drop(columns="temperature").assign(extra=1.0))
    assert sorted(found) == [("extra", "extra_column_check"), ("temperature", "missing_column_check")]


def test_type_and_completeness_violations():
    base = _features()
    current = base.copy()
    current["horizon"] = current["horizon"] + 0.5  # Integral baseline gets fractions
    current.loc[current.index[:500], "temperature"] = np.nan
    found, _ = _check(base, current)
    assert ("horizon", "data_type_check") in found
    assert ("temperature", "completeness_check") in found
    assert ("lag_7", "completeness_check") not in found


def test_categorical_drift_uses_l_infinity():
    base = _features()
    current = base.copy()
    current["store_id"] = np.where(np.arange(len(base)) % 2 == 0, "S1", current["store_id"])
    found, drift = _check(base, current)
    assert ("store_id", "baseline_drift_check") in found
    row = next(r for r in drift if r["feature_name"] == "store_id")
    p_base = base["store_id"].value_counts(normalize=True)
    p_cur = current["store_id"].value_counts(normalize=True)
    assert row["distance"] == pytest.approx((p_cur - p_base).abs().max())


def test_numeric_distance_is_ks_on_the_grid():
    rng = np.random.default_rng(3)
    base, cur = rng.normal(0, 1, 20000), rng.normal(0.5, 1, 20000)
    stats = profile.column_statistics(profile.prepare_column(pd.Series(base), "x"))
    distance = data_quality.numeric_distance(stats["numerical_statistics"]["distribution"], cur)
    # the exact two-sample KS statistic is ~0.197 for a 0.5 sigma shift; the 1 %-grid approximates it closely
    grid = np.sort(np.concatenate([base, cur]))
    exact = np.max(
        np.abs(
            np.searchsorted(np.sort(base), grid, "right") / 20000 - np.searchsorted(np.sort(cur), grid, "right") / 20000
        )
    )
    assert distance == pytest.approx(exact, abs=0.01)
    # a baseline written by AWS (buckets only) still works
    only_kll = {"kll": stats["numerical_statistics"]["distribution"]["kll"]}
    assert 0.1 < data_quality.numeric_distance(only_kll, cur) <= exact + 0.01


def test_headerless_rows_named_from_feature_schema(tmp_path, capsys):
    base = _features(n=500)
    codes = base.assign(store_id=base["store_id"].str[1:].astype(int) - 1)
    model = tmp_path / "model"
    model.mkdir()
    names = ("horizon", "lag_7", "discount", "temperature", "store_id")
    schema = FeatureSchema(
        feature_names=names,
        kinds={**dict.fromkeys(names, "float"), "horizon": "int", "store_id": "category"},
        categories={"store_id": ["S1", "S2", "S3", "S4"]},
        horizon=7,
        spec=DatasetSpec.preset("default"),
        scale_floor=1.0,
    )
    (model / "feature_schema.json").write_text(json.dumps(schema.to_dict()))
    codes.to_csv(tmp_path / "features.csv", header=False, index=False)
    rc = main(
        [
            "baseline",
            "data-quality",
            "--input",
            f"dataset={tmp_path / 'features.csv'}",
            "--model-dir",
            str(model),
            "--out",
            str(tmp_path / "baseline"),
        ]
    )
    assert rc == 0
    constraints = json.loads((tmp_path / "baseline" / "constraints.json").read_text())
    cons = {f["name"]: f for f in constraints["features"]}
    assert cons["store_id"]["inferred_type"] == "String"
    assert cons["store_id"]["string_constraints"]["domains"] == ["0", "1", "2", "3"]  # integer codes
    # a file with one column too few: the missing trailing column is reported
    codes.drop(columns="store_id").to_csv(tmp_path / "short.csv", header=False, index=False)
    rc = main(
        [
            "check",
            "data-quality",
            "--input",
            f"baseline={tmp_path / 'baseline'}",
            "--input",
            f"dataset={tmp_path / 'short.csv'}",
            "--model-dir",
            str(model),
            "--out",
            str(tmp_path / "v"),
            "--fail-on-violation",
        ]
    )
    assert rc == 1
    violations = json.loads((tmp_path / "v" / "constraint_violations.json").read_text())["violations"]
    assert [(v["feature_name"], v["constraint_check_type"]) for v in violations] == [
        ("store_id", "missing_column_check")
    ]
    assert (tmp_path / "v" / "feature_drift.json").is_file() and (tmp_path / "v" / "statistics.json").is_file()
    # a header in another order is read by name (it was read as a data row, columns mapped by position)
    swapped = tmp_path / "swapped"
    swapped.mkdir()
    codes[["lag_7", "horizon", "discount", "temperature", "store_id"]].to_csv(swapped / "features.csv", index=False)
    inputs = [
        "--input",
        f"baseline={tmp_path / 'baseline'}",
        "--input",
        f"dataset={swapped}",
        "--model-dir",
        str(model),
    ]
    assert main(["check", "data-quality", *inputs, "--out", str(tmp_path / "v2"), "--fail-on-violation"]) == 0
    # another table's file beside the features (preprocess' keys file) is refused, naming it
    pd.DataFrame({"store_id": ["S1"], "item_id": ["a"], "date": ["2024-01-01"]}).to_csv(
        swapped / "keys.csv", index=False
    )
    assert main(["check", "data-quality", *inputs, "--out", str(tmp_path / "v3")]) == 3
    assert "keys.csv starts with the header ['store_id', 'item_id', 'date']" in capsys.readouterr().err


def test_broken_baseline_is_rejected_with_its_path(tmp_path):
    (tmp_path / "statistics.json").write_text('{"version": 0.0, "dataset": {"item_count": 1}, "features": [{}]}')
    (tmp_path / "constraints.json").write_text('{"version": 0.0, "features": []}')
    with pytest.raises(DataValidationError, match=r"statistics\.json is not a valid data quality statistics file"):
        data_quality.read_baseline(tmp_path)


def test_failed_check_leaves_no_partial_output(tmp_path):
    out = tmp_path / "out"
    rc = main(
        [
            "check",
            "data-quality",
            "--input",
            f"baseline={tmp_path}",
            "--input",
            f"dataset={tmp_path / 'nope.csv'}",
            "--out",
            str(out),
        ]
    )
    assert rc == 3 and not out.exists()


def test_huge_values_give_finite_statistics_or_a_clear_refusal_never_bare_infinity(tmp_path, capsys):
    """std_dev of 1e200 once squared to inf and statistics.json held a bare Infinity (no JSON reader but Python's)."""
    pd.DataFrame({"a": [1.0, 2.0, 1e200, 3.0] * 5}).to_csv(tmp_path / "big.csv", index=False)
    assert (
        main(["baseline", "data-quality", "--input", f"dataset={tmp_path / 'big.csv'}", "--out", str(tmp_path / "ok")])
        == 0
    )
    text = (tmp_path / "ok" / "statistics.json").read_text()
    stats = json.loads(text, parse_constant=lambda name: pytest.fail(f"bare {name} in statistics.json"))
    numbers = stats["features"][0]["numerical_statistics"]
    assert numbers["std_dev"] == pytest.approx(np.std([1e-200, 2e-200, 1.0, 3e-200] * 5) * 1e200, rel=1e-12)
    assert numbers["mean"] == pytest.approx(2.5e199, rel=1e-12)
    pd.DataFrame({"a": [1.7e308, 1.7e308, 1.0]}).to_csv(tmp_path / "overflow.csv", index=False)
    out = tmp_path / "refused"
    rc = main(["baseline", "data-quality", "--input", f"dataset={tmp_path / 'overflow.csv'}", "--out", str(out)])
    assert rc == 3 and not out.exists()
    assert "features['a'].numerical_statistics.sum is inf" in capsys.readouterr().err


def test_raw_data_with_a_spec_does_not_profile_the_date_column(tmp_path):
    from forecaster.synth import generate

    frame = generate(stores=2, items=3, days=40, seed=0)
    base, current = frame[frame["date"] < "2024-01-31"], frame[frame["date"] >= "2024-01-31"]
    base.to_csv(tmp_path / "base.csv", index=False)
    current.to_csv(tmp_path / "current.csv", index=False)
    argv = ["--spec", "default", "--out"]
    assert (
        main(["baseline", "data-quality", "--input", f"dataset={tmp_path / 'base.csv'}", *argv, str(tmp_path / "b")])
        == 0
    )
    names = [f["name"] for f in json.loads((tmp_path / "b" / "constraints.json").read_text())["features"]]
    assert "date" not in names and {"store_id", "item_id", "units_sold"} <= set(names)
    inputs = ["--input", f"baseline={tmp_path / 'b'}", "--input", f"dataset={tmp_path / 'current.csv'}"]
    assert main(["check", "data-quality", *inputs, *argv, str(tmp_path / "v")]) == 0
    violations = json.loads((tmp_path / "v" / "constraint_violations.json").read_text())["violations"]
    assert "date" not in {v["feature_name"] for v in violations}  # every new day used to be a domain violation
    # without the spec the date column is profiled as a category and every new day is a violation
    assert (
        main(["baseline", "data-quality", "--input", f"dataset={tmp_path / 'base.csv'}", "--out", str(tmp_path / "b2")])
        == 0
    )
    inputs[1] = f"baseline={tmp_path / 'b2'}"
    assert main(["check", "data-quality", *inputs, "--out", str(tmp_path / "v2")]) == 0
    violations = json.loads((tmp_path / "v2" / "constraint_violations.json").read_text())["violations"]
    assert "date" in {v["feature_name"] for v in violations}


def test_an_output_directory_that_is_or_holds_an_input_is_refused_before_anything_is_written(tmp_path, capsys):
    pd.DataFrame({"a": [1.0, 2.0, 3.0] * 5}).to_csv(tmp_path / "data.csv", index=False)
    base = tmp_path / "base"
    assert main(["baseline", "data-quality", "--input", f"dataset={tmp_path / 'data.csv'}", "--out", str(base)]) == 0
    written = {p.name: p.read_bytes() for p in base.iterdir()}
    inputs = ["--input", f"baseline={base}", "--input", f"dataset={tmp_path / 'data.csv'}"]
    rc = main(["check", "data-quality", *inputs, "--out", str(base)])  # would have deleted constraints.json
    assert rc == 2 and "overlaps --input baseline" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in base.iterdir()} == written
    rc = main(["baseline", "data-quality", "--input", f"dataset={tmp_path / 'data.csv'}", "--out", str(tmp_path)])
    assert rc == 2 and "overlaps --input dataset" in capsys.readouterr().err  # the input file lies in --out
    assert (tmp_path / "data.csv").exists()


def test_a_buckets_only_baseline_shows_no_drift_against_its_own_integers():
    """Values on a bucket's upper bound were counted in the next bucket by the baseline, in this one by the check."""
    values = pd.Series(np.arange(600) % 6, dtype=float)  # integers 0-5: many values sit on bucket bounds
    stats = profile.column_statistics(profile.prepare_column(values, "x"))
    only_kll = {"kll": stats["numerical_statistics"]["distribution"]["kll"]}
    assert data_quality.numeric_distance(only_kll, values.to_numpy()) == pytest.approx(0.0, abs=1e-12)  # was 0.167
    assert data_quality.numeric_distance(only_kll, values.to_numpy() + 1) > 0.1


def test_baseline_options_the_check_would_refuse_are_refused_when_the_baseline_is_made(tmp_path, capsys):
    pd.DataFrame({"a": [1.0, 2.0, 3.0] * 5, "b": ["x", "y", "z"] * 5}).to_csv(tmp_path / "data.csv", index=False)
    argv = ["baseline", "data-quality", "--input", f"dataset={tmp_path / 'data.csv'}", "--out", str(tmp_path / "o")]
    for option, message in (
        (["--comparison-threshold", "-1"], "'comparison_threshold' parameter of baseline data-quality must be"),
        (["--categorical-comparison-threshold", "nan"], "Got nan instead"),
        (["--categorical", "bb"], "--categorical names 'bb', which is no column"),
    ):
        assert main([*argv, *option]) == 2
        assert message in capsys.readouterr().err and not (tmp_path / "o").exists()
    assert main([*argv, "--categorical", "b", "--comparison-threshold", "0.2"]) == 0


def test_headerless_feature_rows_in_csv_gz_and_a_quoted_header_are_read(tmp_path):
    import gzip

    columns = {"a": "float", "b": "float", "c": "int"}
    with gzip.open(tmp_path / "f.csv.gz", "wt") as file:  # the first line was read as binary: "another table"
        file.write("1.0,2.0,3\n4.0,5.0,6\n")
    assert data_quality.load_dataset(tmp_path / "f.csv.gz", columns)["c"].tolist() == [3, 6]
    (tmp_path / "q.csv").write_text('"b","a","c"\n2,1,3\n')
    assert data_quality.load_dataset(tmp_path / "q.csv", columns).iloc[0].tolist() == [1, 2, 3]
