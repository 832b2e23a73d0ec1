"""Job queues by registry: `sqlite` (embedded default, in the home database) and `rq` (Redis + RQ).

`open_queue(settings)` picks `rq` when TLDRLAB_QUEUE_URL is a redis:// URL, else `sqlite`.
"""

from __future__ import annotations

from collections.abc import Callable

from tldrlab.config import Settings, get_settings
from tldrlab.errors import ConfigError
from tldrlab.service.queue.base import JobHandler, JobQueue


def _sqlite(settings: Settings) -> JobQueue:
    # lazy: that submodule needs this package initialised (a cycle at the top)
    from tldrlab.service.queue.sqlite import SqliteQueue

    settings.ensure_home()
    return SqliteQueue(settings.resolved_database_url)


def _rq(settings: Settings) -> JobQueue:
    # lazy: that submodule needs this package initialised (a cycle at the top)
    from tldrlab.service.queue.rq import RqQueue

    assert settings.queue_url is not None
    return RqQueue(settings.queue_url, settings=settings)


QUEUES: dict[str, Callable[[Settings], JobQueue]] = {"sqlite": _sqlite, "rq": _rq}


def queue_kind(settings: Settings) -> str:
    url = settings.queue_url
    if not url:
        return "sqlite"
    if url.startswith(("redis://", "rediss://", "unix://")):
        return "rq"
    raise ConfigError(f"unsupported TLDRLAB_QUEUE_URL {url!r}: use redis://host:port/db or leave it unset")


def open_queue(settings: Settings | None = None) -> JobQueue:
    settings = settings or get_settings()
    return QUEUES[queue_kind(settings)](settings)


__all__ = ["QUEUES", "JobHandler", "JobQueue", "open_queue", "queue_kind"]
