"""One self-contained HTML report of a pipeline work directory (PNG plots embedded as base64, Agg backend).

Files are found by name anywhere under the work directory (the local runner's layout is
``<workdir>/<step>/...``); each section is drawn from what exists and replaced by a note when its inputs are
missing:

========================================  ====================================================================
file(s)                                   section
========================================  ====================================================================
``**/run.json``                           each local pipeline run: its status, and every step's status, time
                                          and failure reason
``**/decision.json``                      retrain decision and its reasons
``**/predictions/*`` or                   forecast vs actual with the P10-P90 band for sample series, and the
``**/predictions.{csv,parquet}``          campaign uplift (mean actual and forecast on campaign vs other days);
``**/truth/*`` or ``**/truth.*``          the truth needs the spec's key, date and target columns
``**/evaluation.json``                    metrics table (overall / campaign / non-campaign) and, with several,
                                          the model-quality trend over ``dataset.evaluation_time``
``**/analysis.json``                      SHAP importances (mean abs SHAP, top 15) per explanation run
``**/feature_drift.json``                 per-feature drift distances against their thresholds
``**/*violations*.json``                  every violation, with the step directory it came from
========================================  ====================================================================

Without a ``predictions`` table, a ``forecasts`` table (the pipelines' Postprocess output) is plotted.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from forecaster.artifact import SCHEMA_FILE
from forecaster.checks.contract import ANALYSIS_FILE, DECISION_FILE, EVALUATION_FILE, FEATURE_DRIFT_FILE, NDCG_FILE
from forecaster.contract import QUANTILE_COLUMNS, RUN_FILE
from forecaster.errors import DataValidationError
from forecaster.io import TABLE_SUFFIXES, atomic_path, read_table

_CSS = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px;color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.5em 0;font-size:.9em}td,th{border:1px solid #ddd;padding:3px 8px;text-align:left}
th{background:#f4f4f4}.note{color:#777;font-style:italic}.bad{color:#b00020;font-weight:bold}.ok{color:#1b7f3b}
img{max-width:100%}"""


def _find(workdir: Path, pattern: str) -> list[Path]:
    return sorted(p for p in workdir.rglob(pattern) if p.is_file() and not _hidden(p, workdir))


def _hidden(path: Path, workdir: Path) -> bool:
    """Whether ``path`` is or lies in a hidden file or folder (staging copies, a registered version's copies)."""
    return any(part.startswith(".") for part in path.relative_to(workdir).parts)


def _table_in(workdir: Path, name: str) -> Path | None:
    """A table named ``name.*`` or the first table file inside a directory called ``name``."""
    for path in sorted(p for p in workdir.rglob(f"{name}*") if not _hidden(p, workdir)):
        if path.is_file() and path.stem.split(".")[0] == name and path.name.lower().endswith(TABLE_SUFFIXES):
            return path
        if path.is_dir() and path.name == name:
            files = [p for p in sorted(path.rglob("*")) if p.is_file() and p.name.lower().endswith(TABLE_SUFFIXES)]
            if files:
                return path
    return None


#: fonts tried in order per glyph (matplotlib's font fallback): Latin, then CJK from Debian's fonts-noto-cjk
FONT_FAMILIES = ["DejaVu Sans", "Noto Sans CJK JP", "Noto Sans CJK SC", "Noto Sans CJK KR", "sans-serif"]


def installed_font_families() -> list[str]:
    """:data:`FONT_FAMILIES` that matplotlib knows, in order (an absent family would log a warning per glyph)."""
    from matplotlib import font_manager

    known = {font.name for font in font_manager.fontManager.ttflist}
    return [family for family in FONT_FAMILIES if family in known or family == "sans-serif"]


def _png(fig: Any) -> str:
    import matplotlib.pyplot as plt

    fig.tight_layout()  # panel titles and tick labels must not overlap
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return f'<img alt="plot" src="data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}">'


