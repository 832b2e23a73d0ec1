"""The dataset registry: data sets the service may read, one row each in the home database.

A data set is a file kept under `<home>/datasets/<id>/`, recorded with its sha256, size, format and (when
known) record count. API clients bring data with `POST /datasets` (`source` "upload") and name it in run
configs as `dataset:<id>`; other sources (registering a file already on the machine) add rows the same way.
Paths are stored relative to the home, so a home moved or mounted elsewhere keeps working, and never leave
the server.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tldrlab.config import Settings, get_settings
from tldrlab.errors import NotFoundError
from tldrlab.runs.db import Database, connect, migrate

DATASETS_SUBDIR = "datasets"
REF_PREFIX = "dataset:"
"""How a run config names a registered data set: `dataset:<id>`."""

MIGRATIONS: list[list[str]] = [
    [
        """CREATE TABLE IF NOT EXISTS datasets (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            path TEXT NOT NULL,
            sha256 TEXT NOT NULL,
            size_bytes BIGINT NOT NULL,
            format TEXT,
            records BIGINT,
            source TEXT NOT NULL,
            created_at DOUBLE PRECISION NOT NULL,
            extra TEXT
        )""",
        "CREATE INDEX IF NOT EXISTS datasets_sha256 ON datasets (sha256)",
    ]
]


def new_dataset_id() -> str:
    return f"ds-{time.strftime('%Y%m%d', time.gmtime())}-{uuid.uuid4().hex[:10]}"


@dataclass
class DatasetRecord:
    """One registered data set."""

    id: str
    name: str
    """The file name it was uploaded or registered under."""
    path: str
    """Where it is, relative to the home (`datasets/<id>/<name>`)."""
    sha256: str
    size_bytes: int
    source: str
    """How it got here: `upload` (POST /datasets), or another registration path."""
    created_at: float
    format: str | None = None
    """Reader format (tldrlab.data.readers) when detected."""
    records: int | None = None
    """Number of records when counted."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Anything else a source records (free-form JSON)."""

    def location(self, settings: Settings | None = None) -> Path:
        return (settings or get_settings()).home / self.path

    def public(self) -> dict[str, Any]:
        """What API clients see: everything but the server path."""
        data = asdict(self)
        data.pop("path")
        return data


class DatasetRegistry:
    """CRUD over the `datasets` table. Create it with `open_datasets()`."""

    def __init__(self, db: Database) -> None:
        self.db = db
        migrate(db, "datasets", MIGRATIONS)

    def insert(self, record: DatasetRecord) -> None:
        self.db.execute(
            "INSERT INTO datasets (id, name, path, sha256, size_bytes, format, records, source, created_at, "
            "extra) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                record.id,
                record.name,
                record.path,
                record.sha256,
                record.size_bytes,
                record.format,
                record.records,
                record.source,
                record.created_at,
                json.dumps(record.extra),
            ),
        )

    def get(self, dataset_id: str) -> DatasetRecord:
        row = self.db.query_one("SELECT * FROM datasets WHERE id = ?", (dataset_id,))
        if row is None:
            raise NotFoundError(f"no dataset with id {dataset_id!r}")
        return _record(row)

    def list(self, limit: int = 100, offset: int = 0) -> list[DatasetRecord]:
        rows = self.db.query(
            "SELECT * FROM datasets ORDER BY created_at DESC LIMIT ? OFFSET ?", (limit, offset)
        )
        return [_record(r) for r in rows]

    def delete(self, dataset_id: str) -> None:
        self.db.execute("DELETE FROM datasets WHERE id = ?", (dataset_id,))


def _record(row: dict[str, Any]) -> DatasetRecord:
    return DatasetRecord(
        id=row["id"],
        name=row["name"],
        path=row["path"],
        sha256=row["sha256"],
        size_bytes=int(row["size_bytes"]),
        format=row["format"],
        records=None if row["records"] is None else int(row["records"]),
        source=row["source"],
        created_at=float(row["created_at"]),
        extra=json.loads(row["extra"]) if row["extra"] else {},
    )


def datasets_dir(settings: Settings | None = None) -> Path:
    return (settings or get_settings()).home / DATASETS_SUBDIR


def open_datasets(settings: Settings | None = None) -> DatasetRegistry:
    settings = settings or get_settings()
    settings.ensure_home()
    return DatasetRegistry(connect(settings.resolved_database_url))
