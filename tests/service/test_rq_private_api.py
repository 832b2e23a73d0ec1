"""tldrlab overrides a private method of RQ: `Worker._start_scheduler`, which RQ's own `work` calls with its
arguments by position, so that the worker's scheduler survives a Redis outage (`service.queue.rq`). An RQ
release that renamed it would leave the override never called, and one that changed its parameters would
hand it other values: the scheduler fix would be gone without an error. pyproject.toml pins rq to the
versions these checks passed on; they fail loudly on any other."""

from __future__ import annotations

import inspect
import re
import sys
from collections.abc import Callable
from typing import Any

from tldrlab.service.queue.rq import _preempting_worker_class, _surviving_scheduler_class


def _parameters(function: Callable[..., Any]) -> list[tuple[str, Any, Any]]:
    """Name, kind and default of each parameter (annotations left out: RQ's are strings)."""
    return [(p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()]


def test_rq_still_has_the_private_scheduler_start_tldrlab_overrides() -> None:
    import rq
    from rq.worker import SimpleWorker, Worker

    ours = _preempting_worker_class(None)
    assert issubclass(ours, SimpleWorker)
    theirs = getattr(Worker, "_start_scheduler", None)
    assert theirs is not None, (
        f"rq {rq.__version__} has no Worker._start_scheduler: tldrlab's override (a scheduler that survives "
        "a Redis outage, service/queue/rq.py) is never called; port it to this rq, or keep the pin"
    )
    assert ours._start_scheduler is not theirs  # the override is in place
    assert _parameters(ours._start_scheduler) == _parameters(theirs), (
        f"rq {rq.__version__} changed Worker._start_scheduler{inspect.signature(theirs)}: port the override "
        "in service/queue/rq.py, or keep the pin"
    )
    # the stop requests it extends, and the shutdown time it reads
    for method in ("request_stop", "request_force_stop"):
        assert [p[0] for p in _parameters(getattr(Worker, method))] == ["self", "signum", "frame"], method
    assert "self._shutdown_requested_date" in inspect.getsource(Worker.__init__)
    # RQ's worker still starts its scheduler through it, passing the arguments in this order
    source = inspect.getsource(sys.modules[theirs.__module__])
    calls = re.findall(r"self\._start_scheduler\(([^)]*)\)", source)
    assert calls == ["burst, logging_level, date_format, log_format"], (
        f"rq {rq.__version__} calls Worker._start_scheduler as {calls}: port the override in "
        "service/queue/rq.py, or keep the pin"
    )


def test_rq_scheduler_still_has_what_the_surviving_scheduler_uses() -> None:
    """The override builds RQ's scheduler with these keywords and calls these methods; the surviving loop
    reads its `_stop_requested` and `interval` (set in its constructor)."""
    from rq.scheduler import RQScheduler

    surviving = _surviving_scheduler_class()
    assert issubclass(surviving, RQScheduler)
    keywords = {"connection", "logging_level", "date_format", "log_format", "serializer"}
    init = inspect.signature(RQScheduler.__init__).parameters
    assert keywords <= set(init) and next(iter(init)) == "self" and list(init)[1] == "queues", init
    for method in (
        "acquire_locks", "start", "work", "register_birth", "enqueue_scheduled_jobs", "release_locks",
        "register_death",
    ):  # fmt: skip
        assert callable(getattr(RQScheduler, method, None)), method
    assert "acquired_locks" in dir(RQScheduler)
    constructor = inspect.getsource(RQScheduler.__init__)
    assert "self._stop_requested =" in constructor and "self.interval =" in constructor


def test_the_worker_s_connection_waits_for_an_answer_longer_than_rq_waits_for_a_job(redis_url: str) -> None:
    """RQ's worker blocks in BLPOP on its connection for up to `dequeue_timeout`; tldrlab's clients wait a
    second for an answer (`redis_timeout_s`), so the worker's connection is made with RQ's own
    `connection_timeout` instead (`_dequeue_read_timeout_s`): RQ's constructor, which would raise a lower
    one, leaves it as it is, and the connection it opens waits that long."""
    from rq import Queue
    from rq.serializers import JSONSerializer

    from tldrlab.service.queue.rq import _dequeue_read_timeout_s
    from tldrlab.service.redis_outage import redis_client

    wait_s = _dequeue_read_timeout_s()
    connection = redis_client(redis_url, read_timeout_s=wait_s)
    worker = _preempting_worker_class(None)(
        [Queue("q", connection=connection, serializer=JSONSerializer)],
        connection=connection,
        serializer=JSONSerializer,
    )
    assert wait_s == worker.connection_timeout > worker.dequeue_timeout
    assert connection.connection_pool.connection_kwargs["socket_timeout"] == wait_s  # RQ changed nothing
    opened = connection.connection_pool.get_connection()  # the one RQ's constructor opened (CLIENT SETNAME)
    try:
        assert opened.socket_timeout == wait_s
    finally:
        connection.connection_pool.release(opened)
    bounded = redis_client(redis_url).connection_pool.connection_kwargs["socket_timeout"]
    assert bounded < worker.dequeue_timeout  # what every other client waits
