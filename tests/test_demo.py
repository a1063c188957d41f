"""``make demo`` (forecaster.cli.demo) end to end on tiny data: every stage runs and its outputs are where it says."""

from __future__ import annotations

from pathlib import Path

import pytest

from forecaster.cli import demo
from forecaster.io import read_json, read_table
from forecaster.registry import ApprovalStatus, open_registry

FAST = {"NumBoostRound": 20, "QuantileNumBoostRound": 10, "NumLeaves": 7, "NumThreads": 1}


def test_deepen_campaigns_changes_only_later_campaign_days():
    import pandas as pd

    from forecaster.synth import generate

    frame = generate(stores=2, items=3, days=60, seed=1)
    frame["date"] = pd.to_datetime(frame["date"])
    since = frame["date"].min() + pd.Timedelta(days=29)
    changed = demo.deepen_campaigns(frame, since)
    later = (frame["date"] > since) & (frame["campaign"] == 1)
    assert later.any()
    untouched = ~later
    pd.testing.assert_frame_equal(changed[untouched], frame[untouched])
    deeper = frame.loc[later, "discount"] - changed.loc[later, "discount"]
    assert (deeper > 0).all() and (deeper <= demo.DEEPER_BY + 1e-9).all()
    assert changed.loc[later, "units_sold"].sum() > 1.5 * frame.loc[later, "units_sold"].sum()


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory) -> tuple[Path, dict[str, Path]]:
    workdir = tmp_path_factory.mktemp("demo") / "out"
    outputs = demo.run(workdir, stores=2, items=3, days=80, training=FAST)
    return workdir, outputs


@pytest.mark.slow
def test_demo_writes_report_orders_and_decisions(demo_run):
    workdir, outputs = demo_run
    for name in ("report", "order proposals", "forecasts", "decision", "decision (later inference)", "registry"):
        assert outputs[name].is_file(), name
        assert outputs[name].is_relative_to(workdir.resolve())
    orders = read_table(outputs["order proposals"])
    forecasts = read_table(outputs["forecasts"])
    assert len(orders) == len(forecasts) == 2 * 3 * demo.HORIZON
    # the first forecast period's truth has campaigns that sold far more than forecast: model quality fires
    decision = read_json(outputs["decision"])
    assert decision["retrain"] is True
    assert any(reason.startswith("model quality") for reason in decision["reasons"])
    html = outputs["report"].read_text()
    assert "Retrain decision" in html and "RETRAIN" in html and html.count("<img") >= 2


@pytest.mark.slow
def test_demo_approves_explicitly_and_the_inference_uses_that_version(demo_run):
    workdir, _ = demo_run
    registry = open_registry(f"sqlite:///{workdir.resolve() / 'registry.db'}")
    (version,) = registry.list_versions(demo.GROUP)
    assert version.status == ApprovalStatus.APPROVED and version.approval_description == "demo: evaluation reviewed"
    inference = read_json(workdir / "runs" / "2-inference" / "run.json")
    assert inference["parameters"]["ModelPackageArn"] == version.identifier
    assert inference["parameters"]["ModelDataUrl"] == version.model_data_url


def test_demo_main_prints_where_the_outputs_are(tmp_path, capsys, monkeypatch):
    calls = {}

    def fake_run(workdir, stores, items, days, *, resume=False, training=None):
        calls.update(workdir=workdir, stores=stores, items=items, days=days, resume=resume)
        return {"report": tmp_path / "report.html", "order proposals": tmp_path / "orders.csv"}

    monkeypatch.setattr(demo, "run", fake_run)
    assert demo.main(["--workdir", str(tmp_path), "--stores", "3"]) == 0
    out = capsys.readouterr().out
    assert f"report: {tmp_path / 'report.html'}" in out and f"order proposals: {tmp_path / 'orders.csv'}" in out
    assert calls == {"workdir": tmp_path, "stores": 3, "items": 15, "days": 200, "resume": False}
