"""A deliberately small SQL layer shared by the run registry, the job queue and the SQLite stores.

`connect(url)` returns a `Database` for `sqlite:///path` or `postgresql://...`. Queries are written with `?`
placeholders and rewritten to `%s` for psycopg. `migrate(db, name, steps)` applies numbered schema steps once,
recorded in `schema_migrations`, so older databases are upgraded in place.

A SQLite write the system refuses for a full disk or the process's file-size limit is a `DiskFullError` or a
`FileTooLargeError` naming the database (`sqlite_refusal`), and a PostgreSQL write its server refuses for a
full disk (SQLSTATE 53100) a `DiskFullError` naming the database by its URL without the password
(`postgres_refusal`), as any other refused write is: one line on the command line, a 507 from the API. Every
store built on `Database` (the run registry, the job queue, the data sets, the sentence stores, the digest
cache, the LVM concept store) gets it here. Either database undoes the statement (or transaction) it was in,
so it keeps everything written before it.
"""

from __future__ import annotations

import logging
import os
import resource
import shutil
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from tldrlab.errors import (
    POSTGRES_DISK_FULL,
    ConfigError,
    DiskFullError,
    FileTooLargeError,
    ServiceUnavailableError,
    WriteRefusedError,
)

T = TypeVar("T")

SEE_SERVER_LOG = "the server log says why"
"""What an API client is told instead of the driver's error, which names the database's host, port, socket
path and user (`public_message`: the API answers it, the server log keeps the whole message)."""


def is_postgres_url(url: str) -> bool:
    return url.startswith(("postgresql://", "postgres://", "postgresql+psycopg://"))


def redact(url: str) -> str:
    """The URL without its password (for manifests and messages)."""
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


SQLITE_HEADER = b"SQLite format 3\x00"
"""The first bytes of every SQLite database file."""


def sqlite_path(url: str) -> Path:
    if not url.startswith("sqlite:///"):
        raise ConfigError(f"not a sqlite URL: {url!r} (expected sqlite:///path/to/file.db)")
    return Path(url[len("sqlite:///") :])


SQLITE_IOERR, SQLITE_FULL = 10, 13
"""SQLite's primary result codes of a write the system refused (the extended code's low byte)."""

TRY_AGAIN = ", then try again (it keeps what it held before)"
"""What a refused write of one of tldrlab's own databases tells the user to do once the cause is fixed: the
database undid the refused statement or transaction alone."""

LARGEST_SQLITE_WRITE = 65536 + 24
"""The most bytes SQLite writes to a file at once: a write-ahead-log frame of its largest page (64 KiB) with
the frame's header."""


def sqlite_refusal(
    exc: sqlite3.Error,
    path: Path,
    doing: str,
    then: str = TRY_AGAIN,
) -> WriteRefusedError | None:
    """The refused write a SQLite error of the database at `path` is, worded (`doing` the database: what it
    was at; `then`: what to do once the cause is fixed), or None for any other error. Besides this module's
    databases, the sweep's Optuna study (SQLAlchemy over sqlite3) is classified here.

    SQLite does not pass the system's errno on: a full disk (ENOSPC) is SQLITE_FULL, "database or disk is
    full", while the file-size limit's EFBIG (`ulimit -f`, RLIMIT_FSIZE) is a plain SQLITE_IOERR_WRITE, "disk
    I/O error", which reached the user as a traceback. The limit is the cause when one of the database's files
    stands within one SQLite write of it: the system cuts a write that crosses it at the limit."""
    code = getattr(exc, "sqlite_errorcode", None)
    if not isinstance(code, int) or code & 0xFF not in (SQLITE_IOERR, SQLITE_FULL):
        return None
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    sizes = [f.stat().st_size for f in _sqlite_files(path) if f.exists()]
    kind: type[WriteRefusedError]
    if limit != resource.RLIM_INFINITY and any(size + LARGEST_SQLITE_WRITE > limit for size in sizes):
        kind = FileTooLargeError
    elif code & 0xFF == SQLITE_FULL or shutil.disk_usage(path.parent).free < LARGEST_SQLITE_WRITE:
        kind = DiskFullError
    else:  # an I/O error of another cause (a failing disk): SQLite's own words
        return None
    error = kind.writing(f"{doing} the database {path}", then)
    error.details["public_message"] = kind.for_clients()  # an API client is told no server path
    return error


