"""JSON schemas of every file the checks read or write (Model Monitor / Clarify layouts), and a validator.

The checks validate baselines they read (a file from another tool or an older run fails with a message naming
the file and the offending entry) and the tests validate every file they write against the same schemas.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from forecaster.errors import DataValidationError

_NUMBER_OR_NAN = {"anyOf": [{"type": "number"}, {"const": "NaN"}]}
_COMMON = {
    "type": "object",
    "required": ["num_present", "num_missing"],
    "properties": {"num_present": {"type": "integer", "minimum": 0}, "num_missing": {"type": "integer", "minimum": 0}},
}
_KLL = {
    "type": "object",
    "required": ["buckets"],
    "properties": {
        "buckets": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["lower_bound", "upper_bound", "count"],
                "properties": {k: {"type": "number"} for k in ("lower_bound", "upper_bound", "count")},
            },
        }
    },
}
_TYPE = {"enum": ["Integral", "Fractional", "String", "Unknown"]}
_METRIC = {
    "type": "object",
    "required": ["value", "standard_deviation"],
    "properties": {"value": _NUMBER_OR_NAN, "standard_deviation": _NUMBER_OR_NAN},
}
_REGRESSION = {
    "type": "object",
    "required": ["mae", "mse", "rmse", "r2"],
    "properties": {k: _METRIC for k in ("mae", "mse", "rmse", "r2")},
}
_FORECAST_SPLIT = {
    "type": "object",
    "required": ["rows", "wape", "bias", "pinball", "coverage"],
    "properties": {
        "rows": {"type": "integer", "minimum": 1},
        "wape": _NUMBER_OR_NAN,
        "bias": _NUMBER_OR_NAN,
        "pinball": {"type": "object", "additionalProperties": _NUMBER_OR_NAN},
        "coverage": {"type": "object", "additionalProperties": _NUMBER_OR_NAN},
    },
}
_DQ_CHECKS = [
    "data_type_check",
    "completeness_check",
    "baseline_drift_check",
    "missing_column_check",
    "extra_column_check",
    "categorical_values_check",
]


def _object(required: list[str], properties: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": properties or {}, **extra}


def _feature_list(properties: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """An array of per-feature objects with ``name`` and ``inferred_type`` plus ``properties``."""
    item = _object(
        ["name", "inferred_type"], {"name": {"type": "string"}, "inferred_type": _TYPE, **properties}, **extra
    )
    return {"type": "array", "items": item}


def _violations(required: list[str], properties: dict[str, Any], top: tuple[str, ...] = ()) -> dict[str, Any]:
    """A ``{"violations": [...]}`` document whose entries need ``required`` keys."""
    return _object([*top, "violations"], {"violations": {"type": "array", "items": _object(required, properties)}})


_CATEGORICAL = _object(
    ["categorical"],
    {"categorical": _object(["buckets"], {"buckets": {"type": "array", "items": _object(["value", "count"])}})},
)
_DISTRIBUTION_CONFIG = {
    "perform_comparison": {"enum": ["Enabled", "Disabled"]},
    "comparison_threshold": {"type": "number", "minimum": 0},
    "comparison_method": {"enum": ["Simple", "Robust"]},
    "categorical_comparison_threshold": {"type": "number", "minimum": 0},
    "categorical_drift_method": {"enum": ["LInfinity", "ChiSquared"]},
}
_FRACTION = {"type": "number", "minimum": 0, "maximum": 1}
_SHAP_LABEL = _object(
    ["global_shap_values", "expected_value"],
    {
        "global_shap_values": {"type": "object", "minProperties": 1, "additionalProperties": {"type": "number"}},
        "expected_value": {"type": "number"},
    },
)
_OPERATOR = {"enum": ["GreaterThanThreshold", "LessThanThreshold"]}

SCHEMAS: dict[str, dict[str, Any]] = {
    "data_quality_statistics": _object(
        ["version", "dataset", "features"],
        {
            "dataset": _object(["item_count"]),
            "features": _feature_list(
                {
                    "numerical_statistics": _object(
                        ["common"], {"common": _COMMON, "distribution": {"type": "object", "properties": {"kll": _KLL}}}
                    ),
                    "string_statistics": _object(
                        ["common", "distinct_count", "distribution"], {"common": _COMMON, "distribution": _CATEGORICAL}
                    ),
                },
                oneOf=[{"required": ["numerical_statistics"]}, {"required": ["string_statistics"]}],
            ),
        },
    ),
    "data_quality_constraints": _object(
        ["version", "features"],
        {
            "features": _feature_list(
                {
                    "completeness": _FRACTION,
                    "num_constraints": {"type": "object"},
                    "string_constraints": {
                        "type": "object",
                        "properties": {"domains": {"type": "array", "items": {"type": "string"}}},
                    },
                }
            ),
            "monitoring_config": {
                "type": "object",
                "properties": {
                    "datatype_check_threshold": _FRACTION,
                    "domain_content_threshold": _FRACTION,
                    "distribution_constraints": {"type": "object", "properties": _DISTRIBUTION_CONFIG},
                },
            },
        },
    ),
    "data_quality_violations": _violations(
        ["feature_name", "constraint_check_type", "description"], {"constraint_check_type": {"enum": _DQ_CHECKS}}
    ),
    "evaluation": _object(
        ["regression_metrics", "forecast_metrics"],
        {
            "regression_metrics": _REGRESSION,
            "forecast_metrics": _object(
                ["overall"], {"overall": _FORECAST_SPLIT}, additionalProperties=_FORECAST_SPLIT
            ),
        },
    ),
    "model_quality_statistics": _object(
        ["version", "dataset", "regression_metrics"], {"regression_metrics": _REGRESSION}
    ),
    "model_quality_constraints": _object(
        ["version", "regression_constraints"],
        {
            "regression_constraints": {
                "type": "object",
                "additionalProperties": _object(
                    ["threshold", "comparison_operator"],
                    {"threshold": {"type": "number"}, "comparison_operator": _OPERATOR},
                ),
            }
        },
    ),
    "model_quality_violations": _violations(
        ["metric_name", "constraint_check_type", "description"], {"constraint_check_type": _OPERATOR}
    ),
    "analysis": _object(
        ["version", "explanations"],
        {
            "explanations": _object(
                ["kernel_shap"],
                {"kernel_shap": {"type": "object", "minProperties": 1, "additionalProperties": _SHAP_LABEL}},
            )
        },
    ),
    "attribution_violations": _violations(
        ["label", "metric_name", "constraint_check_type", "description"],
        {"metric_name": {"const": "shap"}, "constraint_check_type": {"const": "feature_attribution_drift_check"}},
        top=("version",),
    ),
    "decision": _object(
        ["retrain", "reasons"],
        {"retrain": {"type": "boolean"}, "reasons": {"type": "array", "items": {"type": "string"}}},
    ),
}


def validate(document: Any, schema: str, source: str | Path) -> None:
    """Check ``document`` against the named schema.

    Raises:
        DataValidationError: naming ``source``, the JSON path of the first error and what was expected.
    """
    import jsonschema

    validator = jsonschema.Draft202012Validator(SCHEMAS[schema])
    error = jsonschema.exceptions.best_match(validator.iter_errors(document))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
        raise DataValidationError(
            f"{source} is not a valid {schema.replace('_', ' ')} file: at {where}: {error.message}. "
            "Regenerate it with the matching forecaster baseline/check command."
        )
