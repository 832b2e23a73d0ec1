"""The scale-out queue: Redis + RQ, selected by `TLDRLAB_QUEUE_URL=redis://...`.

Jobs are `tldrlab.service.queue.rq.rq_entry(run_id)` serialised as JSON (never pickle). Workers run RQ's
in-process `SimpleWorker` so that SIGTERM reaches the training loop as a preemption request (checkpoint,
requeue, exit) instead of RQ's default "finish the whole job first".

A lane (a sweep run's trials, `queue.base`) is an RQ queue of its own (`lane_queue_name`), which only that
sweep's workers listen to, with their own scheduler moving its delayed retries. A lane's job is put on the
queue as well, for the home's other workers: two deliveries of one run, of which the run's claim lets one
execute it (the other finds it claimed, or finished).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from tldrlab.config import Settings, get_settings
from tldrlab.errors import ServiceUnavailableError
from tldrlab.runs import preempt
from tldrlab.service.queue.base import JobHandler
from tldrlab.service.redis_outage import (
    RedisOutage,
    every_backoff,
    outage_retry,
    redis_client,
    unreachable_reason,
)

log = logging.getLogger("tldrlab.worker")

JOB_FUNCTION = "tldrlab.service.queue.rq.rq_entry"
_RQ_HANDLER: list[JobHandler] = []
"""The handler of this process's worker (set by `work`), which `rq_entry` hands each run id to."""


def rq_entry(run_id: str) -> None:
    """What an RQ job calls (by name, JSON-serialised): hand the run id to this process's worker."""
    if not _RQ_HANDLER:
        raise RuntimeError("rq_entry runs only inside `tldrlab worker`")
    _RQ_HANDLER[0](run_id)


QUEUE_NAME = "tldrlab-runs"


def lane_queue_name(lane: str, queue_name: str = QUEUE_NAME) -> str:
    """The RQ queue of a lane (a sweep run's trials)."""
    return f"{queue_name}.sweep.{lane}"


def _redis_errors() -> tuple[type[BaseException], ...]:
    import redis

    return (redis.RedisError, OSError)


def _worker_outage() -> RedisOutage:
    return RedisOutage(log, f"the worker keeps trying, {every_backoff()}", "the worker carries on")


def _outage_retry(give_up: Callable[[], bool]) -> Any:
    """The worker's connections' retry (`redis_outage.outage_retry`): a command waits out a Redis outage,
    logged once, until Redis answers or `give_up()` (the worker is stopping: its last writes to Redis are
    not worth waiting for, and RQ's record of a worker expires by itself).

    RQ's worker retries only its wait for a job (`dequeue_job_and_maintain_ttl`): any other Redis command it
    sends (its registry cleaning, its heartbeat after a job, the job's own bookkeeping) failing in an outage
    made it quit, and its `teardown` then raised the same error, killing the `tldrlab worker` process. With
    this on the worker's connections, an outage of any length is a pause."""
    from rq.exceptions import StopRequested

    def stopping(error: Exception) -> BaseException | None:
        if threading.current_thread() is not threading.main_thread():
            return None  # RQ's pubsub thread: its handler expects connection errors, and stops
        # RQ's loop (the main thread) gets RQ's stop, not the connection error: its wait for a job retries a
        # connection error with its own backoff, for good. The stop RQ's signal handler raised may not have
        # reached that loop: any code it landed in that catches Exception kept it (tldrlab's log handlers
        # let it through: `logs.raised_by_a_signal_handler`).
        return StopRequested()

    return outage_retry(_worker_outage(), give_up, stopping)


def _dequeue_read_timeout_s() -> float:
    """How long the worker's own connection waits for an answer: longer than RQ's wait for a job. RQ blocks
    in BLPOP on that connection for up to its `dequeue_timeout` (its worker TTL less 15 s: minutes), and a
    read timeout below that (`redis_timeout_s`, a second) would end every idle wait in a timeout. This is
    RQ's own `connection_timeout` (dequeue + 10 s), which RQ's constructor sets where it finds less; set
    here beforehand so the worker does not depend on that (tests/service/test_rq_private_api.py checks
    both agree). A hung Redis holds the worker's other commands that long too: they wait out any outage
    anyway (`_outage_retry`), and the worker's maintenance goes through the queue's bounded client."""
    from rq.defaults import DEFAULT_WORKER_TTL

    return float(max(1, DEFAULT_WORKER_TTL - 15) + 10)


