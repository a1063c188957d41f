"""The local model registry: one SQLite file (WAL mode), safe for several processes at once.

A registration runs in a ``BEGIN IMMEDIATE`` transaction: it takes the database's write lock before it reads
the group's highest version number, so two processes can never both compute the same next version, and a
failed registration leaves nothing behind. Readers are not blocked (WAL).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from forecaster.errors import RegistryError
from forecaster.registry.base import ApprovalStatus, ModelRegistry, ModelVersion, Registration, no_approved

_SCHEMA = """
CREATE TABLE IF NOT EXISTS model_groups (
    name TEXT PRIMARY KEY,
    description TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS model_versions (
    group_name TEXT NOT NULL REFERENCES model_groups(name),
    version INTEGER NOT NULL,
    status TEXT NOT NULL,
    created_at TEXT NOT NULL,
    model_data_url TEXT NOT NULL,
    image_uri TEXT NOT NULL DEFAULT '',
    metrics TEXT NOT NULL DEFAULT '{}',
    baselines TEXT NOT NULL DEFAULT '{}',
    lineage TEXT NOT NULL DEFAULT '{}',
    description TEXT NOT NULL DEFAULT '',
    approval_description TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (group_name, version)
);
CREATE TABLE IF NOT EXISTS status_changes (
    group_name TEXT NOT NULL,
    version INTEGER NOT NULL,
    status TEXT NOT NULL,
    changed_at TEXT NOT NULL,
    note TEXT NOT NULL DEFAULT ''
);
"""
#: newest created first; the version number breaks ties of equal timestamps
_NEWEST_FIRST = "ORDER BY created_at DESC, version DESC"


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")


class SQLiteRegistry(ModelRegistry):
    """Registry in a SQLite file (created with its folder on first use).

    Args:
        path: the database file, e.g. ``~/.forecaster/registry.db``.
        timeout: seconds a writer waits for another writer's lock before failing.
        create: make the file when it does not exist (else that is a RegistryError): False for reading commands.
    """

    def __init__(self, path: str | Path, timeout: float = 30.0, *, create: bool = True) -> None:
        self.path = Path(path).expanduser()
        self.timeout = timeout
        if not create and not self.path.exists():
            raise RegistryError(
                f"There is no registry at {self.path}. Check --registry (or FORECASTER_REGISTRY); a registry is "
                "created by the first registration (`forecaster registry register`, or a build run)."
            )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as connection:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.executescript(_SCHEMA)

    def __repr__(self) -> str:
        return f"SQLiteRegistry({str(self.path)!r})"

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """A connection; a file that is no SQLite database (or cannot be opened) is a RegistryError naming it."""
        try:
            # isolation_level=None: we issue BEGIN/COMMIT ourselves
            connection = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)
        except sqlite3.Error as error:
            raise self._unusable(error) from error
        connection.row_factory = sqlite3.Row
        try:
            connection.execute(f"PRAGMA busy_timeout={int(self.timeout * 1000)}")
            yield connection
        except sqlite3.DatabaseError as error:
            if isinstance(error, sqlite3.OperationalError) and "locked" in str(error):
                raise
            raise self._unusable(error) from error
        finally:
            connection.close()

    def _unusable(self, error: sqlite3.Error) -> RegistryError:
        return RegistryError(
            f"The registry {self.path} cannot be used ({error}): it is not a forecaster registry database, or it is "
            "damaged. Point --registry (or FORECASTER_REGISTRY) at the right file, or restore it from a backup."
        )

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction holding the database's write lock from its start (``BEGIN IMMEDIATE``)."""
        with self._connect() as connection:
            connection.execute("BEGIN IMMEDIATE")
            try:
                yield connection
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")

    @staticmethod
    def _ensure_group(connection: sqlite3.Connection, group: str, description: str = "") -> None:
        if not group or "/" in group:
            raise RegistryError(f"Invalid model package group name {group!r}: use letters, digits and '-'.")
        connection.execute(
            "INSERT OR IGNORE INTO model_groups (name, description, created_at) VALUES (?, ?, ?)",
            (group, description, _now()),
        )

    @staticmethod
    def _require_group(connection: sqlite3.Connection, group: str) -> None:
        if connection.execute("SELECT 1 FROM model_groups WHERE name = ?", (group,)).fetchone() is None:
            raise RegistryError(
                f"Model package group {group!r} does not exist. Register a model in it first "
                "(`forecaster registry list` shows the groups)."
            )

    @staticmethod
    def _version(row: sqlite3.Row) -> ModelVersion:
        return ModelVersion(
            group=row["group_name"],
            version=row["version"],
            status=ApprovalStatus(row["status"]),
            created_at=dt.datetime.fromisoformat(row["created_at"]),
            model_data_url=row["model_data_url"],
            image_uri=row["image_uri"],
            metrics=json.loads(row["metrics"]),
            baselines=json.loads(row["baselines"]),
            lineage=json.loads(row["lineage"]),
            identifier=f"{row['group_name']}/{row['version']}",
            description=row["description"],
            approval_description=row["approval_description"],
        )

    def create_group(self, group: str, description: str = "") -> None:
        """Create model package group ``group`` if it does not exist yet."""
        with self._write() as connection:
            self._ensure_group(connection, group, description)

    def list_groups(self) -> list[str]:
        """Return the group names, sorted."""
        with self._connect() as connection:
            return [row["name"] for row in connection.execute("SELECT name FROM model_groups ORDER BY name")]

    def _register(self, entry: Registration) -> ModelVersion:
        """Store the group's next version; the number is allocated under the write lock."""
        group = entry.group
        with self._write() as connection:
            self._ensure_group(connection, group)
            (latest,) = connection.execute(
                "SELECT COALESCE(MAX(version), 0) FROM model_versions WHERE group_name = ?", (group,)
            ).fetchone()
            created = _now()
            connection.execute(
                "INSERT INTO model_versions (group_name, version, status, created_at, model_data_url, image_uri, "
                "metrics, baselines, lineage, description) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    group,
                    latest + 1,
                    entry.status.value,
                    created,
                    entry.model_data_url,
                    entry.image_uri,
                    json.dumps(entry.metrics),
                    json.dumps(entry.baselines),
                    json.dumps(entry.lineage),
                    entry.description,
                ),
            )
            connection.execute(
                "INSERT INTO status_changes (group_name, version, status, changed_at) VALUES (?, ?, ?, ?)",
                (group, latest + 1, entry.status.value, created),
            )
            row = connection.execute(
                "SELECT * FROM model_versions WHERE group_name = ? AND version = ?", (group, latest + 1)
            ).fetchone()
        return self._version(row)

    def list_versions(self, group: str, status: ApprovalStatus | str | None = None) -> list[ModelVersion]:
        """Return the versions of ``group``, newest created first."""
        query, args = "SELECT * FROM model_versions WHERE group_name = ?", [group]
        if status is not None:
            query += " AND status = ?"
            args.append(ApprovalStatus.parse(status).value)
        with self._connect() as connection:
            self._require_group(connection, group)
            rows = connection.execute(f"{query} {_NEWEST_FIRST}", args).fetchall()
        return [self._version(row) for row in rows]

    def get(self, group: str, version: int) -> ModelVersion:
        """Return one version."""
        with self._connect() as connection:
            self._require_group(connection, group)
            row = connection.execute(
                "SELECT * FROM model_versions WHERE group_name = ? AND version = ?", (group, int(version))
            ).fetchone()
        if row is None:
            raise RegistryError(f"Model package group {group!r} has no version {version}.")
        return self._version(row)

    def set_status(self, group: str, version: int, status: ApprovalStatus | str, note: str = "") -> ModelVersion:
        """Change the approval status of a version (recorded in ``status_changes``)."""
        status = ApprovalStatus.parse(status)
        with self._write() as connection:
            self._require_group(connection, group)
            updated = connection.execute(
                "UPDATE model_versions SET status = ?, approval_description = ? WHERE group_name = ? AND version = ?",
                (status.value, note, group, int(version)),
            ).rowcount
            if not updated:
                raise RegistryError(f"Model package group {group!r} has no version {version}.")
            connection.execute(
                "INSERT INTO status_changes (group_name, version, status, changed_at, note) VALUES (?, ?, ?, ?, ?)",
                (group, int(version), status.value, _now(), note),
            )
        return self.get(group, version)

    def history(self, group: str, version: int) -> list[tuple[str, str, str]]:
        """Return ``(status, changed_at, note)`` of every status change of a version, oldest first."""
        with self._connect() as connection:
            rows = connection.execute(
                "SELECT status, changed_at, note FROM status_changes WHERE group_name = ? AND version = ? "
                "ORDER BY rowid",
                (group, int(version)),
            ).fetchall()
        return [tuple(row) for row in rows]

    def latest_approved(self, group: str) -> ModelVersion:
        """Return the newest created approved version."""
        with self._connect() as connection:
            self._require_group(connection, group)
            row = connection.execute(
                f"SELECT * FROM model_versions WHERE group_name = ? AND status = ? {_NEWEST_FIRST} LIMIT 1",
                (group, ApprovalStatus.APPROVED.value),
            ).fetchone()
        if row is None:
            raise no_approved(group)
        return self._version(row)
