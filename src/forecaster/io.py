"""Reading and writing tables and files: CSV, Parquet (or Excel, read only) by extension, every write atomic."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from forecaster.dialect import CsvDialect
from forecaster.errors import DataValidationError, InvalidParameterError
from forecaster.tables import CSV_SUFFIXES, PARQUET_SUFFIXES, discover, read_fragments, suffix
from forecaster.tables import TABLE_SUFFIXES as TABLE_SUFFIXES  # declared in tables; read by the checks' report


def table_files(path: str | os.PathLike[str]) -> list[Path]:
    """Return the table files at ``path``: the file itself, or every table file of a folder (see :func:`read_table`).

    Raises:
        DataValidationError: when ``path`` does not exist, holds no table file or mixes layouts.
    """
    return [fragment.path for fragment in discover(path).fragments]


def read_table(
    path: str | os.PathLike[str], csv: CsvDialect | None = None, text: tuple[str, ...] = (), **csv_kwargs: Any
) -> pd.DataFrame:
    """Read a table file, or every table file of a folder (Hive keys in the path become columns), into one frame.

    The folder layouts and the file formats are those of :mod:`forecaster.tables`; ``csv`` pins the CSV dialect
    (default: detected per file), ``text`` names columns read from CSV and Excel as text (the spec's
    :attr:`~forecaster.spec.DatasetSpec.text_columns`), ``csv_kwargs`` go to :func:`pandas.read_csv`.

    Raises:
        DataValidationError: for a missing path, an unknown extension, an unreadable or empty file, a bad layout.
    """
    frame = read_fragments(discover(path).fragments, csv, text=text, **csv_kwargs)
    if frame.empty:
        raise DataValidationError(f"{path} has a header but no rows. Provide at least one data row.")
    return frame


def _umask() -> int:
    """The process umask (read by setting it, then restoring it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; rename it onto ``target`` only if the block succeeds."""
    target = Path(target)
    if target.is_dir():
        raise InvalidParameterError(f"Cannot write the file {target}: it is a folder. Name a file (or a new path).")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600: give the file the mode open() would have given it
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        tmp_path.unlink(missing_ok=True)


def write_table(frame: pd.DataFrame, path: str | os.PathLike[str], *, header: bool = True) -> Path:
    """Write ``frame`` atomically as CSV or Parquet, chosen by the extension of ``path``."""
    path = Path(path)
    kind = suffix(path)
    with atomic_path(path) as tmp:
        if kind in PARQUET_SUFFIXES:
            frame.to_parquet(tmp, index=False)
        elif kind in CSV_SUFFIXES:
            frame.to_csv(tmp, index=False, header=header, compression="gzip" if kind == ".csv.gz" else None)
        else:
            raise DataValidationError(f"Cannot write {path}: use a .csv, .csv.gz or .parquet extension.")
    return path


def write_json(data: Any, path: str | os.PathLike[str]) -> Path:
    """Write ``data`` as indented, strict JSON, atomically: NaN (no value) as ``null``; an infinity raises.

    Bare ``NaN`` / ``Infinity`` (what :func:`json.dumps` writes by default) are no JSON: jq, JavaScript and most
    readers other than Python's refuse the file.
    """
    path = Path(path)
    text = json_text(data, path.name)
    with atomic_path(path) as tmp:
        tmp.write_text(text + "\n")
    return path


def json_text(data: Any, name: str = "the output") -> str:
    """``data`` as indented strict JSON (what :func:`write_json` writes; ``name`` is what an error calls it)."""
    return json.dumps(_strict(data, name), indent=2, sort_keys=False, default=_json_default, allow_nan=False)


def _strict(data: Any, name: str, where: str = "") -> Any:
    """``data`` with NaN floats as None; an infinite float raises naming its place (``a.b[2].c``)."""
    if isinstance(data, dict):
        return {key: _strict(value, name, f"{where}.{key}".lstrip(".")) for key, value in data.items()}
    if isinstance(data, list | tuple):
        return [_strict(value, name, f"{where}[{_label(value, index)}]") for index, value in enumerate(data)]
    if isinstance(data, float | np.floating) and not np.isfinite(data):
        if np.isnan(data):
            return None
        raise DataValidationError(
            f"Cannot write {name}: {where or 'the value'} is {float(data)}, which JSON cannot hold. It comes from "
            "numbers in the input too large to add up or square (beyond about 1e150): check the input for values "
            "out of range."
        )
    return data


def _label(item: Any, index: int) -> str:
    """How a list item is named in a place: ``'units'`` for a ``{"name": "units", ...}`` entry, else its index."""
    return repr(item["name"]) if isinstance(item, dict) and isinstance(item.get("name"), str) else str(index)


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def read_json(path: str | os.PathLike[str]) -> Any:
    """Read a JSON file; a missing or malformed file raises DataValidationError naming it."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))  # a byte-order mark, as editors on Windows write
    except FileNotFoundError as error:
        raise DataValidationError(f"File {path} does not exist.") from error
    except UnicodeDecodeError as error:
        raise DataValidationError(
            f"File {path} is not UTF-8 text (byte {error.start}: {error.object[error.start : error.start + 1]!r}). "
            "JSON files are UTF-8: save it as UTF-8."
        ) from error
    except json.JSONDecodeError as error:
        raise DataValidationError(f"File {path} is not valid JSON: {error}") from error


def claim_output_directory(target: str | os.PathLike[str]) -> Path:
    """Check that ``target`` may become an output directory, whose contents a run replaces.

    A new or empty directory may, and so may one that holds only what an earlier run wrote there (the entries
    its record beside the directory lists, see :func:`_record_of`), empty folders (mount points) and the staging
    folders of an interrupted run. Anything else would be deleted by the run, so it is refused before any work
    is done.

    Raises:
        DataValidationError: when ``target`` is a file, or holds entries forecaster did not write, naming them.
    """
    target = Path(target)
    if target.exists() and not target.is_dir():
        raise DataValidationError(f"{target} exists and is not a directory. Remove it or choose another output.")
    existing = next(folder for folder in (target, *target.absolute().parents) if folder.exists())
    if not existing.is_dir():
        raise DataValidationError(f"Cannot write the output directory {target}: {existing} is a file, not a folder.")
    if not os.access(existing, os.W_OK | os.X_OK):  # before the work, not after it (a read-only mount, say)
        raise DataValidationError(
            f"Cannot write the output directory {target}: {existing} is not writable (permissions, or a read-only "
            "file system). Choose another output."
        )
    if not target.exists():
        return target
    owned = _written_before(target)
    staging = f".{target.name}.staging-"
    foreign = sorted(
        entry.name
        for entry in target.iterdir()
        if entry.name not in owned and not entry.name.startswith(staging) and not _empty_folder(entry)
    )
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise DataValidationError(
            f"The output directory {target} holds entries forecaster did not write: {shown}. A run replaces its "
            "output directory's contents and would delete them. Choose a new or empty directory (for example "
            f"{target / 'run-1'}), or move them away."
        )
    return target


def _empty_folder(path: Path) -> bool:
    return _is_real_dir(path) and next(path.iterdir(), None) is None


def _record_of(target: Path) -> Path:
    """The file beside ``target`` that lists what a run wrote into it.

    Beside, not inside: everything inside an output directory is the output (a batch transform reads every object
    under its prefix, a model's archive takes every file).
    """
    resolved = target.resolve()
    return resolved.parent / f".{resolved.name}.forecaster-output.json"


def _written_before(target: Path) -> set[str]:
    """The entries an earlier run wrote into ``target`` (none when it left no readable record)."""
    try:
        entries = json.loads(_record_of(target).read_text(encoding="utf-8"))["entries"]
    except (OSError, ValueError, KeyError, TypeError):
        return set()
    return {name for name in entries if isinstance(name, str)} if isinstance(entries, list) else set()


def _record(target: Path, entries: list[str]) -> None:
    """Write the record of ``target``'s entries; where its parent is read-only (a mount), a later run starts empty."""
    with contextlib.suppress(OSError), atomic_path(_record_of(target)) as tmp:
        tmp.write_text(json.dumps({"entries": entries}, indent=1) + "\n", encoding="utf-8")


@contextlib.contextmanager
def atomic_directory(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield an empty staging directory whose contents replace ``target``'s only if the block succeeds.

    ``target`` must be new, empty or an earlier run's output (:func:`claim_output_directory`): what anything else
    put there is never deleted. A directory that exists already (``target`` itself, or one of its sub-directories)
    is never removed or renamed: it may be a mount point (``/opt/ml/model`` of a training job, each
    ``/opt/ml/processing/output/<name>`` of a processing job), which cannot be (``EBUSY``). Everything is
    written into the stage first, so a failing block leaves ``target`` unchanged; at the end a new ``target``
    is the stage renamed, an existing one gets the staged files moved into it (each replaced atomically) and
    loses the files the stage does not have.
    """
    target = claim_output_directory(target)
    fresh = not target.exists()
    home = target.parent if fresh else target  # inside target: the stage is on target's file system
    home.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{target.name}.staging-", dir=home))
    stage.chmod(0o777 & ~_umask())  # mkdtemp makes 0700; the directory may become target itself
    try:
        yield stage
        entries = sorted(item.name for item in stage.iterdir())
        _record(target, sorted(set(entries) | _written_before(target)))  # before the move: a kill between keeps both
        if fresh and not target.exists():
            os.rename(stage, target)
        else:
            _move_contents(stage, target, keep=stage)
        _record(target, entries)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _move_contents(source: Path, target: Path, keep: Path) -> None:
    """Make ``target``'s contents ``source``'s (moving them); ``target`` and its sub-directories stay."""
    names = {item.name for item in source.iterdir()}
    for item in sorted(source.iterdir()):
        dest = target / item.name
        if item.is_dir() and _is_real_dir(dest):
            _move_contents(item, dest, keep)
            continue
        if _is_real_dir(dest) or (item.is_dir() and dest.exists()):
            _remove(dest)
        _move(item, dest)
    for old in target.iterdir():
        if old != keep and old.name not in names:
            _remove(old)


def _is_real_dir(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink()


def _move(item: Path, dest: Path) -> None:
    """Rename ``item`` onto ``dest``; across file systems (into a mount point) copy next to ``dest``, then rename."""
    try:
        os.replace(item, dest)
    except OSError as error:
        if error.errno != errno.EXDEV:
            raise
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)) / item.name
        try:
            if item.is_dir():
                shutil.copytree(item, tmp, symlinks=True)
            else:
                shutil.copy2(item, tmp)
            os.replace(tmp, dest)
        finally:
            shutil.rmtree(tmp.parent, ignore_errors=True)


def _remove(path: Path) -> None:
    """Delete ``path``; a directory that is a mount point is emptied and kept."""
    if not _is_real_dir(path):
        path.unlink(missing_ok=True)
        return
    for child in path.iterdir():
        _remove(child)
    try:
        path.rmdir()
    except OSError as error:
        if error.errno != errno.EBUSY:
            raise
