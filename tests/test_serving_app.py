"""The flask app through its test client, with the real trained model: formats, options, errors, fuzzing."""

from __future__ import annotations

import json
import logging
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from forecaster.serving.app import CUSTOM_ATTRIBUTES, create_app
from forecaster.serving.environment import MB, ServingEnvironment
from serving_helpers import all_columns, csv_lines, to_csv

pytest_plugins = ["serving_helpers"]


def make_client(model=None, model_dir="/nonexistent", **env):
    environment = ServingEnvironment.from_env({}, model_dir=str(model_dir), **env)
    return create_app(environment, model=model).test_client()


@pytest.fixture(scope="module")
def client(serving_model):
    return make_client(serving_model)


def post(client, body, content_type="text/csv", accept=None, attributes=None):
    headers = {"Content-Type": content_type}
    if accept is not None:
        headers["Accept"] = accept
    if attributes is not None:
        headers[CUSTOM_ATTRIBUTES] = attributes
    return client.post("/invocations", data=body, headers=headers)


def error_of(response):
    body = response.get_json()
    assert set(body) == {"error", "message", "status"} and body["status"] == response.status_code
    return body["message"]


# ------------------------------------------------------------------------------------------------ happy paths
def test_csv_p50_by_default_equals_in_process_predictions(client, serving_model, feature_rows):
    response = post(client, to_csv(feature_rows))
    assert response.status_code == 200 and response.mimetype == "text/csv"
    values = np.array(csv_lines(response.data))
    assert values.shape == (len(feature_rows), 1)
    assert np.array_equal(values[:, 0], serving_model.predict(feature_rows)[:, 1])


def test_all_quantiles_on_request_or_by_environment_default(client, serving_model, feature_rows):
    expected = all_columns(serving_model, feature_rows)
    response = post(client, to_csv(feature_rows), attributes="quantiles=all")
    assert np.array_equal(np.array(csv_lines(response.data)), expected)
    default_all = make_client(serving_model, default_quantiles="all")
    assert np.array_equal(np.array(csv_lines(post(default_all, to_csv(feature_rows)).data)), expected)
    assert len(csv_lines(post(default_all, to_csv(feature_rows), attributes="quantiles=p50").data)[0]) == 1


def test_explain_appends_shap_contributions(client, serving_model, feature_rows):
    rows = feature_rows[:5]
    response = post(client, to_csv(rows), accept="application/jsonlines", attributes="quantiles=all; explain=true")
    records = [json.loads(line) for line in response.data.decode().splitlines()]
    contributions = serving_model.contributions(rows)
    assert list(records[0]["contributions"]) == [*serving_model.schema.feature_names, "expected_value"]
    got = np.array([list(record["contributions"].values()) for record in records])
    assert np.allclose(got, contributions)
    # TreeSHAP is additive: contributions sum to the point booster's raw score
    raw = serving_model.boosters["mean"].predict(rows, raw_score=True)
    assert np.allclose(got.sum(axis=1), raw)
    csv_answer = csv_lines(post(client, to_csv(rows), attributes="explain=true").data)
    assert len(csv_answer[0]) == 1 + len(serving_model.schema.feature_names) + 1


def test_jsonlines_and_json_by_feature_name(client, serving_model, feature_rows):
    names = serving_model.schema.feature_names
    rows = feature_rows[:4]
    records = [{n: (None if v != v else v) for n, v in zip(names, row, strict=True)} for row in rows.tolist()]
    store = names.index("store_id")
    records[0]["store_id"] = serving_model.schema.categories["store_id"][int(rows[0, store])]  # a label works too
    expected = serving_model.predict(rows)[:, 1]
    body = "\n".join(json.dumps(r) for r in records).encode()
    response = post(client, body, "application/jsonlines")
    assert response.mimetype == "application/jsonlines"  # Accept defaults to the request's type
    assert [json.loads(line)["p50"] for line in response.data.decode().splitlines()] == expected.tolist()
    response = post(client, json.dumps({"instances": records}).encode(), "application/json", attributes="quantiles=all")
    predictions = response.get_json()["predictions"]
    assert [p["p50"] for p in predictions] == expected.tolist() and set(predictions[0]) == {"p10", "p50", "p90", "mean"}
    response = post(client, json.dumps(records).encode(), "application/json", accept="text/csv")
    assert [row[0] for row in csv_lines(response.data)] == expected.tolist()


