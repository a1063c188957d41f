import json

import numpy as np
import pandas as pd
import pytest

from forecaster.config import TrainConfig
from forecaster.errors import DataValidationError, InvalidParameterError
from forecaster.spec import DatasetSpec, resolve_spec


def test_presets_name_the_documented_columns():
    default = DatasetSpec.preset("default")
    assert default.columns == ["store_id", "item_id", "date", "units_sold", "campaign", "discount", "holiday"]
    frn = DatasetSpec.preset("freshretailnet")
    assert frn.keys == ("store_id", "product_id") and frn.target == "sale_amount" and frn.stockout == "stockout_hours"


def test_resolve_spec_reads_a_json_file(tmp_path):
    path = tmp_path / "spec.json"
    path.write_text(json.dumps({"keys": ["s"], "date": "d", "target": "y", "known_future": ["promo"]}))
    spec = resolve_spec(str(path))
    assert spec.keys == ("s",) and spec.known_future == ("promo",)
    assert DatasetSpec.from_dict(spec.to_dict()) == spec


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"date": "d", "target": "y"}, "must have the entry 'keys'"),
        ({"keys": ["s"], "date": "d", "target": "y", "colour": []}, "Unknown entry 'colour'"),
        ({"keys": "s", "date": "d", "target": "y"}, "'keys' entry of the dataset spec must be a list"),
        ({"keys": ["s"], "date": "d", "target": "y", "campaign": "promo"}, "must name a 'known_future' column"),
        ({"keys": ["s"], "date": "d", "target": "s"}, "more than one role"),
    ],
)
def test_invalid_specs_say_what_is_wrong(data, message):
    with pytest.raises(InvalidParameterError, match=message):
        DatasetSpec.from_dict(data)


def test_unknown_preset_lists_the_presets():
    with pytest.raises(InvalidParameterError, match="'default', 'freshretailnet'"):
        resolve_spec("nonexistent")


def _frame():
    return pd.DataFrame(
        {
            "store_id": ["A", "A", "B"],
            "item_id": ["x", "x", "x"],
            "date": ["2024-01-01", "2024-01-02", "2024-01-01"],
            "units_sold": [1, 2, 3],
            "campaign": [0, 1, 0],
            "discount": [1.0, 0.8, 1.0],
            "holiday": [1, 0, 1],
            "unused": ["a", "b", "c"],
        }
    )


def test_validate_frame_casts_and_drops_extra_columns():
    out = DatasetSpec.preset("default").validate_frame(_frame())
    assert "unused" not in out.columns
    assert out["units_sold"].dtype == np.float64 and out["date"].dtype == "datetime64[ns]"


def test_validate_frame_holds_keys_as_categoricals_of_their_strings():
    frame = _frame().assign(store_id=[7, 10, 10])  # integer keys: the strings "7" and "10"
    out = DatasetSpec.preset("default").validate_frame(frame)
    assert isinstance(out["store_id"].dtype, pd.CategoricalDtype)
    assert out["store_id"].cat.categories.tolist() == ["10", "7"]  # sorted as strings, one string per value
    assert out["store_id"].astype(str).tolist() == ["7", "10", "10"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: f.drop(columns="discount"), r"no column 'discount'.*spec in effect: preset 'default'"),
        (
            lambda f: f.assign(units_sold=["1", "two", "3"]),
            r"'units_sold' column \(target\).*must be numeric.*'two' in row 2",
        ),
        (lambda f: f.assign(date=["2024-01-01", "2024-01-01", "2024-01-01"]), "more than one row for store_id=A"),
        (lambda f: f.assign(date=["2024-01-01", "soon", "2024-01-01"]), "must hold ISO dates.*'soon' in row 2"),
        (
            lambda f: f.assign(date=np.array([45292, 45293, 45294])),
            r"ISO dates.*Got 45292 in row 1 instead. It looks like an Excel day number",
        ),
        (lambda f: f.assign(store_id=["A", None, "B"]), "'store_id' column \\(key\\).*missing value in row 2"),
        (lambda f: f.iloc[:0], "has no rows"),
        (
            lambda f: f.assign(units_sold=[1.0, 1e300, 3.0]),
            r"'units_sold' column \(target\).*finite numbers within ±3.4e\+38.*1e\+300 in row 2",
        ),
        (lambda f: f.assign(discount=[0.1, -np.inf, 0.0]), r"'discount' column \(covariate\).*-inf in row 2"),
    ],
)
def test_validate_frame_names_column_and_row(change, message):
    with pytest.raises(DataValidationError, match=message):
        DatasetSpec.preset("default").validate_frame(change(_frame()))


