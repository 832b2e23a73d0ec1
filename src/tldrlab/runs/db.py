"""A deliberately small SQL layer shared by the run registry, the job queue and the SQLite stores.

`connect(url)` returns a `Database` for `sqlite:///path` or `postgresql://...`. Queries are written with `?`
placeholders and rewritten to `%s` for psycopg. `migrate(db, name, steps)` applies numbered schema steps once,
recorded in `schema_migrations`, so older databases are upgraded in place.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tldrlab.errors import ConfigError, ServiceUnavailableError


def is_postgres_url(url: str) -> bool:
    return url.startswith(("postgresql://", "postgres://", "postgresql+psycopg://"))


def sqlite_path(url: str) -> Path:
    if not url.startswith("sqlite:///"):
        raise ConfigError(f"not a sqlite URL: {url!r} (expected sqlite:///path/to/file.db)")
    return Path(url[len("sqlite:///") :])


class Database:
    """A connection to SQLite or PostgreSQL with `?` placeholders; safe to share between threads."""

    def __init__(self, url: str, lock_wait_s: float | None = None) -> None:
        """`lock_wait_s`: how long a statement waits for a lock another connection holds before it fails
        (SQLite's busy timeout, PostgreSQL's lock_timeout); by default 30 s on SQLite, unbounded on
        PostgreSQL."""
        self.url = url
        self.is_postgres = is_postgres_url(url)
        self._lock = threading.RLock()
        if self.is_postgres:
            import psycopg

            dsn = url.replace("postgresql+psycopg://", "postgresql://")
            try:
                self._conn: Any = psycopg.connect(dsn, autocommit=True)
            except psycopg.OperationalError as exc:
                raise ServiceUnavailableError(f"cannot connect to PostgreSQL: {exc}".strip()) from exc
            if lock_wait_s is not None:
                self._conn.execute(f"SET lock_timeout = {max(1, round(lock_wait_s * 1000))}")
        else:
            path = sqlite_path(url)
            path.parent.mkdir(parents=True, exist_ok=True)
            wait_s = 30.0 if lock_wait_s is None else lock_wait_s
            self._conn = sqlite3.connect(path, timeout=wait_s, isolation_level=None, check_same_thread=False)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute(f"PRAGMA busy_timeout={round(wait_s * 1000)}")
            self._conn.execute("PRAGMA foreign_keys=ON")

    @property
    def connection(self) -> Any:
        """The driver connection (sqlite3 or psycopg), for adapters that must register on it (pgvector)."""
        return self._conn

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.is_postgres else sql

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run a statement; returns the number of rows it changed."""
        with self._lock:
            cur = self._conn.execute(self._sql(sql), tuple(params))
            return int(cur.rowcount or 0)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        with self._lock:
            if self.is_postgres:
                with self._conn.cursor() as cur:
                    cur.executemany(self._sql(sql), [tuple(r) for r in rows])
            else:
                self._conn.executemany(sql, [tuple(r) for r in rows])

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        with self._lock:
            cur = self._conn.execute(self._sql(sql), tuple(params))
            if cur.description is None:
                return []
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def query_one(self, sql: str, params: Sequence[Any] = ()) -> dict[str, Any] | None:
        rows = self.query(sql, params)
        return rows[0] if rows else None

    @contextmanager
    def transaction(self) -> Iterator[Database]:
        """BEGIN ... COMMIT (ROLLBACK on error). SQLite takes the write lock up front (IMMEDIATE)."""
        with self._lock:
            if self.is_postgres:
                with self._conn.transaction():
                    yield self
            else:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    yield self
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    raise
                self._conn.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def connect(url: str, lock_wait_s: float | None = None) -> Database:
    if not (is_postgres_url(url) or url.startswith("sqlite:///")):
        raise ConfigError(f"unsupported database URL {url!r}: use sqlite:///path or postgresql://...")
    return Database(url, lock_wait_s)


def migrate(db: Database, name: str, steps: Sequence[Sequence[str]]) -> int:
    """Apply schema steps `steps[i]` (a list of statements) for version i+1 of component `name`, once each.

    Returns the schema version after migrating. Steps are append-only: never edit a released step.
    An up-to-date schema is seen by reading alone: every process opens its stores through here, and taking
    SQLite's write lock to learn that nothing is to do would wait on (and, past the busy timeout, fail behind)
    any process holding it, such as a worker paused mid-heartbeat.
    """
    if _schema_version(db, name) >= len(steps):
        return len(steps)
    db.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (component TEXT NOT NULL, version INTEGER NOT NULL, "
        "applied_at TEXT NOT NULL, PRIMARY KEY (component, version))"
    )
    with db.transaction():
        if db.is_postgres:  # serialise concurrent migrators on one server
            db.execute("SELECT pg_advisory_xact_lock(hashtext(?))", (f"tldrlab:{name}",))
        row = db.query_one("SELECT MAX(version) AS v FROM schema_migrations WHERE component = ?", (name,))
        current = int(row["v"]) if row and row["v"] is not None else 0
        for version, statements in enumerate(steps, start=1):
            if version <= current:
                continue
            for statement in statements:
                db.execute(statement)
            db.execute(
                "INSERT INTO schema_migrations (component, version, applied_at) VALUES (?, ?, "
                + ("now()::text" if db.is_postgres else "datetime('now')")
                + ")",
                (name, version),
            )
            current = version
    return current


def table_exists(db: Database, name: str) -> bool:
    """Whether table `name` exists (PostgreSQL: on the search path), asked of the catalogue: a query of the
    table itself cannot tell a missing table from a failing database."""
    exists = (
        "SELECT 1 AS present WHERE to_regclass(?) IS NOT NULL"
        if db.is_postgres
        else "SELECT 1 AS present FROM sqlite_master WHERE type = 'table' AND name = ?"
    )
    return db.query_one(exists, (name,)) is not None


def _schema_version(db: Database, name: str) -> int:
    """The version of `name`'s schema recorded in the database, read without a write lock (0: none yet)."""
    if not table_exists(db, "schema_migrations"):
        return 0
    row = db.query_one("SELECT MAX(version) AS v FROM schema_migrations WHERE component = ?", (name,))
    return int(row["v"]) if row and row["v"] is not None else 0
