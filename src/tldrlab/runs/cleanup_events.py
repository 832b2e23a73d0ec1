"""Cleanup events: one structured record per thing retention did, would do (dry run) or failed to do.

    record_event(CleanupEvent(type="cleanup_completed", target=run_id, action="delete", bytes_freed=..., ...))
    recent_events(limit=50)       # newest first: `GET /cleanup/events`, the runs page's cleanup lines

Types: `cleanup_dry_run` (what a pass would have deleted), `cleanup_completed`, `cleanup_failed` (with the
error). Each names its target (a run id, or `cache`), the run's kind, the action (`delete`: directory and
registry row; `clean`: the directory only, its verified archive kept in the file store; `checkpoints`: old
step checkpoints inside a kept run; `cache`: cache files), the bytes freed and files deleted (measured on
disk just before deleting), and why. Events are rows of `cleanup_events` in the home database and JSON log
lines of the `tldrlab.cleanup` logger, so they outlive the runs they describe.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from tldrlab.config import Settings, get_settings
from tldrlab.runs.db import Database, connect, migrate

log = logging.getLogger("tldrlab.cleanup")

EventType = Literal["cleanup_dry_run", "cleanup_completed", "cleanup_failed"]
Action = Literal["delete", "clean", "checkpoints", "cache"]

MIGRATIONS: list[list[str]] = [
    [
        """CREATE TABLE IF NOT EXISTS cleanup_events (
            id TEXT PRIMARY KEY,
            at DOUBLE PRECISION NOT NULL,
            type TEXT NOT NULL,
            target TEXT NOT NULL,
            kind TEXT,
            action TEXT NOT NULL,
            bytes_freed BIGINT NOT NULL,
            files_deleted BIGINT NOT NULL,
            reason TEXT,
            error TEXT
        )""",
        "CREATE INDEX IF NOT EXISTS cleanup_events_at ON cleanup_events (at)",
    ]
]


@dataclass
class CleanupEvent:
    """One cleanup action and its outcome (see the module docstring)."""

    type: EventType
    target: str
    """A run id, or `cache`."""
    action: Action
    bytes_freed: int = 0
    """Bytes freed (a dry run: that would be freed)."""
    files_deleted: int = 0
    kind: str | None = None
    """The run's kind."""
    reason: str | None = None
    error: str | None = None
    at: float = field(default_factory=time.time)
    id: str = field(default_factory=lambda: uuid.uuid4().hex)

    @property
    def run_id(self) -> str | None:
        return None if self.action == "cache" else self.target

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "run_id": self.run_id}


def _db(settings: Settings | None = None) -> Database:
    settings = settings or get_settings()
    settings.ensure_home()
    db = connect(settings.resolved_database_url)
    migrate(db, "cleanup_events", MIGRATIONS)
    return db


def record_event(event: CleanupEvent, settings: Settings | None = None) -> CleanupEvent:
    """Store the event and log it (level WARNING for failures)."""
    _db(settings).execute(
        "INSERT INTO cleanup_events (id, at, type, target, kind, action, bytes_freed, files_deleted, reason, "
        "error) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            event.id,
            event.at,
            event.type,
            event.target,
            event.kind,
            event.action,
            event.bytes_freed,
            event.files_deleted,
            event.reason,
            event.error,
        ),
    )
    level = logging.WARNING if event.type == "cleanup_failed" else logging.INFO
    log.log(level, f"{event.type}: {event.action} {event.target}", extra={"fields": event.as_dict()})
    return event


def recent_events(limit: int = 50, settings: Settings | None = None) -> list[CleanupEvent]:
    """The newest events first."""
    rows = _db(settings).query("SELECT * FROM cleanup_events ORDER BY at DESC LIMIT ?", (limit,))
    return [
        CleanupEvent(
            type=row["type"],
            target=row["target"],
            action=row["action"],
            bytes_freed=int(row["bytes_freed"]),
            files_deleted=int(row["files_deleted"]),
            kind=row["kind"],
            reason=row["reason"],
            error=row["error"],
            at=float(row["at"]),
            id=row["id"],
        )
        for row in rows
    ]