def test_ping_and_execution_parameters(client):
    assert client.get("/ping").status_code == 200
    answer = client.get("/execution-parameters").get_json()
    assert answer["BatchStrategy"] == "MULTI_RECORD" and answer["MaxPayloadInMB"] == 6
    assert 1 <= answer["MaxConcurrentTransforms"] <= 100


# ------------------------------------------------------------------------------------------------------ errors
@pytest.mark.parametrize(
    ("make_body", "content_type", "status", "match"),
    [
        (lambda names, row: ",".join(names) + "\n" + row, "text/csv", 400, "row 1 looks like a header"),
        (
            lambda names, row: row + "\n" + row + ",1",
            "text/csv",
            400,
            "CSV row 2 has {n+1} fields; the model expects {n}",
        ),
        (lambda names, row: row + "\n" + "x" + row[row.index(",") :], "text/csv", 400, r"row 2, column 1 \(horizon\)"),
        (lambda names, row: "", "text/csv", 400, "body is empty"),
        (lambda names, row: row, "application/x-npy", 415, "Content-Type 'application/x-npy' is not supported"),
        (lambda names, row: "{}", "application/json", 400, "JSON record 1 has no feature"),  # one record
    ],
)
def test_client_errors_name_the_problem(client, feature_rows, make_body, content_type, status, match):
    names = list(client.application.extensions["forecaster"].layout.names)
    row = to_csv(feature_rows[:1]).decode().strip()
    response = post(client, make_body(names, row).encode(), content_type)
    assert response.status_code == status
    match = match.replace("{n+1}", str(len(names) + 1)).replace("{n}", str(len(names)))
    assert pytest.importorskip("re").search(match, error_of(response))


def test_trailing_blank_lines_add_no_row(client, serving_model, feature_rows):
    rows = to_csv(feature_rows[:2])
    expected = serving_model.predict(feature_rows[:2])[:, 1]
    for body in (rows + b"\n", rows + b"\r\n\r\n", rows + b"\n\r\n\n"):
        response = post(client, body)
        assert response.status_code == 200 and np.array_equal(np.array(csv_lines(response.data))[:, 0], expected)


def test_infinite_values_are_400_naming_row_and_column(client, feature_rows):
    names = client.application.extensions["forecaster"].layout.names
    rows = to_csv(feature_rows[:2]).decode().splitlines()
    cells = rows[1].split(",")
    column = names.index("mean_28")
    for bad in ("inf", "-Infinity", "1e400"):
        cells[column] = bad
        response = post(client, "\n".join([rows[0], ",".join(cells)]).encode())
        assert response.status_code == 400
        assert f"Row 2, column {column + 1} (mean_28)" in error_of(response) and "not a finite number" in error_of(
            response
        )
    record = dict(zip(names, feature_rows[0].tolist(), strict=True)) | {"mean_28": 1e400}
    response = post(client, json.dumps([{k: (None if v != v else v) for k, v in record.items()}]), "application/json")
    assert response.status_code == 400 and "not a finite number" in error_of(response)


def test_compressed_bodies_and_other_methods_get_a_clear_refusal(client, feature_rows):
    import gzip

    response = client.post(
        "/invocations", data=gzip.compress(to_csv(feature_rows[:1])),
        headers={"Content-Type": "text/csv", "Content-Encoding": "gzip"},
    )  # fmt: skip
    assert response.status_code == 415 and "Content-Encoding 'gzip'" in error_of(response)
    for method in ("get", "put", "delete"):
        response = getattr(client, method)("/invocations")
        assert response.status_code == 405 and "POST" in response.headers["Allow"] and "POST" in error_of(response)


