"""Per-app shared objects (one registry connection, one queue client), created on first use.

Routers get them with `registry(request)` / `job_queue(request)`; `submit_run` is how every endpoint that
starts work creates a run and puts it on the queue.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from typing import Any

from fastapi import Request

from tldrlab import launch
from tldrlab.config import Settings
from tldrlab.errors import TldrlabError
from tldrlab.runs import RunRecord, RunRegistry, open_registry
from tldrlab.runs.reconcile import SETTLE_LOCK_WAIT_S, Reconciled, reconcile_here, repair_manifests
from tldrlab.runs.registry import SUBMITTED_VIA
from tldrlab.runs.run import new_run_id
from tldrlab.service.confine import confine_config, public_paths
from tldrlab.service.events import EventBus, MemoryBus, open_bus, queued_event
from tldrlab.service.limits import check_config, check_tags
from tldrlab.service.queue import JobQueue, open_queue
from tldrlab.service.worker import live_workers

_lock = threading.Lock()
log = logging.getLogger("tldrlab.service")


def settings_of(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def server_stopping(request: Request) -> bool:
    """The server serving this request is stopping (`tldrlab serve` got SIGTERM or Ctrl-C): a stream that
    would last as long as a run ends now, since the server waits for every open response before it stops
    (and stops its workers only after that)."""
    stopping = getattr(request.app.state, "stopping", None)
    return bool(stopping()) if callable(stopping) else False


def registry(request: Request) -> RunRegistry:
    state = request.app.state
    with _lock:
        if getattr(state, "registry", None) is None:
            state.registry = open_registry(settings_of(request))
    result: RunRegistry = state.registry
    return result


def settle_orphans_here(request: Request) -> None:
    """Before a view of runs: settle the runs a killed command-line process of this machine left `running`
    (`tldrlab.runs.reconcile.reconcile_here`, as `tldrlab runs list` does), at most once per run heartbeat
    interval per app, but only where no worker will: with none anywhere (`tldrlab serve --workers 0`, none
    deployed yet) nothing else would, and the API would show such a run running for good. Where workers
    exist (this server started some, or any heartbeats in the registry) their reconcile requeues and resumes
    the run (`tldrlab.service.worker.reconcile`); settling it first would leave it waiting for a `--resume`
    nobody types. Runs submitted through the API are always the workers'. Manifests an earlier settle could
    not write are repaired either way. A settle is one query when nothing is stale, and concurrent requests
    skip it rather than wait: a view is never slowed by more than one of them, nor failed by it."""
    state = request.app.state
    with _lock:
        if getattr(state, "settle_lock", None) is None:
            state.settle_lock = threading.Lock()
            state.settled_at = -math.inf
    lock: threading.Lock = state.settle_lock
    heartbeat_s = settings_of(request).run_heartbeat_s
    if not lock.acquire(blocking=False):
        return  # another request is settling right now
    try:
        if time.monotonic() - state.settled_at < heartbeat_s:
            return
        state.settled_at = time.monotonic()
        if getattr(state, "settle_registry", None) is None:
            # its own connection, waiting briefly for another process's write lock: through the views'
            # connection a settle waited out its 30 s busy timeout, and every request queued behind it
            state.settle_registry = open_registry(settings_of(request), lock_wait_s=SETTLE_LOCK_WAIT_S)
        runs: RunRegistry = state.settle_registry
        try:
            workers = bool(getattr(state, "local_workers", 0)) or bool(live_workers(runs))
        except Exception as exc:  # not knowing whether workers exist, settling could take their runs
            log.warning(f"not settling orphaned runs this time: cannot tell whether workers run ({exc})")
            return
        if workers:
            failed = repair_manifests(runs)
            done = Reconciled(failed=failed)
        else:
            done = reconcile_here(runs, heartbeat_s=heartbeat_s, rules=launch.ORPHAN_RULES)
    finally:
        lock.release()
    for run_id, status in done.settled:
        log.info(f"settled run {run_id} whose process died: {status}")
    if done.warning:
        log.warning(done.warning)


def job_queue(request: Request) -> JobQueue:
    state = request.app.state
    with _lock:
        if getattr(state, "job_queue", None) is None:
            state.job_queue = open_queue(settings_of(request))
    result: JobQueue = state.job_queue
    return result


def event_bus(request: Request) -> EventBus:
    """The bus this API process publishes run events on: Redis pub/sub at scale-out (the workers' notifiers
    are subscribed there), else an in-process bus with this process's own notifiers (the configured webhook
    and Discord notifier), the workers being other processes with buses of their own."""
    state = request.app.state
    with _lock:
        if getattr(state, "event_bus", None) is None:
            bus = open_bus(settings_of(request))
            if isinstance(bus, MemoryBus):
                # lazy: loads httpx (this module stays light without it)
                from tldrlab.service.notify import attach_configured_notifiers

                attach_configured_notifiers(bus)
            state.event_bus = bus
    result: EventBus = state.event_bus
    return result


def publish_queued(request: Request, record: RunRecord) -> None:
    """The `queued` event of a run just submitted. Workers derive every later event from the run as they
    execute it (`RunTail`), starting at `started`: only the process that queued the run sees it queued. On
    Redis, workers announce it again from the registry (`Worker.announce_queued`) for when none listened."""
    try:
        event_bus(request).publish(queued_event(record))
    except Exception as exc:  # a notifier or Redis hiccup must not fail a submission that succeeded
        log.warning(f"could not publish the queued event of {record.id}: {type(exc).__name__}: {exc}")


def client_message(exc: TldrlabError, context: str | None = None, **fields: Any) -> str:
    """What a client is told of `exc`: its `public_message` where it has one (a database's error, whose whole
    message names its host, socket path and user), the whole message then logged (`context: message`, or the
    message alone without a context; `fields` as the record's structured fields, e.g. its request id) for
    the operator; else its message. The one place that decides it: the API's error handler, /readyz and
    /stream_summary's stream all call it."""
    public = exc.details.get("public_message")
    if isinstance(public, str):
        log.warning(f"{context}: {exc.message}" if context else exc.message, extra={"fields": fields})
        return public
    return exc.message


def readiness_problem(exc: Exception) -> str:
    """What a check says of a service that failed it. /readyz answers without the API key (probes), so an
    error that carries a `public_message` is logged and answered by that."""
    if isinstance(exc, TldrlabError):
        return client_message(exc, "readiness check failed")
    return f"{type(exc).__name__}: {exc}"


def queue_readiness(request: Request) -> str | None:
    """Readiness check: None when the queue answers, else the reason."""
    try:
        job_queue(request).ping()
    except Exception as exc:
        return readiness_problem(exc)
    return None


def submit_run(
    request: Request,
    kind: str,
    config: dict[str, Any],
    *,
    seed: int | None = None,
    parent_id: str | None = None,
    tags: dict[str, Any] | None = None,
) -> RunRecord:
    """What the API does to start any run: check what the client sent (the config's size and content: 413 /
    422; the tags), validate it against the kind's class as the CLI does and confine every path it names
    (`tldrlab.service.confine`: 422 naming each field / 403), then `tldrlab.launch.submit_run`: the kind's
    prepare step as the CLI runs it, a queued run tagged `submitted_via: api` (its worker confines it again
    before executing it), enqueued; 503 (and no run left queued) when the queue is down."""
    settings = settings_of(request)
    check_config(config, settings.max_config_bytes)
    check_tags(tags or {})
    launch.check_submittable(kind)
    run_id = new_run_id(kind)
    config = confine_config(kind, config, settings=settings, run_dir=settings.runs_dir / run_id)
    try:
        record = launch.submit_run(
            kind,
            config,
            queue=job_queue(request),
            registry=registry(request),
            settings=settings,
            seed=seed,
            run_id=run_id,
            parent_id=parent_id,
            tags={**(tags or {}), SUBMITTED_VIA: "api"},
        )
    except TldrlabError as exc:
        # the kind's prepare step names the config's paths, which confine_config made the server's: a
        # refusal names them as the client did (a model under a data root was answered with its full path)
        exc.message = public_paths(exc.message, settings)
        if isinstance(exc.details.get("errors"), list):
            exc.details["errors"] = public_paths(exc.details["errors"], settings)
        raise
    publish_queued(request, record)
    return record
