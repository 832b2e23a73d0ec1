"""Workers: take run ids from the queue, claim the run, execute it, record the outcome.

    tldrlab worker                 # one worker on the configured queue (embedded SQLite or Redis + RQ)

A worker
- claims a run with a compare-and-set on its registry row (`claim_run`): a job delivered twice runs once;
- heartbeats the run and its own row from a background thread (a dead worker's runs go stale) and extends
  the queue lease; the same thread turns what the run writes into events for notifiers;
- classes failures: user input (no retry), transient (bounded retries, exponential backoff) or fatal;
- on SIGTERM asks the training loop to stop (`tldrlab.runs.preempt`): the loop finishes the step, writes a
  checkpoint and raises RunPreemptedError; the worker puts the run back on the queue and exits (a run of a
  kind that does not resume starts again from scratch: the runs its attempt started that do not resume
  either end cancelled, not `queued` for good). A second
  SIGTERM (or SIGINT) a second or more later is a hard stop, as in rq: the process exits at once, the run
  stays `running` until its heartbeat goes stale and another worker resumes it from its last checkpoint;
- reconciles on start and periodically: a `running` run whose heartbeat is stale (its worker died) is put
  back on the queue — the job resumes from its last checkpoint — or failed with the reason after
  `max_attempts`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import signal
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import ConfigDict, Field

from tldrlab.config import Settings, get_settings
from tldrlab.configmodel import ConfigModel
from tldrlab.errors import (
    InvalidInputError,
    NotFoundError,
    RunCancelledError,
    RunOwnedError,
    RunPreemptedError,
    TldrlabError,
)
from tldrlab.kinds import kind_names_by_recorded_name, resumes
from tldrlab.launch import (
    end_children_left_behind,
    end_unresumed_children,
    execute,
    left_to_parent,
    settle_inside_parent,
)
from tldrlab.runs import RunRecord, RunRegistry, RunStatus, open_registry, preempt
from tldrlab.runs.db import migrate, table_exists
from tldrlab.runs.ownership import owner_alive
from tldrlab.runs.reconcile import (
    end_children_of_ended_parents,
    orphaned_runs,
    repair_manifests,
    settle_orphan,
    update_manifest,
)
from tldrlab.runs.registry import SUBMITTED_VIA
from tldrlab.runs.retention import settle_finished_run
from tldrlab.service.confine import confine_again
from tldrlab.service.events import EventBus, RunEvent, RunTail, open_bus, queued_event
from tldrlab.service.periodic import check_retention_setting
from tldrlab.service.queue import JobQueue, open_queue
from tldrlab.service.queue.rq import rq_entry  # noqa: F401  RQ jobs queued by older versions call it here
from tldrlab.service.redis_outage import RedisUnreachableError

log = logging.getLogger("tldrlab.worker")

WORKER_MIGRATIONS: list[list[str]] = [
    [
        """CREATE TABLE IF NOT EXISTS workers (
            id TEXT PRIMARY KEY,
            host TEXT NOT NULL,
            pid INTEGER NOT NULL,
            queue TEXT NOT NULL,
            started_at DOUBLE PRECISION NOT NULL,
            heartbeat_at DOUBLE PRECISION NOT NULL,
            current_run TEXT,
            state TEXT NOT NULL
        )"""
    ]
]


class FailureClass(StrEnum):
    """How a failed run is treated by a worker."""

    USER_INPUT = "user_input"  # the request is wrong: retrying cannot help
    TRANSIENT = "transient"  # a backing service hiccup: retry with backoff, a bounded number of times
    FATAL = "fatal"  # a bug or a broken environment: do not retry
    CANCELLED = "cancelled"


def classify_failure(exc: BaseException) -> FailureClass:
    if isinstance(exc, RunCancelledError | KeyboardInterrupt):
        return FailureClass.CANCELLED
    if isinstance(exc, InvalidInputError):
        return FailureClass.USER_INPUT
    if isinstance(exc, TldrlabError) and exc.retryable:
        return FailureClass.TRANSIENT
    if isinstance(exc, ConnectionError | TimeoutError):
        return FailureClass.TRANSIENT
    return FailureClass.FATAL


class WorkerConfig(ConfigModel):
    """How a worker behaves."""

    model_config = ConfigDict(allow_inf_nan=False, extra="forbid")

    heartbeat_s: float = Field(default=2.0, gt=0)
    """Seconds between heartbeats of the worker and its current run."""
    stale_after_s: float = Field(default=30.0, gt=0)
    """A running run whose heartbeat is older than this belongs to a dead worker."""
    reconcile_every_s: float = Field(default=10.0, gt=0)
    """Seconds between reconciliation passes (one always runs at start)."""
    max_attempts: int = Field(default=5, ge=1)
    """Executions of one run before transient failures or worker deaths fail it for good."""
    backoff_base_s: float = Field(default=5.0, ge=0)
    """Delay before the first retry of a transient failure; doubles each attempt."""
    backoff_max_s: float = Field(default=600.0, ge=0)
    """Longest retry delay."""
    poll_s: float = Field(default=0.2, gt=0)
    """Idle sleep between queue polls (embedded queue)."""
    burst: bool = False
    """Exit when the queue is empty instead of waiting for more jobs."""


def live_workers(registry: RunRegistry, stale_after_s: float = WorkerConfig().stale_after_s) -> list[str]:
    """Ids of the workers, anywhere, that have not stopped and heartbeat within `stale_after_s` (a killed one
    counts until then): the ones whose reconcile will requeue a killed run.

    No workers table (no worker ever registered in this database) is no workers. Any other failure (a lost
    connection, a permission) is raised: read as "no workers", it would let a caller settle runs that live
    workers are about to requeue and resume."""
    if not table_exists(registry.db, "workers"):
        return []
    rows = registry.db.query(
        "SELECT id FROM workers WHERE state != 'stopped' AND heartbeat_at >= ?",
        (time.time() - stale_after_s,),
    )
    return [str(row["id"]) for row in rows]


def new_worker_id() -> str:
    return f"{platform.node()}:{os.getpid()}:{uuid.uuid4().hex[:4]}"


def claim_run(registry: RunRegistry, run_id: str, worker_id: str, stale_before: float) -> bool:
    """Compare-and-set a run to `running` for this worker: True only for the one worker that wins.

    Claimable: `queued` runs (not cancelled), and `running` runs whose heartbeat is older than
    `stale_before` and whose owner is dead (nobody holds the run directory's lock: the job resumes from its
    checkpoint). A live owner keeps its run however old its heartbeat (a stopped or busy process).
    """
    try:
        record = registry.get(run_id)
    except NotFoundError:
        return False
    if record.status == RunStatus.RUNNING and owner_alive(record.run_dir):
        return False
    return registry.claim(run_id, worker_id, stale_before)


def lane_of(record: RunRecord) -> str | None:
    """The queue lane a run's job goes to (`queue.base`): a sweep trial's is its sweep run's, whose workers
    alone take it; None (any worker) for every other run."""
    return record.parent_id if record.sweep_trial is not None else None


def retry_delay_s(config: WorkerConfig, attempts: int) -> float:
    """How long a run that failed transiently at its `attempts`-th execution waits before the next one."""
    return min(config.backoff_max_s, config.backoff_base_s * 2 ** max(0, attempts - 1))


def requeue(
    registry: RunRegistry, queue: JobQueue, run_id: str, message: str, *, delay_s: float = 0.0
) -> None:
    """Put a run back to `queued` (after a preemption, a transient failure or a dead worker), on its lane."""
    registry.update(run_id, status=RunStatus.QUEUED, message=message, error_code=None, ended_at=None)
    record = registry.get(run_id)
    update_manifest(record.run_dir, status="queued", message=message, ended_at=None)
    queue.enqueue(run_id, delay_s=delay_s, lane=lane_of(record))


def reconcile(registry: RunRegistry, queue: JobQueue, config: WorkerConfig) -> list[tuple[str, str]]:
    """Requeue (or fail, past `max_attempts`) running runs whose owner died, cancel the queued runs left to a
    parent that ended for good (`end_children_of_ended_parents`), and put back on the queue the API's queued
    runs the queue lost (Redis restarted empty, flushed, failed over)."""
    stale_before = time.time() - config.stale_after_s
    actions = []
    # a stale heartbeat with a live owner (stopped, swapped out, stuck in C) is no orphan: never run it twice
    for record in orphaned_runs(registry, stale_before):
        dead = record.worker or "unknown"
        give_up = record.attempts >= config.max_attempts
        status, error_code = (RunStatus.FAILED, "worker_lost") if give_up else (RunStatus.QUEUED, None)
        message = (
            f"failed: its worker {dead} stopped responding and the run already had {record.attempts} attempts"
            if give_up
            else f"requeued: worker {dead} stopped responding; resuming from the last checkpoint"
        )
        if record.cancel_requested:
            # asked to cancel before its worker died: it ends as asked (requeued, no worker would ever claim
            # it, since a run with a cancel request is not claimable, and it would read `queued` for good)
            status, error_code = RunStatus.CANCELLED, "cancelled"
            message = f"cancelled: its worker {dead} stopped responding after the run was asked to cancel"
        # A run its parent executed within its own execution is the parent's to run again, not the queue's:
        # enqueued, a worker ran it on its own (an experiment's arm trained twice, once for nothing; a
        # training's final evaluation beside the one its resume starts) or raced the parent for it. The rule
        # is the one the views of a home with no worker apply (`reconcile_here`).
        inside = settle_inside_parent(record, f"its worker {dead} stopped responding")
        if inside is not None:
            status, error_code, message = inside.status, inside.error_code, inside.message
        try:
            if not settle_orphan(registry, record, stale_before, status, message, error_code):
                continue  # another worker reconciled it first
        # one run's write refused (an unwritable run directory, the database): raised, it stopped the pass,
        # leaving every other orphan unsettled, and the worker itself at its start, at every restart
        except Exception as exc:
            log.warning(
                f"could not settle run {record.id} whose worker {dead} died: {type(exc).__name__}: {exc}",
                extra={"fields": {"run_id": record.id}},
            )
            if registry.get(record.id).status is not status:
                continue  # the registry refused it: the next pass tries again
            # settled in the registry, its manifest left behind: the run still goes back on the queue
        if status is RunStatus.QUEUED and inside is None:  # one queued for its parent stays off the queue
            queue.enqueue(record.id, lane=lane_of(record))  # a sweep's trial: where its sweep's workers look
        actions.append((record.id, status.value))
    # after the orphans: a parent failed past its attempts above, or ended (deleted) since the last pass,
    # whose runs waiting for it (held for it above, in this pass or an earlier one) nothing would ever run
    ended, refused = end_children_of_ended_parents(registry, left_to_parent)
    actions.extend((run_id, RunStatus.CANCELLED.value) for run_id in ended)
    for run_id, why in refused:
        log.warning(f"could not cancel run {run_id}, left to a parent that ended: {why}")
    # the manifests of runs settled while their run directory refused the write (this pass or an earlier one)
    for run_id, why in repair_manifests(registry):
        log.warning(f"manifest of run {run_id} still lags: {why}", extra={"fields": {"run_id": run_id}})
    return actions + requeue_lost(registry, queue, stale_before)


def requeue_lost(registry: RunRegistry, queue: JobQueue, queued_before: float) -> list[tuple[str, str]]:
    """Enqueue again the runs submitted through the API that wait in the registry (queued since before
    `queued_before`) but are nowhere in the queue. A second delivery of one that is there after all is
    harmless: claiming is a compare-and-set. Runs the CLI created are left alone (they are not the
    queue's: a preempted CLI run waits for `--resume`)."""
    waiting = [r for r in registry.waiting_since(queued_before) if r.tags.get(SUBMITTED_VIA) == "api"]
    if not waiting:
        return []
    pending = queue.pending_run_ids()
    actions = []
    for record in waiting:
        if record.id in pending:
            continue
        queue.enqueue(record.id, lane=lane_of(record))
        log.warning(
            f"run {record.id} was queued but missing from the {queue.name} queue: enqueued again",
            extra={"fields": {"run_id": record.id}},
        )
        actions.append((record.id, "re-enqueued"))
    return actions


ANNOUNCE_WINDOW_S = 7 * 24 * 3600
"""How far back a worker looks for runs whose `queued` event may have reached no notifier, and how long the
announcement of one is remembered (so it is announced once)."""


def announcement(record: RunRecord) -> str:
    """The claim of one queueing of a run: its first, or each time it is put back on the queue after an
    attempt (keyed by the attempts made so far; one key per run announced its first queueing only, so a
    requeued run was never announced again)."""
    return f"queued:{record.id}" if record.attempts == 0 else f"queued:{record.id}:{record.attempts}"


CURRENT_WORKER: ContextVar[Worker | None] = ContextVar("tldrlab_worker", default=None)
"""The worker executing the current run in this thread (a run that executes runs of its own hands them to it
here)."""


@dataclass
class Worker:
    """One worker process's state: its queue, registry, bus and the run it is executing."""

    settings: Settings
    config: WorkerConfig
    queue: JobQueue
    registry: RunRegistry
    bus: EventBus
    worker_id: str = field(default_factory=new_worker_id)
    stop_event: threading.Event = field(default_factory=threading.Event)
    _active: list[tuple[str, RunTail]] = field(default_factory=list)
    """The runs this worker executes, outermost first: a run may execute others inside it (a sweep, its
    trials), each claimed, heartbeated and settled by this worker like any delivered job."""
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _draining: threading.Lock = field(default_factory=threading.Lock)
    """Held while a run's tail is polled and its events published (`publish_new`)."""
    lane: str | None = None
    """The queue lane this worker alone works (a sweep's worker: its sweep run's trials); None: any job."""
    retry_due: dict[str, float] = field(default_factory=dict)
    """When each run this worker put back on the queue after a transient failure is due again (its backoff):
    the runs it executes inside another (a sweep's trials) are not delivered by the queue, which holds
    them back that long, but handed to it again by their parent (`service.sweeps.WorkerExecutor`)."""
    notifies: bool = False
    """Whether notifiers are subscribed to this worker's bus (`build_worker` attaches the configured ones)."""
    _announced: set[str] = field(default_factory=set)
    """The queueings (`announcement`) this worker knows were announced (by itself or another process): not
    asked about again, so once each waiting run is announced a pass costs Redis nothing."""

    @property
    def current_run(self) -> str | None:
        """The innermost run this worker is executing, if any."""
        with self._lock:
            return self._active[-1][0] if self._active else None

    def backoff_left_s(self, run_id: str) -> float:
        """Seconds until a run this worker put back on the queue after a transient failure is due again (its
        backoff); 0 when it is, or was never put back by this worker."""
        due = self.retry_due.get(run_id)
        left = 0.0 if due is None else due - time.time()
        if left <= 0:
            self.retry_due.pop(run_id, None)
        return max(0.0, left)

    # -- lifecycle -------------------------------------------------------------------------------------------
    def register(self) -> None:
        migrate(self.registry.db, "workers", WORKER_MIGRATIONS)
        now = time.time()
        self.registry.db.execute(
            "INSERT INTO workers (id, host, pid, queue, started_at, heartbeat_at, state) "
            "VALUES (?, ?, ?, ?, ?, ?, 'idle')",
            (self.worker_id, platform.node(), os.getpid(), self.queue.name, now, now),
        )

    def beat(self, registry: RunRegistry) -> None:
        """Heartbeat this worker and its current run; publish the run's new events."""
        now = time.time()
        with self._lock:
            active = list(self._active)
        run_id = active[-1][0] if active else None
        registry.db.execute(
            "UPDATE workers SET heartbeat_at = ?, current_run = ?, state = ? WHERE id = ?",
            (now, run_id, "busy" if run_id else "idle", self.worker_id),
        )
        for run_id, tail in active:
            registry.beat_for(run_id, self.worker_id, now)
            self.queue.extend_lease(run_id, self.worker_id)
            self.publish_new(tail)

    def publish_new(self, tail: RunTail) -> None:
        """Publish the run's events since the last poll of its tail. The heartbeat thread and `handle` (as the
        run starts and ends) both drain one tail: a `RunTail` is not safe to poll from two threads at once,
        and a batch published after a later one put older events after `completed`."""
        with self._draining:
            self.publish(tail.poll())

    def publish(self, events: list[RunEvent]) -> None:
        for event in events:
            try:
                self.bus.publish(event)
            except Exception as exc:  # a notifier's failure must not stop the run (a Redis bus drops an
                # event it cannot publish and logs the outage once, not here once an event)
                log.warning(f"could not publish {event.type} event: {type(exc).__name__}: {exc}")

    def announce_queued(self, registry: RunRegistry | None = None) -> None:
        """On a shared bus (Redis), publish the `queued` event of every run waiting on the queue, once per
        queueing (its first, and again each time it is put back after an attempt) across processes. The API
        publishes it when it queues a run (the requeueing worker's `RunTail` when it requeues one), but
        pub/sub reaches only the processes listening at that moment: with every worker down (starting,
        restarting, not deployed yet) it reached no notifier. Only a worker with notifiers announces (it
        hears what it publishes); the notifiers' once-per-event claim drops the copy of an event the first
        publication already delivered."""
        if not (self.bus.shared and self.notifies):
            return
        waiting = (registry or self.registry).queued_since(time.time() - ANNOUNCE_WINDOW_S)
        self._announce(waiting)
        with self._lock:  # forget the runs since claimed, cancelled or past the window
            self._announced &= {announcement(record) for record in waiting}

    def reconcile_pass(self, registry: RunRegistry) -> None:
        """`reconcile`, then the `queued` events of the runs waiting: on a shared bus every waiting run's
        (`announce_queued`), on an in-process bus those of the runs this pass put back on the queue (no
        other process publishes them: the dead worker's tail never saw its run requeued, and only the one
        worker that settles an orphan gets it back from `reconcile`, so each is published once)."""
        actions = reconcile(registry, self.queue, self.config)
        for run_id, status in actions:
            log.info(f"reconciled run {run_id}: {status}", extra={"fields": {"run_id": run_id}})
        if not self.bus.shared:
            requeued = []
            for run_id, status in actions:
                if status == RunStatus.QUEUED.value:
                    with contextlib.suppress(NotFoundError):  # deleted meanwhile
                        requeued.append(queued_event(registry.get(run_id)))
            self.publish(requeued)
        self.announce_queued(registry)

    def _announce(self, records: Sequence[RunRecord]) -> None:
        """Claim the announcement of each of `records` not known to be announced, all in one round-trip (a
        pipelined SET NX each: one per run and pass was a round-trip per waiting run on every pass), and
        publish the `queued` events of those this process won."""
        with self._lock:
            fresh = [record for record in records if announcement(record) not in self._announced]
        if not fresh:
            return
        try:
            won = self.bus.first_to_claim_each([announcement(r) for r in fresh], ANNOUNCE_WINDOW_S)
        except RedisUnreachableError:
            return  # the next pass announces them; the bus has said once that Redis is unreachable
        except Exception as exc:  # the next pass announces them
            ids = ", ".join(record.id for record in fresh)
            log.warning(f"could not announce queued run(s) {ids}: {type(exc).__name__}: {exc}")
            return
        with self._lock:
            self._announced.update(announcement(record) for record in fresh)
        self.publish([queued_event(record) for record, first in zip(fresh, won, strict=True) if first])

    def _maintenance(self) -> None:
        registry = open_registry(self.settings)  # its own connection: the main thread runs the job
        last_reconcile = 0.0
        while not self.stop_event.wait(self.config.heartbeat_s):
            try:
                self.beat(registry)
                if time.monotonic() - last_reconcile >= self.config.reconcile_every_s:
                    last_reconcile = time.monotonic()
                    self.reconcile_pass(registry)
            except RedisUnreachableError:
                continue  # the queue or the bus has said once that Redis is unreachable: not once a pass
            except Exception as exc:  # keep heartbeating through transient database/Redis errors
                log.warning(f"worker maintenance failed: {type(exc).__name__}: {exc}")

    # -- one job ---------------------------------------------------------------------------------------------
    def handle(self, run_id: str) -> str:
        """Run one delivered job; returns what happened (for logs and tests)."""
        try:
            record = self.registry.get(run_id)
        except NotFoundError:
            return "missing"
        if record.status == RunStatus.QUEUED and record.cancel_requested:
            if self.registry.transition(
                run_id,
                (RunStatus.QUEUED,),
                RunStatus.CANCELLED,
                message="cancelled before it started",
                ended_at=time.time(),
            ):
                update_manifest(record.run_dir, status="cancelled", message="cancelled before it started")
            self._end_children_left_behind(run_id)
            return "cancelled"
        if self.bus.shared and record.status is RunStatus.QUEUED:
            # claimed before any notifying worker announced this queueing (or by a worker without notifiers,
            # while one with them listens): announced now, before its `started`
            self._announce([record])
        if not claim_run(self.registry, run_id, self.worker_id, time.time() - self.config.stale_after_s):
            return "duplicate"  # finished, cancelled, or alive on another worker
        self.retry_due.pop(run_id, None)  # its backoff is over: this is its next attempt
        if record.tags.get(SUBMITTED_VIA) == "api":
            try:  # its paths again, right before they are opened (a file may have become a symlink)
                confine_again(
                    record.kind, record.config, settings=self.settings, run_dir=Path(record.run_dir)
                )
            except TldrlabError as exc:
                message = f"failed: {exc.message}"
                self.registry.update(
                    run_id,
                    status=RunStatus.FAILED,
                    message=message,
                    error_code=exc.code,
                    ended_at=time.time(),
                )
                update_manifest(record.run_dir, status="failed", message=message, error_code=exc.code)
                return f"failed:{FailureClass.USER_INPUT.value}"
        tail = RunTail(self.registry, run_id, include_logs=False)
        with self._lock:
            self._active.append((run_id, tail))
        # Publish `started` now: a short run can finish before the heartbeat thread's next poll.
        self.publish_new(tail)
        token = CURRENT_WORKER.set(self)
        try:
            execute(run_id, settings=self.settings, registry=self.registry, worker=self.worker_id)
            self.registry.update(run_id, progress=1.0)  # run heartbeats are rate-limited: the last may lag
            outcome = "completed"
        except RunOwnedError:
            # Claimed while its owner was starting up again (or still alive on a file system without
            # working locks): the owner keeps it; nothing of the run is touched here.
            outcome = "owned elsewhere"
        except RunPreemptedError as exc:
            requeue(
                self.registry,
                self.queue,
                run_id,
                f"requeued: worker {self.worker_id} is shutting down ({exc.message})",
            )
            if not resumes(record.kind):
                # it starts again from scratch, with runs of its own: the ones this attempt started (an
                # experiment's arms) would read `queued`, waiting to be resumed, for good
                end_unresumed_children(
                    self.registry,
                    run_id,
                    f"cancelled: {exc.message}, and this run was part of {run_id}, of kind {record.kind}, "
                    "which does not resume: the queue starts it again from the start, with runs of its own",
                )
            self.stop_event.set()
            outcome = "preempted"
        except BaseException as exc:
            outcome = self._after_failure(run_id, exc)
        finally:
            CURRENT_WORKER.reset(token)
            with self._lock:
                self._active = [(r, t) for r, t in self._active if r != run_id]
            # ended for good (not requeued for a retry or a preemption): the runs an earlier attempt left
            # waiting for it (an lm_experiment's arms it had not reached) would read `queued` for good
            self._end_children_left_behind(run_id)
            self.publish_new(tail)
        if outcome == "completed" or outcome.startswith("failed"):
            # archive it (upload_runs) and apply retention to it (retention.enabled); never fails the run
            settle_finished_run(
                run_id,
                kind_names=kind_names_by_recorded_name(),
                settings=self.settings,
                registry=self.registry,
            )
        return outcome

    def _end_children_left_behind(self, run_id: str) -> None:
        try:
            end_children_left_behind(self.registry, run_id)  # each one cancelled logs a warning
        except Exception as exc:  # the run's own outcome stands; the next reconcile pass tries again
            log.warning(f"could not settle the runs left to run {run_id}: {type(exc).__name__}: {exc}")

    def _still_confined(self, record: RunRecord) -> bool:
        """An API run's paths checked again right before they are opened (a file may have become a symlink
        since it was submitted); a run that fails the check is failed, not executed."""
        try:
            confine_again(record.kind, record.config, settings=self.settings, run_dir=Path(record.run_dir))
        except TldrlabError as exc:
            message = f"failed: {exc.message}"
            now = time.time()
            self.registry.update(
                record.id, status=RunStatus.FAILED, message=message, error_code=exc.code, ended_at=now
            )
            update_manifest(record.run_dir, status="failed", message=message, error_code=exc.code)
            return False
        return True

    def _after_failure(self, run_id: str, exc: BaseException) -> str:
        failure = classify_failure(exc)
        record = self.registry.get(run_id)
        if failure is FailureClass.CANCELLED:
            return "cancelled"
        # a run asked to cancel is not retried: requeued, no worker would claim it (cancel requests are
        # not claimable) and it would read `queued` for good; it stays failed, as it ended
        retry = failure is FailureClass.TRANSIENT and not record.cancel_requested
        if retry and record.attempts < self.config.max_attempts:
            delay = retry_delay_s(self.config, record.attempts)
            self.retry_due[run_id] = time.time() + delay
            requeue(
                self.registry,
                self.queue,
                run_id,
                f"retrying in {delay:.0f}s (attempt {record.attempts}/{self.config.max_attempts}) after a "
                f"transient failure: {record.message}",
                delay_s=delay,
            )
            return "retrying"
        self.registry.update(run_id, tags={**record.tags, "failure_class": failure.value})
        update_manifest(record.run_dir, failure_class=failure.value)
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise exc
        return f"failed:{failure.value}"

    # -- the loop --------------------------------------------------------------------------------------------
    def run(self) -> None:
        """Register, reconcile, then take jobs until stopped (SIGTERM / SIGINT) or, in burst mode, idle."""
        self.queue.ping()  # an unreachable Redis is a service_unavailable error, not RQ's traceback
        self.register()
        self.reconcile_pass(self.registry)  # and the runs queued while no worker listened announced
        maintenance = threading.Thread(target=self._maintenance, name="worker-heartbeat", daemon=True)
        maintenance.start()
        log.info(f"worker {self.worker_id} waiting for jobs on the {self.queue.name} queue")
        try:
            self.queue.work(
                self._handle_logged,
                worker_id=self.worker_id,
                should_stop=self.should_stop,
                burst=self.config.burst,
                poll_s=self.config.poll_s,
                on_force_stop=lambda signum: hard_stop(self, signum),
                lane=self.lane,
            )
        finally:
            self.stop_event.set()
            maintenance.join(timeout=self.config.heartbeat_s + 5)
            self.registry.db.execute(
                "UPDATE workers SET state = 'stopped', current_run = NULL, heartbeat_at = ? WHERE id = ?",
                (time.time(), self.worker_id),
            )

    def _handle_logged(self, run_id: str) -> None:
        started = time.monotonic()
        outcome = self.handle(run_id)
        log.info(f"run {run_id}: {outcome} after {time.monotonic() - started:.1f}s")

    def should_stop(self) -> bool:
        return self.stop_event.is_set() or preempt.stop_requested()


def hard_stop(worker: Worker, signum: int) -> None:
    """Exit now: the worker's row says stopped; its run keeps `running` with a heartbeat that goes stale, so
    another worker resumes it from its last checkpoint (what a killed worker leaves behind)."""
    log.warning(f"worker {worker.worker_id} got a second signal {signum}: hard stop")
    try:
        worker.registry.db.execute(
            "UPDATE workers SET state = 'stopped', current_run = NULL, heartbeat_at = ? WHERE id = ?",
            (time.time(), worker.worker_id),
        )
    finally:
        logging.shutdown()
        os._exit(128 + signum)


def install_signal_handlers(worker: Worker) -> None:
    """SIGTERM/SIGINT: finish the current step, checkpoint, requeue, exit; a second signal: `hard_stop`."""
    first: list[float] = []

    def on_signal(signum: int, frame: Any) -> None:
        if first and time.monotonic() - first[0] >= preempt.HARD_STOP_AFTER_S:
            hard_stop(worker, signum)
        if first:
            return
        first.append(time.monotonic())
        log.warning(f"worker {worker.worker_id} got signal {signum}: stopping after the current step")
        preempt.request_stop(signum)
        worker.stop_event.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)


