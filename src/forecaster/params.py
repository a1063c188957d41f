"""Parameter validation with constraints as data, in the style of scikit-learn's ``_param_validation``.

Each parameter has a list of constraints; a value is valid when it satisfies one of them. Values may arrive as
Python objects or as strings (SageMaker hyperparameters, CLI ``KEY=VALUE``): :func:`coerce` turns a string into
the constraint's type first, with explicit boolean parsing. Errors read
"The 'horizon' parameter of train must be an int in the range [1, 366]. Got 'abc' instead."
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from forecaster.errors import InvalidParameterError

TRUE_STRINGS = frozenset({"true", "1", "yes", "on"})
FALSE_STRINGS = frozenset({"false", "0", "no", "off"})


@dataclass(frozen=True)
class Interval:
    """A number of ``kind`` (int or float) in [low, high] (either bound may be None = unbounded)."""

    kind: type
    low: float | None
    high: float | None
    closed: str = "both"  # "both", "left", "right", "neither"

    def describe(self) -> str:
        left = "[" if self.closed in ("both", "left") and self.low is not None else "("
        right = "]" if self.closed in ("both", "right") and self.high is not None else ")"
        shown = str if self.kind is int else "{:g}".format  # an int bound as written: 2147483647, not 2.14748e+09
        low = "-inf" if self.low is None else shown(self.low)
        high = "inf" if self.high is None else shown(self.high)
        return f"{'an int' if self.kind is int else 'a float'} in the range {left}{low}, {high}{right}"

    def coerce(self, value: Any) -> Any:
        if isinstance(value, str):
            text = _unquote(value)
            try:
                value = int(text) if self.kind is int else float(text)
            except ValueError:
                if self.kind is int:
                    as_float = float(text)  # "63.0" is a fine int; "abc" raises ValueError
                    if not as_float.is_integer():
                        raise
                    value = int(as_float)
                else:
                    raise
        if isinstance(value, bool):
            raise TypeError
        if self.kind is int and isinstance(value, float) and value.is_integer():
            value = int(value)
        if self.kind is int and not isinstance(value, int):
            raise TypeError
        if self.kind is float and not isinstance(value, int | float):
            raise TypeError
        return self.kind(value)

    def accepts(self, value: Any) -> bool:
        if isinstance(value, float) and not math.isfinite(value):  # NaN, and inf even where a bound is open
            return False
        low_ok = self.low is None or (value >= self.low if self.closed in ("both", "left") else value > self.low)
        high_ok = self.high is None or (value <= self.high if self.closed in ("both", "right") else value < self.high)
        return low_ok and high_ok


#: a number ≥ 0 (a cost, a threshold, a WAPE)
NON_NEGATIVE = Interval(float, 0, None)


@dataclass(frozen=True)
class Options:
    """One of a fixed set of strings."""

    values: tuple[str, ...]

    def describe(self) -> str:
        return "a str among {" + ", ".join(repr(v) for v in self.values) + "}"

    def coerce(self, value: Any) -> Any:
        if not isinstance(value, str):
            raise TypeError
        return _unquote(value)

    def accepts(self, value: Any) -> bool:
        return value in self.values


@dataclass(frozen=True)
class Boolean:
    """A bool; strings true/false/1/0/yes/no/on/off in any case (so "False" is never true)."""

    def describe(self) -> str:
        return "a bool (true or false)"

    def coerce(self, value: Any) -> Any:
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str):
            text = _unquote(value).strip().lower()
            if text in TRUE_STRINGS:
                return True
            if text in FALSE_STRINGS:
                return False
        raise TypeError

    def accepts(self, value: Any) -> bool:
        return isinstance(value, bool)


@dataclass(frozen=True)
class Text:
    """Any non-empty string of at most ``max_length`` characters."""

    max_length: int = 256

    def describe(self) -> str:
        return f"a non-empty str of at most {self.max_length} characters"

    def coerce(self, value: Any) -> Any:
        if not isinstance(value, str):
            raise TypeError
        return _unquote(value)

    def accepts(self, value: Any) -> bool:
        return 0 < len(value) <= self.max_length


class _Written:
    """A constraint on strings: the value as written (JSON quotes undone), refused when it is not a string."""

    def coerce(self, value: Any) -> Any:
        if not isinstance(value, str):
            raise TypeError
        return _unquote(value)


@dataclass(frozen=True)
class Day(_Written):
    """A calendar day written ``YYYY-MM-DD``."""

    def describe(self) -> str:
        return "a day written YYYY-MM-DD"

    def accepts(self, value: Any) -> bool:
        try:
            return len(value) == 10 and date.fromisoformat(value) is not None
        except ValueError:
            return False


@dataclass(frozen=True)
class S3Uri(_Written):
    """An S3 location ``s3://bucket[/key]`` (a bucket name of 3 to 63 lower-case letters, digits, dots, dashes)."""

    def describe(self) -> str:
        return "an S3 URI such as s3://bucket/prefix/"

    def accepts(self, value: Any) -> bool:
        return bool(_S3_URI.fullmatch(value))


@dataclass(frozen=True)
class EntityName(_Written):
    """A SageMaker entity name (a model package group): 1 to 63 letters, digits and inner hyphens."""

    def describe(self) -> str:
        return "a name of 1 to 63 letters, digits and hyphens (not first or last), as SageMaker names groups"

    def accepts(self, value: Any) -> bool:
        return bool(_ENTITY_NAME.fullmatch(value))


_S3_URI = re.compile(r"s3://[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9](/\S*)?")
_ENTITY_NAME = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}")
Constraint = Interval | Options | Boolean | Text | Day | S3Uri | EntityName


def _unquote(text: str) -> str:
    """Undo the JSON encoding some callers apply to string hyperparameters (a quoted ``"tweedie"``)."""
    stripped = text.strip()
    if len(stripped) >= 2 and stripped[0] == stripped[-1] == '"':
        try:
            decoded = json.loads(stripped)
        except json.JSONDecodeError:
            return stripped
        return decoded if isinstance(decoded, str) else stripped
    return stripped


def coerce(name: str, value: Any, constraints: Sequence[Constraint], caller: str) -> Any:
    """Return ``value`` converted to the first constraint it satisfies.

    Raises:
        InvalidParameterError: naming the parameter, what it must be and what it got.
    """
    for constraint in constraints:
        try:
            converted = constraint.coerce(value)
        except (TypeError, ValueError):
            continue
        if constraint.accepts(converted):
            return converted
    expected = " or ".join(c.describe() for c in constraints)
    raise InvalidParameterError(f"The {name!r} parameter of {caller} must be {expected}. Got {value!r} instead.")


def validate_params(
    values: Mapping[str, Any], constraints: Mapping[str, Sequence[Constraint]], caller: str
) -> dict[str, Any]:
    """Validate and convert every entry of ``values``; unknown names are rejected with the valid ones listed."""
    unknown = sorted(set(values) - set(constraints))
    if unknown:
        close = difflib.get_close_matches(unknown[0], list(constraints), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise InvalidParameterError(
            f"Unknown parameter {unknown[0]!r} for {caller}.{hint} Valid parameters: {', '.join(sorted(constraints))}."
        )
    return {name: coerce(name, value, constraints[name], caller) for name, value in values.items()}
