"""Tables on disk: one file, or a folder of files laid out as data platforms export them, read through pyarrow.

A folder is listed once and handed to :class:`pyarrow.dataset.FileSystemDatasetFactory` with Hive partitioning:
pyarrow turns every ``key=value`` folder of a file's path (URI-decoded, ``__HIVE_DEFAULT_PARTITION__`` = missing)
into the file's partition keys. Keys are strings: discovery only names them, they are then read with a string
schema (pyarrow would otherwise turn ``store_id=007`` into the number 7); the dataset spec converts them like any
other column. The files themselves are read by format (Parquet through pyarrow, CSV in its detected dialect
(:mod:`forecaster.dialect`), ``.xlsx`` through pandas and openpyxl), and each file's rows get its partition keys:

- a key only in the path becomes a column (what Spark's ``partitionBy``, Athena, pandas ``partition_cols`` and
  pyarrow ``write_dataset`` write);
- a key in the path and in the file must agree on every row, else :class:`DataValidationError` names the file.

What a folder may hold (each violation is an error naming the path): table files (``.csv``, ``.csv.gz``,
``.parquet``, ``.pq``, ``.xlsx``) either all directly in it or all in sub-folders (not both side by side), every
sub-folder with at least one table file, every file with the same partition keys, no data file in a format not
read here (``.tsv``, ``.xls``, ...: its rows would be lost). Names starting with ``.`` or ``_`` (``_SUCCESS``,
``_temporary``, staging folders) are skipped, as pyarrow does; other files (``spec.json``) are ignored; Parquet
files without a suffix (Hive's ``000000_0``) are told by their first bytes.
"""

from __future__ import annotations

import gzip
import logging
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from forecaster.dialect import CsvDialect, header_only, read_csv
from forecaster.errors import DataValidationError
from forecaster.excel import read_excel

logger = logging.getLogger(__name__)
#: ``DataFrame.attrs`` key of the files a frame was read from: [(path, rows), ...] in row order
SOURCES_ATTR = "forecaster_sources"
#: ``DataFrame.attrs`` key of the columns each of those files had, in the same order
COLUMNS_ATTR = "forecaster_file_columns"
#: the folder value Spark and Hive write for a null partition key
HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"

PARQUET_SUFFIXES = (".parquet", ".pq")
CSV_SUFFIXES = (".csv", ".csv.gz")
EXCEL_SUFFIXES = (".xlsx",)
TABLE_SUFFIXES = (*CSV_SUFFIXES, *PARQUET_SUFFIXES, *EXCEL_SUFFIXES)
_SKIPPED_PREFIXES = (".", "_")
_KINDS = "CSV, Parquet or Excel (.csv, .csv.gz, .parquet, .pq, .xlsx)"
#: suffixes of tables in formats not read here: in a folder they are refused, not skipped (their rows would be lost)
_UNREAD_TABLES = (".tsv", ".txt", ".xls", ".xlsm", ".xlsb", ".ods", ".jsonl", ".ndjson", ".orc", ".avro", ".feather",
                  ".arrow", ".gz", ".bz2", ".xz", ".zst", ".zip")  # fmt: skip
#: files that travel with data and are no table of it: skipped in a folder (as are other suffixes: .json, .md, ...)
_NOT_TABLES = ("readme", "readme.txt", "license", "notice")
_PARQUET_MAGIC = b"PAR1"


def suffix(path: Path) -> str:
    """The table suffix of ``path`` (``.csv.gz`` counts as one)."""
    name = path.name.lower()
    return ".csv.gz" if name.endswith(".csv.gz") else path.suffix.lower()


def stem(path: Path) -> str:
    """``path``'s name without its table suffix."""
    return path.name[: -len(suffix(path))] if suffix(path) in TABLE_SUFFIXES else path.stem


