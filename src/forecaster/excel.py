"""Excel workbooks (``.xlsx``): the first sheet, through pandas and openpyxl (the ``excel`` extra)."""

from __future__ import annotations

import logging
import zipfile
from pathlib import Path
from typing import Any

import pandas as pd

from forecaster.dialect import CsvDialect, comma_numbers, na_values
from forecaster.errors import DataValidationError, MissingExtraError

logger = logging.getLogger(__name__)


def read_excel(
    path: Path, wanted: Any = None, text: tuple[str, ...] = (), csv: CsvDialect | None = None
) -> pd.DataFrame:
    """The first sheet's rows (``wanted``: a column filter; ``text``: columns read as text, as written).

    A pinned decimal comma (``csv.decimal``) also reads the numbers the sheet holds as text (``'11,5'``).

    Raises:
        MissingExtraError: without openpyxl.
        DataValidationError: for a file that is no .xlsx workbook.
    """
    try:
        import openpyxl  # pandas' engine for .xlsx
        import openpyxl.utils.exceptions
    except ModuleNotFoundError as error:
        raise MissingExtraError(
            f"Reading {path} needs the 'excel' extra (module 'openpyxl' is not installed). Install it with "
            "pip install 'forecaster[excel]' (in a checkout: make venv), or save the sheet as CSV."
        ) from error
    try:
        book = pd.ExcelFile(path, engine="openpyxl")
    except (zipfile.BadZipFile, KeyError, openpyxl.utils.exceptions.InvalidFileException) as error:
        raise DataValidationError(
            f"File {path} is no readable .xlsx workbook ({type(error).__name__}: {error}): an .xlsx file is a zip "
            "archive, and this one is damaged or of another kind. Open it in Excel and save it as .xlsx or CSV."
        ) from error
    with book:
        if len(book.sheet_names) > 1:
            logger.warning(
                "%s: reading its first sheet %r only; %d other sheet(s) ignored (%s). Put every row on the first "
                "sheet, or save each sheet as a file of its own in one folder.",
                path, book.sheet_names[0], len(book.sheet_names) - 1, ", ".join(book.sheet_names[1:4]),
            )  # fmt: skip
        header = pd.read_excel(book, sheet_name=0, nrows=0).columns
        frame = pd.read_excel(
            book, sheet_name=0, usecols=wanted, dtype=dict.fromkeys(text, str), keep_default_na=False,
            na_values=na_values(header, set(text)),
        )  # fmt: skip
    return comma_numbers(frame, set(text)) if csv is not None and csv.decimal == "," else frame