def _surviving_scheduler_class() -> type[Any]:
    """RQ's scheduler (the process that moves delayed jobs, such as a transient failure's retry, onto the
    queue) with a loop that outlives Redis errors.

    RQ's own died on the first one, and only the worker's maintenance pass, every ten minutes, started it
    again: after a Redis outage of seconds, every delayed retry waited those minutes. This one retries every
    `interval` seconds until Redis answers, then carries on; the lock it held is refreshed, or taken again
    where a restarted Redis lost it (`RQScheduler.heartbeat`)."""
    import redis
    from rq.scheduler import RQScheduler

    class SurvivingScheduler(RQScheduler):
        def work(self) -> None:
            warned_at = float("-inf")
            while True:
                try:
                    super().work()  # returns once a stop is requested
                    return
                except (redis.ConnectionError, redis.TimeoutError) as exc:
                    if self._stop_requested:
                        return  # its locks expire with their TTL
                    if time.monotonic() - warned_at >= 60:  # a line a minute, not one a retry
                        warned_at = time.monotonic()
                        self.log.warning(
                            "scheduler: Redis is unreachable (%s): retrying every %ss",
                            unreachable_reason(exc),
                            self.interval,
                        )
                    time.sleep(self.interval)

    return SurvivingScheduler


def _preempting_worker_class(
    on_force_stop: Callable[[int], None] | None, scheduler_connection: Any = None, worker_id: str = "rq"
) -> type[Any]:
    """RQ's in-process `SimpleWorker` whose SIGTERM preempts the running job, whose second signal leaves the
    run to be resumed (`on_force_stop`), and whose scheduler survives a Redis outage, on
    `scheduler_connection` (default: the worker's). `_start_scheduler` is
    RQ's private method, called by RQ's `work` with its arguments by position: pyproject.toml pins rq to the
    versions it is checked against, and tests/service/test_rq_private_api.py fails when RQ renames it or
    changes its parameters."""
    from rq.defaults import DEFAULT_LOGGING_DATE_FORMAT, DEFAULT_LOGGING_FORMAT
    from rq.worker import SimpleWorker

    class PreemptingWorker(SimpleWorker):
        def request_stop(self, signum: Any, frame: Any) -> None:
            # the line the SQLite queue's worker says too: RQ's own is a debug line, so a worker's console
            # showed nothing between the first signal and the end of the run's step
            log.warning(f"worker {worker_id} got signal {signum}: stopping after the current step")
            preempt.request_stop(signum)  # the running job checkpoints and hands the run back
            super().request_stop(signum, frame)

        def request_force_stop(self, signum: int, frame: Any) -> None:
            # RQ's cold shutdown raises SystemExit inside the job, which would record the run as failed;
            # `on_force_stop` leaves it to be resumed instead. RQ's one-second duplicate rule still holds.
            if on_force_stop is not None and self._shutdown_requested_date is not None:
                from rq.utils import now

                if (now() - self._shutdown_requested_date).total_seconds() >= 1:
                    on_force_stop(signum)
            super().request_force_stop(signum, frame)

        def _start_scheduler(
            self,
            burst: bool = False,
            logging_level: str | None = "INFO",
            date_format: str = DEFAULT_LOGGING_DATE_FORMAT,
            log_format: str = DEFAULT_LOGGING_FORMAT,
        ) -> None:
            # RQ's own, with a scheduler that survives a Redis outage (`_surviving_scheduler_class`)
            self.scheduler = _surviving_scheduler_class()(
                self.queues,
                connection=scheduler_connection if scheduler_connection is not None else self.connection,
                logging_level=logging_level if logging_level is not None else self.log.level,
                date_format=date_format,
                log_format=log_format,
                serializer=self.serializer,
            )
            self.scheduler.acquire_locks()
            if not self.scheduler.acquired_locks:
                return  # another worker's scheduler holds the queue
            if not burst:
                self.scheduler.start()
                return
            try:  # burst: move the jobs that are due now, in this process
                self.scheduler.register_birth()
                self.scheduler.enqueue_scheduled_jobs()
            finally:
                self.scheduler.release_locks()
                self.scheduler.register_death()

    return PreemptingWorker


