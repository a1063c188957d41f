import numpy as np
import pandas as pd
import pytest

from forecaster.errors import DataValidationError, InvalidParameterError
from forecaster.forecasting import forecast, postprocess, predictions_frame
from forecaster.io import read_table, write_table
from forecaster.model import ForecastModel
from forecaster.partitioned import preprocess


def test_forecast_has_one_row_per_series_and_day(trained_model_dir, history_frame, future_frame):
    out = forecast(trained_model_dir, history_frame, future_frame)
    assert len(out) == len(future_frame) == 3 * 4 * 7
    assert not out.duplicated(["store_id", "item_id", "date"]).any()
    assert out[["p10", "p50", "p90", "mean"]].notna().all().all()
    assert (out.p10 <= out.p50).all() and (out.p50 <= out.p90).all()


def _drop(frame, mask):
    return frame[~mask].reset_index(drop=True)


def test_series_missing_from_either_frame_are_skipped_and_listed(trained_model_dir, history_frame, future_frame):
    from forecaster.forecasting import forecast_rows

    future = _drop(future_frame, future_frame.store_id == "S003")  # S003 ended: history only
    future = pd.concat([future, future.head(2).assign(store_id="S999")])  # S999 is new: no history
    last_day = (
        (future.store_id == "S002") & (future.item_id == future.item_id.iloc[0]) & (future.date == future.date.max())
    )
    out, rows = forecast_rows(trained_model_dir, history_frame, _drop(future, last_day))
    assert set(out.store_id) == {"S001", "S002"}
    assert len(out) == len(future) - 2 - 1  # a series with a missing future day is forecast for the days given
    assert set(rows.skipped.itertuples(index=False, name=None)) == {
        *(("S003", item, "ended") for item in history_frame.item_id.unique()),
        ("S999", future.item_id.iloc[0], "new"),
    }
    with pytest.raises(DataValidationError, match="No series to forecast"):
        forecast(trained_model_dir, history_frame, future_frame.assign(store_id=future_frame.store_id + "-neu"))


@pytest.mark.parametrize(
    ("make_future", "message"),
    [
        (lambda f: f.drop(columns="discount"), "no column 'discount'.*known-future column for each forecast day"),
        (
            lambda f: pd.concat([f, f.tail(1).assign(date=f.date.max() + pd.Timedelta(days=1))]),
            "outside the 7 days after the last history day",
        ),
        (lambda f: f.assign(discount=np.where(f.index == 5, np.nan, f.discount)), "'discount' .*missing value in row"),
    ],
)
def test_future_frame_errors_say_what_is_missing_and_how_to_build_it(
    trained_model_dir, history_frame, future_frame, make_future, message
):
    with pytest.raises(DataValidationError, match=message):
        forecast(trained_model_dir, history_frame, make_future(future_frame))


def test_preprocess_then_postprocess_matches_in_process_forecast(
    tmp_path, trained_model_dir, history_frame, future_frame
):
    write_table(history_frame, tmp_path / "history.parquet")
    write_table(future_frame, tmp_path / "future.csv")
    out = tmp_path / "pre"
    assert preprocess(trained_model_dir, tmp_path / "history.parquet", tmp_path / "future.csv", out) == [""]
    lines = (out / "features.csv").read_text().splitlines()
    keys = read_table(out / "keys.csv", dtype=str)
    assert len(lines) == len(keys) == len(future_frame)
    model = ForecastModel.load(trained_model_dir)
    assert len(lines[0].split(",")) == len(model.schema.feature_names)
    features = pd.read_csv(out / "features.csv", header=None)
    lines = np.column_stack([model.predict(features.to_numpy()), model.predict_mean(features.to_numpy())])
    (tmp_path / "features.csv.out").write_text("\n".join(",".join(repr(float(v)) for v in row) for row in lines) + "\n")
    result = read_table(postprocess(out / "keys.csv", tmp_path / "features.csv.out", tmp_path / "forecast.csv"))
    expected = predictions_frame(model, features.set_axis(list(model.schema.feature_names), axis=1), keys)
    columns = ["p10", "p50", "p90", "mean"]
    np.testing.assert_allclose(result[columns], expected[columns], rtol=1e-12)
    in_process = forecast(trained_model_dir, history_frame, future_frame)
    np.testing.assert_allclose(result[columns], in_process[columns], rtol=1e-12)
    assert result[["store_id", "item_id"]].equals(in_process[["store_id", "item_id"]].astype(object))


def test_postprocess_rejects_misaligned_predictions(tmp_path):
    (tmp_path / "keys.csv").write_text("store_id,item_id,date\nS1,a,2024-01-01\nS1,a,2024-01-02\n")
    (tmp_path / "p.out").write_text("1,2,3,2\n")
    with pytest.raises(DataValidationError, match=r"1 prediction lines but .* 2 rows"):
        postprocess(tmp_path / "keys.csv", tmp_path / "p.out", tmp_path / "out.csv")
    (tmp_path / "p.out").write_text("2\n3\n")
    with pytest.raises(DataValidationError, match="quantiles=all"):
        postprocess(tmp_path / "keys.csv", tmp_path / "p.out", tmp_path / "out.csv")
    (tmp_path / "p.out").write_text("1,2,3\n1,2,3\n")  # an earlier image's output: no point forecast
    with pytest.raises(DataValidationError, match=r"3 columns per line; expected 4 \(p10,p50,p90,mean\)"):
        postprocess(tmp_path / "keys.csv", tmp_path / "p.out", tmp_path / "out.csv")
    assert not (tmp_path / "out.csv").exists()


