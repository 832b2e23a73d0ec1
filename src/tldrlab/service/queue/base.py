"""The job queue contract: durable delivery of run ids to workers.

A job is only a run id; everything else lives in the run registry and the run directory. Delivery is at
least once: a job may reach two workers (a lease expired, a duplicate enqueue), so workers claim the run
with a compare-and-set on its registry row before doing anything (`tldrlab.service.worker.claim_run`).

A lane is a sweep run's: the jobs of its trials, the only ones the worker processes it starts (`tldrlab
sweep run --workers K`) take. Taking any job, they ran a training waiting in the home (submitted through the
API, `runs submit`) and preempted it when the sweep ended. A trial stays a job of the queue too: any worker
of the home (on any machine, on Redis) may execute it, as before.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

JobHandler = Callable[[str], None]
"""Called by a queue's work loop with one run id; returns when the run is done (or handed back)."""


class JobQueue(Protocol):
    name: str
    """Registry name of the queue kind ("sqlite", "rq")."""

    def enqueue(self, run_id: str, *, delay_s: float = 0.0, lane: str | None = None) -> None:
        """Make the run available to workers after `delay_s` (raises ServiceUnavailableError when down);
        `lane`: the sweep run whose trial it is (`tldrlab.service.worker.lane_of`), whose workers take it."""
        ...

    def ping(self) -> None:
        """Return when the queue answers; raise ServiceUnavailableError otherwise."""
        ...

    def depth(self) -> int:
        """Jobs waiting (not leased)."""
        ...

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
        """Deliver jobs to `handler` until `should_stop()` (or, with `burst`, until the queue is empty);
        with `lane`, only that lane's jobs (a sweep's workers: the sweep run's trials); without one, any.

        `on_force_stop(signum)` is called on a queue library's cold shutdown (a second signal), for queues
        whose library handles signals itself (RQ); the embedded queue leaves signals to the worker."""
        ...

    def drop_lane(self, lane: str) -> None:
        """Forget the lane's own deliveries: its sweep is done with them (their runs stay on the queue, and
        the sweep, run again, puts the ones it continues back on its lane)."""
        ...

    def pending_run_ids(self) -> set[str]:
        """Run ids the queue still holds: waiting, delayed (retry backoff) or being worked on."""
        ...

    def extend_lease(self, run_id: str, worker_id: str) -> None:
        """Tell the queue the worker still holds the job (called by the worker's heartbeat)."""
        ...