class RqQueue:
    name = "rq"

    def __init__(self, url: str, *, queue_name: str = QUEUE_NAME, settings: Settings | None = None) -> None:
        from rq import Queue
        from rq.serializers import JSONSerializer

        self.url = url
        self.settings = settings or get_settings()
        # bounded (`redis_client`): against a Redis that does not answer, `POST /runs` answers 503 and a
        # worker's maintenance pass moves on within `redis_outage.call_bound_s`, instead of hanging
        self.redis = redis_client(url, self.settings)
        self.queue = Queue(queue_name, connection=self.redis, serializer=JSONSerializer)
        # this client's outage (the API's enqueueing, a worker's reconcile passes), logged once
        self.outage = RedisOutage(
            log, "nothing is put on the queue or looked up there (each use tries again)", "the queue is back"
        )

    def ping(self) -> None:
        try:
            self.redis.ping()
        except _redis_errors() as exc:
            raise ServiceUnavailableError(
                f"the job queue (Redis) is unreachable: {unreachable_reason(exc)}"
            ) from exc

    def _queue_of(self, lane: str | None) -> Any:
        from rq import Queue
        from rq.serializers import JSONSerializer

        if lane is None:
            return self.queue
        return Queue(lane_queue_name(lane, self.queue.name), connection=self.redis, serializer=JSONSerializer)

    def enqueue(self, run_id: str, *, delay_s: float = 0.0, lane: str | None = None) -> None:
        # each delivery gets a fresh job id (`run_id--xxxxxxxx`, below); the run id is the key
        options: dict[str, Any] = {
            "job_timeout": -1,  # training can take days; cancellation goes through the registry
            "result_ttl": 3600,
            "failure_ttl": 7 * 86400,
            "description": f"run {run_id}",
        }
        try:
            with self.outage.asking("cannot enqueue"):
                for queue in (self.queue,) if lane is None else (self._queue_of(lane), self.queue):
                    job_options = {**options, "job_id": f"{run_id}--{uuid.uuid4().hex[:8]}"}
                    if delay_s > 0:
                        queue.enqueue_in(timedelta(seconds=delay_s), JOB_FUNCTION, run_id, **job_options)
                    else:
                        queue.enqueue(JOB_FUNCTION, run_id, **job_options)
        except _redis_errors() as exc:
            raise ServiceUnavailableError(f"cannot enqueue: Redis refused it ({type(exc).__name__})") from exc

    def depth(self) -> int:
        try:
            with self.outage.asking("cannot count the queue"):
                return int(self.queue.count)
        except _redis_errors() as exc:
            raise ServiceUnavailableError(f"cannot count the queue: {type(exc).__name__}") from exc

    def drop_lane(self, lane: str) -> None:
        """Delete the lane's queue, its jobs waiting or delayed (each has its copy on the queue) and RQ's
        records of its jobs: left behind, a sweep's lane kept the jobs of the trials it executed in its own
        process, and of those its workers were stopped in, in Redis for good, and RQ's records of the jobs
        its workers ran (no worker of the lane comes back to clean them)."""
        try:
            with self.outage.asking("cannot drop a sweep's queue"):
                queue = self._queue_of(lane)
                delayed = queue.scheduled_job_registry
                for job_id in delayed.get_job_ids():
                    delayed.remove(job_id, delete_job=True)
                queue.delete(delete_jobs=True)
                # the records only (a finished or failed job's own key expires with its ttl)
                records = (
                    queue.started_job_registry,
                    queue.finished_job_registry,
                    queue.failed_job_registry,
                    queue.deferred_job_registry,
                    queue.canceled_job_registry,
                )
                self.redis.delete(*(record.key for record in records), queue.intermediate_queue_key)
        except _redis_errors() as exc:
            raise ServiceUnavailableError(f"cannot drop a sweep's queue: {type(exc).__name__}") from exc

    def pending_run_ids(self) -> set[str]:
        """Those of the queue (a lane's are there too, `enqueue`)."""
        from rq.registry import ScheduledJobRegistry, StartedJobRegistry

        try:
            with self.outage.asking("cannot list the queue's jobs"):
                job_ids = [
                    *self.queue.get_job_ids(),
                    *ScheduledJobRegistry(queue=self.queue).get_job_ids(),
                    *StartedJobRegistry(queue=self.queue).get_job_ids(),
                ]
        except _redis_errors() as exc:
            raise ServiceUnavailableError(f"cannot list the queue's jobs: {type(exc).__name__}") from exc
        return {job_id.rpartition("--")[0] or job_id for job_id in job_ids}

    def extend_lease(self, run_id: str, worker_id: str) -> None:
        return None  # RQ keeps its own worker heartbeats; run liveness is the registry heartbeat

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
        from rq import Queue
        from rq.exceptions import StopRequested
        from rq.serializers import JSONSerializer

        _RQ_HANDLER[:] = [handler]
        # The worker's own connection, which waits out a Redis outage (`_outage_retry`); its scheduler, a
        # process of its own that survives outages in its loop and must stop when told, keeps this queue's.
        connection = redis_client(
            self.url,
            self.settings,
            read_timeout_s=_dequeue_read_timeout_s(),  # it blocks for a job for minutes
            retry=_outage_retry(should_stop),
        )
        worker_class = _preempting_worker_class(
            on_force_stop, scheduler_connection=self.redis, worker_id=worker_id
        )
        rq_worker = worker_class(
            [Queue(self._queue_of(lane).name, connection=connection, serializer=JSONSerializer)],
            connection=connection,
            serializer=JSONSerializer,
            name=f"{worker_id}.{uuid.uuid4().hex[:4]}",
        )
        stopped_in_outage: tuple[type[BaseException], ...] = (*_redis_errors(), StopRequested)
        try:
            rq_worker.work(burst=burst, with_scheduler=True, logging_level="WARNING")
        except stopped_in_outage as exc:  # StopRequested: its teardown's, from `_outage_retry`
            if not should_stop():
                raise
            # stopped during an outage: RQ could not record the worker's death; its record expires by itself
            log.warning(f"worker stopped while Redis was unreachable ({type(exc).__name__})")
