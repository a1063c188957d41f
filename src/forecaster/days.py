"""Dates and timestamps as days: each row's local wall-clock day, whatever the writer's time zone."""

from __future__ import annotations

import pandas as pd

#: the UTC offset after an ISO time of day (``T00:00:00+02:00``, ``Z``): a row's date is its local date
_UTC_OFFSET = r"([T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)\s?(?:Z|[+-]\d{2}(?::?\d{2})?)$"
#: a time of day in UTC (offset ``Z`` or zero): an instant, whose day :func:`_utc_days` decides
_UTC_INSTANT = r"[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?\s?(?:Z|[+-]00(?::?00)?)$"


def parse_days(values: pd.Series, date_format: str | None = None) -> pd.Series:
    """Dates or timestamps (ISO, or ``date_format``) as days, each row's local wall-clock day; NaT where none.

    A UTC offset is dropped, not converted: ``2024-03-31T00:00+02:00`` is 31 March, also across a daylight-saving
    change (where the offsets differ from row to row). UTC instants (offset ``Z`` / ``+00:00``, or a Parquet
    timestamp in UTC) are read by :func:`_utc_days`. Typed dates (Parquet ``date32``, which pandas holds as
    ``datetime.date`` objects) are dates whatever ``date_format`` says: the format is for text.
    """
    if values.dtype == object and pd.api.types.infer_dtype(values, skipna=True) == "date":
        values = pd.to_datetime(values, errors="coerce")
    if pd.api.types.is_datetime64_any_dtype(values):
        parsed = values
        utc = pd.Series(str(getattr(values.dt, "tz", None)) == "UTC", index=values.index)
    else:
        text = values.astype("string")
        utc = pd.Series(False, index=values.index)
        if not date_format:
            text = text.str.strip()
            utc = text.str.contains(_UTC_INSTANT, regex=True).fillna(False).astype(bool)
            text = text.str.replace(_UTC_OFFSET, r"\1", regex=True)
        parsed = pd.to_datetime(text, errors="coerce", format=date_format or "ISO8601")
    if getattr(parsed.dt, "tz", None) is not None:
        parsed = parsed.dt.tz_localize(None)
    days = parsed.dt.normalize()
    if utc.any():
        days = days.where(~utc.to_numpy(), _utc_days(parsed[utc.to_numpy()]))
    return days.astype("datetime64[ns]")


def _utc_days(instants: pd.Series) -> pd.Series:
    """The days of a column's UTC instants: local midnights of one time zone, or else the UTC date.

    Spark in a session east or west of Greenwich stores a local midnight as ``22:00Z`` / ``23:00Z`` (Stockholm,
    summer / winter: the next UTC day's date) or ``04:00Z`` / ``05:00Z`` (New York: the same date). When every
    instant of the column is at one or two times of day at most an hour apart around the clock (a zone and its
    daylight-saving time: London's ``00:00Z`` / ``23:00Z`` too), they are such midnights, and each row's day
    follows from its time: from 11:00Z on, a zone east of Greenwich and the next day's date (New Zealand, UTC+12 /
    +13, stores ``12:00Z`` / ``11:00Z``; UTC-11 is a few Pacific islands); before, the same date (Hawaii, UTC-10:
    ``10:00Z``). Instants at other times are events, read on their UTC date. Rounding each row to the nearest
    midnight moved ``12:00Z`` back and forth.
    """
    since_midnight = instants - instants.dt.normalize()
    times = since_midnight.dropna().unique()
    hour, day = pd.Timedelta(hours=1), pd.Timedelta(days=1)
    spread = max(times) - min(times) if len(times) else day
    if 0 < len(times) <= 2 and min(spread, day - spread) <= hour:
        return instants.dt.normalize() + (since_midnight >= 11 * hour) * day
    return instants.dt.normalize()
