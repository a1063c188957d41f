"""The checks' files and default thresholds, declared once.

The file names are those of SageMaker Model Monitor and Clarify (``statistics.json``, ``constraints.json``,
``constraint_violations.json``, ``analysis.json``) plus the project's own (``evaluation.json``,
``decision.json``); the check jobs write them, the pipelines point the registry and the managed checks at them,
the report, the retrain decision, the Airflow tasks and the demo read them. This module imports nothing.
"""

from __future__ import annotations

# ---- files --------------------------------------------------------------------------------------------------------
#: Evaluation metrics (Model Monitor's model-quality statistics layout); the approval gate's property file.
EVALUATION_FILE = "evaluation.json"
#: Per-row forecasts with their actuals, what the model-quality baseline is computed from.
EVALUATION_ROWS_FILE = "evaluation.csv"
#: Baseline or current statistics (data quality; model quality).
STATISTICS_FILE = "statistics.json"
#: Baseline constraints (data quality; model quality).
CONSTRAINTS_FILE = "constraints.json"
#: What a check found against its baseline's constraints.
VIOLATIONS_FILE = "constraint_violations.json"
#: Per-feature drift distances of a data-quality check.
FEATURE_DRIFT_FILE = "feature_drift.json"
#: Clarify-style SHAP analysis (global feature attributions).
ANALYSIS_FILE = "analysis.json"
#: NDCG of the top features' attributions of an attribution-drift check.
NDCG_FILE = "ndcg.json"
#: The retrain decision with its reasons.
DECISION_FILE = "decision.json"

# ---- default thresholds -------------------------------------------------------------------------------------------
#: Data-quality drift: a numeric feature's distribution distance (and a categorical's L-infinity distance) from
#: its baseline above this is a violation (Model Monitor's ``comparison_threshold`` default).
DEFAULT_DRIFT_THRESHOLD = 0.1
#: Feature-attribution drift: NDCG of the current top features against the baseline's below this is a violation
#: (Clarify's default).
DEFAULT_NDCG_THRESHOLD = 0.9
#: Model-quality baseline: relative slack on the baseline metrics before a check flags them (Model Monitor's own
#: suggestion is 0, which flags any small deterioration).
DEFAULT_MODEL_QUALITY_TOLERANCE = 0.1