def test_not_acceptable_and_unknown_routes(client, feature_rows):
    assert post(client, to_csv(feature_rows[:1]), accept="application/xml").status_code == 406
    assert client.get("/nope").status_code == 404 and client.get("/invocations").status_code == 405
    response = post(client, to_csv(feature_rows[:1]), attributes="quantiles=p99")
    assert response.status_code == 400 and "'quantiles'" in error_of(response)


def test_body_over_the_payload_limit_is_413(serving_model, feature_rows):
    small = make_client(serving_model, max_payload_mb=1)
    body = to_csv(feature_rows) * (2 * MB // len(to_csv(feature_rows)))
    response = post(small, body)
    assert response.status_code == 413 and "SAGEMAKER_MAX_PAYLOAD_IN_MB" in error_of(response)
    limit = ServingEnvironment.from_env({}, model_dir="/nonexistent", max_payload_mb=1).body_limit_bytes
    assert f"has {len(body)} bytes; this server accepts at most {limit} bytes ({limit / MB:g} MB)" in error_of(response)
    assert post(small, to_csv(feature_rows)).status_code == 200


def test_a_bug_is_500_with_a_short_body_and_the_traceback_in_the_log(serving_model, feature_rows, caplog):
    class Broken:
        schema = serving_model.schema

        def predict(self, matrix):
            raise RuntimeError("boom")

    broken = make_client(Broken())
    with caplog.at_level(logging.ERROR, logger="forecaster.serving"):
        response = post(broken, to_csv(feature_rows[:2]))
    assert response.status_code == 500 and "boom" not in response.get_data(as_text=True)
    assert error_of(response).startswith("Internal server error")
    assert any(record.exc_info and "boom" in str(record.exc_info[1]) for record in caplog.records)


def test_ping_is_503_until_the_model_is_loaded_and_load_failures_are_explained(tmp_path, feature_rows):
    client = make_client(model_dir=tmp_path)
    assert client.get("/ping").status_code == 503
    holder = client.application.extensions["forecaster"]
    holder.start().join()
    assert holder.status() == "failed" and client.get("/ping").status_code == 503
    response = post(client, to_csv(feature_rows[:1]))
    assert response.status_code == 503 and "could not be loaded" in error_of(response)
    assert "feature_schema.json does not exist" in error_of(response)


def test_model_loads_at_start_not_on_first_request(serving_model_dir):
    client = make_client(model_dir=serving_model_dir)
    holder = client.application.extensions["forecaster"]
    holder.start().join()
    assert holder.ready and holder.load_seconds is not None and client.get("/ping").status_code == 200


# ---------------------------------------------------------------------------------------------------- fuzzing
CELLS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-3, 40).map(str),
    st.sampled_from(
        ["", "nan", "NA", "null", "abc", '"1"', " 1 ", "1e999", "-0", "0x1", "1_0", "\x00", "é", "\r", ","]
    ),
    st.text(max_size=5),
)
CONTENT_TYPES = st.one_of(
    st.sampled_from(["text/csv", "application/jsonlines", "application/json", "text/csv; charset=utf-8", ""]),
    st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=20),
)
ACCEPTS = st.one_of(
    st.none(),
    st.sampled_from(["text/csv", "application/jsonlines", "application/json", "*/*", "text/*", "image/png", "x;q=2"]),
    st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=20),
)
ATTRIBUTES = st.one_of(
    st.none(),
    st.sampled_from(["quantiles=all", "explain=true", "quantiles=all,explain=1", "quantiles=x", "explain=maybe"]),
    st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=30),
)
JSON_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-10, 10**30),
    st.floats(),
    st.text(max_size=5),
    st.lists(st.integers(), max_size=2),
)


