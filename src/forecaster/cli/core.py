"""Sub-commands of the forecasting core: synth, train, preprocess, postprocess, forecast."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from forecaster.contract import DEFAULT_ACTIVE_DAYS, DEFAULT_HORIZON, DEFAULT_SERVICE_LEVEL, ORDERS_FILE
from forecaster.errors import InvalidParameterError


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add synth, train, preprocess, postprocess and forecast to ``subparsers``."""
    synth = subparsers.add_parser("synth", help="write a synthetic fruit-and-vegetable sales data set")
    synth.add_argument("--out", required=True, type=Path, help="directory for sales.csv and spec.json")
    synth.add_argument("--stores", type=int, default=10, help="number of stores (default: 10)")
    synth.add_argument("--items", type=int, default=20, help="items per store (default: 20)")
    synth.add_argument("--days", type=int, default=180, help="days of sales per series (default: 180)")
    synth.add_argument(
        "--seed", type=whole_number(0), default=0, help="random seed: the same seed gives the same data (default: 0)"
    )
    synth.add_argument("--start", default="2024-01-01", help="first date (YYYY-MM-DD)")
    synth.add_argument(
        "--format", dest="fmt", choices=("csv", "parquet"), default="csv", help="file format (default: csv)"
    )
    synth.set_defaults(func=_synth)

    train = subparsers.add_parser("train", help="train a model directory from a history file")
    train.add_argument(
        "--data",
        required=True,
        type=Path,
        help="history (CSV/Parquet file or directory; a spec.json beside it is used)",
    )
    train.add_argument("--validation", type=Path, help="optional validation data that follows --data in time")
    train.add_argument(
        "--spec", help="preset name (default, freshretailnet) or spec JSON file (default: spec.json next to --data)"
    )
    train.add_argument("--model-dir", required=True, type=Path)
    train.add_argument("--horizon", help=f"days to forecast (default {DEFAULT_HORIZON})")
    train.add_argument(
        "--hp", action="append", default=[], metavar="KEY=VALUE", help="any other hyperparameter (repeatable)"
    )
    train.add_argument(
        "--hosts",
        type=whole_number(1),
        default=1,
        help="train as a training job of N hosts, each a process on 127.0.0.1 with its share of the partitions "
        "(LightGBM's network learner; the job trees go to <model-dir>.hosts/)",
    )
    add_workers_option(train)
    train.set_defaults(func=_train)

    pre = subparsers.add_parser(
        "preprocess", help="history + future → features[-P].csv (batch transform input) + keys[-P].csv per partition"
    )
    _add_inference_inputs(pre)
    pre.add_argument("--out", required=True, type=Path, help="output directory of the feature files")
    pre.add_argument("--keys-out", type=Path, help="output directory of the keys files (default: --out)")
    pre.add_argument("--totals", type=Path, help="group_totals.npz of the whole history (default: from --history)")
    add_workers_option(pre)
    pre.set_defaults(func=_preprocess)

    totals = subparsers.add_parser("group-totals", help="item and store totals of a (partitioned) history")
    totals.add_argument("--history", required=True, type=Path, help="history (CSV/Parquet file or partition folder)")
    source = totals.add_mutually_exclusive_group(required=True)
    source.add_argument("--model-dir", type=Path, help="take the dataset spec from this model")
    source.add_argument("--spec", help="preset name (default, freshretailnet) or spec JSON file")
    totals.add_argument("--out", required=True, type=Path, help="output directory (group_totals.npz)")
    add_workers_option(totals)
    totals.set_defaults(func=_group_totals)

    post = subparsers.add_parser("postprocess", help="keys.csv + transform output → forecasts (keys, date, p10..p90)")
    post.add_argument("--keys", required=True, type=Path)
    post.add_argument("--predictions", required=True, type=Path, help=".out file or directory of them")
    post.add_argument("--out", required=True, type=Path, help="output file (.csv or .parquet)")
    post.add_argument("--orders", type=Path, help="order proposals file (default: order_proposals.csv next to --out)")
    post.add_argument(
        "--service-level",
        type=_optional_float,
        help=f"demand quantile ordered (default: {DEFAULT_SERVICE_LEVEL} without stock, from cost with stock; "
        "empty: the default)",
    )
    post.add_argument(
        "--pack-size", type=float, default=None,
        help="without --stock: the proposals are rounded up to whole packs (1); with --stock the item master's or "
        "the order defaults' pack size applies",
    )  # fmt: skip
    for flag, text in ORDERING_OPTIONS.items():
        post.add_argument(flag, type=_optional_text if flag == "--order-date" else Path, help=text)
    post.set_defaults(func=_postprocess)

    fc = subparsers.add_parser("forecast", help="preprocess + predict + postprocess in one process")
    _add_inference_inputs(fc)
    fc.add_argument("--out", required=True, type=Path, help="output file (.csv or .parquet)")
    fc.set_defaults(func=_forecast)


