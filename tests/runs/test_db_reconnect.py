"""`runs.db.Database` on PostgreSQL after the server dropped its connection (restarted, failed over,
pg_terminate_backend): it opens a new one instead of failing every later statement, without sending a write
twice or finishing half a transaction on the new connection."""

from __future__ import annotations

import psycopg
import pytest

from tldrlab.errors import ServiceUnavailableError
from tldrlab.runs.db import Database, connect


def drop(url: str, pid: int) -> None:
    with psycopg.connect(url, autocommit=True) as admin:
        assert admin.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone() == (True,)


def backend(db: Database) -> int:
    return int(db.query("SELECT pg_backend_pid() AS pid")[0]["pid"])


def test_a_dropped_connection_is_opened_again_with_its_settings(postgres_url: str) -> None:
    db = connect(postgres_url, lock_wait_s=2.5)
    db.execute("CREATE TABLE items (n INTEGER)")
    db.on_connect(lambda conn: conn.execute("SET application_name = 'tldrlab-test'"))

    drop(postgres_url, backend(db))
    # a read is sent again on a new connection, which has the session's settings again
    assert db.query("SELECT current_setting('application_name') AS a")[0]["a"] == "tldrlab-test"
    assert db.query("SELECT current_setting('lock_timeout') AS t")[0]["t"] == "2500ms"

    drop(postgres_url, backend(db))
    # a write is not sent twice (had it been done, a retry would insert it again): a retryable error
    with pytest.raises(ServiceUnavailableError, match="lost the connection to PostgreSQL"):
        db.execute("INSERT INTO items VALUES (1)")
    db.execute("INSERT INTO items VALUES (2)")  # the next statement gets a new connection
    assert db.query("SELECT n FROM items") == [{"n": 2}]

    # a transaction whose connection is lost is not finished on a new one: nothing of it is kept
    with pytest.raises(ServiceUnavailableError), db.transaction():
        db.execute("INSERT INTO items VALUES (3)")
        drop(postgres_url, backend(db))
        db.execute("INSERT INTO items VALUES (4)")
    assert db.query("SELECT n FROM items ORDER BY n") == [{"n": 2}]

    # a read snapshot is read again on a new connection, whether the connection was lost before it or in it
    drop(postgres_url, backend(db))
    assert db.read_snapshot(lambda: db.query("SELECT n FROM items")) == [{"n": 2}]
    reads = []

    def read() -> list[dict[str, object]]:
        reads.append(backend(db))
        if len(reads) == 1:
            drop(postgres_url, reads[0])
        return db.query("SELECT n, current_setting('transaction_isolation') AS isolation FROM items")

    assert db.read_snapshot(read) == [{"n": 2, "isolation": "repeatable read"}]
    assert len(reads) == 2 and reads[0] != reads[1]

    db.close()
    with pytest.raises(psycopg.OperationalError):  # closed on purpose: not opened again
        db.query("SELECT 1")
