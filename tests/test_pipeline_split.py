"""`forecaster split` (first step of the model-build pipeline) and the step table's commands vs the real CLI."""

from __future__ import annotations

import dataclasses
import json

import pandas as pd
import pytest

from forecaster.cli.main import build_parser, main
from forecaster.errors import DataValidationError, InvalidParameterError
from forecaster.io import read_table
from forecaster.pipelines.catalog import PIPELINES
from forecaster.pipelines.split import cutoff_day, split_for_evaluation
from forecaster.pipelines.table import render_args
from forecaster.spec import DatasetSpec
from forecaster.synth import generate


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return generate(stores=2, items=3, days=40, seed=1)


def test_split_holds_out_the_last_horizon_days(frame):
    spec = DatasetSpec.preset("default")
    parts = split_for_evaluation(frame, spec, 7)
    last = frame[spec.date].max()
    cutoff = pd.Timestamp(last) - pd.Timedelta(days=7)
    assert parts["train"][spec.date].max() == cutoff
    assert parts["truth"][spec.date].min() == cutoff + pd.Timedelta(days=1)
    assert len(parts["truth"]) == 2 * 3 * 7 and len(parts["train"]) == 2 * 3 * 33
    assert spec.target not in parts["future"].columns
    assert not set(spec.past_only) & set(parts["future"].columns)
    assert list(parts["truth"].columns) == [*spec.keys, spec.date, spec.target]
    # the future frame is accepted by the inference features (known-future columns present)
    spec.validate_frame(parts["future"], kind="future")