def table_kind(path: Path) -> str:
    """The table suffix ``path`` is read by: its own, or ``.parquet`` for a Parquet file named without a suffix.

    Hive (``000000_0``) and Athena's CTAS / UNLOAD write Parquet files without an extension; their first bytes say
    what they are.
    """
    kind = suffix(path)
    if kind in TABLE_SUFFIXES or "." in path.name:
        return kind
    try:
        with open(path, "rb") as file:
            return ".parquet" if file.read(4) == _PARQUET_MAGIC else kind
    except OSError:
        return kind


def _unread(path: Path) -> bool:
    """Whether a file in a folder looks like data in a format not read here (it must not be skipped silently)."""
    name = path.name.lower()
    if name in _NOT_TABLES:
        return False
    return "." not in name or name.endswith(_UNREAD_TABLES)


@dataclass(frozen=True)
class Fragment:
    """One table file and the Hive keys of the folders it lies in (outermost first; values are strings)."""

    path: Path
    keys: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Layout:
    """What is at a path: ``kind`` is ``file`` (one file), ``files`` (files in the folder) or ``folders``."""

    root: Path
    kind: str
    fragments: tuple[Fragment, ...]


def folder_keys(folder: str, fragment: Fragment) -> tuple[tuple[str, str], ...]:
    """The Hive keys that the top-level ``folder`` of ``fragment`` sets (``store_id=S001``: one; ``2024``: none)."""
    return _keys(_partitioning([name for name, _ in fragment.keys]), f"/{folder}/file")


def _keys(partitioning: ds.Partitioning, path: str) -> tuple[tuple[str, str], ...]:
    found = ds.get_partition_keys(partitioning.parse(path))
    return tuple((name, found[name]) for name in partitioning.schema.names if found.get(name) is not None)


def _partitioning(names: list[str]) -> ds.Partitioning:
    return ds.partitioning(pa.schema([(name, pa.string()) for name in names]), flavor="hive")


def _skipped(relative: str) -> bool:
    return any(part.startswith(_SKIPPED_PREFIXES) for part in relative.split(os.sep))


def _fragments(root: Path, files: list[str]) -> list[Fragment]:
    """The files with their Hive keys, from a pyarrow dataset over them (no file is opened)."""
    filesystem = pafs.LocalFileSystem()

    def dataset(partitioning: ds.Partitioning | ds.PartitioningFactory) -> ds.FileSystemDataset:
        options = ds.FileSystemFactoryOptions(partition_base_dir=str(root), exclude_invalid_files=False)
        if isinstance(partitioning, ds.Partitioning):
            options.partitioning = partitioning
        else:
            options.partitioning_factory = partitioning
        factory = ds.FileSystemDatasetFactory(filesystem, files, ds.ParquetFileFormat(), options)
        return factory.finish(factory.inspect(fragments=0))  # 0: the path keys only, no file read

    names = dataset(ds.HivePartitioning.discover()).schema.names  # the key names; their values as strings:
    partitioning = _partitioning(names)
    return [
        Fragment(Path(fragment.path), _keys(partitioning, fragment.path))
        for fragment in dataset(partitioning).get_fragments()
    ]


