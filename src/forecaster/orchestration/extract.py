"""Extract: gather the day's drops from the source, validate them against the model's spec, stage the inputs.

Source layout (a folder or an ``s3://`` prefix; CSV or Parquet by extension):

    <source>/sales/<YYYY-MM-DD>.csv   one day's sales of every series (every column of the spec)
    <source>/plan/<YYYY-MM-DD>.csv    the plan published that day: keys, date and the known-future columns for
                                      each of the model's horizon days from that date on
    <source>/stock/<YYYY-MM-DD>.csv   optional: the on-hand stock counted at the close of that day (the order
                                      day, the day before the first forecast day; docs/ordering.md)

A bad drop stops the task with a :class:`~forecaster.errors.DataValidationError` that names the file, the row
and the column, before anything is written.
"""

from __future__ import annotations

import datetime as dt
import json
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from forecaster.artifact import FeatureSchema
from forecaster.errors import DataValidationError, ForecasterError
from forecaster.io import read_table, write_table
from forecaster.orchestration.storage import Storage, dated_files, join
from forecaster.spec import SPEC_FILE, DatasetSpec


def model_contract(storage: Storage, model_data_url: str) -> FeatureSchema:
    """The feature schema (spec, horizon) of a model: a ``model.tar.gz`` or model folder, local or on S3."""
    with storage.local_copy(model_data_url) as local:
        return FeatureSchema.load(local)


def read_drop(storage: Storage, location: str, spec: DatasetSpec, kind: str) -> pd.DataFrame:
    """Read one drop and validate it against ``spec`` (``kind`` ``history`` or ``future``); errors name the file."""
    required = spec.columns if kind == "history" else [*spec.keys, spec.date, *spec.known_future]
    try:
        with storage.local_copy(location) as local:
            frame = read_table(local)
        missing = [c for c in required if c not in frame.columns]
        if missing:
            raise DataValidationError(
                f"column {missing[0]!r} is missing (missing: {missing}; the model's spec needs {required}). "
                f"Columns found: {list(frame.columns)}."
            )
        return spec.validate_frame(frame, kind=kind)
    except ForecasterError as error:
        raise DataValidationError(f"Bad drop {location}: {error.reason} (rows count from 1 after the header)") from None


def _series_text(row: Any, keys: tuple[str, ...]) -> str:
    return ", ".join(f"{k}={row[k]}" for k in keys)


def gather_sales(storage: Storage, source: str, spec: DatasetSpec, first: dt.date, last: dt.date) -> pd.DataFrame:
    """The sales drops of ``first``..``last``: ``last`` must be there, and no day may be missing after the first.

    Raises:
        DataValidationError: for a missing drop, a bad drop, or a row dated another day than its drop.
    """
    folder = join(source, "sales")
    files = {day: loc for day, loc in dated_files(storage, folder).items() if first <= day <= last}
    if last not in files:
        raise DataValidationError(
            f"No sales drop for {last} in {folder} (expected {join(folder, f'{last}.csv')} or .parquet): the "
            "extract needs every day up to yesterday. Deliver the drop, then clear the task to run it again."
        )
    start = min(files)
    frames = []
    for offset in range((last - start).days + 1):
        day = start + dt.timedelta(days=offset)
        if day not in files:
            raise DataValidationError(
                f"The sales drop {join(folder, f'{day}.csv')} (or .parquet) is missing: the sales history must have "
                f"every day from {start} to {last}. Deliver it, then clear the task to run it again."
            )
        frame = read_drop(storage, files[day], spec, "history")
        other = (frame[spec.date].dt.date != day).to_numpy()
        if other.any():
            row = int(other.argmax())
            raise DataValidationError(
                f"Bad drop {files[day]}: row {row + 1}, column {spec.date!r} is {frame[spec.date].iat[row].date()}; "
                f"the drop of {day} holds only that day's sales. Move the row to its own day's drop."
            )
        frame["_file"] = files[day]
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def check_complete(sales: pd.DataFrame, spec: DatasetSpec, series: pd.DataFrame, last: dt.date) -> pd.DataFrame:
    """Keep the sales of ``series``; each must have a row every day from its first day to ``last``.

    Raises:
        DataValidationError: naming the drop that lacks a series' row, and the key columns.
    """
    keys = list(spec.keys)
    kept = sales.merge(series, on=keys, how="inner").sort_values([*keys, spec.date], kind="stable")
    previous = kept.groupby(keys, sort=False, observed=True)[spec.date].shift()
    gap = (kept[spec.date] - previous).dt.days > 1
    ends = kept.groupby(keys, sort=False, observed=True).tail(1)
    ends = ends[ends[spec.date].dt.date < last]
    missing = [(previous[gap] + pd.Timedelta(days=1)).rename("day"), (ends[spec.date] + pd.Timedelta(days=1))]
    candidates = pd.concat([kept.loc[gap, keys].assign(day=missing[0]), ends[keys].assign(day=missing[1])])
    if not candidates.empty:
        first = candidates.sort_values("day", kind="stable").iloc[0]
        day = first["day"].date()
        files = sales.loc[sales[spec.date].dt.date == day, "_file"]
        where = files.iat[0] if len(files) else f"the sales drop of {day}"
        raise DataValidationError(
            f"Bad drop {where}: no row for {_series_text(first, spec.keys)} (columns {keys}) on {day}; every series "
            f"needs one row per day (units sold 0 when nothing sold). Add the row, then clear the task."
        )
    return kept.drop(columns="_file").reset_index(drop=True)


