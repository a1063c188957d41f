"""Inputs and outputs of a processing step: ``--input NAME=PATH`` and ``--out DIR`` with SageMaker defaults.

A processing step (an SDK ``Processor`` running the training image) mounts its inputs under
``/opt/ml/processing/input/<name>`` and uploads ``/opt/ml/processing/output/<name>``
(:mod:`forecaster.container.layout`); the local runner passes explicit paths instead. Both call the same code.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from forecaster.container.layout import processing_root
from forecaster.errors import DataValidationError, InvalidParameterError
from forecaster.io import claim_output_directory


def parse_inputs(values: Iterable[str] | None, caller: str) -> dict[str, list[Path]]:
    """Parse repeated ``NAME=PATH`` flags into ``{name: [path, ...]}`` (a name may repeat).

    Raises:
        InvalidParameterError: for a value without ``=`` or with an empty name or path.
    """
    inputs: dict[str, list[Path]] = {}
    for value in values or ():
        name, sep, path = value.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise InvalidParameterError(
                f"The '--input' parameter of {caller} must look like NAME=PATH (e.g. dataset=data/features.csv). "
                f"Got {value!r} instead."
            )
        inputs.setdefault(name.strip(), []).append(Path(path.strip()))
    return inputs


def default_input(name: str) -> Path:
    """Where a processing job mounts the input channel ``name``."""
    return processing_root() / "input" / name


def default_output(name: str) -> Path:
    """Where a processing job expects the output ``name`` to be written."""
    return processing_root() / "output" / name


def input_path(inputs: dict[str, list[Path]], name: str, caller: str, *, required: bool = True) -> Path | None:
    """Return the single path given for ``name``, else its processing default.

    Raises:
        InvalidParameterError: when ``name`` was given more than once.
        DataValidationError: when ``required`` and the resulting path does not exist.
    """
    paths = inputs.get(name, [])
    if len(paths) > 1:
        raise InvalidParameterError(
            f"The input {name!r} of {caller} must be given once. Got {len(paths)} paths instead: "
            f"{', '.join(map(str, paths))}."
        )
    path = paths[0] if paths else default_input(name)
    if not path.exists():
        if not required:
            return None
        raise DataValidationError(
            f"Input {name!r} of {caller} not found at {path}. Pass --input {name}=PATH with an existing file or "
            "directory."
        )
    return path


def input_paths(inputs: dict[str, list[Path]], name: str, caller: str) -> list[Path]:
    """Return every path given for a repeatable input ``name`` (default: its processing mount).

    Raises:
        DataValidationError: when one of them does not exist.
    """
    paths = inputs.get(name) or [default_input(name)]
    for path in paths:
        if not path.exists():
            raise DataValidationError(
                f"Input {name!r} of {caller} not found at {path}. Pass --input {name}=PATH with an existing path."
            )
    return paths


def check_unknown_inputs(inputs: dict[str, list[Path]], known: Iterable[str], caller: str) -> None:
    """Reject input names the command does not read (a typo would otherwise silently fall back to a default).

    Raises:
        InvalidParameterError: naming the unknown input and the valid ones.
    """
    known = tuple(known)
    for name in inputs:
        if name not in known:
            raise InvalidParameterError(f"Unknown input {name!r} for {caller}. Valid inputs: {', '.join(known)}.")


def output_dir(
    value: str | os.PathLike[str] | None,
    name: str,
    inputs: dict[str, list[Path]] | None = None,
    caller: str = "forecaster",
) -> Path:
    """Return ``--out`` if given, else the processing default for output ``name``.

    The output replaces the directory's contents, so an output that is or holds one of ``inputs`` (by name) is
    refused before anything is read.

    Raises:
        InvalidParameterError: naming the input the output would overwrite.
    """
    out = Path(value) if value else default_output(name)
    where = out.resolve()
    for input_name, paths in (inputs or {}).items():
        for path in paths:
            read = Path(path).resolve()
            if where == read or where in read.parents:
                label = input_name if input_name.startswith("--") else f"--input {input_name}"
                raise InvalidParameterError(
                    f"{caller}: the output directory {out} overlaps {label} ({path}); the output replaces its "
                    "directory's contents and would delete what it reads. Choose another --out."
                )
    return claim_output_directory(out)