def discover(path: str | os.PathLike[str]) -> Layout:
    """The layout of the table at ``path``.

    Raises:
        DataValidationError: for a missing path, a folder without table files, a sub-folder without any, files
            and sub-folders side by side, or files with different partition keys.
    """
    path = Path(path)
    if path.is_file():
        return Layout(path, "file", (Fragment(path),))
    if not path.is_dir():
        raise DataValidationError(f"Input path {path} does not exist. Check the path or the channel name.")
    root = path.resolve()
    listing = pafs.LocalFileSystem().get_file_info(pafs.FileSelector(str(root), recursive=True))
    entries = [(info.path, info.type) for info in listing if not _skipped(info.path[len(str(root)) + 1 :])]
    found = [Path(p) for p, kind in entries if kind == pafs.FileType.File]
    files = sorted(str(p) for p in found if table_kind(p) in TABLE_SUFFIXES)
    unread = [p for p in found if table_kind(p) not in TABLE_SUFFIXES and _unread(p)]
    if unread:
        raise DataValidationError(
            f"{path} holds {path / unread[0].relative_to(root)}, which is not a {_KINDS} file; its rows would be "
            f"left out{f' (and those of {len(unread) - 1} more such file(s))' if len(unread) > 1 else ''}. Save it in "
            "one of those formats, or move it out of the folder (names starting with '_' or '.' are skipped)."
        )
    if not files:
        raise DataValidationError(f"No {_KINDS} file found in directory {path}. Put the data there.")
    null = next((f for f in files if f"={HIVE_NULL}" in f), None)
    if null is not None:
        folder = next(p for p in Path(null).relative_to(root).parts if p.endswith(f"={HIVE_NULL}"))
        raise DataValidationError(
            f"{path / Path(null).relative_to(root).parent} holds rows whose {folder.split('=')[0]!r} is missing "
            f"(the folder {folder} is where Spark and Hive put a null key). Fill the key in those rows or drop them, "
            "then write the table again."
        )
    folders = sorted(p for p, kind in entries if kind == pafs.FileType.Directory)
    holding: set[str] = set()
    for file in files:  # every folder above a table file
        folder = os.path.dirname(file)
        while folder not in holding and len(folder) > len(str(root)):
            holding.add(folder)
            folder = os.path.dirname(folder)
    empty = [folder for folder in folders if folder not in holding]
    if empty:
        raise DataValidationError(
            f"Partition folder {path / Path(empty[0]).relative_to(root)} holds no {_KINDS} file. Remove the folder or "
            "put the partition's files into it."
        )
    top = [f for f in files if os.path.dirname(f) == str(root)]
    if top and folders:
        raise DataValidationError(
            f"{path} mixes files ({os.path.basename(top[0])}, ...) and partition folders "
            f"({os.path.basename(folders[0])}, ...). Keep one layout: every file directly in the folder (one file per "
            "group of series), or every file in sub-folders (store_id=S001/part-0.parquet)."
        )
    fragments = sorted(_fragments(root, files), key=lambda fragment: fragment.path)
    names = [tuple(k for k, _ in fragment.keys) for fragment in fragments]
    odd = next((i for i, n in enumerate(names) if n != names[0]), None)
    if odd is not None:
        raise DataValidationError(
            f"{path} mixes partition layouts: {fragments[0].path.relative_to(root)} has the partition keys "
            f"{list(names[0])} in its path, {fragments[odd].path.relative_to(root)} has {list(names[odd])}. "
            "Partition every file by the same keys."
        )
    fragments = [Fragment(path / f.path.relative_to(root), f.keys) for f in fragments]  # the path as given
    with_rows = [fragment for fragment in fragments if not _without_rows(fragment.path)]
    if with_rows and len(with_rows) < len(fragments):  # Spark writes empty part files for empty tasks
        skipped = [f.path.name for f in fragments if f not in with_rows]
        logger.info("%s: skipped %d file(s) without data rows (%s)", path, len(skipped), ", ".join(skipped[:3]))
        fragments = with_rows
    return Layout(path, "files" if top else "folders", tuple(fragments))


def _without_rows(path: Path) -> bool:
    """Whether a table file holds no data row (a 0-row Parquet part, an empty or header-only CSV); Excel: never."""
    try:
        if table_kind(path) in PARQUET_SUFFIXES:
            return pq.read_metadata(path).num_rows == 0
        return table_kind(path) in CSV_SUFFIXES and header_only(path)
    except (OSError, EOFError, pa.ArrowException):
        return False  # unreadable: the reader names the file


