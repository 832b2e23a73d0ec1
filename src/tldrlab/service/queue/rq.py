"""The scale-out queue: Redis + RQ, selected by `TLDRLAB_QUEUE_URL=redis://...`.

Jobs are `tldrlab.service.queue.rq.rq_entry(run_id)` serialised as JSON (never pickle). Workers run RQ's
in-process `SimpleWorker` so that SIGTERM reaches the training loop as a preemption request (checkpoint,
requeue, exit) instead of RQ's default "finish the whole job first".
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from tldrlab.errors import ServiceUnavailableError
from tldrlab.runs import preempt
from tldrlab.service.queue.base import JobHandler

JOB_FUNCTION = "tldrlab.service.queue.rq.rq_entry"
_RQ_HANDLER: list[JobHandler] = []
"""The handler of this process's worker (set by `work`), which `rq_entry` hands each run id to."""


def rq_entry(run_id: str) -> None:
    """What an RQ job calls (by name, JSON-serialised): hand the run id to this process's worker."""
    if not _RQ_HANDLER:
        raise RuntimeError("rq_entry runs only inside `tldrlab worker`")
    _RQ_HANDLER[0](run_id)


QUEUE_NAME = "tldrlab-runs"


def _redis_errors() -> tuple[type[BaseException], ...]:
    import redis

    return (redis.RedisError, OSError)


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
                            type(exc).__name__,
                            self.interval,
                        )
                    time.sleep(self.interval)

    return SurvivingScheduler


def _preempting_worker_class(on_force_stop: Callable[[int], None] | None) -> type[Any]:
    """RQ's in-process `SimpleWorker` whose SIGTERM preempts the running job, whose second signal leaves the
    run to be resumed (`on_force_stop`), and whose scheduler survives a Redis outage. `_start_scheduler` is
    RQ's private method, called by RQ's `work` with its arguments by position: pyproject.toml pins rq to the
    versions it is checked against, and tests/service/test_rq_private_api.py fails when RQ renames it or
    changes its parameters."""
    from rq.defaults import DEFAULT_LOGGING_DATE_FORMAT, DEFAULT_LOGGING_FORMAT
    from rq.worker import SimpleWorker

    class PreemptingWorker(SimpleWorker):
        def request_stop(self, signum: Any, frame: Any) -> None:
            preempt.request_stop()  # the running job checkpoints and hands the run back
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
                connection=self.connection,
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

    def __init__(self, url: str, *, queue_name: str = QUEUE_NAME) -> None:
        import redis
        from rq import Queue
        from rq.serializers import JSONSerializer

        self.url = url
        self.redis = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=10)
        self.queue = Queue(queue_name, connection=self.redis, serializer=JSONSerializer)

    def ping(self) -> None:
        try:
            self.redis.ping()
        except _redis_errors() as exc:
            raise ServiceUnavailableError(
                f"the job queue (Redis) is unreachable: {type(exc).__name__}"
            ) from exc

    def enqueue(self, run_id: str, *, delay_s: float = 0.0) -> None:
        options: dict[str, Any] = {
            "job_id": f"{run_id}--{uuid.uuid4().hex[:8]}",  # a fresh id per delivery; the run id is the key
            "job_timeout": -1,  # training can take days; cancellation goes through the registry
            "result_ttl": 3600,
            "failure_ttl": 7 * 86400,
            "description": f"run {run_id}",
        }
        try:
            if delay_s > 0:
                self.queue.enqueue_in(timedelta(seconds=delay_s), JOB_FUNCTION, run_id, **options)
            else:
                self.queue.enqueue(JOB_FUNCTION, run_id, **options)
        except _redis_errors() as exc:
            raise ServiceUnavailableError(
                f"cannot enqueue: Redis is unreachable ({type(exc).__name__})"
            ) from exc

    def depth(self) -> int:
        try:
            return int(self.queue.count)
        except _redis_errors() as exc:
            raise ServiceUnavailableError("Redis is unreachable") from exc

    def pending_run_ids(self) -> set[str]:
        from rq.registry import ScheduledJobRegistry, StartedJobRegistry

        try:
            job_ids = [
                *self.queue.get_job_ids(),
                *ScheduledJobRegistry(queue=self.queue).get_job_ids(),
                *StartedJobRegistry(queue=self.queue).get_job_ids(),
            ]
        except _redis_errors() as exc:
            raise ServiceUnavailableError("Redis is unreachable") from exc
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
    ) -> None:
        from rq.serializers import JSONSerializer

        _RQ_HANDLER[:] = [handler]
        rq_worker = _preempting_worker_class(on_force_stop)(
            [self.queue],
            connection=self.redis,
            serializer=JSONSerializer,
            name=f"{worker_id}.{uuid.uuid4().hex[:4]}",
        )
        rq_worker.work(burst=burst, with_scheduler=True, logging_level="WARNING")