def build_worker(
    settings: Settings | None = None, config: WorkerConfig | None = None, *, lane: str | None = None
) -> Worker:
    """A worker of the configured queue; with `lane`, one that takes only that lane's jobs (a sweep's)."""
    # the retention policy a worker applies to each run it finishes (settle_finished_run)
    settings = check_retention_setting(settings or get_settings())
    worker = Worker(
        settings=settings,
        config=config or WorkerConfig(),
        queue=open_queue(settings),
        registry=open_registry(settings),
        bus=open_bus(settings),
        lane=lane,
    )
    # lazy: loads httpx (this module stays light without it)
    from tldrlab.service.notify import attach_configured_notifiers

    worker.notifies = attach_configured_notifiers(worker.bus) > 0
    return worker


_FORKING_PARENT: list[int] = []


def die_with_parent() -> None:
    """(Linux) This process gets SIGTERM when its parent dies, even by SIGKILL, instead of lingering."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if _FORKING_PARENT and os.getppid() != _FORKING_PARENT[-1]:  # the parent died before prctl
        os.kill(os.getpid(), signal.SIGTERM)


def children_die_with_this_process() -> None:
    """Every process this one forks from now on (RQ's scheduler, fork-based data loaders and pools) gets
    SIGTERM when this one dies: a worker killed with SIGKILL leaves no orphan behind."""

    def before() -> None:
        _FORKING_PARENT[:] = [os.getpid()]

    os.register_at_fork(before=before, after_in_child=die_with_parent)


def run_worker(
    settings: Settings | None = None, config: WorkerConfig | None = None, *, lane: str | None = None
) -> None:
    """Entry point of `tldrlab worker`, of the workers `tldrlab serve` starts and (with `lane`) of a
    parallel sweep's."""
    children_die_with_this_process()
    worker = build_worker(settings, config, lane=lane)
    if worker.queue.name != "rq":  # RQ installs its own handlers (which also request preemption)
        install_signal_handlers(worker)
    worker.run()
