"""The embedded queue: a `jobs` table in the home database (SQLite by default; PostgreSQL works too).

One row per run id (enqueueing twice keeps one job: dedupe). A worker claims a due job by leasing it with
a compare-and-set; the worker's heartbeat extends the lease, so a job whose worker died becomes claimable
again once the lease expires. `available_at` delays retries (exponential backoff). A lane (a sweep run's
trials) is no column of its own: its jobs are those whose run's parent is the sweep run, in the registry's
`runs` table of the same database, which a sweep that continues an earlier sweep's trial makes its parent.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from tldrlab.runs.db import Database, connect, migrate
from tldrlab.service.queue.base import JobHandler

MIGRATIONS: list[list[str]] = [
    [
        """CREATE TABLE IF NOT EXISTS jobs (
            run_id TEXT PRIMARY KEY,
            state TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            enqueued_at DOUBLE PRECISION NOT NULL,
            available_at DOUBLE PRECISION NOT NULL,
            lease_owner TEXT,
            lease_expires_at DOUBLE PRECISION
        )""",
        "CREATE INDEX IF NOT EXISTS jobs_due ON jobs (state, available_at)",
    ]
]
_IN_LANE = " AND run_id IN (SELECT id FROM runs WHERE parent_id = ?)"
_DUE = "((state = 'queued' AND available_at <= ?) OR (state = 'leased' AND lease_expires_at < ?))"


class SqliteQueue:
    """Durable queue over the tldrlab database; safe across processes (SQLite write lock / PG rows)."""

    name = "sqlite"

    def __init__(self, url: str, *, lease_s: float = 60.0) -> None:
        self.db: Database = connect(url)
        self.lease_s = lease_s
        migrate(self.db, "jobs", MIGRATIONS)

    def enqueue(self, run_id: str, *, delay_s: float = 0.0, lane: str | None = None) -> None:
        # `lane` is the run's parent in the registry already, which `claim` reads
        now = time.time()
        self.db.execute(
            "INSERT INTO jobs (run_id, state, enqueued_at, available_at) VALUES (?, 'queued', ?, ?) "
            "ON CONFLICT (run_id) DO UPDATE SET state = 'queued', available_at = excluded.available_at, "
            "lease_owner = NULL, lease_expires_at = NULL",
            (run_id, now, now + delay_s),
        )

    def ping(self) -> None:
        self.db.query("SELECT 1 AS ok")

    def depth(self) -> int:
        row = self.db.query_one("SELECT COUNT(*) AS n FROM jobs WHERE state = 'queued'")
        return int(row["n"]) if row else 0

    def claim(self, worker_id: str, lane: str | None = None) -> str | None:
        """Lease the oldest due job to `worker_id` (with `lane`, of the runs whose parent is that sweep run);
        None when nothing is due."""
        now = time.time()
        in_lane, lane_params = ("", ()) if lane is None else (_IN_LANE, (lane,))
        with self.db.transaction():
            row = self.db.query_one(
                f"SELECT run_id FROM jobs WHERE {_DUE}{in_lane} ORDER BY available_at, enqueued_at LIMIT 1",
                (now, now, *lane_params),
            )
            if row is None:
                return None
            changed = self.db.execute(
                "UPDATE jobs SET state = 'leased', lease_owner = ?, lease_expires_at = ?, "
                "attempts = attempts + 1 "
                f"WHERE run_id = ? AND {_DUE}",
                (worker_id, now + self.lease_s, row["run_id"], now, now),
            )
        return str(row["run_id"]) if changed == 1 else None

    def extend_lease(self, run_id: str, worker_id: str) -> None:
        self.db.execute(
            "UPDATE jobs SET lease_expires_at = ? WHERE run_id = ? AND state = 'leased' AND lease_owner = ?",
            (time.time() + self.lease_s, run_id, worker_id),
        )

    def ack(self, run_id: str, worker_id: str) -> None:
        """The worker is done with the job (whatever the outcome): remove it unless requeued meanwhile."""
        self.db.execute(
            "DELETE FROM jobs WHERE run_id = ? AND state = 'leased' AND lease_owner = ?", (run_id, worker_id)
        )

    def drop_lane(self, lane: str) -> None:
        return None  # a lane is the runs' parents, not jobs of its own

    def pending_run_ids(self) -> set[str]:
        return {str(row["run_id"]) for row in self.db.query("SELECT run_id FROM jobs")}

    def job_state(self, run_id: str) -> str | None:
        row = self.db.query_one("SELECT state FROM jobs WHERE run_id = ?", (run_id,))
        return str(row["state"]) if row else None

    def work(
        self,
        handler: JobHandler,
        *,
        worker_id: str,
        should_stop: Callable[[], bool],
        burst: bool = False,
        poll_s: float = 0.5,
        on_force_stop: Callable[[int], None] | None = None,
        lane: str | None = None,
    ) -> None:
        while not should_stop():
            run_id = self.claim(worker_id, lane)
            if run_id is None:
                if burst:
                    return
                time.sleep(poll_s)
                continue
            try:
                handler(run_id)
            finally:
                self.ack(run_id, worker_id)
