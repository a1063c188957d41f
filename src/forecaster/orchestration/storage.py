"""Local folders and ``s3://`` prefixes behind one small interface (what the source, staging and delivery use).

A location is a string: a local path or ``s3://bucket/prefix``. S3 goes through boto3 (credentials the usual
boto3 way, or an Airflow connection's session passed as ``client``); a PutObject is atomic, local files are
written to a temporary name and renamed.

Light on purpose: the DAG files' sensors use it, so it imports neither pandas nor numpy nor pyarrow.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from forecaster.errors import DataValidationError

_DATED = re.compile(r"^(\d{4}-\d{2}-\d{2})\.(csv|csv\.gz|parquet|pq)$")


def is_s3(location: str) -> bool:
    """Whether ``location`` is an ``s3://`` URI."""
    return str(location).startswith("s3://")


def join(location: str, *parts: str) -> str:
    """``location/part/...`` for a path or an S3 URI."""
    if is_s3(location):
        return "/".join([str(location).rstrip("/"), *(p.strip("/") for p in parts)])
    return str(Path(location, *parts))


def _split(uri: str) -> tuple[str, str]:
    bucket, _, key = uri[len("s3://") :].partition("/")
    return bucket, key


class Storage:
    """Read, list and write files under local paths and ``s3://`` URIs.

    Args:
        client: a boto3 S3 client (default: ``boto3.client("s3")`` on first use).
    """

    def __init__(self, client: Any = None) -> None:
        self._client = client

    @property
    def s3(self) -> Any:
        if self._client is None:
            import boto3

            self._client = boto3.client("s3")
        return self._client

    def list(self, location: str) -> list[str]:
        """Every file under ``location`` (recursive, sorted), as locations; hidden files are skipped."""
        if is_s3(location):
            bucket, prefix = _split(location.rstrip("/") + "/")
            found = []
            for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
                found += [f"s3://{bucket}/{item['Key']}" for item in page.get("Contents", [])]
            return sorted(f for f in found if not f.rsplit("/", 1)[-1].startswith("."))
        root = Path(location)
        if not root.is_dir():
            return []
        return sorted(str(p) for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))

    def exists(self, location: str) -> bool:
        """Whether the file ``location`` exists."""
        if is_s3(location):
            bucket, key = _split(location)
            return bool(self.s3.list_objects_v2(Bucket=bucket, Prefix=key, MaxKeys=1).get("KeyCount"))
        return Path(location).is_file()

    @contextmanager
    def local_copy(self, location: str) -> Iterator[Path]:
        """A local path with the file's content (the file itself when it is local), same file name."""
        if not is_s3(location):
            yield Path(location)
            return
        folder = Path(tempfile.mkdtemp(prefix="forecaster-"))
        try:
            target = folder / location.rsplit("/", 1)[-1]
            bucket, key = _split(location)
            self.s3.download_file(bucket, key, str(target))
            yield target
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def read_bytes(self, location: str) -> bytes:
        """The content of the file ``location``."""
        if is_s3(location):
            bucket, key = _split(location)
            return self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        return Path(location).read_bytes()

    def put_file(self, source: Path, location: str) -> str:
        """Copy the local file ``source`` to ``location`` atomically; return ``location``."""
        if is_s3(location):
            bucket, key = _split(location)
            self.s3.upload_file(str(source), bucket, key)
        else:
            from forecaster.io import atomic_path

            with atomic_path(location) as tmp:
                shutil.copyfile(source, tmp)
        return location

    def put_bytes(self, data: bytes, location: str) -> str:
        """Write ``data`` to ``location`` atomically; return ``location``."""
        if is_s3(location):
            bucket, key = _split(location)
            self.s3.put_object(Bucket=bucket, Key=key, Body=data)
        else:
            from forecaster.io import atomic_path

            with atomic_path(location) as tmp:
                tmp.write_bytes(data)
        return location

    def delete(self, location: str) -> None:
        """Remove the file ``location`` (no error when it is not there)."""
        if is_s3(location):
            bucket, key = _split(location)
            self.s3.delete_object(Bucket=bucket, Key=key)
        else:
            with suppress(FileNotFoundError):
                os.unlink(location)


def dated_files(storage: Storage, folder: str) -> dict[dt.date, str]:
    """``{day: location}`` of the ``<YYYY-MM-DD>.<ext>`` files in ``folder``.

    Raises:
        DataValidationError: when two files hold the same day (``.csv`` and ``.parquet``).
    """
    found: dict[dt.date, str] = {}
    for location in storage.list(folder):
        match = _DATED.match(location.rsplit("/", 1)[-1])
        if not match:
            continue
        day = dt.date.fromisoformat(match.group(1))
        if day in found:
            raise DataValidationError(f"{found[day]} and {location} are drops of the same day; keep one of them.")
        found[day] = location
    return found