def postgres_refusal(
    exc: BaseException, name: str, doing: str, then: str = TRY_AGAIN
) -> WriteRefusedError | None:
    """The refused write a PostgreSQL error (psycopg's, by its `sqlstate`) of the database `name` is, worded
    as `sqlite_refusal` words SQLite's (`name`: its URL without the password; `then`: what to do once the
    cause is fixed); None for any other error. Only disk_full: program_limit_exceeded (54000) is a row, an
    index entry or a statement past one of PostgreSQL's own limits, which no freed space helps."""
    if getattr(exc, "sqlstate", None) != POSTGRES_DISK_FULL:
        return None
    error = DiskFullError.writing(f"{doing} the database {name}", then)
    error.details["public_message"] = DiskFullError.for_clients()  # an API client is told no server address
    return error


def _sqlite_files(path: Path) -> list[Path]:
    """A SQLite database's files: itself, its write-ahead log and shared-memory index, a rollback journal."""
    return [path, *(path.with_name(path.name + suffix) for suffix in ("-wal", "-shm", "-journal"))]


class _SkippedStatementsWarning(logging.Filter):
    """Drops psycopg's warning on leaving a pipeline whose statement failed ("error ignored terminating
    <psycopg.Pipeline [INERROR, pipeline=ON] (user=... database=...) at 0x...>: pipeline aborted").

    psycopg's `executemany` sends its rows in a pipeline: when the server refuses one (a full disk), it skips
    the rest, each answering PipelineAborted, which psycopg logs while the refused row's own error is raised
    (worded here as one line naming the database). It says nothing that error does not, and reached a
    program's stderr beside it (or its log, where it has a logging setup). The warning is logged only while
    an error is raised out of the pipeline; any other error of leaving one is still logged."""

    def filter(self, record: logging.LogRecord) -> bool:
        from psycopg.errors import PipelineAborted

        args = record.args if isinstance(record.args, tuple) else ()
        return not any(isinstance(arg, PipelineAborted) for arg in args)


_SKIPPED_STATEMENTS_WARNING = _SkippedStatementsWarning()


