"""CSV dialects: separator, decimal mark and encoding of a CSV file, detected or pinned by the dataset spec.

Exports from Excel in most of Europe are ``;``-separated with a decimal comma, in cp1252 (Windows-1252) and
sometimes with a byte-order mark; data platforms write ``,`` and UTF-8. A file is read without configuration:

- **encoding**: a byte-order mark decides (UTF-8 BOM: ``utf-8-sig``; UTF-16 BOM: ``utf-16``, Excel's "Unicode
  text"); else the first 64 KiB must decode as UTF-8 (``utf-8``), or the file is taken as ``cp1252``. A UTF-8
  guess that fails further into the file is read again as cp1252.
- **separator**: :class:`csv.Sniffer` on the sample's complete lines, among ``, ; TAB |``, kept when the header
  and every sample line split into the same number (≥ 2) of fields; otherwise the candidate that does so with
  the most fields; else ``,``.
- **decimal mark**: ``.`` with a ``,`` separator. With another separator, the sample's fields that look like
  decimal numbers vote: ``1,5`` for a comma, ``1.5`` for a point (dates such as ``01.06.2024`` have two points
  and ``1.200``, a thousands dot as much as a decimal point, do not vote; nor do the text columns, codes like
  ``1.10``); a comma wins only with more votes (a tie or no vote: ``.``, with a warning when values like
  ``1.200`` were all there was). A sample of whole numbers leaves the vote to the whole file when a ``1.200``
  appears further on.

A spec pins any of them (``"csv": {"sep": ";", "decimal": ",", "encoding": "cp1252"}``) where detection is
ambiguous; the log line of every non-default file says what was used and where it came from.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import gzip
import io
import logging
import re
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import pandas as pd
from pandas._libs.parsers import STR_NA_VALUES

from forecaster.errors import InvalidParameterError

logger = logging.getLogger(__name__)

SEPARATORS = (",", ";", "\t", "|")
DECIMAL_MARKS = (".", ",")
SAMPLE_BYTES = 1 << 16
_FALLBACK_ENCODING = "cp1252"
#: Excel's first line naming the separator (``sep=;``): the separator, and a line that is not the header
_SEP_LINE = re.compile(r"sep=(\S)\s*")
#: a number grouped in thousands by commas (``1,234``) and one with a decimal comma (``1,5``): the spec's hints too
COMMA_THOUSANDS = re.compile(r"[-+]?\d{1,3}(?:,\d{3})+")
COMMA_NUMBER = re.compile(r"[-+]?\d*,\d+")
#: a number grouped in thousands by dots, as decimal-comma locales write it: ``4.800``, ``1.234.567,5``
_GROUPED_NUMBER = re.compile(r"[-+]?\d{1,3}(?:\.\d{3})+(?:,\d+)?")
_POINT_NUMBER = re.compile(r"[-+]?\d*\.\d+")
#: a number a decimal-comma locale reads as thousands (``1.200`` = 1200) and a decimal-point one as 1.2
_DOT_THOUSANDS = re.compile(r"[-+]?[1-9]\d{0,2}(?:\.\d{3})+")
#: a whole number of 100 or more without a thousands mark: beside ``1.031`` in a column, the dot groups thousands
_HUNDREDS = re.compile(r"[-+]?[1-9]\d{2}")


@dataclass(frozen=True)
class CsvDialect:
    """How a CSV file is written; ``None``: detected from the file."""

    sep: str | None = None
    decimal: str | None = None
    encoding: str | None = None

    @classmethod
    def from_dict(cls, data: Any, source: str = "dataset spec") -> CsvDialect:
        """The spec's ``csv`` entry, with errors that name the offending key."""
        if not isinstance(data, dict):
            raise InvalidParameterError(
                f"The 'csv' entry of the {source} must be an object such as "
                f'{{"sep": ";", "decimal": ",", "encoding": "cp1252"}}. Got {data!r} instead.'
            )
        names = [f.name for f in fields(cls)]
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise InvalidParameterError(
                f"Unknown key {unknown[0]!r} in the 'csv' entry of the {source}. Valid keys: {', '.join(names)}."
            )
        sep, decimal, encoding = (data.get(name) for name in names)
        if sep is not None and sep not in SEPARATORS:
            raise InvalidParameterError(
                f"The 'csv.sep' entry of the {source} must be one of {list(SEPARATORS)}. Got {sep!r} instead."
            )
        if decimal is not None and decimal not in DECIMAL_MARKS:
            raise InvalidParameterError(
                f"The 'csv.decimal' entry of the {source} must be one of {list(DECIMAL_MARKS)}. "
                f"Got {decimal!r} instead."
            )
        if encoding is not None:
            try:
                encoding = codecs.lookup(encoding).name if isinstance(encoding, str) else None
            except LookupError:
                encoding = None
            if encoding is None:
                raise InvalidParameterError(
                    f"The 'csv.encoding' entry of the {source} must be a Python codec name such as 'utf-8' or "
                    f"'cp1252'. Got {data['encoding']!r} instead."
                )
        return cls(sep, decimal, encoding)

    def to_dict(self) -> dict[str, str]:
        """The pinned entries (what the spec's ``csv`` entry holds)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}


def _opener(path: Path) -> Any:
    return gzip.open if path.name.lower().endswith(".gz") else open


def header_only(path: str | Path) -> bool:
    """Whether the CSV file at ``path`` holds no data row: empty, or a header alone (blank lines aside)."""
    with _opener(Path(path))(path, "rb") as stream:
        lines = (line for line in stream if line.strip(b"\r\n\t \x00\xef\xbb\xbf\xff\xfe"))
        return next(lines, None) is None or next(lines, None) is None


def _encoding(raw: bytes, pinned: str | None) -> tuple[str, int, str]:
    """(encoding, length of a UTF-8 byte-order mark to skip, why) of a file that starts with ``raw``."""
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) and not pinned:
        return "utf-16", 0, "detected: UTF-16 byte-order mark"  # the codec reads the mark
    bom = len(codecs.BOM_UTF8) if raw.startswith(codecs.BOM_UTF8) else 0
    after = " after a UTF-8 byte-order mark" if bom else ""
    if pinned:
        return pinned, bom, f"from the spec{after}"
    try:
        codecs.getincrementaldecoder("utf-8")().decode(raw[bom:], final=False)  # a character may be cut at the end
    except UnicodeDecodeError:
        return _FALLBACK_ENCODING, bom, f"detected: not UTF-8{after}"
    return "utf-8", bom, f"detected{after}"


def _lines(raw: bytes, encoding: str, cut: bool) -> list[str]:
    """The sample's complete lines, decoded; ``cut``: the sample ends inside the file, its last line is dropped."""
    text = codecs.getincrementaldecoder(encoding)(errors="replace").decode(raw, final=False)
    lines = text.splitlines()
    return lines[:-1] if cut and len(lines) > 1 else lines


