import base64
import io
import json
import os
import shutil
import subprocess
from html.parser import HTMLParser

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest

from forecaster.cli.main import main


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images, self.headings, self.notes, self._tag = [], [], [], None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs["src"])
        self._tag = (tag, attrs.get("class"))

    def handle_data(self, data):
        if self._tag and self._tag[0] == "h2":
            self.headings.append(data)
        if self._tag and self._tag[1] == "note":
            self.notes.append(data)


def _workdir(root):
    rng = np.random.default_rng(0)
    dates = pd.date_range("2024-05-01", periods=14)
    truth = pd.MultiIndex.from_product([["S1", "S2", "S3"], ["I1"], dates], names=["store_id", "item_id", "date"])
    truth = truth.to_frame(index=False)
    truth["campaign"] = (truth["date"].dt.day % 5 == 0).astype(int)
    truth["units_sold"] = rng.poisson(8 + 6 * truth["campaign"])
    truth["discount"], truth["holiday"] = 1.0, 0
    pred = truth[["store_id", "item_id", "date"]].assign(mean=truth["units_sold"] * 0.9 + 1)
    pred = pred.assign(p10=pred["mean"] * 0.6, p50=pred["mean"], p90=pred["mean"] * 1.5)
    (root / "predictions").mkdir(parents=True)
    (root / "truth").mkdir()
    pred.to_csv(root / "predictions" / "predictions.csv", index=False)
    truth.to_csv(root / "truth" / "truth.csv", index=False)
    assert (
        main(
            [
                "evaluate",
                "--input",
                f"predictions={root / 'predictions'}",
                "--input",
                f"truth={root / 'truth'}",
                "--out",
                str(root / "evaluate"),
            ]
        )
        == 0
    )
    features = truth[["discount", "units_sold", "store_id"]]
    features.to_csv(root / "f.csv", index=False)
    features.assign(discount=0.7).to_csv(root / "g.csv", index=False)
    assert (
        main(["baseline", "data-quality", "--input", f"dataset={root / 'f.csv'}", "--out", str(root / "dq-baseline")])
        == 0
    )
    assert (
        main(
            [
                "check",
                "data-quality",
                "--input",
                f"baseline={root / 'dq-baseline'}",
                "--input",
                f"dataset={root / 'g.csv'}",
                "--out",
                str(root / "dq-check"),
            ]
        )
        == 0
    )
    analysis = {
        "version": "1.0",
        "explanations": {
            "kernel_shap": {
                "label0": {"global_shap_values": {"discount": 0.4, "lag_7": 0.3, "mean_28": 0.2}, "expected_value": 2.0}
            }
        },
    }
    (root / "explain").mkdir()
    (root / "explain" / "analysis.json").write_text(json.dumps(analysis))
    assert main(["decide-retrain", "--input", f"violations={root / 'dq-check'}", "--out", str(root / "decision")]) == 0


def test_report_sections_and_embedded_pngs(tmp_path):
    work = tmp_path / "work"
    _workdir(work)
    out = tmp_path / "report.html"
    assert main(["report", "--workdir", str(work), "--out", str(out)]) == 0
    text = out.read_text()
    parser = _Collect()
    parser.feed(text)
    assert parser.headings == [
        "Pipeline runs",
        "Retrain decision",
        "Forecast vs actual",
        "Forecast accuracy",
        "Feature importances (SHAP)",
        "Drift",
        "Violations",
    ]
    assert "RETRAIN" in text and "baseline_drift_check" in text and "Campaign uplift" in text
    assert len(parser.images) >= 3  # forecasts, uplift, SHAP
    for src in parser.images:
        assert src.startswith("data:image/png;base64,")
        image = mpimg.imread(io.BytesIO(base64.b64decode(src.split(",", 1)[1])), format="png")
        assert image.shape[0] > 50 and image.shape[1] > 50 and image.std() > 0  # a real, non-blank picture
    assert "http" not in text.replace("http-equiv", "")  # self-contained: nothing fetched


def test_missing_inputs_are_notes_not_errors(tmp_path):
    work = tmp_path / "empty"
    work.mkdir()
    out = tmp_path / "r.html"
    assert main(["report", "--workdir", str(work), "--out", str(out)]) == 0
    parser = _Collect()
    parser.feed(out.read_text())
    assert parser.images == []
    assert any("decision.json" in n for n in parser.notes)
    assert any("Predictions or truth not found" in n for n in parser.notes)
    assert main(["report", "--workdir", str(tmp_path / "nope"), "--out", str(out)]) == 3


@pytest.mark.parametrize(
    ("content", "expected"),
    [("{not json", "could not be read as a decision"), ('{"retrain": "maybe"}', 'unknown: "retrain" is &#x27;maybe')],
)
def test_a_decision_that_is_not_true_or_false_is_not_shown_as_retrain(tmp_path, content, expected):
    """A corrupt decision.json read as "no retraining needed"; "retrain": "maybe" as RETRAIN."""
    work = tmp_path / "work" / "DecideRetrain" / "output" / "decision"
    work.mkdir(parents=True)
    (work / "decision.json").write_text(content)
    out = tmp_path / "r.html"
    assert main(["report", "--workdir", str(tmp_path / "work"), "--out", str(out)]) == 0
    text = out.read_text()
    assert expected in text
    assert "RETRAIN" not in text and "no retraining needed" not in text


def chromium() -> str:
    """Debian's ``chromium`` (.ci/run installs it): a developer without it skips, CI=true fails."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser:
        return browser
    if os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}:
        pytest.fail("CI=true but no `chromium` on PATH: .ci/run installs Debian's chromium package")
    pytest.skip("no `chromium` on PATH (apt-get install chromium)")


def test_report_renders_in_headless_chromium(tmp_path):
    browser = chromium()
    work = tmp_path / "work"
    _workdir(work)
    out = tmp_path / "report.html"
    assert main(["report", "--workdir", str(work), "--out", str(out)]) == 0
    shot = tmp_path / "shot.png"
    subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            f"--screenshot={shot}",
            "--window-size=1200,3000",
            f"file://{out}",
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    image = mpimg.imread(shot)
    assert image.shape[0] >= 1000
    # the page is not blank: a good share of pixels differ from the white background
    assert (image[..., :3].mean(axis=2) < 0.9).mean() > 0.02


def test_the_plots_ask_only_for_installed_fonts():
    from matplotlib import font_manager

    from forecaster.checks.report import FONT_FAMILIES, installed_font_families

    families = installed_font_families()
    known = {font.name for font in font_manager.fontManager.ttflist}
    assert families[-1] == "sans-serif" and "DejaVu Sans" in families  # matplotlib ships DejaVu Sans
    assert all(family in known for family in families[:-1])
    assert [f for f in FONT_FAMILIES if f in families] == families  # the order is kept
