"""Media types the server reads and writes: ``Content-Type`` checks and ``Accept`` negotiation."""

from __future__ import annotations

import math

from forecaster.errors import NotAcceptableError, UnsupportedMediaTypeError

CSV = "text/csv"
JSONLINES = "application/jsonlines"
JSON = "application/json"
#: Media types the server reads and writes, with common aliases.
MEDIA_TYPES = {
    "text/csv": CSV,
    "application/csv": CSV,
    "application/jsonlines": JSONLINES,
    "application/jsonl": JSONLINES,
    "application/x-jsonlines": JSONLINES,
    "application/x-ndjson": JSONLINES,
    "application/json": JSON,
}
#: The types a wildcard (``*/*``, ``application/*``) is answered with when the request's own type is refused.
_PREFERENCE = (JSON, JSONLINES, CSV)


def media_type(header: str | None) -> str:
    """The bare, lower-case media type of a ``Content-Type``/``Accept`` entry (parameters dropped)."""
    return (header or "").split(";", 1)[0].strip().lower()


def request_media_type(header: str | None) -> str:
    """The canonical media type of a request's ``Content-Type`` (missing = CSV).

    Raises:
        UnsupportedMediaTypeError: for a type the server does not read.
    """
    kind = media_type(header) if header and header.strip() else CSV
    if kind not in MEDIA_TYPES:
        raise UnsupportedMediaTypeError(
            f"Content-Type {header!r} is not supported. Send one of {', '.join(sorted(set(MEDIA_TYPES.values())))}."
        )
    return MEDIA_TYPES[kind]


def response_media_type(accept: str | None, default: str) -> str:
    """Pick the response type from an ``Accept`` header; missing or ``*/*`` gives ``default``.

    Entries are tried in order of their ``q`` weight; ``text/*`` and ``application/*`` wildcards match, never a type
    the header refuses (``q=0``).

    Raises:
        NotAcceptableError: when no entry names a type the server writes.
    """
    if not accept or not accept.strip():
        return default
    entries, refused = [], set()
    for position, entry in enumerate(accept.split(",")):
        kind, *params = (part.strip() for part in entry.split(";"))
        weight = 1.0
        for param in params:
            if param.lower().startswith("q="):
                try:
                    weight = float(param[2:])
                except ValueError:
                    weight = 0.0
        if kind and weight > 0 and not math.isnan(weight):
            entries.append((-weight, position, kind.lower()))
        elif kind.lower() in MEDIA_TYPES:
            refused.add(MEDIA_TYPES[kind.lower()])
    for _, _, kind in sorted(entries):
        if kind in MEDIA_TYPES and MEDIA_TYPES[kind] not in refused:
            return MEDIA_TYPES[kind]
        if kind in ("*/*", "*") or kind.endswith("/*"):
            family = "" if kind in ("*/*", "*") else kind[:-1]
            matches = [t for t in (default, *_PREFERENCE) if t.startswith(family) and t not in refused]
            if matches:
                return matches[0]
    raise NotAcceptableError(
        f"Accept {accept!r} names no type the server writes. Use one of {CSV}, {JSONLINES} or {JSON}."
    )