def _field_count(lines: list[str], sep: str) -> int:
    """The header's fields when every line splits into as many with ``sep`` (or one more, empty), else 0.

    An ERP export may end every data line with the separator: ``S1;apple;2024-06-03;4;``.
    """
    rows = [row for row in csv.reader(lines, delimiter=sep) if row]
    width = len(rows[0]) if rows else 0
    fits = all(len(row) == width or (len(row) == width + 1 and not row[-1].strip()) for row in rows[1:])
    return width if fits else 0


def _escapechar(lines: list[str], sep: str) -> str | None:
    r"""A backslash where the sample's quotes in quoted values are escaped by one (Spark's CSV writer), else None.

    Detected when that reading splits every line into the header's fields (line for line) and either the standard
    one (``""``) does not, or the standard one leaves a backslash before a quote: ``"Gurka \"Eko\""`` keeps the
    count but reads ``Gurka \Eko\""`` (values without a separator inside the quotes).
    """
    if len(lines) < 2 or not any('\\"' in line for line in lines[1:]):
        return None
    width = _field_count(lines[:1], sep)
    escaped = [row for row in csv.reader(lines[1:], delimiter=sep, escapechar="\\", doublequote=False) if row]
    standard = [row for row in csv.reader(lines[1:], delimiter=sep) if row]
    if {len(row) for row in escaped} != {width} or len(escaped) != len(standard):  # no line swallowed by a quote
        return None
    left = any('\\"' in value for row in standard for value in row)
    return "\\" if not _field_count(lines, sep) or left else None