#: the ordering inputs of postprocess (docs/ordering.md); with --stock the orders are the ordering policy's lines
ORDERING_OPTIONS = {
    "--stock": "on-hand stock at the close of the order day (with it: the ordering policy's order lines)",
    "--open-orders": "units already ordered and their arrival dates",
    "--calendar": "delivery calendar (order weekdays and lead times; default: daily, 1 day)",
    "--item-master": "pack size, shelf life, unit cost and price per item",
    "--order-defaults": "chain-wide ordering defaults (JSON)",
    "--order-date": "the day orders are placed (default: the day before the first forecast day)",
}


def _add_inference_inputs(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model-dir", required=True, type=Path)
    parser.add_argument("--history", required=True, type=Path, help="past rows, target included")
    parser.add_argument("--future", required=True, type=Path, help="the next days' known-future covariates")
    parser.add_argument(
        "--active-days",
        type=int,
        default=DEFAULT_ACTIVE_DAYS,
        help="also skip series without a sale in the last N history days (0: forecast every series that has "
        "history and future rows). Skipped series are listed in skipped_series.csv",
    )


def _optional_text(value: str) -> str | None:
    """An option value where empty means "not given" (how a pipeline passes an empty parameter)."""
    return value.strip() or None


def _optional_float(value: str) -> float | None:
    """A float option where empty means "not given"."""
    text = value.strip()
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number (or empty). Got {value!r}") from None


def whole_number(minimum: int, hint: str = "") -> Callable[[str], int]:
    """An argparse type: a whole number of at least ``minimum`` (``hint`` follows the rule in the error)."""

    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            number = minimum - 1
        if number < minimum:
            raise argparse.ArgumentTypeError(f"must be a whole number of at least {minimum}{hint}. Got {value!r}")
        return number

    return parse


_worker_count = whole_number(1, " (leave the option out for one worker per core)")


def add_workers_option(parser: argparse.ArgumentParser) -> None:
    """``--workers N``: worker processes over the data's partitions."""
    parser.add_argument(
        "--workers",
        type=_worker_count,
        default=None,
        help="worker processes over the data's partitions (default: one per core)",
    )


def parse_key_values(pairs: list[str], flag: str = "--hp") -> dict[str, str]:
    """Turn ``["a=1", "b=x"]`` into ``{"a": "1", "b": "x"}`` with a clear error for a malformed pair."""
    values = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InvalidParameterError(f"The {flag} option must look like KEY=VALUE. Got {pair!r} instead.")
        values[key.strip()] = value
    return values


def _synth(args: argparse.Namespace) -> int:
    from forecaster.synth import write_dataset

    out = write_dataset(
        args.out, stores=args.stores, items=args.items, days=args.days, seed=args.seed, start=args.start, fmt=args.fmt
    )
    print(f"wrote {out}")
    return 0


def _train(args: argparse.Namespace) -> int:
    from forecaster.config import TrainConfig
    from forecaster.io import json_text, read_table
    from forecaster.spec import DatasetSpec, bundled_spec, resolve_spec
    from forecaster.training import fit_artifact

    hyperparameters: dict[str, str] = parse_key_values(args.hp)
    for name in ("horizon", "spec"):
        if getattr(args, name) is not None:
            hyperparameters[name] = str(getattr(args, name))
    config = TrainConfig.from_hyperparameters(hyperparameters)
    if args.hosts > 1:
        return _train_on_hosts(args, hyperparameters)
    bundled = bundled_spec(args.data)
    if "spec" not in hyperparameters and bundled is not None:
        spec = DatasetSpec.from_json(bundled)
        config = config.replace(spec=str(bundled))  # metadata.json names the spec that was used
        print(f"spec: {bundled} (next to --data; --spec overrides)", file=sys.stderr)  # stdout: the JSON only
    else:
        spec = resolve_spec(config.spec)
    if args.validation:
        validation = read_table(args.validation, spec.csv, spec.text_columns)
        history = read_table(args.data, spec.csv, spec.text_columns)
        scores = fit_artifact(history, spec, config, args.model_dir, validation=validation)
    else:
        scores = fit_artifact(args.data, spec, config, args.model_dir, workers=args.workers)
    print(json_text({"model_dir": str(args.model_dir), "validation_metrics": scores}))
    return 0


def _train_on_hosts(args: argparse.Namespace, hyperparameters: dict[str, str]) -> int:
    """``train --hosts N``: the training job of N hosts on this machine, then its model copied to --model-dir."""
    import shutil

    from forecaster.container.layout import TRAIN_CHANNEL, VALIDATION_METRICS_FILE, ContainerTree
    from forecaster.container.local_job import run_hosts_job
    from forecaster.errors import HostError, InvalidParameterError
    from forecaster.io import atomic_directory, json_text

    if args.validation or args.spec:
        raise InvalidParameterError("--hosts trains on --data's partitions; --validation and --spec are single-host.")
    jobs = Path(f"{args.model_dir}.hosts")
    shutil.rmtree(jobs, ignore_errors=True)
    results = run_hosts_job(jobs, hyperparameters, {TRAIN_CHANNEL: args.data}, args.hosts)
    for host, result in results.items():
        print(f"--- {host} (exit {result.returncode}): {jobs / host}", file=sys.stderr)
        sys.stderr.writelines(line for line in result.stderr.splitlines(True) if " forecaster." in line)
    failures = [ContainerTree(jobs / h).failure_file for h in results if ContainerTree(jobs / h).failure_file.is_file()]
    if failures:
        raise HostError(failures[0].read_text().strip())
    first = ContainerTree(jobs / next(iter(results)))
    with atomic_directory(args.model_dir) as stage:
        shutil.copytree(first.model_dir, stage, dirs_exist_ok=True)
    scores = json.loads((first.output_data_dir / VALIDATION_METRICS_FILE).read_text())
    print(json_text({"model_dir": str(args.model_dir), "hosts": args.hosts, "validation_metrics": scores}))
    return 0


def _preprocess(args: argparse.Namespace) -> int:
    from forecaster.forecasting import SKIPPED_FILE
    from forecaster.partitioned import preprocess

    names = preprocess(
        args.model_dir,
        args.history,
        args.future,
        args.out,
        keys_dir=args.keys_out,
        totals=args.totals,
        workers=args.workers,
        active_days=args.active_days,
    )
    keys_dir = args.keys_out or args.out
    print(f"wrote the feature files of {len(names)} partition(s) to {args.out}; keys and {SKIPPED_FILE}: {keys_dir}")
    return 0


def _group_totals(args: argparse.Namespace) -> int:
    from forecaster.artifact import FeatureSchema
    from forecaster.partitioned import write_group_totals
    from forecaster.spec import resolve_spec

    spec = FeatureSchema.load(args.model_dir).spec if args.model_dir else resolve_spec(args.spec)
    print(f"wrote {write_group_totals(args.history, spec, args.out, args.workers)}")
    return 0


def _postprocess(args: argparse.Namespace) -> int:
    from forecaster.forecasting import postprocess
    from forecaster.order_defaults import OrderDefaults

    ordering = None
    unused = [f for f in ORDERING_OPTIONS if f != "--stock" and getattr(args, f[2:].replace("-", "_")) is not None]
    if args.stock is None and unused:
        logging.getLogger(__name__).warning(
            "%s given without --stock: not used (the orders are per-day proposals; pass --stock to order)",
            ", ".join(unused),
        )
    if args.stock is not None and args.pack_size is not None:
        logging.getLogger(__name__).warning(
            "--pack-size given with --stock: not used (the orders take the pack size of --item-master, else the "
            "order defaults' pack_size)"
        )
    if args.stock is not None:
        ordering = {
            "stock": args.stock,
            "open_orders": args.open_orders,
            "calendar": args.calendar,
            "item_master": args.item_master,
            "defaults": OrderDefaults.load(args.order_defaults),
            "order_date": args.order_date,
        }
    pack_size = 1.0 if args.pack_size is None else args.pack_size  # 0 is refused, not taken for "not given"
    out = postprocess(
        args.keys, args.predictions, args.out, args.orders, args.service_level, pack_size, ordering=ordering
    )
    print(f"wrote {out} and {args.orders or out.with_name(ORDERS_FILE)}")
    return 0


def _forecast(args: argparse.Namespace) -> int:
    from forecaster.artifact import FeatureSchema
    from forecaster.forecasting import SKIPPED_FILE, forecast_rows
    from forecaster.io import read_table, write_table

    for name in ("history", "future"):  # a forecast written over (or into) its own inputs
        source = Path(getattr(args, name)).resolve()
        for written in (args.out, args.out.with_name(SKIPPED_FILE)):
            if written.resolve() == source or source in written.resolve().parents:
                raise InvalidParameterError(
                    f"forecast: --out {args.out} would write {written} over or into --{name} {getattr(args, name)}. "
                    "Choose an --out outside the input files and folders."
                )
    spec = FeatureSchema.load(args.model_dir).spec  # its CSV dialect (if pinned) and its text columns
    history, future = (read_table(path, spec.csv, spec.text_columns) for path in (args.history, args.future))
    predictions, rows = forecast_rows(args.model_dir, history, future, args.active_days)
    write_table(predictions, args.out)
    skipped = write_table(rows.skipped, args.out.with_name(SKIPPED_FILE))
    print(f"{rows.summary()}; wrote {len(predictions)} forecast rows to {args.out}, skipped series to {skipped}")
    return 0
