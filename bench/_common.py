"""Helpers shared by the benchmark scripts: timing, peak RSS, child processes, tables, JSON results.

Every benchmark measures each system in its own child process (``run_child``) so that one system's memory never
inflates another's peak RSS, and reports wall time and peak RSS of the measured step only.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
REPO_ROOT = BENCH_DIR.parent


def peak_rss_bytes() -> int:
    """Peak resident set size of this process so far (Linux ``ru_maxrss`` is in KiB, macOS in bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def reset_peak_rss() -> bool:
    """Reset this process's peak RSS (Linux ``VmHWM``) so later peaks exclude earlier steps; False if unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def peak_rss_since_reset_bytes() -> int:
    """Peak RSS since ``reset_peak_rss`` (``VmHWM`` from /proc); falls back to the whole-process peak."""
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return peak_rss_bytes()


def current_rss_bytes() -> int:
    """Current resident set size of this process (from /proc; falls back to the peak elsewhere)."""
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return peak_rss_bytes()


@contextmanager
def stopwatch() -> Iterator[dict[str, float]]:
    """Time the ``with`` block; the yielded dict gets ``seconds`` when the block ends."""
    result: dict[str, float] = {}
    start = time.perf_counter()
    try:
        yield result
    finally:
        result["seconds"] = time.perf_counter() - start


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on (CPU count, model, memory, Python, date)."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            names = [line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    memory = None
    with suppress(ValueError, OSError):
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return {
        "date": dt.date.today().isoformat(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "memory_bytes": memory,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def run_child(args: Sequence[str], *, timeout: float | None = None) -> None:
    """Run ``python <args>`` as a child process; raise with its stderr tail when it fails."""
    command = [sys.executable, *args]
    completed = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout, check=False)
    if completed.stderr:
        sys.stderr.write(completed.stderr[-4000:] if completed.returncode else "")
    if completed.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed with exit code {completed.returncode}")


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str, str]]) -> str:
    """Render ``rows`` as a markdown table; ``columns`` are (key, header, format spec) triples.

    Missing or None values print as an em dash; floats use the format spec (e.g. ``".1%"``, ``".1f"``).
    """
    header = "| " + " | ".join(title for _, title, _ in columns) + " |"
    rule = "|" + "|".join("---" if i == 0 else "---:" for i in range(len(columns))) + "|"
    lines = [header, rule]
    for row in rows:
        cells = []
        for key, _, spec in columns:
            value = row.get(key)
            if value is None or (isinstance(value, float) and value != value):
                cells.append("—")
            elif spec:
                cells.append(format(value, spec))
            else:
                cells.append(str(value))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def gib(n_bytes: float | None) -> float | None:
    """Bytes to GiB (None stays None)."""
    return None if n_bytes is None else n_bytes / 2**30


def synthetic_model(
    workdir: Path, hyperparameters: dict[str, Any], *, stores: int, items: int, days: int, seed: int
) -> tuple[Path, Any]:
    """Train (or reuse) ``workdir/model`` on synthetic data; return it and its real inference feature rows.

    The last ``hyperparameters["horizon"]`` days are the future frame whose feature rows are returned (float64).
    """
    import numpy as np

    from forecaster.config import TrainConfig
    from forecaster.forecasting import build_inference_features
    from forecaster.spec import DatasetSpec
    from forecaster.synth import SYNTH_SPEC, generate
    from forecaster.training import fit_artifact

    spec = DatasetSpec.from_dict(SYNTH_SPEC)
    frame = generate(stores=stores, items=items, days=days, seed=seed)
    cut = frame[spec.date].max() - np.timedelta64(int(hyperparameters["horizon"]), "D")
    history, future = frame[frame[spec.date] <= cut], frame[frame[spec.date] > cut].drop(columns=[spec.target])
    model_dir = workdir / "model"
    if not (model_dir / "feature_schema.json").exists():
        fit_artifact(history, spec, TrainConfig.from_hyperparameters(hyperparameters), model_dir)
    features, _ = build_inference_features(model_dir, history, future)
    return model_dir, features.to_numpy(dtype=np.float64)


def served_columns(model: Any, rows: Any) -> tuple[tuple[str, ...], Any]:
    """What ``POST /invocations`` answers with ``quantiles=all`` (names, values), computed in-process by the
    server's own code (``forecaster.serving.app.predict``): every quantile, then the point forecast."""
    from forecaster.contract import ALL_QUANTILES
    from forecaster.serving.app import RequestOptions, predict

    predictions = predict(model, rows, RequestOptions(quantiles=ALL_QUANTILES))
    return predictions.columns, predictions.values


def synthetic_freshretailnet(path: Path, *, stores: int = 3, items: int = 8, days: int = 76, seed: int = 0) -> Path:
    """Write a FreshRetailNet-50K-shaped daily parquet (its columns and dtypes) from ``forecaster.synth``.

    For smoke runs of the benchmarks that read FreshRetailNet (``--synthetic``): ids are integer codes of the
    synthetic stores, items, cities and categories; precipitation, humidity and wind are constants.
    """
    import numpy as np
    import pandas as pd

    from forecaster.synth import generate

    frame = generate(stores=stores, items=items, days=days, seed=seed)

    def codes(column: str) -> np.ndarray:
        return pd.factorize(frame[column], sort=True)[0].astype(np.int32)

    category = codes("category")
    out = pd.DataFrame(
        {
            "city_id": codes("city"),
            "store_id": codes("store_id"),
            "management_group_id": np.zeros(len(frame), dtype=np.int32),
            "first_category_id": category,
            "second_category_id": category,
            "third_category_id": category,
            "product_id": codes("item_id"),
            "dt": frame["date"].astype("datetime64[us]"),
            "sale_amount": frame["units_sold"].astype(np.float64),
            "stockout_hours": frame["stockout_hours"].round().astype(np.int32),
            "discount": frame["discount"].astype(np.float64),
            "holiday_flag": frame["holiday"].astype(np.int32),
            "activity_flag": frame["campaign"].astype(np.int32),
            "precpt": 0.0,
            "avg_temperature": frame["temperature"].astype(np.float64),
            "avg_humidity": 70.0,
            "avg_wind_level": 2.0,
        }
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    out.to_parquet(path, index=False)
    return path