def read_plan(
    storage: Storage, source: str, spec: DatasetSpec, day: dt.date, horizon: int, sales: pd.DataFrame
) -> pd.DataFrame:
    """The plan drop of ``day``: every series with history, each of the ``horizon`` days from ``day`` on.

    Raises:
        DataValidationError: for a missing or bad plan, a day outside the horizon, a missing day or series.
    """
    folder = join(source, "plan")
    location = dated_files(storage, folder).get(day)
    if location is None:
        raise DataValidationError(
            f"No plan drop for {day} in {folder} (expected {join(folder, f'{day}.csv')} or .parquet): the forecast "
            "needs the known-future plan of the next days."
        )
    plan = read_drop(storage, location, spec, "future")
    offset = (plan[spec.date] - pd.Timestamp(day)).dt.days.to_numpy()
    outside = (offset < 0) | (offset >= horizon)
    if outside.any():
        row = int(outside.argmax())
        raise DataValidationError(
            f"Bad drop {location}: row {row + 1}, column {spec.date!r} is {plan[spec.date].iat[row].date()}, outside "
            f"the {horizon} days from {day} the model forecasts."
        )
    keys = list(spec.keys)
    known = plan.merge(sales[keys].drop_duplicates(), on=keys, how="left", indicator=True)["_merge"].to_numpy()
    if (known == "left_only").any():
        row = int((known == "left_only").argmax())
        raise DataValidationError(
            f"Bad drop {location}: row {row + 1} ({_series_text(plan.iloc[row], spec.keys)}, columns {keys}) names a "
            "series with no sales history; send its history first or remove it from the plan."
        )
    counts = plan.groupby(keys, sort=False, observed=True)[spec.date].nunique()
    if (counts < horizon).any():
        series = counts[counts < horizon].index[0]
        series = series if isinstance(series, tuple) else (series,)
        have = set(plan.loc[(plan[keys] == list(series)).all(axis=1), spec.date].dt.date)
        lacking = next(day + dt.timedelta(days=i) for i in range(horizon) if day + dt.timedelta(days=i) not in have)
        raise DataValidationError(
            f"Bad drop {location}: no row for {', '.join(f'{k}={v}' for k, v in zip(keys, series, strict=True))} on "
            f"{lacking} (column {spec.date!r}); the plan needs every series on each of the {horizon} days from {day}."
        )
    return plan