@st.composite
def csv_bodies(draw, rows: np.ndarray) -> bytes:
    lines = []
    for _ in range(draw(st.integers(0, 5))):
        cells = to_csv(rows[draw(st.integers(0, len(rows) - 1))][None, :]).decode().strip().split(",")
        for _ in range(draw(st.integers(0, 2))):
            action = draw(st.sampled_from(["replace", "drop", "add"]))
            index = draw(st.integers(0, len(cells) - 1))
            if action == "replace":
                cells[index] = draw(CELLS)
            elif action == "drop" and len(cells) > 1:
                cells.pop(index)
            else:
                cells.insert(index, draw(CELLS))
        lines.append(",".join(cells))
    body = "\n".join(lines) + draw(st.sampled_from(["", "\n", "\r\n"]))
    return body.encode("utf-8", errors="surrogatepass") if draw(st.booleans()) else body.encode(errors="replace")


@st.composite
def json_bodies(draw, names: list[str]) -> tuple[bytes, str]:
    records = []
    for _ in range(draw(st.integers(0, 4))):
        record = {name: 1.0 for name in names} if draw(st.booleans()) else {}
        record.update(draw(st.dictionaries(st.sampled_from([*names, "extra"]), JSON_VALUES, max_size=3)))
        records.append(record)
    if draw(st.booleans()):
        return "\n".join(json.dumps(r) for r in records).encode(), "application/jsonlines"
    return json.dumps(draw(st.sampled_from([{"instances": records}, records, {"x": 1}]))).encode(), "application/json"


def check_answer(response, body: bytes, content_type: str) -> None:
    assert response.status_code in (200, 400, 406, 413, 415), response.data[:300]
    if response.status_code != 200:
        error_of(response)
        return
    kind = content_type.split(";")[0].strip().lower() or "text/csv"
    stripped = body[:-1] if body.endswith(b"\n") else body
    if kind in ("text/csv", "application/jsonlines") and response.mimetype != "application/json":
        assert response.data.count(b"\n") == stripped.count(b"\n") + 1


FUZZ = settings(max_examples=1250, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)


@pytest.mark.slow
@FUZZ
@given(data=st.data())
def test_fuzz_csv_bodies_and_headers_never_5xx(client, feature_rows, data):
    body = data.draw(st.one_of(csv_bodies(feature_rows), st.binary(max_size=200)))
    content_type = data.draw(st.one_of(st.just("text/csv"), CONTENT_TYPES))
    response = post(client, body, content_type, data.draw(ACCEPTS), data.draw(ATTRIBUTES))
    check_answer(response, body, content_type)


@pytest.mark.slow
@FUZZ
@given(data=st.data())
def test_fuzz_json_bodies_never_5xx(client, serving_model, data):
    body, content_type = data.draw(json_bodies(list(serving_model.schema.feature_names)))
    response = post(client, body, content_type, data.draw(ACCEPTS), data.draw(ATTRIBUTES))
    check_answer(response, body, content_type)


def test_after_fuzzing_answers_are_unchanged(client, serving_model, feature_rows):
    response = post(client, to_csv(feature_rows), attributes="quantiles=all")
    assert np.array_equal(np.array(csv_lines(response.data)), all_columns(serving_model, feature_rows))


def test_requests_wait_for_a_load_in_progress_instead_of_failing(serving_model_dir, feature_rows, monkeypatch):
    from forecaster.model import ForecastModel

    load = ForecastModel.load.__func__

    def slow_load(cls, model_dir):
        time.sleep(1.0)
        return load(cls, model_dir)

    monkeypatch.setattr(ForecastModel, "load", classmethod(slow_load))
    client = make_client(model_dir=serving_model_dir)
    client.application.extensions["forecaster"].start()
    assert client.get("/ping").status_code == 503
    started = time.monotonic()
    response = post(client, to_csv(feature_rows[:2]))
    assert response.status_code == 200 and time.monotonic() - started > 0.5
    assert client.get("/ping").status_code == 200
