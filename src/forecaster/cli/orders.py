"""`forecaster orders`: order lines from forecasts, stock, deliveries and the item master; `orders simulate`."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``orders`` (and ``orders simulate``) to ``subparsers``."""
    orders = subparsers.add_parser(
        "orders", help="order lines per store x item: forecasts + stock + deliveries + shelf life + cost"
    )
    _add_common(orders)
    orders.add_argument("--out", type=Path, help="order lines file (.csv or .parquet)")
    orders.add_argument("--order-date", help="the day orders are placed (default: the day before the first forecast)")
    orders.add_argument("--stock", type=Path, help="on-hand stock counted at the close of the order day")
    orders.add_argument("--open-orders", type=Path, help="units ordered earlier and their arrival dates")
    orders.add_argument("--service-level", type=float, help="order this quantile of the demand until the next delivery")
    orders.set_defaults(func=_orders)
    actions = orders.add_subparsers(dest="orders_action", metavar="ACTION")
    simulate = actions.add_parser("simulate", help="replay the policies against actual sales: waste, fill rate, cost")
    _add_common(simulate)
    simulate.add_argument("--actuals", required=True, type=Path, help="keys, date and the actual sales of the days")
    simulate.add_argument("--target", help="actual sales column (default: the default dataset spec's target)")
    simulate.add_argument("--stockout", help="stockout-hours column: days with hours > 0 are reported apart")
    simulate.add_argument(
        "--origin-column",
        help="column of the day each forecast was made (forecasts of several daily runs): each day's orders use the "
        "newest forecast made by that day",
    )
    simulate.add_argument("--out", type=Path, help="results JSON")
    simulate.set_defaults(func=_simulate)


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--forecasts", type=Path, help="forecasts: <keys...>, <date>, p10, p50, p90, mean")
    parser.add_argument("--calendar", type=Path, help="delivery calendar: [store key], weekday, lead_time_days")
    parser.add_argument("--item-master", type=Path, help="pack_size, shelf_life_days, unit_cost, unit_price, ...")
    parser.add_argument("--defaults", type=Path, help="chain-wide defaults (JSON; docs/ordering.md)")


def _require(args: argparse.Namespace, *names: str) -> None:
    from forecaster.errors import InvalidParameterError

    for name in names:
        if getattr(args, name) is None:
            flag = "--" + name.replace("_", "-")
            raise InvalidParameterError(f"The {flag} option of forecaster {args.command} is required.")


def _orders(args: argparse.Namespace) -> int:
    from forecaster.order_defaults import OrderDefaults
    from forecaster.orders import write_orders

    _require(args, "forecasts", "out")
    lines = write_orders(
        args.forecasts,
        args.out,
        order_date=args.order_date,
        stock=args.stock,
        open_orders=args.open_orders,
        calendar=args.calendar,
        item_master=args.item_master,
        defaults=OrderDefaults.load(args.defaults),
        service_level=args.service_level,
    )
    print(f"wrote {len(lines)} order lines ({lines['order_units'].sum():g} units) to {args.out}")
    return 0


def _simulate(args: argparse.Namespace) -> int:
    from forecaster.io import json_text, read_table, write_json
    from forecaster.order_defaults import OrderDefaults
    from forecaster.orders import forecast_layout
    from forecaster.simulation import simulate_files
    from forecaster.spec import DatasetSpec

    _require(args, "forecasts")
    if args.out is not None and args.out.suffix.lower() != ".json":
        from forecaster.errors import InvalidParameterError

        raise InvalidParameterError(
            f"The --out option of forecaster orders simulate is a JSON file (the results). Got {str(args.out)!r}: "
            "name it results.json."
        )
    target = args.target or DatasetSpec.preset("default").target
    csv = OrderDefaults.load(args.defaults).csv
    forecasts = read_table(args.forecasts, csv, dtype=str)  # as written: simulate_files checks numbers and dates
    keys = tuple(forecast_layout(forecasts)[0])
    results = simulate_files(
        forecasts,
        read_table(args.actuals, csv, text=keys),
        target=target,
        stockout=args.stockout,
        calendar=args.calendar,
        item_master=args.item_master,
        defaults_path=args.defaults,
        origin=args.origin_column,
    )
    if args.out:
        write_json(results, args.out)
    print(json_text(results))
    return 0
