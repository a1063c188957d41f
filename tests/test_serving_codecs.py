"""Codecs, request options and the serving environment: no model, no server."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from forecaster.errors import (
    DataValidationError,
    InvalidParameterError,
    NotAcceptableError,
    UnsupportedMediaTypeError,
)
from forecaster.serving import codecs, media
from forecaster.serving.app import RequestOptions
from forecaster.serving.environment import BODY_HEADROOM_BYTES, MB, ServingEnvironment
from forecaster.serving.transform import iter_batches, join_lines

LAYOUT = codecs.FeatureLayout(("horizon", "lag_0", "discount", "store_id"), {"store_id": ("S001", "S002", "S003")})


def decode_csv(text: str) -> np.ndarray:
    return codecs.decode_csv(text.encode(), LAYOUT)


# ---------------------------------------------------------------------------------------------------------- CSV
def test_csv_parses_rows_in_order_with_empty_fields_as_nan():
    matrix = decode_csv("1,2.5,0.1,0\n2,,0,2\n3,4e1,nan,\n")
    assert matrix.shape == (3, 4)
    assert matrix[0].tolist() == [1.0, 2.5, 0.1, 0.0]
    assert math.isnan(matrix[1, 1]) and math.isnan(matrix[2, 2]) and math.isnan(matrix[2, 3])
    assert matrix[2, 1] == 40.0


def test_csv_blank_lines_after_the_last_row_add_no_row():
    for text in ("1,2,3,0\n\n", "1,2,3,0\r\n\r\n", "1,2,3,0\n\r\n\n"):
        assert decode_csv(text).tolist() == [[1, 2, 3, 0]]
    with pytest.raises(DataValidationError, match="CSV row 2 has 1 fields"):
        decode_csv("1,2,3,0\n\n4,5,6,1\n")  # a blank line between rows is still refused


@pytest.mark.parametrize("value", ["inf", "-inf", "Infinity", "1e400", "1e308", "-4e38"])  # 1e308 overflowed the output
def test_csv_infinite_values_are_refused_naming_row_and_column(value):
    with pytest.raises(DataValidationError, match=r"Row 2, column 2 \(lag_0\): .* is not a finite number"):
        decode_csv(f"1,2,3,0\n1,{value},3,0\n")


def test_csv_accepts_crlf_and_no_final_newline():
    assert decode_csv("1,2,3,0\r\n4,5,6,1").tolist() == [[1, 2, 3, 0], [4, 5, 6, 1]]
    assert decode_csv("1,2,3,0\r\n").tolist() == [[1, 2, 3, 0]]


def test_csv_values_round_trip_exactly():
    values = np.random.default_rng(0).normal(size=(50, 3)) * 1e3
    text = "\n".join(",".join(map(repr, row)) + ",1" for row in values.tolist())
    assert np.array_equal(decode_csv(text)[:, :3], values)


def test_csv_header_row_is_rejected_naming_the_problem():
    with pytest.raises(DataValidationError, match=r"row 1 looks like a header .*'horizon'") as info:
        decode_csv("horizon,lag_0,discount,store_id\n1,2,3,0")
    assert info.value.status == 400


def test_csv_wrong_column_count_names_the_row():
    with pytest.raises(DataValidationError, match=r"CSV row 3 has 3 fields; the model expects 4 \(horizon, lag_0"):
        decode_csv("1,2,3,0\n1,2,3,0\n1,2,3\n1,2,3,4,5")


def test_csv_non_numeric_value_names_row_and_column():
    with pytest.raises(DataValidationError, match=r"CSV row 2, column 3 \(discount\): 'abc' is not a number"):
        decode_csv("1,2,3,0\n1,2,abc,0\n1,x,3,0")


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "body is empty"),
        ("\n", "body is empty"),
        ("  \n", "body is empty"),
        ("1,2,\x003,0", "row 1 contains a NUL byte"),
        ('1,"x",3,0', r"column 2 \(lag_0\): '\"x\"' is not a number"),  # quoted numbers are numbers
        ("1,1_0,3,0", r"column 2 \(lag_0\): '1_0' is not a number"),
        ("1,2,3,0\n\n1,2,3,0", "CSV row 2 has 1 fields"),
        ("1,2,3,7", r"Row 1, column 4 \(store_id\): 7.0 is not a category code"),
        ("1,2,3,0.5", "is not a category code"),
        ("1,2,3,-1", "is not a category code"),
    ],
)
def test_csv_rejects_bad_bodies_with_a_clear_reason(text, match):
    with pytest.raises(DataValidationError, match=match):
        decode_csv(text)


def test_csv_rejects_invalid_utf8():
    with pytest.raises(DataValidationError, match=r"row 2, column 1"):
        codecs.decode_csv(b"1,2,3,0\n\xff\xfe,2,3,0", LAYOUT)


# ------------------------------------------------------------------------------------------------- JSON (Lines)
def test_jsonlines_by_feature_name_with_labels_and_nulls():
    body = b'{"store_id": "S002", "horizon": 1, "lag_0": null, "discount": 0.2, "extra": "ignored"}\n'
    body += b'{"store_id": "unseen", "horizon": 2, "lag_0": 3, "discount": 0}\n'
    matrix = codecs.decode_jsonlines(body, LAYOUT)
    assert matrix.shape == (2, 4)
    assert matrix[0, 3] == 1.0 and math.isnan(matrix[0, 1])
    assert math.isnan(matrix[1, 3])  # unseen label = missing


def test_a_category_code_sent_as_a_string_is_a_code_unless_it_is_a_label():
    numeric = codecs.FeatureLayout(("horizon", "store_id"), {"store_id": ("1", "2", "3", "4", "101")})
    by_label = codecs.decode_jsonlines(b'{"horizon": 1, "store_id": "2"}', numeric)
    assert by_label[0, 1] == 1.0  # the label "2" is code 1
    assert codecs.decode_jsonlines(b'{"horizon": 1, "store_id": 2}', numeric)[0, 1] == 2.0  # a number: a code
    for unseen in (b'"0"', b'"102"'):  # a new store: missing, as any unseen label (not code 0, not a 400)
        assert math.isnan(codecs.decode_jsonlines(b'{"horizon": 1, "store_id": ' + unseen + b"}", numeric)[0, 1])
    codes = codecs.decode_jsonlines(b'{"horizon": "1", "lag_0": "2", "discount": "0.5", "store_id": "2"}', LAYOUT)
    assert codes.tolist() == [[1.0, 2.0, 0.5, 2.0]]  # every number as a string, the code too (was: missing)
    with pytest.raises(DataValidationError, match="category code"):
        codecs.decode_jsonlines(b'{"horizon": 1, "lag_0": 2, "discount": 0, "store_id": "7"}', LAYOUT)


def test_json_one_record_is_one_row():
    record = {"horizon": 1, "lag_0": 2, "discount": 3, "store_id": "S003"}
    assert codecs.decode_json(json.dumps(record).encode(), LAYOUT).tolist() == [[1.0, 2.0, 3.0, 2.0]]


def test_json_instances_or_list_and_positional_records():
    record = {"horizon": 1, "lag_0": 2, "discount": 3, "store_id": 0}
    expected = [[1.0, 2.0, 3.0, 0.0], [1.0, 2.0, 3.0, 0.0]]
    assert codecs.decode_json(json.dumps({"instances": [record, record]}).encode(), LAYOUT).tolist() == expected
    assert codecs.decode_json(json.dumps([record, [1, 2, 3, 0]]).encode(), LAYOUT).tolist() == expected


@pytest.mark.parametrize(
    ("kind", "body", "match"),
    [
        (codecs.JSONLINES, b'{"horizon": 1}', "record 1 has no feature 'lag_0'"),
        (codecs.JSON, b'[{"horizon": 1}, [1, 2]]', "record 1 has no feature 'lag_0'"),  # the first bad one, at once
        (
            codecs.JSONLINES,
            b'{"horizon": 1, "lag_0": 1, "discount": 1, "store_id": 0}\n{oops',
            "row 2 is not valid JSON",
        ),
        (codecs.JSONLINES, b'{"horizon": "x", "lag_0": 1, "discount": 1, "store_id": 0}', "feature 'horizon': 'x'"),
        (codecs.JSONLINES, b'{"horizon": [1], "lag_0": 1, "discount": 1, "store_id": 0}', "feature 'horizon'"),
        (codecs.JSONLINES, b"[1, 2]", "record 1 has 2 values; the model expects 4"),
        (codecs.JSONLINES, b"3", "record 1 is a int"),
        (codecs.JSON, b'{"rows": []}', "JSON record 1 has no feature 'horizon'"),  # one record, not a list
        (codecs.JSON, b"3", "must be"),
        (codecs.JSON, b'{"horizon": 1}\n{"horizon": 2}', "send it as Content-Type application/jsonlines"),
        (codecs.JSONLINES, b'{"horizon": "1_000", "lag_0": 1, "discount": 1, "store_id": 0}', "'1_000' is not a num"),
        (codecs.JSON, b"[]", "holds no records"),
        (codecs.JSON, b"", "body is empty"),
        (codecs.JSON, b"[" * 100000, "not valid JSON"),
    ],
)
def test_json_bodies_rejected_with_record_and_feature(kind, body, match):
    with pytest.raises(DataValidationError, match=match):
        codecs.decode(body, kind, LAYOUT)


# ------------------------------------------------------------------------------------------------- media types
@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, codecs.CSV),
        ("text/csv; charset=utf-8", codecs.CSV),
        ("Application/JSONLines", codecs.JSONLINES),
        ("application/x-jsonlines", codecs.JSONLINES),
        ("application/json", codecs.JSON),
    ],
)
def test_request_media_types(header, expected):
    assert media.request_media_type(header) == expected


def test_unknown_content_type_is_415():
    with pytest.raises(UnsupportedMediaTypeError, match="Send one of") as info:
        media.request_media_type("application/x-npy")
    assert info.value.status == 415


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, codecs.JSON),
        ("*/*", codecs.JSON),
        ("text/csv", codecs.CSV),
        ("application/jsonlines;q=0.5, text/csv", codecs.CSV),
        ("application/xml, application/jsonlines", codecs.JSONLINES),
        ("text/*", codecs.CSV),
        ("text/csv;q=0, application/json", codecs.JSON),
    ],
)
def test_accept_negotiation(accept, expected):
    assert media.response_media_type(accept, default=codecs.JSON) == expected


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        ("application/*", codecs.JSON),  # not application/csv: an alias is no answer to a wildcard
        ("text/csv;q=0, */*", codecs.JSON),  # the request's own type, refused
        ("text/csv;q=0, application/json;q=0, */*", codecs.JSONLINES),
        ("application/x-ndjson", codecs.JSONLINES),
        ("*/*", codecs.CSV),
    ],
)
def test_accept_negotiation_never_answers_a_refused_type(accept, expected):
    assert media.response_media_type(accept, default=codecs.CSV) == expected


def test_a_content_type_without_a_type_is_415():
    with pytest.raises(UnsupportedMediaTypeError):
        media.request_media_type(";;;")
    assert media.request_media_type(None) == media.request_media_type("") == codecs.CSV


def test_unwritable_accept_is_406():
    with pytest.raises(NotAcceptableError) as info:
        media.response_media_type("application/xml, image/*", default=codecs.CSV)
    assert info.value.status == 406


# ------------------------------------------------------------------------------------------------------ encode
def make_predictions(n: int, explain: bool = False) -> codecs.Predictions:
    values = np.arange(n * 3, dtype=float).reshape(n, 3) / 7
    if not explain:
        return codecs.Predictions(("p10", "p50", "p90"), values)
    contributions = np.ones((n, 5)) / 3
    return codecs.Predictions(("p10", "p50", "p90"), values, (*LAYOUT.names, "expected_value"), contributions)


@pytest.mark.parametrize("n", [1, 7])
def test_encoders_write_one_line_per_row_exactly(n):
    predictions = make_predictions(n)
    lines = codecs.encode_csv(predictions).decode().splitlines()
    assert len(lines) == n
    assert np.array_equal(np.array([[float(v) for v in line.split(",")] for line in lines]), predictions.values)
    records = [json.loads(line) for line in codecs.encode_jsonlines(predictions).decode().splitlines()]
    assert len(records) == n and records[0] == dict(zip(("p10", "p50", "p90"), predictions.values[0], strict=True))
    assert json.loads(codecs.encode_json(predictions))["predictions"] == records


def test_encoders_append_contributions():
    predictions = make_predictions(2, explain=True)
    assert len(codecs.encode_csv(predictions).decode().splitlines()[0].split(",")) == 3 + 5
    record = json.loads(codecs.encode_jsonlines(predictions).decode().splitlines()[1])
    assert list(record["contributions"]) == [*LAYOUT.names, "expected_value"]


# ------------------------------------------------------------------------------------------------ request options
def test_custom_attributes():
    assert RequestOptions.parse(None, "p50") == RequestOptions("p50", False)
    assert RequestOptions.parse("quantiles=all; explain=true", "p50") == RequestOptions("all", True)
    assert RequestOptions.parse("trace=abc,explain=False", "all") == RequestOptions("all", False)
    assert RequestOptions.parse("Quantiles=ALL, EXPLAIN=TRUE", "p50") == RequestOptions("all", True)
    with pytest.raises(InvalidParameterError, match=r"'quantiles' parameter .* Got 'p99' instead"):
        RequestOptions.parse("quantiles=p99", "p50")


# ---------------------------------------------------------------------------------------------------- environment
def test_environment_defaults_and_variables():
    env = ServingEnvironment.from_env({})
    assert env.port == 8080 and env.max_payload_mb == 6 and env.timeout_s == 600
    assert env.workers == env.cpu_count and str(env.model_dir) == "/opt/ml/model"
    assert env.body_limit_bytes == 6 * MB + BODY_HEADROOM_BYTES
    env = ServingEnvironment.from_env(
        {
            "SAGEMAKER_MODEL_SERVER_WORKERS": "3",
            "SAGEMAKER_MODEL_SERVER_TIMEOUT": "30",
            "SAGEMAKER_MAX_PAYLOAD_IN_MB": "100",
            "FORECASTER_DEFAULT_QUANTILES": "all",
        },
        model_dir="/tmp/m",
        port=9000,
    )
    assert (env.workers, env.timeout_s, env.max_payload_mb, env.default_quantiles) == (3, 30, 100, "all")
    assert (str(env.model_dir), env.port) == ("/tmp/m", 9000)
    assert env.body_limit_bytes < 101 * MB
    assert ServingEnvironment.from_env({"SAGEMAKER_MAX_PAYLOAD_IN_MB": "0"}).body_limit_bytes is None
    assert ServingEnvironment.from_env({"FORECASTER_DEFAULT_QUANTILES": " ALL "}).default_quantiles == "all"


def test_a_batch_transform_gets_every_quantile_by_default():
    # a transform job cannot send X-Amzn-SageMaker-Custom-Attributes, and postprocess needs p10,p50,p90
    assert ServingEnvironment.from_env({}).default_quantiles == "p50"  # an endpoint: one column
    assert ServingEnvironment.from_env({"SAGEMAKER_BATCH": "True"}).default_quantiles == "all"
    batch_but_median = {"SAGEMAKER_BATCH": "true", "FORECASTER_DEFAULT_QUANTILES": "p50"}
    assert ServingEnvironment.from_env(batch_but_median).default_quantiles == "p50"  # the model's environment wins


def test_environment_workers_follow_max_concurrent_transforms():
    env = ServingEnvironment.from_env({"SAGEMAKER_MAX_CONCURRENT_TRANSFORMS": "4"})
    assert env.workers == 4
    assert env.execution_parameters() == {
        "MaxConcurrentTransforms": 4,
        "BatchStrategy": "MULTI_RECORD",
        "MaxPayloadInMB": 6,
    }


def test_execution_parameters_respect_the_100_mb_product():
    env = ServingEnvironment.from_env({"SAGEMAKER_MAX_PAYLOAD_IN_MB": "40", "SAGEMAKER_MODEL_SERVER_WORKERS": "8"})
    assert env.execution_parameters()["MaxConcurrentTransforms"] == 2


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SAGEMAKER_MAX_PAYLOAD_IN_MB", "101"),
        ("SAGEMAKER_MODEL_SERVER_WORKERS", "many"),
        ("SAGEMAKER_BATCH_STRATEGY", "ALL"),
        ("FORECASTER_DEFAULT_QUANTILES", "p99"),
    ],
)
def test_environment_rejects_bad_values_naming_the_variable(name, value):
    with pytest.raises(InvalidParameterError, match=f"The '{name}' parameter"):
        ServingEnvironment.from_env({name: value})


# --------------------------------------------------------------------------------------- transform (pure parts)
def test_iter_batches_split_by_line_within_the_limit():
    lines = [(f"{i}," * (i % 13)).encode() + b"x" for i in range(500)]
    data = b"\n".join(lines) + b"\n"
    batches = list(iter_batches(data, 100))
    assert all(len(batch) <= 100 for _, batch in batches)
    assert b"\n".join(batch for _, batch in batches).split(b"\n") == lines
    first_lines = [first for first, _ in batches]
    assert first_lines[0] == 1 and first_lines == sorted(first_lines)
    assert lines[first_lines[1] - 1] == batches[1][1].split(b"\n")[0]


def test_iter_batches_rejects_a_record_larger_than_the_limit():
    with pytest.raises(DataValidationError, match="Line 2 is longer than the payload limit"):
        list(iter_batches(b"1,2\n" + b"9" * 200 + b"\n3", 100))


def test_join_lines_like_sagemaker():
    assert join_lines([b"1,2"], [b"9.5"], codecs.CSV) == [b"1,2,9.5"]
    joined = join_lines([b'{"id": 7}', b"[1]"], [b'{"p50": 1.0}', b'{"p50": 2.0}'], codecs.JSONLINES)
    assert json.loads(joined[0]) == {"id": 7, "SageMakerOutput": {"p50": 1.0}}
    assert json.loads(joined[1]) == {"SageMakerInput": [1], "SageMakerOutput": {"p50": 2.0}}


def test_json_answers_stay_valid_json_when_a_value_overflows():
    predictions = codecs.Predictions(("p50", "mean"), np.array([[1.5, np.inf], [np.nan, 2.0]]))
    document = json.loads(codecs.encode_json(predictions))  # strict parsers reject a bare Infinity / NaN
    assert document["predictions"] == [{"p50": 1.5, "mean": None}, {"p50": None, "mean": 2.0}]
    lines = [json.loads(line) for line in codecs.encode_jsonlines(predictions).splitlines()]
    assert lines == document["predictions"]


@pytest.mark.parametrize(
    ("decoder", "body", "message"),
    [
        (codecs.decode_json, b'{"instances": [{"x": 1, "y": 2, "x": 3}]}', r"The JSON body: .* key 'x' twice"),
        (codecs.decode_jsonlines, b'{"x": 1, "y": 2}\n{"y": 1, "x": 2, "y": 5}', r"JSON Lines row 2: .* key 'y' twice"),
    ],
)
def test_a_json_key_given_twice_is_refused_not_silently_the_last(decoder, body, message):
    layout = codecs.FeatureLayout(("x", "y"))
    with pytest.raises(DataValidationError, match=message):
        decoder(body, layout)


def test_csv_numbers_in_quotes_are_numbers():
    """Exporters that quote every field (csv.QUOTE_ALL) had every mini-batch refused."""
    assert decode_csv('"1","2.5","0.1","0"\n2,"",0,"2"\n').tolist()[0] == [1.0, 2.5, 0.1, 0.0]
    assert math.isnan(decode_csv('"1","2.5","0.1","0"\n2,"",0,"2"\n')[1, 1])
    with pytest.raises(DataValidationError, match="CSV row 1 has 5 fields"):  # a quoted comma is still refused
        decode_csv('1,"2,5",3,0\n')