def read_file(
    path: Path,
    csv: CsvDialect | None = None,
    columns: list[str] | None = None,
    text: tuple[str, ...] = (),
    **csv_kwargs: Any,
) -> pd.DataFrame:
    """One table file's rows, read by its suffix (CSV in its dialect; ``csv_kwargs`` go to pandas).

    ``columns``: read only those of them that the file has (default: every column). ``text``: columns read as
    text from CSV and Excel files, as written (keys: ``007`` stays ``007``, ``1.10`` stays apart from ``1.1``).

    Raises:
        DataValidationError: for an unknown suffix, an unreadable or empty file, naming the file.
        MissingExtraError: for an ``.xlsx`` file without openpyxl installed.
    """
    kind = table_kind(path)
    wanted = None if columns is None else set(columns).__contains__
    try:
        if kind in PARQUET_SUFFIXES:
            names = None if wanted is None else [n for n in pq.read_schema(path).names if wanted(n)]
            frame = pd.read_parquet(path, columns=names)
            if any(name is not None for name in frame.index.names):  # saved with its keys in a named index
                frame = frame.reset_index()
            return _whole_numbers_as_ints(frame, text)
        if kind in CSV_SUFFIXES:
            as_text = {"dtype": dict.fromkeys(text, str)} if text else {}
            frame = read_csv(path, csv, **({"usecols": wanted} if wanted else {}), **{**as_text, **csv_kwargs})
            return _without_trailing_empty_rows(frame)
        if kind in EXCEL_SUFFIXES:
            return _without_trailing_empty_rows(read_excel(path, wanted, text, csv))
    except pd.errors.EmptyDataError as error:
        raise DataValidationError(f"File {path} is empty. Provide a file with a header and rows.") from error
    except (pd.errors.ParserError, UnicodeError, OSError, EOFError, zlib.error, ValueError, pa.ArrowException) as error:
        if isinstance(error, DataValidationError):
            raise
        hint = ' Pin its dialect in the spec: "csv": {"sep": ..., "decimal": ..., "encoding": ...}.'
        if isinstance(error, EOFError | zlib.error | gzip.BadGzipFile):
            hint = " The compressed file is cut short or damaged: copy or export it again."
        message = f"File {path} could not be read: {error}.{hint if kind in CSV_SUFFIXES else ''}"
        raise DataValidationError(message) from error
    raise DataValidationError(f"File {path} has extension {kind!r}; use one of {', '.join(TABLE_SUFFIXES)}.")


def _whole_numbers_as_ints(frame: pd.DataFrame, text: tuple[str, ...]) -> pd.DataFrame:
    """The ``text`` columns (keys, statics) that hold whole-number doubles, as integers.

    A key that is double in one Parquet file (a merge with missing values upcasts it) and int64 in the next
    reads ``1`` in both, not ``1.0`` beside ``1`` (two series of one item); every reader of keys reads it so.
    """
    for column in text:
        if column in frame.columns and pd.api.types.is_float_dtype(frame[column]):
            values = frame[column].to_numpy()
            known = values[~np.isnan(values)]
            if np.all((np.mod(known, 1) == 0) & (np.abs(known) < 2**53)):
                frame[column] = frame[column].astype("Int64")
    return frame


