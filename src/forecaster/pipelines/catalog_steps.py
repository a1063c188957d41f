"""The steps the pipelines of the step table (:mod:`.catalog`) share, and the ordering inputs of Postprocess.

``transform_steps`` (CreateModel -> Transform -> Postprocess), ``preprocess_steps`` (GroupTotals -> Preprocess)
and ``explain_step``. In the batch-inference pipeline Postprocess takes the ordering inputs of
``forecaster postprocess`` (docs/ordering.md): the stock drop, open orders, the delivery calendar, the item
master and the chain defaults are optional processing inputs (a parameter left empty leaves its input out: the
SDK builder omits the ``ProcessingInput`` when the definition's default is empty, the local runner when the run's
value is); the order date and the service-level override are parameters passed as ``--flag=VALUE`` (empty: not
given). Without stock the orders are today's per-day proposals, marked ``stock_considered`` False.
"""

from __future__ import annotations

from forecaster.contract import (
    DEFAULT_ACTIVE_DAYS,
    DEFAULT_MAX_PAYLOAD_MB,
    FORECASTS_FILE,
    MAX_CONCURRENT_TRANSFORMS,
    MAX_PAYLOAD_CEILING_MB,
    SERVICE_LEVELS,
    TRANSFORM_ENVIRONMENT,
)
from forecaster.params import Day, Interval
from forecaster.pipelines.table import ParamSpec, Ref, StepSpec

#: optional input of Postprocess -> (its parameter, the postprocess option, what it is)
ORDERING_INPUTS = {
    "stock": ("StockData", "--stock", "on-hand stock per store x item at the close of the order day"),
    "open_orders": ("OpenOrdersData", "--open-orders", "units already ordered and their arrival dates"),
    "calendar": ("DeliveryCalendarData", "--calendar", "delivery calendar: order weekdays and lead times"),
    "item_master": ("ItemMasterData", "--item-master", "pack size, shelf life, unit cost and price per item"),
    "order_defaults": ("OrderDefaultsData", "--order-defaults", "chain-wide ordering defaults (a JSON file)"),
}
#: parameter -> (the postprocess option it is passed as, what it is)
ORDERING_VALUES = {
    "OrderDate": ("--order-date", "the day orders are placed, YYYY-MM-DD (empty: the day before the first forecast)"),
    "ServiceLevel": ("--service-level", "override of the service level ordered, in (0, 1) (empty: from cost)"),
}
#: what an ordering value may be, where given
ORDERING_RANGES = {"ServiceLevel": SERVICE_LEVELS, "OrderDate": Day()}
#: the batch-inference pipeline's ordering parameters (all empty by default: orders without stock)
ORDERING_PARAMETERS = (
    *(
        ParamSpec(param, "string", "", f"S3 prefix or file: {text} (empty: not given)")
        for param, _, text in ORDERING_INPUTS.values()
    ),
    *(ParamSpec(param, "string", "", text, ORDERING_RANGES.get(param)) for param, (_, text) in ORDERING_VALUES.items()),
)
_ORDERING_ARGS = (
    *(f"{flag}={{input:{name}}}" for name, (_, flag, _) in ORDERING_INPUTS.items()),
    *(f"{flag}={{param:{param}}}" for param, (flag, _) in ORDERING_VALUES.items()),
)


_ORDERING_REFS = {name: f"param:{param}" for name, (param, _, _) in ORDERING_INPUTS.items()}


def argv(line: str) -> tuple[str, ...]:
    """Argument tokens from one line (no token contains a space)."""
    return tuple(line.split())


#: an instance count
AT_LEAST_ONE = Interval(int, 1, None)
#: Preprocess' instances (the build and inference pipelines)
SHARDED_PARAMETER = ParamSpec(
    "ProcessingInstanceCount",
    "integer",
    1,
    "instance count of Preprocess (whole history partitions per instance)",
    AT_LEAST_ONE,
)

#: the batch transform's settings (the build and inference pipelines)
TRANSFORM_PARAMETERS = (
    ParamSpec("InferenceImage", "string", "forecaster-infer:latest", "inference image URI (ECR)"),
    ParamSpec("TransformInstanceType", "string", "ml.m5.xlarge", "instance type of the batch transform"),
    ParamSpec("TransformInstanceCount", "integer", 1, "instance count of the batch transform", AT_LEAST_ONE),
    ParamSpec(
        "TransformMaxPayloadInMB",
        "integer",
        DEFAULT_MAX_PAYLOAD_MB,
        "MaxPayloadInMB of the batch transform",
        Interval(int, 1, MAX_PAYLOAD_CEILING_MB),
    ),
    ParamSpec(
        "TransformMaxConcurrent",
        "integer",
        4,
        "MaxConcurrentTransforms of the batch transform",
        Interval(int, 1, MAX_CONCURRENT_TRANSFORMS),
    ),
)