def _table(frame: pd.DataFrame) -> str:
    return frame.to_html(index=False, border=0, float_format=lambda v: f"{v:.4g}", escape=True)


def _note(text: str) -> str:
    return f'<p class="note">{html.escape(text)}</p>'


def _load(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


# ---------------------------------------------------------------------------------------------------- sections
def _runs(workdir: Path) -> str:
    records = [(p, d) for p in _find(workdir, RUN_FILE) if isinstance(d := _load(p), dict) and "steps" in d]
    if not records:
        return _note("No run.json found: the folder was not written by `forecaster pipeline run`.")
    out = ""
    for path, record in records:
        status = str(record.get("status", "unknown"))
        shown = f'<span class="{"ok" if status == "Succeeded" else "bad"}">{html.escape(status)}</span>'
        where = html.escape(str(path.parent.relative_to(workdir)))
        reason = record.get("failure_reason")
        out += (
            f"<p>{html.escape(str(record.get('name', record.get('pipeline', '?'))))} in <code>{where}</code>: "
            f"{shown}, run {html.escape(str(record.get('run_id', '?')))}, started "
            f"{html.escape(str(record.get('started_at', '?')))}"
            + (f": {html.escape(str(reason))}" if reason else "")
            + "</p>"
        )
        steps = [
            {
                "step": name,
                "status": "reused" if step.get("cache_hit") else step.get("status"),
                "seconds": step.get("seconds"),
                "reason": step.get("reason", ""),
            }
            for name, step in (record.get("steps") or {}).items()
            if isinstance(step, dict)
        ]
        out += _table(pd.DataFrame(steps)) if steps else _note("No step ran.")
    return out


def _decision(workdir: Path) -> str:
    files = _find(workdir, DECISION_FILE)
    if not files:
        return _note("No decision.json found (run `forecaster decide-retrain`).")
    doc = _load(files[-1])
    if not isinstance(doc, dict):
        return _note(
            f"{files[-1]} could not be read as a decision (not a JSON object): run `forecaster decide-retrain`."
        )
    verdicts = {True: '<span class="bad">RETRAIN</span>', False: '<span class="ok">no retraining needed</span>'}
    retrain = doc.get("retrain")
    verdict = verdicts.get(retrain) if isinstance(retrain, bool) else None
    verdict = verdict or f'<span class="bad">unknown: "retrain" is {html.escape(repr(retrain))}</span>'
    items = "".join(f"<li>{html.escape(str(r))}</li>" for r in doc.get("reasons", []))
    issues = "".join(f"<li>{html.escape(str(r))}</li>" for r in doc.get("data_issues", []))
    out = f"<p>Decision: {verdict}</p>" + (f"<ul>{items}</ul>" if items else "")
    return out + (f"<p>Data issues to fix in the feed:</p><ul>{issues}</ul>" if issues else "")


def _forecasts(workdir: Path, spec: Any, max_series: int) -> str:
    import matplotlib.pyplot as plt

    from forecaster.checks.evaluation import join_predictions, point_column, read_forecasts

    # predictions/ (a check's input), else forecasts/ (the Postprocess output of the pipelines)
    pred_path = _table_in(workdir, "predictions") or _table_in(workdir, "forecasts")
    truth_path = _table_in(workdir, "truth")
    if pred_path is None or truth_path is None:
        return _note("Predictions or truth not found (predictions/ and truth/ tables); forecast plots omitted.")
    try:
        joined = join_predictions(
            read_forecasts(pred_path, text=tuple(spec.keys)),
            read_table(truth_path, spec.csv, spec.text_columns),
            id_cols=list(spec.keys),
            time_col=spec.date,
            target_col=spec.target,
            campaign_col=spec.campaign,
            date_format=spec.date_format,
        )
    except DataValidationError as error:
        return _note(f"Forecast plots omitted: {error.reason}")
    keys = list(spec.keys)
    totals = joined.groupby(keys, observed=True)["y"].sum().sort_values(ascending=False)
    chosen = totals.index[: max(1, max_series)]
    point = point_column(joined)
    lowest, highest = QUANTILE_COLUMNS[0], QUANTILE_COLUMNS[-1]
    plt.rcParams["font.family"] = installed_font_families()  # non-Latin series names (CJK with fonts-noto-cjk)
    fig, axes = plt.subplots(len(chosen), 1, figsize=(9, 2.6 * len(chosen)), squeeze=False)
    for ax, key in zip(axes[:, 0], chosen, strict=False):
        key = key if isinstance(key, tuple) else (key,)
        rows = joined[np.logical_and.reduce([joined[k] == v for k, v in zip(keys, key, strict=True)])]
        rows = rows.sort_values(spec.date)
        if {lowest, highest} <= set(rows.columns):
            band = f"{lowest.upper()}-{highest.upper()}"
            ax.fill_between(rows[spec.date], rows[lowest], rows[highest], alpha=0.25, label=band)
        ax.plot(rows[spec.date], rows[point], label=f"forecast ({point})")
        ax.plot(rows[spec.date], rows["y"], "k.-", label="actual")
        if "campaign" in rows.columns and rows["campaign"].any():
            ax.scatter(
                rows.loc[rows["campaign"], spec.date],
                rows.loc[rows["campaign"], "y"],
                c="red",
                zorder=3,
                label="campaign day",
            )
        ax.set_title(", ".join(f"{k}={v}" for k, v in zip(keys, key, strict=True)), fontsize=9)
        ax.legend(fontsize=7, loc="upper left")
    out = _png(fig)
    if "campaign" in joined.columns and joined["campaign"].any() and (~joined["campaign"]).any():
        means = joined.groupby("campaign")[["y", point]].mean().rename(index={True: "campaign", False: "other days"})
        fig, ax = plt.subplots(figsize=(5, 3))
        means.rename(columns={"y": "actual", point: f"forecast ({point})"}).plot.bar(ax=ax, rot=0)
        ax.set_ylabel(f"mean {spec.target} per series-day")
        uplift = (
            means.loc["campaign", "y"] / means.loc["other days", "y"] - 1 if means.loc["other days", "y"] else np.nan
        )
        out += f"<h3>Campaign uplift</h3><p>Actual uplift on campaign days: {uplift:+.1%}</p>" + _png(fig)
    else:
        out += _note("No campaign flag in the truth: campaign uplift omitted.")
    return out


def _metrics(workdir: Path) -> str:
    import matplotlib.pyplot as plt

    docs = [(p, d) for p in _find(workdir, EVALUATION_FILE) if isinstance(d := _load(p), dict)]
    if not docs:
        return _note("No evaluation.json found (run `forecaster evaluate`).")
    rows = []
    for path, doc in docs:
        for split, values in (doc.get("forecast_metrics") or {}).items():
            cov = values.get("coverage", {})
            rows.append(
                {
                    "file": str(path.parent.relative_to(workdir)),
                    "split": split,
                    "rows": values.get("rows"),
                    "WAPE": values.get("wape"),
                    "bias": values.get("bias"),
                    "MAE": values.get("mae"),
                    "P10-P90 coverage": cov.get("p10_p90"),
                }
            )
    out = _table(pd.DataFrame(rows))
    trend = sorted(
        ((d.get("dataset", {}).get("evaluation_time", ""), d) for _, d in docs if d.get("forecast_metrics")),
        key=lambda item: item[0],
    )
    if len(trend) > 1:
        fig, ax = plt.subplots(figsize=(7, 3))
        ax.plot(range(len(trend)), [d["forecast_metrics"]["overall"].get("wape") for _, d in trend], "o-")
        ax.set_xticks(range(len(trend)), [t[:10] for t, _ in trend], rotation=30, fontsize=7)
        ax.set_ylabel("WAPE (overall)")
        ax.set_title("Model-quality trend")
        out += _png(fig)
    else:
        out += _note("One evaluation only: model-quality trend needs two or more.")
    return out


def _shap(workdir: Path) -> str:
    import matplotlib.pyplot as plt

    out = ""
    for path in _find(workdir, ANALYSIS_FILE)[:3]:
        doc = _load(path) or {}
        labels = (doc.get("explanations") or {}).get("kernel_shap") or {}
        for label, block in labels.items():
            values = pd.Series(block.get("global_shap_values", {}), dtype=float).sort_values().tail(15)
            if values.empty:
                continue
            fig, ax = plt.subplots(figsize=(7, 0.3 * len(values) + 1))
            ax.barh(values.index, values.to_numpy())
            ax.set_xlabel("mean |SHAP| (raw score)")
            ax.set_title(f"{path.parent.relative_to(workdir)} / {label}", fontsize=9)
            out += _png(fig)
    return out or _note("No analysis.json found (run `forecaster explain`).")


def _drift(workdir: Path) -> str:
    rows = []
    for path in _find(workdir, FEATURE_DRIFT_FILE):
        for row in (_load(path) or {}).get("features", []):
            rows.append({"file": str(path.parent.relative_to(workdir)), **row})
    for path in _find(workdir, NDCG_FILE):
        for row in (_load(path) or {}).get("labels", []):
            rows.append(
                {
                    "file": str(path.parent.relative_to(workdir)),
                    "feature_name": f"attributions ({row['label']})",
                    "method": "NDCG (violation below)",
                    "distance": row["ndcg"],
                    "threshold": row["threshold"],
                    "drifted": row["drifted"],
                }
            )
    if not rows:
        return _note("No feature_drift.json or ndcg.json found (run the checks).")
    frame = pd.DataFrame(rows).sort_values(["drifted", "distance"], ascending=[False, False])
    return _table(frame)


def _violations(workdir: Path) -> str:
    rows = []
    for path in _find(workdir, "*violations*.json"):
        for item in (_load(path) or {}).get("violations", []) or []:
            rows.append(
                {
                    "step": str(path.parent.relative_to(workdir)),
                    "feature / metric": item.get("feature_name") or item.get("metric_name"),
                    "check": item.get("constraint_check_type"),
                    "description": item.get("description"),
                }
            )
    if not rows:
        return '<p class="ok">No violations found.</p>'
    return _table(pd.DataFrame(rows))


def render(workdir: str | Path, *, spec: Any, max_series: int = 4) -> str:
    """Return the report's HTML for ``workdir``."""
    import matplotlib

    matplotlib.use("Agg")
    workdir = Path(workdir)
    if not workdir.is_dir():
        raise DataValidationError(f"Work directory {workdir} does not exist. Pass the pipeline's --workdir.")
    sections = [
        ("Pipeline runs", _runs(workdir)),
        ("Retrain decision", _decision(workdir)),
        ("Forecast vs actual", _forecasts(workdir, spec, max_series)),
        ("Forecast accuracy", _metrics(workdir)),
        ("Feature importances (SHAP)", _shap(workdir)),
        ("Drift", _drift(workdir)),
        ("Violations", _violations(workdir)),
    ]
    body = "".join(f"<h2>{html.escape(title)}</h2>{content}" for title, content in sections)
    title = f"forecaster report — {html.escape(str(workdir))}"
    return (
        f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{title}</title><style>{_CSS}</style></head>'
        f"<body><h1>{title}</h1>{body}</body></html>\n"
    )


def write_report(workdir: str | Path, out: str | Path, *, spec: Any = None, max_series: int = 4) -> Path:
    """Render the report and write it atomically to ``out``; the spec defaults to the model's, else 'default'."""
    from forecaster.checks.jobs import load_dataset_spec

    if spec is None or isinstance(spec, str | Path):
        schemas = _find(Path(workdir), SCHEMA_FILE) if spec is None and Path(workdir).is_dir() else []
        spec = load_dataset_spec(spec, schemas[0].parent if schemas else None)
    text = render(workdir, spec=spec, max_series=max_series)
    with atomic_path(out) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(out)
