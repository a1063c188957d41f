"""Request and response bodies: decode CSV, JSON Lines and JSON into a feature matrix, encode predictions.

CSV is the batch-transform format and the fast path: header-less rows in ``feature_schema.json`` order, checked
by a vectorised per-row field count (so an error names the first bad row, 1-based, without a Python loop over
rows) and parsed by Arrow's multi-threaded, correctly rounded CSV reader (values round-trip exactly).
Categorical features travel as integer codes (an index into the feature's vocabulary); an empty field is a
missing value. JSON Lines and JSON name the features instead and may send a categorical feature by its label.
"""

from __future__ import annotations

import functools
import io
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv

from forecaster.errors import DataValidationError
from forecaster.serving.media import CSV, JSON, JSONLINES
from forecaster.spec import MAX_MAGNITUDE

#: Fields read as a missing value (besides an empty field).
NA_STRINGS = ("", "nan", "NaN", "NA", "null")
#: a category code sent as a JSON string (``"2"``): a code where no label of the feature is such a number
_WHOLE = re.compile(r"\d+")
_SHOWN_NAMES = 6


@dataclass(frozen=True)
class FeatureLayout:
    """What a request body must contain: feature names in CSV order and the categorical vocabularies.

    Attributes:
        names: feature names in ``feature_schema.json`` order.
        categories: vocabulary (list of labels) of each categorical feature; codes index into it.
    """

    names: tuple[str, ...]
    categories: Mapping[str, Sequence[str]] = field(default_factory=dict)

    @classmethod
    def from_schema(cls, schema: Any) -> FeatureLayout:
        """Build the layout from a model's feature schema (``feature_names``, ``categories``)."""
        categories = dict(getattr(schema, "categories", {}) or {})
        categorical = getattr(schema, "categorical_features", list(categories))
        return cls(tuple(schema.feature_names), {name: tuple(categories.get(name, ())) for name in categorical})

    @functools.cached_property
    def label_codes(self) -> tuple[tuple[int, dict[str, int], bool], ...]:
        """Per categorical feature, once per layout: its column, label -> code, and whether a label is a number."""
        return tuple(
            (self.names.index(name), {x: code for code, x in enumerate(xs)}, any(_WHOLE.fullmatch(str(x)) for x in xs))
            for name, xs in self.categories.items()
        )

    def describe(self) -> str:
        """The expected columns, shortened for error messages."""
        shown = ", ".join(self.names[:_SHOWN_NAMES])
        more = f", … ({len(self.names)} in all)" if len(self.names) > _SHOWN_NAMES else ""
        return shown + more

    def check(self, matrix: np.ndarray) -> None:
        """Reject values beyond ±MAX_MAGNITUDE (``inf``, ``1e308``: training's limit too) and non-codes."""
        with np.errstate(invalid="ignore"):
            outside = np.abs(matrix) > MAX_MAGNITUDE  # NaN (missing) compares False
        if outside.any():
            row, column = (int(i[0]) for i in np.nonzero(outside))
            raise DataValidationError(
                f"Row {row + 1}, column {column + 1} ({self.names[column]}): {float(matrix[row, column])!r} is not a "
                f"finite number within ±{MAX_MAGNITUDE:.3g} (the 32-bit floats the model learned from). Send such a "
                "number, or an empty field (null in JSON) for a missing value."
            )
        self.check_codes(matrix)

    def check_codes(self, matrix: np.ndarray) -> None:
        """Reject categorical values that are not an integer code of the vocabulary (NaN = missing is fine)."""
        for name, labels in self.categories.items():
            column = self.names.index(name)
            values = matrix[:, column]
            with np.errstate(invalid="ignore"):
                bad = ~np.isnan(values) & ((values < 0) | (values >= len(labels)) | (values != np.floor(values)))
            if bad.any():
                row = int(np.flatnonzero(bad)[0])
                raise DataValidationError(
                    f"Row {row + 1}, column {column + 1} ({name}): {float(values[row])!r} is not a category code of "
                    f"'{name}'. Send an integer in [0, {len(labels) - 1}] (the index into its vocabulary in "
                    "feature_schema.json), or an empty field for an unknown category."
                )


def _strip_final_newline(body: bytes) -> bytes:
    """The body without its line ends at the end: a file's final newline, and blank lines after the last row."""
    return body.rstrip(b"\r\n")