#: which series are forecast (``forecaster preprocess --active-days``); the build and inference pipelines' Preprocess
ACTIVE_DAYS = ParamSpec(
    "ActiveDays",
    "integer",
    DEFAULT_ACTIVE_DAYS,
    "forecast only series with a sale in the last N history days (0: every series with history and future rows)",
    Interval(int, 0, None),
)


def transform_steps(
    model: Ref, env: dict[str, str] | None = None, ordering: bool = False
) -> tuple[StepSpec, StepSpec, StepSpec]:
    """CreateModel -> Transform -> Postprocess, shared by the build and the batch-inference pipeline.

    The model and the transform job carry the contract's transform environment (every quantile: Postprocess
    needs them all and a transform job cannot send custom attributes). With ``ordering`` (batch inference)
    Postprocess takes the ordering inputs and values (:data:`ORDERING_INPUTS`, :data:`ORDERING_VALUES`).
    """
    environment = dict(TRANSFORM_ENVIRONMENT)
    return (
        StepSpec(
            "CreateModel",
            "model",
            inputs={"model": model},
            settings={"image": "InferenceImage", "environment": environment},
        ),
        StepSpec(
            "Transform",
            "transform",
            inputs={"model": "step:CreateModel/model", "data": "step:Preprocess/features"},
            outputs=("predictions",),
            instance=("TransformInstanceType", "TransformInstanceCount"),
            # the header-less feature rows of `forecaster preprocess`: one file per partition under the prefix,
            # so each transform instance gets whole files; the keys files are in another output
            # environment: container variable -> value; env: container variable -> parameter (lineage)
            settings={"content_type": "text/csv", "accept": "text/csv", "environment": environment, "env": env or {}},
        ),
        StepSpec(
            "Postprocess",
            "processing",
            command=("postprocess",),
            args=(
                *argv(
                    "--keys {input:keys} --predictions {input:predictions} --out {output:forecasts}/" + FORECASTS_FILE
                ),
                *(_ORDERING_ARGS if ordering else ()),
            ),
            inputs={
                "keys": "step:Preprocess/keys",
                "predictions": "step:Transform/predictions",
                **(_ORDERING_REFS if ordering else {}),
            },
            outputs=("forecasts",),
            optional=tuple(ORDERING_INPUTS) if ordering else (),
        ),
    )


def preprocess_steps(model: Ref, history: Ref, future: Ref) -> tuple[StepSpec, StepSpec]:
    """GroupTotals (first pass over the whole history) -> Preprocess (sharded by history partition)."""
    return (
        StepSpec(
            "GroupTotals",
            "processing",
            command=("group-totals",),
            args=argv("--history {input:history} --model-dir {input:model} --out {output:totals}"),
            inputs={"model": model, "history": history},
            outputs=("totals",),
        ),
        StepSpec(
            "Preprocess",
            "processing",
            command=("preprocess",),
            args=argv(
                "--model-dir {input:model} --history {input:history} --future {input:future} "
                "--totals {input:totals} --out {output:features} --keys-out {output:keys} "
                f"--active-days {{param:{ACTIVE_DAYS.name}}}"
            ),
            inputs={"model": model, "history": history, "future": future, "totals": "step:GroupTotals/totals"},
            outputs=("features", "keys"),
            instance=("ProcessingInstanceType", "ProcessingInstanceCount"),
            sharded=("history",),
        ),
    )


def explain_step(name: str, output: str, settings: dict | None = None) -> StepSpec:
    """``forecaster explain`` of the model on Preprocess's features, written to output ``output``."""
    return StepSpec(
        name,
        "processing",
        command=("explain",),
        args=(
            *argv("--model-dir {input:model} --input dataset={input:features} --out"),
            f"{{output:{output}}}",
        ),
        inputs={"model": "step:CreateModel/model", "features": "step:Preprocess/features"},
        outputs=(output,),
        settings=settings or {},
    )