class Database:
    """A connection to SQLite or PostgreSQL with `?` placeholders; safe to share between threads."""

    def __init__(self, url: str, lock_wait_s: float | None = None) -> None:
        """`lock_wait_s`: how long a statement waits for a lock another connection holds before it fails
        (SQLite's busy timeout, PostgreSQL's lock_timeout); by default 30 s on SQLite, unbounded on
        PostgreSQL."""
        self.url = url
        self.is_postgres = is_postgres_url(url)
        self._lock = threading.RLock()
        self._lock_wait_s = lock_wait_s
        self._on_connect: list[Callable[[Any], None]] = []
        self._transactions = 0  # open transactions, read snapshots too (of the thread holding the lock)
        self._closed = False  # by close(): never opened again
        if self.is_postgres:
            self._conn: Any = self._connect_postgres()
        else:
            path = sqlite_path(url)
            path.parent.mkdir(parents=True, exist_ok=True)
            wait_s = 30.0 if lock_wait_s is None else lock_wait_s
            self._conn = self._connect_sqlite(path, wait_s)

    @staticmethod
    def _connect_sqlite(path: Path, wait_s: float) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(path, timeout=wait_s, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
        except sqlite3.OperationalError as exc:
            # SQLite sizes its -shm file even to read: under a small file-size limit, opening fails
            if (refused := sqlite_refusal(exc, path, "opening")) is not None:
                raise refused from exc
            # a home on a read-only mount, or one another user owns: even `runs list` was a traceback
            # ("sqlite3.OperationalError: unable to open database file")
            why = str(exc)
            if not os.access(path.parent, os.W_OK):
                why += (
                    f"; {path.parent} is not writable, and SQLite writes its -wal and -shm files beside the "
                    "database even to read it (give a writable home: --home DIR or TLDRLAB_HOME)"
                )
            raise ServiceUnavailableError(f"cannot open the run registry {path}: {why}") from exc
        conn.execute(f"PRAGMA busy_timeout={round(wait_s * 1000)}")
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    def _connect_postgres(self) -> Any:
        import psycopg

        dsn = self.url.replace("postgresql+psycopg://", "postgresql://")
        logging.getLogger("psycopg").addFilter(_SKIPPED_STATEMENTS_WARNING)  # addFilter adds it once
        try:
            conn = psycopg.connect(dsn, autocommit=True)
            if self._lock_wait_s is not None:
                conn.execute(f"SET lock_timeout = {max(1, round(self._lock_wait_s * 1000))}")
            for prepare in self._on_connect:
                prepare(conn)
        except psycopg.OperationalError as exc:
            raise ServiceUnavailableError(
                f"cannot connect to PostgreSQL: {exc}".strip(),
                public_message=f"cannot connect to PostgreSQL; try again ({SEE_SERVER_LOG})",
            ) from exc
        return conn

    def on_connect(self, prepare: Callable[[Any], None]) -> None:
        """Run `prepare(driver connection)` now and on every new PostgreSQL connection (session settings,
        type adapters such as pgvector's), which a connection opened again after a lost one needs too."""
        with self._lock:
            prepare(self._conn)
            self._on_connect.append(prepare)

    @property
    def connection(self) -> Any:
        """The driver connection (sqlite3 or psycopg), for adapters that must register on it (pgvector):
        register them with `on_connect`, so that a connection opened again has them too."""
        return self._live()

    def _live(self) -> Any:
        """The connection, opened again when PostgreSQL dropped it (a server restarted or failed over, an
        administrator's pg_terminate_backend): every later statement of the process failed ("the connection
        is closed": a 500 for each API request, a worker's heartbeats) until the process restarted. Never
        inside a transaction: its remaining statements would run on their own, outside it."""
        if self.is_postgres and self._conn.closed and not self._closed:  # psycopg: a lost one reads closed
            if self._transactions:
                raise ServiceUnavailableError("lost the connection to PostgreSQL in a transaction; try again")
            self._conn = self._connect_postgres()
        return self._conn

    @contextmanager
    def _lost_connection(self) -> Iterator[None]:
        """A statement failed because the connection was lost: a retryable ServiceUnavailableError (the next
        statement opens a new connection), not the driver's error."""
        if not self.is_postgres:
            yield
            return
        import psycopg

        try:
            yield
        except psycopg.OperationalError as exc:
            if self._closed or not self._conn.closed:
                raise
            raise ServiceUnavailableError(
                f"lost the connection to PostgreSQL ({exc}); try again",
                public_message=f"lost the connection to PostgreSQL; try again ({SEE_SERVER_LOG})",
            ) from exc

    @contextmanager
    def _refused_writes(self) -> Iterator[None]:
        """A statement the system refused to write: SQLite's for a full disk or the file-size limit
        (`sqlite_refusal`, not sqlite3's "disk I/O error"), a PostgreSQL server's for its full disk
        (`postgres_refusal`, not psycopg's DiskFull, which the run layer took for a refused write of the
        run's own directory and a digest stream for an internal error). Either names this database."""
        try:
            yield
        except Exception as exc:
            if self.is_postgres:
                refused = postgres_refusal(exc, redact(self.url), "writing")
            elif isinstance(exc, sqlite3.OperationalError):
                refused = sqlite_refusal(exc, sqlite_path(self.url), "writing")
            else:
                refused = None
            if refused is None:
                raise
            raise refused from exc

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.is_postgres else sql

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run a statement; returns the number of rows it changed."""
        with self._lock, self._lost_connection(), self._refused_writes():
            cur = self._live().execute(self._sql(sql), tuple(params))
            return int(cur.rowcount or 0)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        with self._lock, self._lost_connection(), self._refused_writes():
            if self.is_postgres:
                with self._live().cursor() as cur:
                    cur.executemany(self._sql(sql), [tuple(r) for r in rows])
            else:
                self._conn.executemany(sql, [tuple(r) for r in rows])

    def query(self, sql: str, params: Sequence[Any] = (), *, binary: bool = False) -> list[dict[str, Any]]:
        """The rows of a statement; `binary`: PostgreSQL sends them in its binary format (pgvector then
        loads a vector with np.frombuffer instead of parsing its decimal text)."""
        with self._lock:
            try:
                return self._query(sql, params, binary)
            except ServiceUnavailableError:
                # a read is sent again on a new connection: the first statement after PostgreSQL dropped
                # the connection is where the client learns it (outside a transaction, nothing is undone)
                if self._transactions or sql.lstrip()[:6].upper() != "SELECT":
                    raise
                return self._query(sql, params, binary)

    def _query(self, sql: str, params: Sequence[Any], binary: bool) -> list[dict[str, Any]]:
        with self._lost_connection(), self._refused_writes():
            extra = {"binary": True} if binary and self.is_postgres else {}
            cur = self._live().execute(self._sql(sql), tuple(params), **extra)
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
                # the COMMIT too: work deferred to it (a deferred constraint trigger) may write
                with self._lost_connection(), self._refused_writes(), self._live().transaction():
                    self._transactions += 1
                    try:
                        yield self
                    finally:
                        self._transactions -= 1
            else:
                with self._refused_writes():
                    self._conn.execute("BEGIN IMMEDIATE")
                try:
                    yield self
                    with self._refused_writes():
                        self._conn.execute("COMMIT")
                except BaseException:
                    # A full disk or an I/O error (the file-size limit's) has SQLite roll the transaction back
                    # itself: a ROLLBACK then failed ("no transaction is active"), hiding why. A COMMIT that
                    # failed otherwise (a lock) leaves it open, holding the write lock: rolled back here.
                    if self._conn.in_transaction:
                        self._conn.execute("ROLLBACK")
                    raise

    def read_snapshot(self, read: Callable[[], T]) -> T:
        """`read()` (statements on this database) in one read-only transaction: they all see the database
        as it was at its first statement, and writes other connections commit meanwhile are not seen (nor
        waited for, nor blocked), so several reads make one consistent picture. PostgreSQL: REPEATABLE
        READ, READ ONLY (READ COMMITTED, its default, takes a new snapshot per statement). SQLite: a
        deferred BEGIN, which in WAL mode (every connection here sets it) fixes the snapshot at its first
        read and takes no write lock. Not inside another transaction.

        When PostgreSQL dropped the connection (before or during it), `read` runs once more on a new one,
        as a lone SELECT is sent again by `query`: a read-only transaction leaves nothing to undo."""
        with self._lock:
            try:
                with self._snapshot():
                    return read()
            except ServiceUnavailableError:
                if not self.is_postgres or not self._conn.closed or self._closed or self._transactions:
                    raise
            with self._snapshot():
                return read()

    @contextmanager
    def _snapshot(self) -> Iterator[None]:
        """The read-only transaction of `read_snapshot` (without its retry)."""
        if self.is_postgres:
            with self._lost_connection(), self._live().transaction():
                self._transactions += 1
                try:
                    self._conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                    yield
                finally:
                    self._transactions -= 1
        else:
            self._conn.execute("BEGIN DEFERRED")
            try:
                yield
            finally:
                if self._conn.in_transaction:  # nothing was written: ending it only releases the snapshot
                    self._conn.execute("ROLLBACK")

    def close(self) -> None:
        with self._lock:
            self._closed = True
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
