"""Per-app shared objects (one registry connection, one queue client), created on first use.

Routers get them with `registry(request)` / `job_queue(request)`; `submit_run` is how every endpoint that
starts work creates a run and puts it on the queue.
"""

from __future__ import annotations

import threading
from typing import Any

from fastapi import Request

from tldrlab.config import Settings
from tldrlab.errors import ServiceUnavailableError, TldrlabError
from tldrlab.runs import RunRecord, RunRegistry, RunStatus, create_run, open_registry
from tldrlab.runs.run import new_run_id
from tldrlab.service.confine import SUBMITTED_VIA, confine_config
from tldrlab.service.limits import check_config, check_tags
from tldrlab.service.queue import JobQueue, open_queue

_lock = threading.Lock()


def settings_of(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def registry(request: Request) -> RunRegistry:
    state = request.app.state
    with _lock:
        if getattr(state, "registry", None) is None:
            state.registry = open_registry(settings_of(request))
    result: RunRegistry = state.registry
    return result


def job_queue(request: Request) -> JobQueue:
    state = request.app.state
    with _lock:
        if getattr(state, "job_queue", None) is None:
            state.job_queue = open_queue(settings_of(request))
    result: JobQueue = state.job_queue
    return result


def queue_readiness(request: Request) -> str | None:
    """Readiness check: None when the queue answers, else the reason."""
    try:
        job_queue(request).ping()
    except TldrlabError as exc:
        return exc.message
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
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
    """Create a queued run and enqueue it; 503 (and no run left queued) when the queue is down.

    What the client sent is checked first: the config's size and content (413 / 422), the tags, then the
    config against its kind's config class with every path confined (`tldrlab.service.confine`: 422 / 403).
    The run is tagged `submitted_via: api`, so its worker confines it again before executing it.
    """
    settings = settings_of(request)
    check_config(config, settings.max_config_bytes)
    check_tags(tags or {})
    run_id = new_run_id(kind)
    config = confine_config(kind, config, settings=settings, run_dir=settings.runs_dir / run_id)
    queue = job_queue(request)
    queue.ping()  # refuse before creating anything
    runs = registry(request)
    record = create_run(
        kind,
        config,
        seed=seed,
        run_id=run_id,
        parent_id=parent_id,
        tags={**(tags or {}), SUBMITTED_VIA: "api"},
        settings=settings,
        registry=runs,
    )
    try:
        queue.enqueue(record.id)
    except Exception as exc:
        message = "failed: could not be queued (the job queue is unreachable)"
        runs.update(record.id, status=RunStatus.FAILED, message=message, error_code="service_unavailable")
        if isinstance(exc, ServiceUnavailableError):
            raise
        raise ServiceUnavailableError("the job queue is unreachable") from exc
    return runs.get(record.id)