def test_split_cli_writes_every_part(frame, tmp_path):
    data = tmp_path / "in" / "sales.csv"
    data.parent.mkdir()
    frame.to_csv(data, index=False)
    out = tmp_path / "out"
    assert main(["split", "--input", f"data={data.parent}", "--horizon", "5", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["future", "history", "train", "truth"]
    assert len(read_table(out / "truth")) == 2 * 3 * 5


def test_split_errors(frame):
    spec = DatasetSpec.preset("default")
    with pytest.raises(DataValidationError, match="spans 40 days"):
        split_for_evaluation(frame, spec, 40)
    with pytest.raises(InvalidParameterError, match="'horizon' parameter"):
        split_for_evaluation(frame, spec, 0)
    # the range training accepts (a horizon split holds out is the one the model is then trained for)
    with pytest.raises(
        InvalidParameterError, match=r"'horizon' parameter of split must be an int in the range \[1, 366\]"
    ):
        split_for_evaluation(frame, spec, 400)


def test_split_counts_absent_days_in_the_window_as_zero_sales_as_the_spec_says(frame):
    spec = DatasetSpec.preset("default")  # missing_days: zero
    keys, date = list(spec.keys), spec.date
    cutoff = frame[date].max() - pd.Timedelta(days=7)
    day = {n: cutoff + pd.Timedelta(days=n) for n in range(1, 8)}
    first, second, third = (tuple(k) for k in frame[keys].drop_duplicates().to_numpy()[:3])

    def rows_of(series, *days):
        match = (frame[keys] == pd.Series(series, index=keys)).all(axis=1)
        return match & (frame[date].isin(days) if days else True)

    gaps = rows_of(first, day[3], day[4]) | rows_of(second, day[1]) | rows_of(third, day[6], day[7])
    discount = frame.loc[rows_of(second, cutoff), "discount"].iat[0]
    data = frame[~gaps]
    parts = split_for_evaluation(data, spec, 7)
    truth, future = parts["truth"], parts["future"]

    def at(part, series, when):
        return part[(part[keys].astype(str) == pd.Series(series, index=keys)).all(axis=1) & (part[date] == when)]

    # inside a series' life an absent day sold nothing: truth 0, and a future row so that it is forecast and scored
    for series, when in ((first, day[3]), (first, day[4]), (second, day[1])):
        assert at(truth, series, when)[spec.target].tolist() == [0.0]
        assert len(at(future, series, when)) == 1
    # known-future values of an added day come from the series' previous row (here its last history day)
    assert at(future, second, day[1])["discount"].tolist() == [discount]
    # after its last row a series has ended: nothing is added
    assert at(truth, third, day[6]).empty and at(future, third, day[7]).empty
    assert len(truth) == len(future) == 2 * 3 * 7 - 2
    spec.validate_frame(future, kind="future")

    unobserved = split_for_evaluation(data, dataclasses.replace(spec, missing_days="unobserved"), 7)
    assert len(unobserved["truth"]) == len(unobserved["future"]) == 2 * 3 * 7 - 5
    assert at(unobserved["truth"], first, day[3]).empty


@pytest.mark.parametrize("key", list(PIPELINES))
def test_every_processing_step_is_a_valid_forecaster_command_line(key):
    """The step table and the CLI agree: each rendered command parses (sub-command and flags exist)."""
    parser = build_parser()
    defaults = PIPELINES[key].defaults()
    for step in PIPELINES[key].steps:
        if step.kind != "processing":
            continue
        rendered = render_args(
            step, input_dir=lambda n: f"/in/{n}", output_root="/out", param=lambda n: str(defaults[n])
        )
        argv = [*step.command, *rendered]
        try:
            args = parser.parse_args(argv)
        except SystemExit as exit_:
            pytest.fail(f"{key}/{step.name}: `forecaster {' '.join(argv)}` does not parse (exit {exit_.code})")
        assert callable(args.func)


@pytest.mark.parametrize("key", list(PIPELINES))
def test_step_table_references_resolve_in_order(key):
    """What a local runner relies on: every reference points at a declared parameter or an earlier output."""
    spec = PIPELINES[key]
    params = {p.name for p in spec.parameters}
    assert len(params) == len(spec.parameters), "duplicate parameter"
    produced: dict[str, set[str]] = {}
    for step in spec.steps:
        for name, ref in step.inputs.items():
            kind, _, target = ref.partition(":")
            if kind == "param":
                assert target in params, f"{step.name}.{name}: unknown parameter {target}"
            else:
                source, _, output = target.partition("/")
                assert output in produced.get(source, set()), f"{step.name}.{name}: {ref} is not produced before"
        for token in step.args:
            if token.startswith("{param:"):
                assert token[7:-1] in params, f"{step.name}: unknown parameter in {token}"
        for setting in ("image", "group", "approval_status", "at_most", "max_runtime", "threshold"):
            if setting in step.settings:
                assert step.settings[setting] in params, f"{step.name}: {setting} names no parameter"
        assert {name for name in step.instance if name} <= params  # an empty count: one instance
        assert set(step.sharded) <= set(step.inputs)
        produced[step.name] = set(step.outputs) | ({"model"} if step.kind == "model" else set())


def test_a_day_without_rows_in_the_window_does_not_push_the_future_past_the_horizon():
    """A chain closed on one day of the held-out window (a partitioned split reads the dates as they are)."""
    days = pd.Series(pd.date_range("2024-01-01", "2024-02-29"))
    closed = days[days != pd.Timestamp("2024-02-26")]
    assert cutoff_day(closed, 7) == cutoff_day(days, 7) == pd.Timestamp("2024-02-22")
    with pytest.raises(DataValidationError, match="spans 7 days; holding out the last 7"):
        cutoff_day(days.iloc[-7:], 7)


def test_the_training_split_carries_its_spec(tmp_path, capsys):
    """``train --data <out>/train`` trained on the default spec, dropping the spec's other columns, without a word."""
    spec = DatasetSpec.preset("default")
    data = tmp_path / "data"
    data.mkdir()
    generate(stores=1, items=2, days=40, seed=0).rename(columns={"units_sold": "menge"}).to_csv(
        data / "sales.csv", index=False
    )
    custom = dataclasses.replace(spec, target="menge")
    (data / "spec.json").write_text(json.dumps(custom.to_dict()))
    assert main(["split", "--input", f"data={data}", "--horizon", "5", "--out", str(tmp_path / "out")]) == 0
    assert DatasetSpec.from_json(tmp_path / "out" / "train" / "spec.json").target == "menge"
