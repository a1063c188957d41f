"""Local batch transform against the real server process: splitting, ordering, joins, failures, the CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from forecaster.errors import DataValidationError, InvalidParameterError
from forecaster.serving.environment import MB
from forecaster.serving.transform import run_transform
from serving_helpers import csv_lines, repeat_to_size, to_csv

pytest_plugins = ["serving_helpers"]
pytestmark = pytest.mark.slow


def test_multi_batch_file_in_order_equals_in_process_predictions(
    tmp_path, serving_model_dir, serving_model, feature_rows
):
    body, index = repeat_to_size(feature_rows, int(2.5 * MB))  # 1 MB payloads: at least 3 mini-batches
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "features.csv").write_bytes(body)
    (tmp_path / "in" / "sub").mkdir()
    (tmp_path / "in" / "sub" / "small.csv").write_bytes(to_csv(feature_rows[:5]))
    (tmp_path / "in" / "empty.csv").write_bytes(b"")
    written = run_transform(
        serving_model_dir, tmp_path / "in", tmp_path / "out", max_payload_mb=1, concurrency=2, quantiles="all"
    )
    assert [p.relative_to(tmp_path / "out").as_posix() for p in written] == [
        "empty.csv.out",
        "features.csv.out",
        "sub/small.csv.out",
    ]
    expected = serving_model.predict(feature_rows)
    got = np.array(csv_lines((tmp_path / "out" / "features.csv.out").read_bytes()))
    assert got.shape == (len(index), 3)  # one output line per input line
    assert np.array_equal(got, expected[index])
    assert np.array_equal(np.array(csv_lines(written[2].read_bytes())), expected[:5])
    assert written[0].read_bytes() == b""


def test_join_source_input_and_jsonlines(tmp_path, serving_model_dir, serving_model, feature_rows):
    rows = feature_rows[:6]
    source = tmp_path / "rows.csv"
    source.write_bytes(to_csv(rows))
    (out,) = run_transform(serving_model_dir, source, tmp_path / "csv", join_source="input", quantiles="p50")
    lines = out.read_text().splitlines()
    assert [line.rsplit(",", 1)[0] for line in lines] == to_csv(rows).decode().splitlines()
    assert [float(line.rsplit(",", 1)[1]) for line in lines] == serving_model.predict(rows)[:, 1].tolist()

    names = serving_model.schema.feature_names
    records = [
        {"id": i, **{n: (None if v != v else v) for n, v in zip(names, row, strict=True)}}
        for i, row in enumerate(rows.tolist())
    ]
    source = tmp_path / "rows.jsonl"
    source.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    (out,) = run_transform(
        serving_model_dir,
        source,
        tmp_path / "jsonl",
        content_type="application/jsonlines",
        accept="application/jsonlines",
        join_source="input",
    )
    joined = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in joined] == list(range(6))
    assert [r["SageMakerOutput"]["p90"] for r in joined] == serving_model.predict(rows)[:, 2].tolist()


def test_a_bad_file_fails_alone_and_writes_nothing(tmp_path, serving_model_dir, serving_model, feature_rows):
    (tmp_path / "in").mkdir()
    names = ",".join(serving_model.schema.feature_names)
    (tmp_path / "in" / "a_header.csv").write_bytes(names.encode() + b"\n" + to_csv(feature_rows[:3]))
    (tmp_path / "in" / "b_good.csv").write_bytes(to_csv(feature_rows[:3]))
    with pytest.raises(
        DataValidationError,
        match=r"1 of 2 input files: .*a_header.csv: lines 1-4: HTTP 400: CSV row 1 looks like a header",
    ):
        run_transform(serving_model_dir, tmp_path / "in", tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["b_good.csv.out"]


def test_invalid_arguments_fail_before_starting_a_server(tmp_path, serving_model_dir):
    with pytest.raises(InvalidParameterError, match="'max_payload_mb' parameter of run_transform"):
        run_transform(serving_model_dir, tmp_path, tmp_path / "out", max_payload_mb=101)
    with pytest.raises(InvalidParameterError, match="'join_source'"):
        run_transform(serving_model_dir, tmp_path, tmp_path / "out", join_source="output")
    with pytest.raises(DataValidationError, match="does not exist"):
        run_transform(serving_model_dir, tmp_path / "missing.csv", tmp_path / "out")


def test_cli_transform(tmp_path, serving_model_dir, serving_model, feature_rows):
    source = tmp_path / "features.csv"
    source.write_bytes(to_csv(feature_rows))
    command = [sys.executable, "-m", "forecaster.cli.main", "transform", "--model-dir", str(serving_model_dir)]
    command += ["--input", str(source), "--output", str(tmp_path / "out"), "--concurrency", "1"]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert completed.stdout.strip() == str(tmp_path / "out" / "features.csv.out")
    got = np.array(csv_lines((tmp_path / "out" / "features.csv.out").read_bytes()))
    assert np.array_equal(got, serving_model.predict(feature_rows))
    bad = subprocess.run(
        [*command[:-4], "--input", str(tmp_path / "nope.csv"), "--output", str(tmp_path / "o2")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert bad.returncode == 3 and "forecaster transform: error: Transform input" in bad.stderr