def _separator(lines: list[str]) -> str:
    try:
        sniffed = csv.Sniffer().sniff("\n".join(lines), delimiters="".join(SEPARATORS)).delimiter
    except csv.Error:
        sniffed = None
    if sniffed in SEPARATORS and _field_count(lines, sniffed) > 1:
        return sniffed
    counts = {sep: _field_count(lines, sep) for sep in SEPARATORS}
    best = max(SEPARATORS, key=lambda sep: counts[sep])  # ties: the first candidate
    return best if counts[best] > 1 else ","


def _decimal(rows: Iterable[list[str]], sep: str, ignore: set[int], where: str) -> tuple[str, str, bool, bool]:
    """The decimal mark, why (the votes), whether values like ``1.200`` were the only evidence, and whether any.

    ``rows`` are the data rows; the columns ``ignore`` (text: codes like ``1.10``) do not vote. With a ``,``
    separator a decimal comma needs quotes (``"1,5"``); a quoted ``"1,234"`` may be a thousand and does not vote.
    """
    comma = point = ambiguous = 0
    grouped_columns: set[int] = set()  # columns with a value like 1.200
    hundreds_columns: set[int] = set()  # columns with a whole number of three or more digits, like 724
    for row in rows:
        for column, value in enumerate(row):
            if column in ignore:
                continue
            value = value.strip()
            thousands = sep == "," and COMMA_THOUSANDS.fullmatch(value)
            comma += bool(COMMA_NUMBER.fullmatch(value)) and not thousands
            grouped = sep != "," and bool(_DOT_THOUSANDS.fullmatch(value))  # 1.200: 1200 or 1.2?
            ambiguous += grouped
            point += bool(_POINT_NUMBER.fullmatch(value)) and not grouped
            if grouped:
                grouped_columns.add(column)
            elif _HUNDREDS.fullmatch(value):
                hundreds_columns.add(column)
    quoted = ' quoted as "1,5"' if sep == "," else ""
    votes = f"{comma} values like 1,5{quoted} and {point} like 1.5 {where}"
    evidence = bool(comma or point or ambiguous)
    if ambiguous and not (comma or point) and grouped_columns & hundreds_columns:
        # 724 beside 1.031 in one column: whole numbers written with a thousands dot (724 and 1.031 kg is unlikely)
        votes += f"; {ambiguous} like 1.200 beside whole numbers like 724 in one column: thousands"
        return ",", votes, False, evidence
    if ambiguous:
        votes += f"; {ambiguous} like 1.200 (a thousands dot or a decimal point) do not vote"
    return ("," if comma > point else "."), votes, bool(ambiguous) and not (comma or point), evidence


@contextlib.contextmanager
def _file_rows(path: Path, bom: int, encoding: str, sep: str, skip: int, **options: Any) -> Iterator[Any]:
    """A :func:`csv.reader` over the whole file, streamed, past its byte-order mark and ``skip`` lines."""
    with _opener(path)(path, "rb") as raw:
        raw.read(bom)
        rows = csv.reader(
            io.TextIOWrapper(raw, encoding=encoding, errors="replace", newline=""), delimiter=sep, **options
        )
        for _ in range(skip):
            next(rows, None)
        yield rows


def _dotted_later(path: Path, sep: str) -> bool:
    """Whether the file holds a field like ``1.200`` at all (a cheap scan of the bytes, past the sample too)."""
    field = re.compile(rb"(?:^|[" + re.escape(sep.encode()) + rb'"])[-+]?[1-9]\d{0,2}(?:\.\d{3})+(?:["\r\n]|$|'
                       + re.escape(sep.encode()) + rb")", re.MULTILINE)  # fmt: skip
    with _opener(path)(path, "rb") as stream:
        tail = b""
        while chunk := stream.read(1 << 20):
            if field.search(tail + chunk):
                return True
            tail = chunk[-64:]
    return False