def stage_tables(storage: Storage, tables: dict[str, pd.DataFrame], target: str) -> dict[str, str]:
    """Write ``{name: frame}`` as ``<target>/<name>/<name>.parquet``; return ``{name: <target>/<name>}``."""
    written = {}
    with tempfile.TemporaryDirectory(prefix="forecaster-stage-") as tmp:
        for name, frame in tables.items():
            local = write_table(frame, Path(tmp) / f"{name}.parquet")
            storage.put_file(local, join(target, name, f"{name}.parquet"))
            written[name] = join(target, name)
    return written


def extract_stock(
    storage: Storage, source: str, spec: DatasetSpec, series: pd.DataFrame, day: dt.date, target: str
) -> str | None:
    """The stock drop counted at the close of order day ``day``, validated against ``series``, staged as it is.

    Returns ``<target>/stock``, or None when there is no drop of ``day`` (the orders are then made without stock).

    Raises:
        DataValidationError: for negative stock, a series the forecast does not have, a count of another day, …
            naming the drop, the row and the column.
    """
    from forecaster.orders_inputs import read_stock

    location = dated_files(storage, join(source, "stock")).get(day)
    if location is None:
        return None
    keys = list(spec.keys)
    with storage.local_copy(location) as local:
        try:
            read_stock(local, series[keys].astype(str).drop_duplicates(), keys, pd.Timestamp(day))
        except ForecasterError as error:
            raise DataValidationError(f"Bad drop {location}: {error.reason}") from None
        return storage.put_file(local, join(target, "stock", location.rsplit("/", 1)[-1])).rsplit("/", 1)[0]


def extract_daily(
    storage: Storage, source: str, schema: FeatureSchema, day: dt.date, history_days: int, target: str
) -> dict[str, Any]:
    """Sales up to the day before ``day``, the plan of ``day`` and, if dropped, the stock counted the day before.

    Validates them and stages ``history``/``future`` (``stock``: the staged stock drop, or None).
    """
    spec, yesterday = schema.spec, day - dt.timedelta(days=1)
    sales = gather_sales(storage, source, spec, day - dt.timedelta(days=history_days), yesterday)
    plan = read_plan(storage, source, spec, day, schema.horizon, sales)
    history = check_complete(sales, spec, plan[list(spec.keys)].drop_duplicates(), yesterday)
    stock = extract_stock(storage, source, spec, plan, yesterday, target)
    staged = stage_tables(storage, {"history": history, "future": plan}, target)
    return {
        **staged,
        "stock": stock,
        "series": int(len(plan) // schema.horizon),
        "history_rows": len(history),
        "days": schema.horizon,
    }


def extract_training(
    storage: Storage, source: str, spec: DatasetSpec, day: dt.date, train_days: int, target: str
) -> dict[str, Any]:
    """Gather ``train_days`` of sales up to the day before ``day``; validate; stage ``train`` with ``spec.json``."""
    yesterday = day - dt.timedelta(days=1)
    sales = gather_sales(storage, source, spec, day - dt.timedelta(days=train_days), yesterday)
    latest = sales.loc[sales[spec.date].dt.date == yesterday, list(spec.keys)].drop_duplicates()
    train = check_complete(sales, spec, latest, yesterday)
    staged = stage_tables(storage, {"train": train}, target)
    storage.put_bytes(json.dumps(spec.to_dict(), indent=2).encode(), join(staged["train"], SPEC_FILE))
    return {**staged, "rows": len(train), "first_day": str(train[spec.date].min().date())}


def extract_ground_truth(
    storage: Storage, source: str, spec: DatasetSpec, first: dt.date, days: int, target: str
) -> dict[str, Any]:
    """Validate the sales drops of the ``days`` forecast days from ``first``; stage them as ``truth``."""
    last = first + dt.timedelta(days=days - 1)
    sales = gather_sales(storage, source, spec, first, last)
    if sales[spec.date].dt.date.min() != first:
        raise DataValidationError(f"The sales drop of {first} is missing in {join(source, 'sales')}.")
    truth = sales.drop(columns="_file")
    return {**stage_tables(storage, {"truth": truth}, target), "rows": len(truth)}