def test_spec_options_dates_returns_and_their_errors(caplog):
    frame = _frame().assign(date=["31/05/2024", "01/06/2024", "02/06/2024"], units_sold=[1, -2, 3])
    with pytest.raises(DataValidationError, match=r"ISO dates.*'31/05/2024' in row 1.*date_format"):
        DatasetSpec.preset("default").validate_frame(frame)
    spec = DatasetSpec.from_dict({**DatasetSpec.preset("default").to_dict(), "date_format": "%d/%m/%Y"})
    out = spec.validate_frame(frame)
    assert out["date"].dt.strftime("%Y-%m-%d").tolist() == ["2024-05-31", "2024-06-01", "2024-06-02"]
    assert out["units_sold"].tolist() == [1.0, 0.0, 3.0]  # negative_target: clip (the default), with a warning
    assert "1 of 3 history rows have a negative 'units_sold'" in caplog.text
    refuse = DatasetSpec.from_dict({**spec.to_dict(), "negative_target": "error"})
    with pytest.raises(DataValidationError, match=r"must be non-negative. Got -2.0 in row 2"):
        refuse.validate_frame(frame)
    with pytest.raises(InvalidParameterError, match=r"'missing_days' entry .* must be one of \['zero', 'unobserved'\]"):
        DatasetSpec.from_dict({**spec.to_dict(), "missing_days": "skip"})


def test_missing_days_zero_fills_gaps_inside_a_series_life_only():
    from forecaster.panel import build_panel

    days = pd.to_datetime(["2024-01-01", "2024-01-04", "2024-01-02", "2024-01-03"])
    frame = pd.DataFrame(
        {"store_id": "A", "item_id": ["x", "x", "y", "y"], "date": days, "units_sold": [1.0, 2.0, 5.0, 6.0],
         "campaign": 0, "discount": 1.0, "holiday": 0}
    )  # fmt: skip
    zero = DatasetSpec.preset("default")
    panel = build_panel(zero, zero.validate_frame(frame))
    assert panel.gaps.tolist() == [2, 0]  # x misses 2nd and 3rd; y lives 2nd..3rd only
    np.testing.assert_array_equal(panel.target[0], [1, 0, 0, 2])
    np.testing.assert_array_equal(panel.target[1], [np.nan, 5, 6, np.nan])  # before/after its life: no data
    unobserved = DatasetSpec.from_dict({**zero.to_dict(), "missing_days": "unobserved"})
    assert np.isnan(build_panel(unobserved, unobserved.validate_frame(frame)).target[0, 1:3]).all()


def test_hyperparameters_accept_raw_and_json_encoded_strings():
    raw = TrainConfig.from_hyperparameters({"horizon": "7", "objective": "poisson", "refit": "False"})
    encoded = TrainConfig.from_hyperparameters({"horizon": "7", "objective": '"poisson"', "refit": "false"})
    typed = TrainConfig.from_hyperparameters({"horizon": 7, "objective": "poisson", "refit": False})
    assert raw == encoded == typed
    assert raw.refit is False and raw.horizon == 7


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"horizon": "abc"}, "The 'horizon' parameter of train must be an int in the range \\[1, 366\\]. Got 'abc'"),
        ({"horizon": 0}, "Got 0 instead"),
        ({"refit": "maybe"}, "'refit' parameter of train must be a bool"),
        ({"objective": "mse"}, "among {'tweedie', 'poisson', 'regression'}"),
        ({"learning_rate": "0"}, "range \\(0, 1\\]"),
        ({"num_leafs": "31"}, "Unknown parameter 'num_leafs' for train. Did you mean 'num_leaves'?"),
    ],
)
def test_invalid_hyperparameters_are_named(values, message):
    with pytest.raises(InvalidParameterError, match=message):
        TrainConfig.from_hyperparameters(values)


def test_toolkit_hyperparameters_are_ignored():
    assert TrainConfig.from_hyperparameters({"sagemaker_program": "train.py"}) == TrainConfig()


def test_min_data_in_leaf_above_lightgbms_int32_is_refused():
    """LightGBM reads an int32: 4294967396 ran as 100 and 1e20 as 1661992959, each with a success."""
    assert TrainConfig.from_hyperparameters({"min_data_in_leaf": str(2**31 - 1)}).min_data_in_leaf == 2**31 - 1
    expected = r"'min_data_in_leaf' parameter .* range \[1, 2147483647\]. Got '4294967396'"
    with pytest.raises(InvalidParameterError, match=expected):
        TrainConfig.from_hyperparameters({"min_data_in_leaf": "4294967396"})


def test_a_validation_window_as_long_as_the_data_is_named_with_what_sets_it():
    """A horizon of 120 on 90 days said 'covers 0 days' and pointed at min_history_days / validation_days."""
    from forecaster.training_rows import origins

    expected = r"leaves 0 days before the validation window of the last 120 days \(horizon=120\)"
    with pytest.raises(DataValidationError, match=expected):
        origins(-31, TrainConfig(horizon=120))