def test_postprocess_names_a_non_numeric_prediction_line(tmp_path):
    (tmp_path / "keys.csv").write_text("store_id,item_id,date\nS1,a,2024-01-01\nS1,a,2024-01-02\n")
    cases = [
        ("1,2,3,2\n1,oops,3,2\n", r"p.out line 2 has the p50 value 'oops'; prediction lines must be finite numbers"),
        ("1,2,3,2\nnan,2,3,2\n", r"line 2 has the p10 value 'nan'"),
        ("1,2,3,inf\n1,2,3,2\n", r"line 1 has the mean value 'inf'"),
        ("1,2,3,2\n1,2,1e400,2\n", r"line 2 has the p90 value '1e400'"),
        ("-1,2,3,2\n1,2,3,2\n", r"line 1 has the p10 value '-1'; prediction lines must be finite numbers >= 0"),
        ("1,2,3,2\n1,2,3\n", r"line 2 has the mean value ''"),
        ("1,2,3\n1,2,3,2\n", r"the prediction lines do not all have the same number of fields .*line 2, saw 4"),
        ('{"p10": 1, "p50": 2, "p90": 3, "mean": 2}\n{"p10": 1, "p50": 2, "p90": 3, "mean": null}\n',
         r"line 2 has the mean value nan;"),
    ]  # fmt: skip
    for text, message in cases:
        (tmp_path / "p.out").write_text(text)
        with pytest.raises(DataValidationError, match=message):
            postprocess(tmp_path / "keys.csv", tmp_path / "p.out", tmp_path / "out.csv")
        assert not (tmp_path / "out.csv").exists()


def test_order_proposals_interpolate_the_service_level_and_round_up_to_packs():
    from forecaster.order_policy import daily_quantile, order_proposals

    frame = pd.DataFrame({"store_id": ["S1", "S1"], "p10": [1.0, 0.0], "p50": [4.0, 2.0], "p90": [8.0, 3.0]})
    assert order_proposals(frame, 0.5)["order_units"].tolist() == [4.0, 2.0]
    assert order_proposals(frame, 0.7)["order_units"].tolist() == [6.0, 3.0]  # 4 + 0.5 * (8 - 4); 2.5 -> 3
    assert order_proposals(frame, 0.9, pack_size=5)["order_units"].tolist() == [10.0, 5.0]
    # beyond P90 (a pipeline's ServiceLevel=0.95 without stock once failed after every step): the day shape's tail
    tail = daily_quantile(np.array([1.0]), np.array([4.0]), np.array([8.0]), np.array(1.6448536269514722))
    assert 8 < tail[0] < 12 and order_proposals(frame, 0.95)["order_units"].iat[0] == np.ceil(tail[0])
    levels = [0.01, 0.05, 0.1, 0.3, 0.5, 0.8, 0.9, 0.95, 0.99]
    assert np.all(np.diff([order_proposals(frame, level)["order_units"].iat[0] for level in levels]) >= 0)
    for level in (0, 1, 1.5):
        with pytest.raises(InvalidParameterError, match=r"'service_level' parameter of postprocess .* range \(0, 1\)"):
            order_proposals(frame, level)


def test_postprocess_writes_order_proposals_next_to_the_forecasts(tmp_path):
    (tmp_path / "keys.csv").write_text("store_id,item_id,date\nS1,a,2024-01-01\n")
    (tmp_path / "p.out").write_text("1.0,2.2,3.0,2.5\n")
    postprocess(tmp_path / "keys.csv", tmp_path / "p.out", tmp_path / "forecasts.csv", service_level=0.5)
    orders = read_table(tmp_path / "order_proposals.csv")
    assert orders.to_dict("records") == [
        {
            "store_id": "S1",
            "item_id": "a",
            "date": "2024-01-01",
            "mean": 2.5,
            "order_units": 3.0,
            "service_level": 0.5,
            "stock_considered": False,
        }
    ]
    assert read_table(tmp_path / "forecasts.csv")["mean"].tolist() == [2.5]


@pytest.mark.parametrize("as_json", [False, True])
def test_transform_output_is_read_back_to_the_exact_doubles_the_server_wrote(tmp_path, as_json):
    """pandas' fast float parsers (to_numeric, read_json's default) once moved 1 value in 2 by an ulp or more."""
    from forecaster.contract import POINT_COLUMN, QUANTILE_COLUMNS
    from forecaster.forecasting import _read_predictions
    from forecaster.serving.codecs import Predictions, encode_csv, encode_jsonlines

    values = np.random.default_rng(0).random((2000, 4)) * 100
    predictions = Predictions((*QUANTILE_COLUMNS, POINT_COLUMN), values)
    (tmp_path / "features.csv.out").write_bytes((encode_jsonlines if as_json else encode_csv)(predictions))
    read = _read_predictions(tmp_path / "features.csv.out")
    np.testing.assert_array_equal(read.to_numpy(), values)