def _check_not_empty(data: bytes) -> None:
    if not data.strip():
        raise DataValidationError("The request body is empty. Send at least one record.")


def _line_of(data: bytes, offset: int) -> int:
    """1-based line number of byte ``offset``."""
    return data.count(b"\n", 0, offset) + 1


def decode_csv(body: bytes, layout: FeatureLayout) -> np.ndarray:
    """Parse header-less CSV rows into a float64 matrix (n_rows, n_features).

    The fast path is one Arrow parse (which itself rejects rows with the wrong field count) plus a row-count
    check; only a body that fails it pays for locating the first bad row and column.

    Raises:
        DataValidationError: for an empty body, a header row, a row with the wrong number of fields or a value
            that is not a number, naming the 1-based row and column.
    """
    data = _strip_final_newline(body)
    _check_not_empty(data)
    nul = data.find(b"\x00")
    if nul >= 0:
        raise DataValidationError(f"CSV row {_line_of(data, nul)} contains a NUL byte. Send plain-text CSV.")
    _check_header(data, layout)
    n_rows = data.count(b"\n") + 1
    blank = data.startswith((b"\n", b"\r\n")) or b"\n\n" in data or b"\n\r\n" in data
    matrix = None
    if not blank:
        try:
            matrix = _read_csv(data, len(layout.names))
        except pa.ArrowCancelled:  # interrupted by a signal: not the client's fault
            raise
        except pa.ArrowException:
            matrix = None
    if matrix is None or matrix.shape[0] != n_rows:
        _check_field_counts(data, layout)
        raise _locate_bad_value(data, layout)
    layout.check(matrix)
    return matrix


def _check_field_counts(data: bytes, layout: FeatureLayout) -> None:
    """Name the first row whose field count is wrong (vectorised: no Python loop over rows)."""
    buffer = np.frombuffer(data, dtype=np.uint8)
    line_ends = np.append(np.flatnonzero(buffer == ord("\n")), len(buffer))
    commas = np.flatnonzero(buffer == ord(","))
    fields = np.diff(np.searchsorted(commas, line_ends), prepend=0) + 1
    expected = len(layout.names)
    wrong = np.flatnonzero(fields != expected)
    if wrong.size:
        row = int(wrong[0])
        raise DataValidationError(
            f"CSV row {row + 1} has {fields[row]} fields; the model expects {expected} ({layout.describe()}). "
            "Send header-less rows with the features in feature_schema.json order."
        )


def _check_header(data: bytes, layout: FeatureLayout) -> None:
    first = data.split(b"\n", 1)[0].decode("utf-8", errors="replace")
    cells = [cell.strip().strip('"').strip() for cell in first.split(",")]
    named = [cell for cell in cells if cell in layout.names]
    if named:
        raise DataValidationError(
            f"CSV row 1 looks like a header (it names feature {named[0]!r}). Send header-less rows: batch "
            "transform splits files by line and the columns are positional, in feature_schema.json order."
        )


def _read_csv(data: bytes, n_columns: int) -> np.ndarray:
    """Parse with Arrow's CSV reader: multi-threaded and correctly rounded (values round-trip exactly)."""
    names = [f"f{i}" for i in range(n_columns)]
    table = pa_csv.read_csv(
        io.BytesIO(data + b"\n"),
        read_options=pa_csv.ReadOptions(column_names=names, block_size=4 * 1024 * 1024),
        parse_options=pa_csv.ParseOptions(quote_char='"', ignore_empty_lines=False),
        convert_options=pa_csv.ConvertOptions(
            column_types=dict.fromkeys(names, pa.float64()),
            null_values=list(NA_STRINGS),
            strings_can_be_null=False,
        ),
    )
    matrix = np.empty((table.num_rows, n_columns), dtype=np.float64, order="F")  # column-wise fill, no copy
    for index, column in enumerate(table.columns):
        matrix[:, index] = column.to_numpy()
    return matrix


def _parses(data: bytes, n_columns: int) -> bool:
    if not data:
        return True  # an empty field is a missing value
    try:
        _read_csv(data, n_columns)
    except pa.ArrowException:
        return False
    return True


