"""Every benchmark script runs at a tiny size, exits 0 and writes its results JSON: a bench cannot silently rot.

The scripts measure; nothing here asserts a measurement. Each runs as ``python bench/<script>.py --smoke`` (synthetic
data where the real run reads FreshRetailNet) with ``--out`` in a temporary folder, and the committed
``bench/results/*.json`` must be left as they were. ``bench/docker.py`` (and the soak of the inference container)
reuse the images the image tests build, so they are marked ``docker``.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
TIMEOUT_S = 600

pytestmark = pytest.mark.slow


def committed_results() -> dict[str, str]:
    """Digest of every results file in bench/results/ (what a smoke run must not touch)."""
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in (BENCH / "results").glob("*.json")}


def run_bench(script: str, tmp_path: Path, *args: str) -> dict:
    """Run ``bench/<script>.py ARGS --out tmp_path/<script>.json``; return the JSON it wrote."""
    out = tmp_path / f"{script}.json"
    before = committed_results()
    command = [sys.executable, str(BENCH / f"{script}.py"), *args, "--out", str(out)]
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    assert run.returncode == 0, f"{' '.join(command)} exited {run.returncode}\n{run.stdout[-3000:]}{run.stderr[-3000:]}"
    assert committed_results() == before, "a smoke run wrote into bench/results/"
    return json.loads(out.read_text())


def test_accuracy(tmp_path):
    result = run_bench("accuracy", tmp_path, "--smoke", "--recursive", "--one-step")
    assert {"data", "machine", "models", "mean_over_folds", "vs_mlforecast", "table_markdown"} <= set(result)
    assert {row["name"] for row in result["models"]} == {"seasonal_naive_7", "mean_28", "mlforecast", "forecaster"}
    assert all(0 < row["wape"] < 2 for row in result["models"])  # every model was scored on the synthetic actuals
    assert "forecaster" in result["vs_mlforecast"] and "paper_table_markdown" in result
    # fold 1, the most recent, is the confirmation fold: reported apart, never in the mean the levers are chosen on
    assert result["data"]["confirmation_fold"] == 1 and result["choosing_folds"] == [2]
    assert {row["fold"] for row in result["confirmation"]} == {1} and len(result["confirmation"]) == 4
    assert all(row["folds"] == 1 for row in result["mean_over_folds"])
    ratio = result["vs_mlforecast"]["forecaster"]
    assert ratio["confirmation"]["fold"] == 1 and set(ratio["per_fold"]) == {"1", "2"}
    assert ratio["mean"]["wape_vs_best"] == ratio["per_fold"]["2"]["wape_vs_best"]  # the peer's better point output
    assert ratio["per_fold"]["2"]["peer_best_point"] in {"mean", "p50"}
    # the offline level levers on those kept predictions: every weight scored per fold, chosen on fold 2 only
    out = tmp_path / "levers.json"
    command = [sys.executable, str(BENCH / "levers.py"), "--results", str(tmp_path / "accuracy.json")]
    command += ["--out", str(out)]
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    levers = json.loads(out.read_text())
    assert len(levers["rows"]) == 5 * 5 * 2 and levers["confirmation_fold"] == 1  # 5 levers x 5 weights x 2 folds
    blends = ("recursive_blend", "one_step_blend", "one_step_level_blend")
    assert set(levers["chosen"]) == {"point_bias_weight", "quantile_calibration_weight", *blends}
    # the blends read forecaster's kept recursive points: weight 0 is the direct point, weight 1 is not
    direct = {row["fold"]: row for row in levers["rows"] if row["lever"] == "point_bias_weight=1"}
    for name in blends:
        blend = {(row["fold"], row["weight"]): row for row in levers["rows"] if row["name"] == name}
        assert all(blend[fold, 0.0]["wape"] == direct[fold]["wape"] != blend[fold, 1.0]["wape"] for fold in (1, 2))
    # the one-step booster (--one-step) trained on horizon-1 rows; its times kept apart from fit+predict
    forecaster = [row["model"] for row in result["models"] if row["name"] == "forecaster"]
    assert all(
        info["one_step"]["rows"]["final_fit"] > info["one_step"]["rows"]["early_stopping_fit"] > 0
        for info in forecaster
    )
    assert all({"one_step_fit_s", "one_step_recursive_s"} <= set(info["inference_seconds"]) for info in forecaster)


def test_serving(tmp_path):
    result = run_bench("serving", tmp_path, "--smoke", "--workdir", str(tmp_path / "work"))
    numbers = result["results"]
    assert numbers["columns"] == ["p10", "p50", "p90", "mean"]  # compared with what the server answers
    assert numbers["transform_lines_match"] and numbers["transform_exact"]
    assert {"served_rows_per_s", "in_process_rows_per_s", "ratio", "latency_p99_ms", "start_to_ping_s"} <= set(numbers)
    assert len(result["table"]) == 8


def test_checks(tmp_path):
    result = run_bench("checks", tmp_path, "--smoke")
    assert result["violations_same_data"] == 0  # the baseline data checked against itself
    keys = {"drift", "evaluation", "explain_rows", "top_features_interventional", "top_features_tree_path_dependent"}
    assert keys | {"ndcg_interventional_vs_path_dependent_violations", "seconds"} <= set(result)


def test_soak_of_the_server(tmp_path):
    result = run_bench("soak", tmp_path, "--smoke", "--no-docker")
    assert result["pass"] and not result["rss_growth_judged"]
    (target,) = result["targets"]
    assert target["requests"] == 200 and target["server_errors"] == 0 and target["wrong_answers"] == 0


def test_scale(tmp_path):
    result = run_bench("scale", tmp_path, "--smoke", "--workdir", str(tmp_path / "work"), "--hosts", "1,2")
    rows = result["rows"]
    assert [row["stage"] for row in rows] == ["generate", "train", "train", "preprocess", "transform", "postprocess"]
    assert [row["hosts"] for row in rows[1:3]] == [1, 2]
    assert rows[-1]["forecast_rows"] == 3 * 6 * 14  # stores x items x horizon
    assert rows[3]["partitions"] == 2 and {"seconds", "peak_rss_bytes", "child_peak_rss_bytes"} <= set(rows[1])
    # the two-host job: each host built the rows of one of the 2 partitions, with its own row-build time and peak
    two = [row for row in result["hosts"] if row["hosts"] == 2]
    assert [row["host"] for row in two] == ["algo-1", "algo-2"]
    assert all(
        0 < row["row_build_own_s"] <= row["row_build_s"] and row["peak_gib"] > 0 and row["speed_up"] > 0 for row in two
    )


def test_small_shop(tmp_path):
    result = run_bench("small_shop", tmp_path, "--smoke")
    assert [(row["data"], row["config"]) for row in result["rows"]] == [
        ("one shop (synthetic)", "scaled"),
        ("FreshRetailNet 10 series (synthetic)", "scaled"),
    ]
    assert all({"train_seconds", "cpu_seconds", "wape_p50", "pinball", "phases"} <= set(row) for row in result["rows"])


@pytest.mark.docker
def test_docker(tmp_path, base_image, train_image, infer_image):
    args = ["--base-image", base_image, "--train-image", train_image, "--infer-image", infer_image]
    result = run_bench("docker", tmp_path, *args)
    assert result["train_build_s"] is None and result["infer_build_s"] is None  # the images were reused
    measured = ("train_image_mb", "infer_image_mb", "train_run_s", "start_to_ping_s", "start_to_ping_read_only_s")
    assert all(result[key] > 0 for key in measured) and result["sigterm_to_exit_s"] >= 0


@pytest.mark.docker
def test_soak_of_the_inference_container(tmp_path, infer_image):
    result = run_bench("soak", tmp_path, "--smoke", "--image", infer_image)
    assert result["pass"]
    assert [target["target"] for target in result["targets"]] == [
        "gunicorn (forecaster serve)",
        f"container {infer_image}",
    ]
