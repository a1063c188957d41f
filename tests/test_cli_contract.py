"""The command line's contract: values refused at parse time, outputs that would overwrite each other, clean stops."""

from __future__ import annotations

import json

import pytest

from forecaster.cli.main import main
from forecaster.errors import InvalidParameterError
from forecaster.forecasting import postprocess
from forecaster.partitioned import preprocess


@pytest.mark.parametrize(
    ("argv", "flag", "rule"),
    [
        (["train", "--data", "d", "--model-dir", "m", "--hosts", "0"], "--hosts", "at least 1"),
        (["evaluate", "--seed", "-1"], "--seed", "at least 0"),
        (["explain", "--seed", "-1"], "--seed", "at least 0"),
        (["synth", "--out", "o", "--seed", "x"], "--seed", "at least 0"),
    ],
)
def test_counts_below_their_range_are_usage_errors(argv, flag, rule, capsys):
    """``--hosts 0`` trained on one host; ``evaluate --seed -1`` ended in numpy's traceback."""
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    assert stopped.value.code == 2
    assert f"argument {flag}: must be a whole number of {rule}" in capsys.readouterr().err


def test_outputs_that_would_replace_each_other_are_refused_before_any_work(tmp_path):
    with pytest.raises(InvalidParameterError, match="one inside the other"):
        preprocess(
            tmp_path / "no-model", tmp_path / "h", tmp_path / "f", tmp_path / "pp", keys_dir=tmp_path / "pp" / "k"
        )
    with pytest.raises(InvalidParameterError, match="one inside the other"):
        preprocess(
            tmp_path / "no-model", tmp_path / "h", tmp_path / "f", tmp_path / "pp" / "a", keys_dir=tmp_path / "pp"
        )
    with pytest.raises(InvalidParameterError, match="the orders would replace the forecasts"):
        postprocess(tmp_path / "keys.csv", tmp_path / "out", tmp_path / "f.csv", orders=tmp_path / "." / "f.csv")
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_says_interrupted_and_exits_130(monkeypatch, capsys):
    from forecaster.cli import core

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(core, "_synth", interrupted)
    assert main(["synth", "--out", "never"]) == 130
    assert capsys.readouterr().err.strip() == "forecaster synth: stopped (interrupted)"  # was "stopped ()"


def test_train_prints_only_its_json_on_stdout(tmp_path, capsys):
    """``forecaster train ... | jq``: the spec notice goes to stderr."""
    assert main(["synth", "--out", str(tmp_path / "data"), "--stores", "1", "--items", "2", "--days", "60"]) == 0
    capsys.readouterr()
    fast = ["--hp", "num_boost_round=5", "--hp", "quantile_num_boost_round=5", "--horizon", "7"]
    assert main(["train", "--data", str(tmp_path / "data"), "--model-dir", str(tmp_path / "m"), *fast]) == 0
    out, err = capsys.readouterr()
    assert "wape" in json.loads(out)["validation_metrics"]  # the whole of stdout is one JSON document
    assert "spec: " in err and "spec: " not in out
