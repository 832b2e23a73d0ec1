"""The job queues: durable SQLite queue (dedupe, leases, backoff) and the Redis + RQ queue."""

from __future__ import annotations

import json
import time
import zlib

import pytest

from tldrlab.config import get_settings
from tldrlab.errors import ConfigError, ServiceUnavailableError
from tldrlab.service.queue import open_queue, queue_kind
from tldrlab.service.queue.rq import RqQueue
from tldrlab.service.queue.sqlite import SqliteQueue


def _sqlite(lease_s: float = 60.0) -> SqliteQueue:
    get_settings().ensure_home()
    return SqliteQueue(get_settings().resolved_database_url, lease_s=lease_s)


def test_sqlite_queue_dedupes_and_leases_once() -> None:
    queue = _sqlite()
    queue.enqueue("run-a")
    queue.enqueue("run-a")  # a second enqueue of the same run keeps one job
    queue.enqueue("run-b")
    assert queue.depth() == 2
    first, second = queue.claim("w1"), queue.claim("w2")
    assert {first, second} == {"run-a", "run-b"}
    assert queue.claim("w3") is None
    queue.ack("run-a", "w2" if second == "run-a" else "w1")
    assert queue.job_state("run-a") is None


def test_sqlite_queue_survives_reopen_and_honours_delay() -> None:
    _sqlite().enqueue("later", delay_s=0.4)
    reopened = _sqlite()  # durable: a new connection (a restarted process) sees the job
    assert reopened.claim("w") is None
    time.sleep(0.45)
    assert reopened.claim("w") == "later"


def test_sqlite_lease_expires_when_its_worker_dies() -> None:
    queue = _sqlite(lease_s=0.3)
    queue.enqueue("r")
    assert queue.claim("dead-worker") == "r"
    assert queue.claim("other") is None
    time.sleep(0.35)
    assert queue.claim("other") == "r"
    queue.ack("r", "dead-worker")  # a late ack of the old owner must not delete the new lease
    assert queue.job_state("r") == "leased"


def test_sqlite_extend_lease_keeps_job() -> None:
    queue = _sqlite(lease_s=0.3)
    queue.enqueue("r")
    assert queue.claim("w") == "r"
    for _ in range(3):
        time.sleep(0.15)
        queue.extend_lease("r", "w")
    assert queue.claim("x") is None


def test_queue_kind_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    assert queue_kind(get_settings()) == "sqlite"
    monkeypatch.setenv("TLDRLAB_QUEUE_URL", "amqp://nope")
    get_settings.cache_clear()
    with pytest.raises(ConfigError, match="TLDRLAB_QUEUE_URL"):
        open_queue()


def test_rq_queue_enqueues_json_only(redis_url: str) -> None:
    import redis

    queue = RqQueue(redis_url)
    queue.ping()
    queue.enqueue("run-x")
    assert queue.depth() == 1
    job = queue.queue.jobs[0]
    assert job.args == ("run-x",) or list(job.args) == ["run-x"]
    raw = redis.Redis.from_url(redis_url).hget(f"rq:job:{job.id}", "data")
    assert isinstance(raw, bytes)
    payload = json.loads(zlib.decompress(raw))  # RQ zlib-compresses the serialised call: JSON, never pickle
    assert payload[0] == "tldrlab.service.queue.rq.rq_entry" and payload[2] == ["run-x"]


def test_rq_queue_down_is_service_unavailable() -> None:
    from netutil import free_port

    queue = RqQueue(f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(ServiceUnavailableError):
        queue.ping()
    with pytest.raises(ServiceUnavailableError):
        queue.enqueue("r")
