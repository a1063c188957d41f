"""The facts every executor shares, declared once: quantiles, payload limits, horizon, transform environment.

The SageMaker container's own tree and variable names are declared in :mod:`forecaster.container.layout`, the
check files and thresholds in :mod:`forecaster.checks.contract`.

The SDK pipeline builder, the local runner, the CLI, the server and the checks read these names; none of them
writes its own copy. This module imports nothing of the package (it sits in the domain layer).
"""

from __future__ import annotations

from types import MappingProxyType

from forecaster.params import Interval

# ---- quantiles --------------------------------------------------------------------------------------------------
#: Quantile levels every model forecasts, in column order.
QUANTILES: tuple[float, ...] = (0.1, 0.5, 0.9)
#: Level of the median, the point forecast of one-column answers and of the evaluation.
MEDIAN = 0.5


def quantile_column(level: float) -> str:
    """Column name of a quantile level: ``0.1`` -> ``p10``."""
    return f"p{round(level * 100)}"


def quantile_booster(level: float) -> str:
    """Booster key of a quantile level: ``0.1`` -> ``q10`` (file ``model_q10.txt``)."""
    return f"q{round(level * 100)}"


#: Prediction columns, in the order of :data:`QUANTILES` (``p10, p50, p90``).
QUANTILE_COLUMNS: tuple[str, ...] = tuple(quantile_column(q) for q in QUANTILES)
#: Column of the median forecast (``p50``).
MEDIAN_COLUMN = quantile_column(MEDIAN)
#: Key of the point (mean) booster.
POINT_BOOSTER = "mean"
#: Column of the point forecast in every output: the server's last column with ``quantiles=all``, the transform
#: lines, forecasts, order proposals, ``evaluation.csv``; the one number the metrics and the approval gate score.
POINT_COLUMN = "mean"
#: Forecasts file of the pipelines' Postprocess step (what the Evaluate step and the model-quality check read).
FORECASTS_FILE = "forecasts.csv"
#: Order proposals file that postprocess writes next to the forecasts (checks reading a forecasts folder skip it).
ORDERS_FILE = "order_proposals.csv"
#: The series not forecast, beside the forecasts (``skipped_series-P.csv`` per partition; checks skip them too).
SKIPPED_FILE = "skipped_series.csv"
#: Run record of a local pipeline run, ``<workdir>/run.json``: parameters and each step's status and reason.
RUN_FILE = "run.json"
#: Demand quantile an order proposal covers when nobody says otherwise (and the range a caller may ask for).
DEFAULT_SERVICE_LEVEL = 0.8
#: a service level ordered (``--service-level``, the pipelines' ``ServiceLevel``): a quantile, inside (0, 1)
SERVICE_LEVELS = Interval(float, 0, 1, closed="neither")
#: Every booster of a model: the point booster, then one per quantile level.
BOOSTER_KEYS: tuple[str, ...] = (POINT_BOOSTER, *(quantile_booster(q) for q in QUANTILES))
#: Most point boosters a model averages (``point_bags``: the same rows, another seed each).
MAX_POINT_BAGS = 8


def point_bag_booster(index: int) -> str:
    """Key of point bag ``index`` (0-based): ``mean``, then ``mean_2``, ``mean_3``, ... (file ``model_mean_2.txt``)."""
    return POINT_BOOSTER if index == 0 else f"{POINT_BOOSTER}_{index + 1}"


def point_bag_index(key: str) -> int | None:
    """Index of point bag ``key`` (``mean`` -> 0, ``mean_2`` -> 1, ...); None for a quantile booster's key."""
    if key == POINT_BOOSTER:
        return 0
    prefix, _, number = key.rpartition("_")
    return int(number) - 1 if prefix == POINT_BOOSTER and number.isdigit() else None


def booster_keys(point_bags: int = 1) -> tuple[str, ...]:
    """Every booster of a model with ``point_bags`` point boosters: the point bags, then one per quantile level."""
    return (*(point_bag_booster(i) for i in range(point_bags)), *BOOSTER_KEYS[1:])


# ---- payload limits (batch transform's MaxPayloadInMB) ------------------------------------------------------------
#: SageMaker's default ``MaxPayloadInMB``.
DEFAULT_MAX_PAYLOAD_MB = 6
#: SageMaker's ceiling: ``MaxPayloadInMB`` ≤ 100 and ``MaxConcurrentTransforms × MaxPayloadInMB`` ≤ 100.
MAX_PAYLOAD_CEILING_MB = 100
#: Largest ``MaxConcurrentTransforms``.
MAX_CONCURRENT_TRANSFORMS = 100

# ---- horizon ------------------------------------------------------------------------------------------------------
#: Forecast horizon in days when nobody says otherwise (also the model-build pipeline's evaluation window).
DEFAULT_HORIZON = 14
#: Smallest and largest horizon in days (training, split and the pipelines accept the same range).
HORIZON_RANGE: tuple[int, int] = (1, 366)

# ---- active series ------------------------------------------------------------------------------------------------
#: A series is forecast only with a sale within this many last history days (0: every series with history and
#: future rows): the default of ``forecaster forecast|preprocess --active-days`` and of the pipelines' ``ActiveDays``.
DEFAULT_ACTIVE_DAYS = 0

# ---- the serving container's environment ------------------------------------------------------------------------
#: Which quantiles a request gets when it does not say (``X-Amzn-SageMaker-Custom-Attributes: quantiles=...``).
DEFAULT_QUANTILES_ENV = "FORECASTER_DEFAULT_QUANTILES"
#: Values of :data:`DEFAULT_QUANTILES_ENV` and of the ``quantiles`` custom attribute.
ALL_QUANTILES, MEDIAN_ONLY = "all", MEDIAN_COLUMN
QUANTILE_CHOICES: tuple[str, ...] = (MEDIAN_ONLY, ALL_QUANTILES)
#: Lineage: the model package a transform job ran (set on the batch-inference pipeline's transform).
MODEL_PACKAGE_ENV = "FORECASTER_MODEL_PACKAGE"
#: The process a local server stops with (its pid): the local transform's server dies with a SIGKILLed runner.
SERVE_PARENT_PID_ENV = "FORECASTER_SERVE_PARENT_PID"
#: Environment of the model a batch transform runs (``CreateModel`` and ``CreateTransformJob``): every
#: quantile and the point forecast, because ``forecaster postprocess`` needs ``p10,p50,p90,mean`` and a
#: transform job cannot send custom attributes. (The container also defaults to them in a batch-transform
#: container, ``SAGEMAKER_BATCH``: :mod:`forecaster.container.layout` declares the variables SageMaker sets.)
TRANSFORM_ENVIRONMENT = MappingProxyType({DEFAULT_QUANTILES_ENV: ALL_QUANTILES})
