"""tldrlab's Redis clients against a Redis that does not answer: a blackholed host (a connect neither
accepted nor refused) or a hung server (connections accepted, commands never answered). Each call gives up
within the bound its settings give (`redis_outage.call_bound_s`), so `POST /runs` answers a prompt 503 and a
worker's maintenance pass moves on; before, a call waited out redis-py's timeouts as tldrlab set them (2 s to
connect, 10 s for an answer) and, on a client made with redis-py's default retry, ten more of them."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

import pytest
from fastapi.testclient import TestClient

from netutil import blackholed, hung_redis
from tldrlab.config import get_settings
from tldrlab.errors import ServiceUnavailableError
from tldrlab.runs import RunStatus, open_registry
from tldrlab.service.app import create_app
from tldrlab.service.events import RedisBus, RunEvent
from tldrlab.service.queue.rq import RqQueue
from tldrlab.service.redis_outage import RETRIES, RETRY_BACKOFF_S, call_bound_s

SLACK_S = 0.8
"""What a call may take beyond its timeouts: Python's own work, on a loaded machine."""


@pytest.fixture(autouse=True)
def short_redis_timeouts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Timeouts well below redis-py's own (2 s to connect, 10 s to answer, what every call waited before), so
    a bound plus the slack stays far from both on a loaded machine: the blackholed bound with the defaults
    (1.2 s + slack) sat 0.35 s below the old 2 s."""
    monkeypatch.setenv("TLDRLAB_REDIS_CONNECT_TIMEOUT_S", "0.2")
    monkeypatch.setenv("TLDRLAB_REDIS_TIMEOUT_S", "0.4")
    get_settings.cache_clear()


def blackholed_bound_s() -> float:
    """A host that accepts no connection: each try waits out the connect timeout, no read."""
    return (RETRIES + 1) * get_settings().redis_connect_timeout_s + RETRIES * RETRY_BACKOFF_S[1]


NOT_ANSWERING: dict[str, tuple[Callable[[], AbstractContextManager[str]], Callable[[], float]]] = {
    "blackholed": (blackholed, blackholed_bound_s),
    "hung": (hung_redis, call_bound_s),
}


@pytest.fixture(params=sorted(NOT_ANSWERING))
def not_answering(request: pytest.FixtureRequest) -> Iterator[tuple[str, float]]:
    """The URL of a Redis that does not answer, and how long a call to it may take at most."""
    opened, bound = NOT_ANSWERING[request.param]
    with opened() as url:
        yield url, bound() + SLACK_S


def _timed(call: Callable[[], Any]) -> tuple[float, BaseException | None]:
    started = time.monotonic()
    try:
        call()
    except Exception as exc:
        return time.monotonic() - started, exc
    return time.monotonic() - started, None


def _api(url: str, monkeypatch: pytest.MonkeyPatch) -> TestClient:
    monkeypatch.setenv("TLDRLAB_QUEUE_URL", url)
    get_settings.cache_clear()
    client = TestClient(create_app())
    # the first use opens the queue (imports rq): not part of what a request waits on Redis
    assert client.get("/readyz").status_code == 503
    return client


def test_submitting_a_run_to_a_redis_that_does_not_answer_is_a_prompt_503_that_stores_no_run(
    not_answering: tuple[str, float], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`POST /runs` waited out the queue's ping: 2.0 s against a blackholed host, 10 s against a hung one."""
    url, bound = not_answering
    client = _api(url, monkeypatch)
    started = time.monotonic()
    refused = client.post("/runs", json={"kind": "smoke", "config": {"steps": 3}})
    waited = time.monotonic() - started
    body = refused.json()
    assert refused.status_code == 503 and body["code"] == "service_unavailable", refused.text
    assert "Redis" in body["message"] and body["request_id"], body
    assert waited < bound, f"POST /runs waited {waited:.2f}s (bound {bound:.2f}s)"
    assert open_registry().list() == []  # refused before the run was created


def test_a_run_whose_enqueue_gets_no_answer_is_failed_promptly_not_left_queued(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Redis answers the ping `POST /runs` checks first, then hangs: the run was created, and its enqueue
    waited out the queue's read timeout (10 s) before the 503. It is failed, never left `queued` without a
    job (a hung enqueue may still have reached Redis: a worker then finds it not queued and claims
    nothing)."""
    with hung_redis(answers=frozenset({"HELLO", "CLIENT", "PING"})) as url:
        monkeypatch.setenv("TLDRLAB_QUEUE_URL", url)
        get_settings.cache_clear()
        client = TestClient(create_app())
        assert client.get("/readyz").status_code == 200  # it answers a ping
        started = time.monotonic()
        refused = client.post("/runs", json={"kind": "smoke", "config": {"steps": 3}})
        waited = time.monotonic() - started
    body = refused.json()
    assert refused.status_code == 503 and body["code"] == "service_unavailable", refused.text
    assert "Redis" in body["message"] and body["request_id"], body
    assert waited < call_bound_s() + SLACK_S, f"POST /runs waited {waited:.2f}s"
    (run,) = open_registry().list()
    assert run.status == RunStatus.FAILED and run.error_code == "service_unavailable", run


def test_the_queue_s_calls_to_a_blackholed_redis_give_up_within_the_bound() -> None:
    """Enqueueing (`POST /runs`), the depth and the pending runs (a worker's maintenance pass) each waited
    2.0 s."""
    bound = blackholed_bound_s() + SLACK_S
    with blackholed() as url:
        queue = RqQueue(url)
        waits = {
            "enqueue": _timed(lambda: queue.enqueue("r")),
            "depth": _timed(queue.depth),
            "pending_run_ids": _timed(queue.pending_run_ids),
        }
    for call, (_, error) in waits.items():
        assert isinstance(error, ServiceUnavailableError), (call, error)
        assert "Redis is unreachable" in str(error), (call, error)
    slow = {call: f"{waited:.2f}s" for call, (waited, _) in waits.items() if waited >= bound}
    assert not slow, f"over {bound:.2f}s: {slow}"


def test_the_bus_s_claims_and_first_event_to_a_blackholed_redis_give_up_within_the_bound() -> None:
    """A worker's claims (its maintenance pass, its notifiers) and the first event of an outage (a worker's
    heartbeat thread) each waited 2.0 s."""
    bound = blackholed_bound_s() + SLACK_S
    with blackholed() as url:
        claiming, publishing = RedisBus(url), RedisBus(url)  # a fresh bus: the outage is not known yet
        waits = {
            "first_to_claim": _timed(lambda: claiming.first_to_claim("k")),
            "first_to_claim_each": _timed(lambda: claiming.first_to_claim_each(["a", "b"])),
            "publish": _timed(lambda: publishing.publish(RunEvent(type="progress", run_id="r", step=1))),
        }
    assert isinstance(waits["first_to_claim"][1], ServiceUnavailableError), waits
    assert isinstance(waits["first_to_claim_each"][1], ServiceUnavailableError), waits
    assert waits["publish"][1] is None and publishing.outage.down  # dropped, and the outage known
    publishing.close()  # its watch, trying Redis again meanwhile
    slow = {call: f"{waited:.2f}s" for call, (waited, _) in waits.items() if waited >= bound}
    assert not slow, f"over {bound:.2f}s: {slow}"