@dataclass(frozen=True)
class Detected:
    """A file's dialect, the byte-order mark to skip and how they were found (for the log line)."""

    dialect: CsvDialect
    bom: int
    how: str
    #: lines before the header (Excel's ``sep=;`` line)
    skip: int = 0
    #: the character before a quote inside a quoted value (:func:`_escapechar`); None: quotes are doubled
    escapechar: str | None = None


def detect(path: str | Path, pinned: CsvDialect | None = None, text: set[str] | None = None) -> Detected:
    """The dialect of the CSV file at ``path`` (``pinned`` entries win; the ``text`` columns do not vote)."""
    path, pinned = Path(path), pinned or CsvDialect()
    with _opener(path)(path, "rb") as stream:
        raw = stream.read(SAMPLE_BYTES)
    encoding, bom, encoding_how = _encoding(raw, pinned.encoding)
    lines = _lines(raw[bom:], encoding, cut=len(raw) == SAMPLE_BYTES)  # the length before the mark
    hint = _SEP_LINE.fullmatch(lines[0]) if lines else None
    lines = lines[1:] if hint else lines
    sep = pinned.sep or (hint.group(1) if hint else _separator(lines))
    if pinned.decimal:
        decimal, votes, unsure = pinned.decimal, "from the spec", False
    else:
        header = next(csv.reader(lines[:1], delimiter=sep), [])
        ignore = {column for column, name in enumerate(header) if name.strip() in (text or ())}
        decimal, votes, unsure, evidence = _decimal(
            csv.reader(lines[1:], delimiter=sep), sep, ignore, "in the first lines"
        )
        if not evidence and sep != "," and len(raw) == SAMPLE_BYTES and _dotted_later(path, sep):
            # whole numbers in the sample, a 1.200 further on: the whole file votes
            with _file_rows(path, bom, encoding, sep, int(hint is not None) + 1) as rows:  # past the header
                decimal, votes, unsure, _ = _decimal(rows, sep, ignore, "in the file (none in the first lines)")
    if unsure:
        logger.warning(
            "%s: values like 1.200 in a %r-separated file could be 1200 (a thousands dot) or 1.2; read as 1.2 for "
            "want of a value like 1,5 or 1.5 in the file. Pin the decimal mark where that is wrong "
            '(the dataset spec\'s "csv": {"decimal": ","}).',
            path, sep,
        )  # fmt: skip
    found = "from the spec" if pinned.sep else "from the file's sep= line" if hint else "detected"
    how = f"separator {sep!r} ({found}), decimal mark {decimal!r} ({votes}), encoding {encoding} ({encoding_how})"
    escapechar = _escapechar(lines, sep)
    if escapechar:
        how += ', quotes inside values escaped as \\" (detected)'
    return Detected(CsvDialect(sep, decimal, encoding), bom, how, skip=int(hint is not None), escapechar=escapechar)


def text_columns(dtype: Any) -> set[str]:
    """The columns a ``dtype`` argument of pandas' readers reads as text."""
    return {column for column, kind in dtype.items() if kind is str} if isinstance(dtype, dict) else set()


def na_values(columns: Any, text: set[str]) -> dict[str, list[str]]:
    """The ``na_values`` of pandas' readers per column: in a ``text`` column only an empty cell is missing.

    A store coded ``NA`` or an item ``None`` stays text; other columns keep pandas' markers (``NA``, ``NULL`` …).
    """
    return {column: [""] if column in text else sorted(STR_NA_VALUES) for column in columns}


def _read(path: Path, bom: int, options: dict[str, Any]) -> tuple[pd.DataFrame, bool]:
    """The file's rows, and whether a line had more fields than the header (pandas dropped them)."""
    with _opener(path)(path, "rb") as stream, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", pd.errors.ParserWarning)
        stream.read(bom)  # pandas would keep a mark that its encoding does not expect
        frame = pd.read_csv(stream, **{"compression": None, **options})
    widened = False
    for warning in caught:  # the one about a line wider than the header is handled; the others are passed on
        if warning.category is pd.errors.ParserWarning and "Length of header" in str(warning.message):
            widened = True
        else:
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    return frame, widened