def _locate_bad_value(data: bytes, layout: FeatureLayout) -> DataValidationError:
    """Find the first cell the parser rejects (error path only).

    Bisects the rows with the very parser that failed, then tries the bad row's cells one by one, so the
    message always agrees with what the fast path accepts.
    """
    lines = data.split(b"\n")
    low, high = 0, len(lines)  # the first bad row is in [low, high)
    while high - low > 1:
        middle = (low + high) // 2
        if _parses(b"\n".join(lines[low:middle]), len(layout.names)):
            low = middle
        else:
            high = middle
    for column, cell in enumerate(lines[low].split(b","), start=1):
        if not _parses(cell, 1):
            shown = cell.decode("utf-8", errors="replace")[:40]
            return DataValidationError(
                f"CSV row {low + 1}, column {column} ({layout.names[column - 1]}): {shown!r} is not a number. "
                "Send a number, or an empty field for a missing value."
            )
    return DataValidationError(f"CSV row {low + 1} could not be parsed. Send UTF-8 numbers separated by commas.")


def _records_to_matrix(records: Sequence[Any], layout: FeatureLayout, what: str) -> np.ndarray:
    """Turn JSON records (objects by feature name, or arrays in schema order) into a float64 matrix."""
    if not records:
        raise DataValidationError(f"The {what} body holds no records. Send at least one record.")
    missing = object()
    rows = []
    for number, record in enumerate(records, start=1):
        if isinstance(record, Mapping):
            values = [record.get(name, missing) for name in layout.names]
            absent = next((name for name, value in zip(layout.names, values, strict=True) if value is missing), None)
            if absent is not None:  # said at once, not after every record of a 6 MB body is read
                raise _no_feature(what, number, absent)
        elif isinstance(record, list):
            values = list(record)
        else:
            raise DataValidationError(
                f"{what} record {number} is a {type(record).__name__}; send an object keyed by feature name."
            )
        if len(values) != len(layout.names):
            raise DataValidationError(
                f"{what} record {number} has {len(values)} values; the model expects {len(layout.names)} "
                f"({layout.describe()})."
            )
        for column, vocabulary, numbered in layout.label_codes:
            # labels like "101": a digit string is a label (unseen: missing); where labels are text, it is a code
            if isinstance(values[column], str) and (numbered or not _WHOLE.fullmatch(values[column])):
                values[column] = vocabulary.get(values[column])  # a label; unseen label = missing
        spelled = next((v for v in values if isinstance(v, str) and "_" in v), None)
        if spelled is not None:  # Python's float() reads "1_000" as 1000; no client means that
            column = layout.names[values.index(spelled)]
            raise DataValidationError(f"{what} record {number}, feature {column!r}: {spelled[:40]!r} is not a number.")
        rows.append(values)
    try:
        matrix = np.array(rows, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        raise _locate_bad_record(rows, layout, what) from None
    if matrix.shape != (len(rows), len(layout.names)):
        raise _locate_bad_record(rows, layout, what)
    layout.check(matrix)
    return matrix


def _locate_bad_record(rows: list[list[Any]], layout: FeatureLayout, what: str) -> Exception:
    for number, values in enumerate(rows, start=1):
        for name, value in zip(layout.names, values, strict=True):
            try:
                float(value if value is not None else "nan")
            except (TypeError, ValueError, OverflowError):
                return DataValidationError(
                    f"{what} record {number}, feature {name!r}: {str(value)[:40]!r} is not a number. Send a number "
                    "or null."
                )
    return DataValidationError(f"The {what} records could not be read as numbers.")


def _no_feature(what: str, number: int, name: str) -> DataValidationError:
    return DataValidationError(
        f"{what} record {number} has no feature {name!r}. Send every feature; null marks a missing value."
    )


def _loads(text: bytes, what: str) -> Any:
    try:
        return json.loads(text, object_pairs_hook=_object)
    except DataValidationError as error:  # a key given twice (valid JSON syntax, an ambiguous record)
        raise DataValidationError(f"{what}: {error}") from None
    except (ValueError, RecursionError) as error:
        raise DataValidationError(f"{what} is not valid JSON: {error}.") from None


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object; a key given twice is refused (``json`` would keep the last value, silently)."""
    record = dict(pairs)
    if len(record) < len(pairs):
        seen: set[str] = set()
        twice = next(key for key, _ in pairs if key in seen or seen.add(key))
        raise DataValidationError(f"A JSON object has the key {twice!r} twice. Send each feature once.")
    return record


def decode_jsonlines(body: bytes, layout: FeatureLayout) -> np.ndarray:
    """Parse JSON Lines (one object per line, keyed by feature name) into a float64 matrix."""
    data = _strip_final_newline(body)
    _check_not_empty(data)
    records = [_loads(line, f"JSON Lines row {number}") for number, line in enumerate(data.split(b"\n"), start=1)]
    return _records_to_matrix(records, layout, "JSON Lines")


def decode_json(body: bytes, layout: FeatureLayout) -> np.ndarray:
    """Parse ``{"instances": [...]}``, a list of records or one record into a float64 matrix."""
    _check_not_empty(body)
    try:
        document = _loads(body, "The JSON body")
    except DataValidationError as error:
        hint = " One JSON object per line is JSON Lines: send it as Content-Type application/jsonlines."
        raise DataValidationError(f"{error}{hint if 'Extra data' in str(error) else ''}") from None
    if isinstance(document, Mapping):  # {"instances": [...]}, or one record (a batch transform's SingleRecord)
        document = document["instances"] if isinstance(document.get("instances"), list) else [document]
    if not isinstance(document, list):
        raise DataValidationError('The JSON body must be {"instances": [...]}, a list of records or one record.')
    return _records_to_matrix(document, layout, "JSON")


DECODERS = {CSV: decode_csv, JSONLINES: decode_jsonlines, JSON: decode_json}


def decode(body: bytes, content_type: str, layout: FeatureLayout) -> np.ndarray:
    """Decode a request body of canonical ``content_type`` into a float64 matrix (n_rows, n_features)."""
    return DECODERS[content_type](body, layout)


@dataclass(frozen=True)
class Predictions:
    """What the server answers for n rows.

    Attributes:
        columns: names of the prediction columns (e.g. ``("p50",)`` or ``("p10", "p50", "p90")``).
        values: (n, len(columns)) predictions.
        contribution_names: feature names plus ``expected_value`` when explanations were asked for.
        contributions: (n, n_features + 1) SHAP contributions, or None.
    """

    columns: tuple[str, ...]
    values: np.ndarray
    contribution_names: tuple[str, ...] = ()
    contributions: np.ndarray | None = None


def encode_csv(predictions: Predictions) -> bytes:
    """One header-less line per row: the prediction columns, then the contributions when present.

    Written by Arrow's CSV writer: shortest round-trip formatting, so values parse back to the exact float64.
    """
    matrix = np.asarray(predictions.values, dtype=np.float64)
    if predictions.contributions is not None:
        matrix = np.hstack([matrix, predictions.contributions])
    table = pa.table({f"c{i}": matrix[:, i] for i in range(matrix.shape[1])})
    sink = io.BytesIO()
    pa_csv.write_csv(table, sink, pa_csv.WriteOptions(include_header=False, quoting_style="none"))
    return sink.getvalue()


def _json_ready(values: np.ndarray) -> list[list[Any]]:
    """Rows of ``values`` as lists, a non-finite value (an overflow of absurd inputs) as None: valid JSON."""
    values = np.asarray(values, dtype=np.float64)
    if np.isfinite(values).all():
        return values.tolist()
    return np.where(np.isfinite(values), values, None).tolist()


def _records(predictions: Predictions) -> list[dict[str, Any]]:
    records = [dict(zip(predictions.columns, row, strict=True)) for row in _json_ready(predictions.values)]
    if predictions.contributions is not None:
        for record, row in zip(records, _json_ready(predictions.contributions), strict=True):
            record["contributions"] = dict(zip(predictions.contribution_names, row, strict=True))
    return records


def encode_jsonlines(predictions: Predictions) -> bytes:
    """One JSON object per line, e.g. ``{"p10": 1.0, "p50": 2.0, "p90": 3.5}``."""
    return "".join(json.dumps(record, allow_nan=False) + "\n" for record in _records(predictions)).encode()


def encode_json(predictions: Predictions) -> bytes:
    """``{"predictions": [{...}, ...]}``, one object per input row, in input order."""
    return json.dumps({"predictions": _records(predictions)}, allow_nan=False).encode()


ENCODERS = {CSV: encode_csv, JSONLINES: encode_jsonlines, JSON: encode_json}


def encode(predictions: Predictions, accept: str) -> bytes:
    """Encode ``predictions`` as the canonical media type ``accept``."""
    return ENCODERS[accept](predictions)