def _without_trailing_empty_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` without the rows of only empty cells at its end (``;;;;`` lines: Excel saves formatted empty rows)."""
    filled = np.flatnonzero(frame.notna().any(axis=1).to_numpy())
    last = int(filled[-1]) + 1 if filled.size else 0
    return frame if last == len(frame) else frame.iloc[:last]


def read_fragment(
    fragment: Fragment,
    csv: CsvDialect | None = None,
    columns: list[str] | None = None,
    text: tuple[str, ...] = (),
    **csv_kwargs: Any,
) -> pd.DataFrame:
    """The rows of one file with its partition keys as columns (checked against the file's own, if it has them)."""
    frame = read_file(fragment.path, csv, columns, text, **csv_kwargs)
    for position, (name, value) in enumerate(fragment.keys):
        if name not in frame.columns:  # the folder's keys lead, as they would in the table the folders split
            frame.insert(position, name, pd.Categorical([value] * len(frame), categories=[value]))
            continue
        column = frame[name]
        uniques = pd.Series(pd.unique(column))  # compared value by value: a partition holds few of them
        agreeing = uniques[_equals(uniques, column.dtype, value)]
        if len(agreeing) < len(uniques):
            row = int((~column.isin(agreeing)).to_numpy().nonzero()[0][0])
            raise DataValidationError(
                f"File {fragment.path} lies in the partition folder {name}={value} but its {name!r} column holds "
                f"'{column.iat[row]}' in row {row + 1}. Move the rows to their partition, or drop the column from "
                "the file (the folder name gives it)."
            )
        frame[name] = pd.Categorical([value] * len(frame), categories=[value])  # the folder's text: 007, not 7
    return frame


def _equals(values: pd.Series, dtype: Any, value: str) -> pd.Series:
    """Whether each of ``values`` (of a column of ``dtype``) equals the path's ``value``, compared in that type."""
    if pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_datetime64_any_dtype(dtype):
        try:
            typed = pd.Series([value]).astype(dtype).iat[0]
        except (TypeError, ValueError):
            return pd.Series(False, index=values.index)
        return values == typed
    return (values.astype("string") == value).fillna(False).astype(bool)


def read_fragments(
    fragments: tuple[Fragment, ...],
    csv: CsvDialect | None = None,
    columns: list[str] | None = None,
    text: tuple[str, ...] = (),
    **kw: Any,
) -> pd.DataFrame:
    """The rows of ``fragments`` as one frame, in their order (``columns``: only those, where the files have them)."""
    frames = [read_fragment(fragment, csv, columns, text, **kw) for fragment in fragments]
    frame = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    frame.attrs[SOURCES_ATTR] = [(str(f.path), len(part)) for f, part in zip(fragments, frames, strict=True)]
    frame.attrs[COLUMNS_ATTR] = [tuple(part.columns) for part in frames]
    return frame


def file_without(frame: pd.DataFrame, column: str) -> tuple[str, str] | None:
    """(a file without ``column``, a file with it) of the files :func:`read_fragments` read; None if they agree.

    The frame holds the union of the files' columns: a file without one of them got empty cells in it.
    """
    sources, columns = frame.attrs.get(SOURCES_ATTR), frame.attrs.get(COLUMNS_ATTR)
    if not sources or not columns or len(sources) != len(columns):
        return None
    having = [path for (path, _), names in zip(sources, columns, strict=True) if column in names]
    lacking = [path for (path, _), names in zip(sources, columns, strict=True) if column not in names]
    return (lacking[0], having[0]) if having and lacking else None


def files_of(frame: pd.DataFrame) -> str:
    """`` (file F)`` or `` (files F and N others)`` of a frame :func:`read_fragments` read; empty if unknown."""
    files = [path for path, _ in frame.attrs.get(SOURCES_ATTR) or []]
    if not files:
        return ""
    return f" (file {files[0]})" if len(files) == 1 else f" (files {files[0]} and {len(files) - 1} other(s))"


def source_of(frame: pd.DataFrame, row: int) -> tuple[str, int] | None:
    """(file, row in that file) of the 1-based ``row`` of a frame :func:`read_fragments` read; None if unknown."""
    sources = frame.attrs.get(SOURCES_ATTR)
    if not sources or sum(rows for _, rows in sources) != len(frame):  # not as read: filtered or joined since
        return None
    for path, rows in sources:
        if row <= rows:
            return path, row
        row -= rows
    return None


def check_unique(frame: pd.DataFrame, columns: list[str], what: str, fix: str = "keep one") -> None:
    """Raise naming the first row of ``frame`` that repeats the ``columns`` of an earlier one (dates as days)."""
    twice = np.flatnonzero(frame.duplicated(columns).to_numpy())
    if twice.size:
        row = int(twice[0])
        shown = {c: frame[c].iat[row] for c in columns}
        where = ", ".join(f"{c}={v.date() if isinstance(v, pd.Timestamp) else v}" for c, v in shown.items())
        raise DataValidationError(f"The {what} have more than one row for {where} (row {row + 1}); {fix}.")