def _check_extra_fields(path: Path, bom: int, options: dict[str, Any]) -> None:
    """Refuse a line with more fields than the header unless the extra ones are empty (a separator at line end).

    Raises:
        ValueError: naming the line (the caller names the file).
    """
    escape = {"escapechar": options["escapechar"], "doublequote": False} if options.get("escapechar") else {}
    skip = int(options.get("skiprows") or 0)
    with _file_rows(path, bom, options["encoding"], options["sep"], skip, **escape) as rows:
        width = len(next(rows, []))
        for row in rows:
            if len(row) > width and any(field.strip() for field in row[width:]):
                raise ValueError(
                    f"line {rows.line_num} has {len(row)} fields, the header {width} (the extra value: "
                    f"{row[width][:40]!r}). A value holds the separator {options['sep']!r} without quotes, or its "
                    'quotes are escaped in a way the sample did not show (\\" as Spark writes them, or ""), or the '
                    "lines start with row names the header does not name (R's write.table): export the file again "
                    "with every text value quoted and without row names"
                )


def comma_numbers(frame: pd.DataFrame, keep: set[str]) -> pd.DataFrame:
    """Turn ``1,5`` into 1.5 and ``4.800`` into 4800 in the text columns that are mostly numbers (not ``keep``).

    pandas leaves a column with one bad value as text: the bad value is then the one the spec's checks report.
    Only text is read so: a number cell of an Excel sheet (``1.234``) beside text cells stays the number it is.
    """
    for column in frame.select_dtypes(include="object").columns.difference(list(keep), sort=False):
        values = frame[column].dropna()
        text = values[values.map(type).eq(str)].str.strip()
        comma = text.str.fullmatch(COMMA_NUMBER.pattern) | text.str.fullmatch(_GROUPED_NUMBER.pattern)
        whole = text.str.fullmatch(r"[-+]?\d+").sum() + len(values) - len(text)  # whole numbers, number cells
        if comma.any() and (comma.sum() + whole) / len(values) >= 0.5:
            plain = text[comma].str.replace(".", "", regex=False).str.replace(",", ".", regex=False)
            numbers = pd.to_numeric(plain)
            frame[column] = frame[column].astype(object).where(~frame.index.isin(numbers.index), numbers)
    return frame


def read_csv(path: str | Path, pinned: CsvDialect | None = None, **kwargs: Any) -> pd.DataFrame:
    """Read a CSV file in its dialect (detected, or pinned); ``kwargs`` go to :func:`pandas.read_csv` and win.

    Raises what :func:`pandas.read_csv` raises (the caller names the file).
    """
    path = Path(path)
    text = text_columns(kwargs.get("dtype"))
    found = detect(path, pinned, text)
    dialect = found.dialect
    options = {"sep": dialect.sep, "decimal": dialect.decimal, "encoding": dialect.encoding, **kwargs}
    options.setdefault("index_col", False)  # a line with a field more than the header: no index, checked below
    if text and "na_values" not in kwargs:
        header = _read(path, found.bom, {**options, "nrows": 0, "usecols": None, "skiprows": found.skip})[0]
        options.update(keep_default_na=False, na_values=na_values(header.columns, text))
    if found.escapechar:
        options.update(escapechar=found.escapechar, doublequote=False)
    if found.skip:
        options.setdefault("skiprows", found.skip)
    how = found.how
    try:
        frame, widened = _read(path, found.bom, options)
    except UnicodeDecodeError:
        if (pinned and pinned.encoding) or "encoding" in kwargs or dialect.encoding != "utf-8":
            raise
        dialect = replace(dialect, encoding=_FALLBACK_ENCODING)  # UTF-8 in the sample, not further on
        how = how.replace("encoding utf-8 (detected", f"encoding {_FALLBACK_ENCODING} (detected: not UTF-8")
        options["encoding"] = dialect.encoding
        frame, widened = _read(path, found.bom, options)
    if widened:
        _check_extra_fields(path, found.bom, options)
    if options["decimal"] == ",":
        frame = comma_numbers(frame, text)
    plain = (dialect.sep, dialect.decimal, dialect.encoding, found.bom) == (",", ".", "utf-8", 0)
    logger.log(logging.DEBUG if plain else logging.INFO, "%s: CSV with %s", path, how)
    return frame
