"""Run events through Redis during a Redis outage, with a real redis-server stopped and started again on its
port: a process says once that Redis is unreachable and what that loses, nothing more per event while it
stays down, once that it answers again, and its notifiers hear the events published after it came back."""

from __future__ import annotations

import logging
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from svc_helpers import wait_for

from netutil import blackholed, free_port, start_redis
from tldrlab.config import get_settings
from tldrlab.runs import create_run
from tldrlab.service.events import PROBE_TIMEOUT_S, RECONNECT_EVERY_S, RedisBus, RunEvent
from tldrlab.service.worker import WorkerConfig, build_worker

EVENTS = 200
"""Events published during the outage: a training that reports every step."""


class OwnRedis:
    """A redis-server of this test's own (the session's shared one must not go down under other tests)."""

    def __init__(self, tmp_path: Path) -> None:
        self.port = free_port()
        self.dir = tmp_path
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = start_redis(self.port, tmp_path)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None

    def start(self) -> None:
        self.proc = start_redis(self.port, self.dir)


@pytest.fixture
def own_redis(tldrlab_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[OwnRedis]:
    server = OwnRedis(tmp_path)
    monkeypatch.setenv("TLDRLAB_QUEUE_URL", server.url)
    get_settings.cache_clear()
    try:
        yield server
    finally:
        server.stop()


def _lines(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == level and r.name.startswith("tldrlab")]


def _progress(run_id: str, step: int) -> RunEvent:
    return RunEvent(type="progress", run_id=run_id, kind="smoke", step=step, metrics={"train_loss": 1.0})


def test_a_worker_publishing_events_through_a_redis_outage_says_so_once_and_once_when_it_is_back(
    own_redis: OwnRedis, caplog: pytest.LogCaptureFixture
) -> None:
    """A worker publishing a run's events (one per training step) logged "could not publish progress event:
    ConnectionError ..." once per event for as long as Redis was down."""
    caplog.set_level(logging.INFO, logger="tldrlab")
    worker = build_worker(config=WorkerConfig(burst=True))
    run_id = create_run("smoke", {"steps": 2}).id
    try:
        worker.publish([_progress(run_id, 0)])
        own_redis.stop()
        caplog.clear()
        for step in range(1, EVENTS + 1):
            worker.publish([_progress(run_id, step)])
        warnings = _lines(caplog, logging.WARNING)
        assert len(warnings) == 1, f"{len(warnings)} warnings over {EVENTS} events: {warnings[:3]}"
        (warning,) = warnings
        assert "Redis is unreachable" in warning and "lost" in warning and "tries again" in warning, warning
        assert not _lines(caplog, logging.INFO)
        own_redis.start()
        caplog.clear()
        steps = iter(range(EVENTS + 1, EVENTS * 10))

        def back_once_published() -> list[str]:
            worker.publish([_progress(run_id, next(steps))])
            return _lines(caplog, logging.WARNING)

        (back,) = wait_for(back_once_published, 10, what="the line saying Redis is back")
        assert back.startswith("Redis answers again after"), back  # a warning, seen at the default level
    finally:
        worker.bus.close()  # type: ignore[attr-defined]  # a RedisBus


def test_a_worker_s_maintenance_through_a_redis_outage_says_so_once(
    own_redis: OwnRedis, caplog: pytest.LogCaptureFixture
) -> None:
    """A worker's maintenance pass (heartbeat, reconcile, the announcement of waiting runs) met the outage
    on the queue's Redis each pass: "worker maintenance failed: ServiceUnavailableError: Redis is
    unreachable" every few seconds for the whole outage."""
    caplog.set_level(logging.INFO, logger="tldrlab")
    config = WorkerConfig(burst=True, heartbeat_s=0.05, reconcile_every_s=0.05, stale_after_s=0.01)
    worker = build_worker(config=config)
    worker.notifies = True  # announces waiting runs, as a worker with notifiers does
    worker.register()
    create_run("smoke", {"steps": 2}, tags={"submitted_via": "api"})  # waiting: each pass looks for it
    maintenance = threading.Thread(target=worker._maintenance)
    try:
        worker.reconcile_pass(worker.registry)
        own_redis.stop()
        caplog.clear()
        maintenance.start()
        time.sleep(2.0)  # some 40 passes
        create_run("smoke", {"steps": 2}, tags={"submitted_via": "api"})  # to announce, in the outage
        time.sleep(1.0)
        warnings = _lines(caplog, logging.WARNING)
        assert len(warnings) == 1, f"{len(warnings)} warnings over some 60 passes: {warnings[:4]}"
        assert "Redis is unreachable" in warnings[0], warnings
        own_redis.start()
        wait_for(lambda: any("Redis answers again" in line for line in _lines(caplog, logging.WARNING)), 20)
        time.sleep(0.5)
        # Redis came back empty: the waiting runs are enqueued again, as they should be; no other line
        after = [line for line in _lines(caplog, logging.WARNING) if "enqueued again" not in line]
        assert after[: len(warnings)] == warnings
        assert [line for line in after[len(warnings) :] if "Redis answers again" not in line] == []
    finally:
        worker.stop_event.set()
        if maintenance.is_alive():
            maintenance.join(timeout=10)
        worker.bus.close()  # type: ignore[attr-defined]  # a RedisBus


def test_notifiers_hear_the_events_published_after_a_redis_outage(own_redis: OwnRedis) -> None:
    """A process's subscription to the bus (its notifiers) ended for good at the first Redis error: its
    listening thread died with the connection error, so after an outage of any length no notifier in that
    process heard of any run again."""
    listening, publishing = RedisBus(own_redis.url), RedisBus(own_redis.url)
    heard: list[int] = []
    listening.subscribe(lambda event: heard.append(event.step or 0))
    try:
        wait_for(lambda: (publishing.publish(_progress("r", 1)), heard)[1] != [], 10, what="a first event")
        own_redis.stop()
        publishing.publish(_progress("r", 2))  # lost: nothing listens while Redis is down
        time.sleep(1.5)  # the listening thread meets the outage
        own_redis.start()

        def heard_after_the_outage() -> bool:
            publishing.publish(_progress("r", 3))
            return 3 in heard

        wait_for(heard_after_the_outage, 20, what="an event published after the outage to be heard")
    finally:
        listening.close()


def test_publishing_to_a_host_that_does_not_answer_holds_up_the_caller_no_more_once_the_outage_is_known(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Against a host that does not answer (a connect times out, it is not refused), every event published
    through the outage waited out the bus's connect timeout (2.0 s each), holding up the thread publishing
    it, a worker's heartbeat thread. Once the outage is known, an event is dropped at once: the bus's watch
    tries Redis in a thread of its own (each try waiting out PROBE_TIMEOUT_S there); still one warning."""
    caplog.set_level(logging.INFO, logger="tldrlab")
    with blackholed() as url:
        bus = RedisBus(url)
        try:
            bus.publish(
                _progress("r", 0)
            )  # the outage becomes known (this one waits the client's own retries)
            assert bus.outage.down
            waits: list[float] = []
            until = time.monotonic() + 8 * RECONNECT_EVERY_S + 2 * PROBE_TIMEOUT_S  # some tries of the watch
            while time.monotonic() < until:
                started = time.monotonic()
                bus.publish(_progress("r", len(waits) + 1))
                waits.append(time.monotonic() - started)
                time.sleep(0.02)
        finally:
            bus.close()
    assert max(waits) < PROBE_TIMEOUT_S / 2, f"an event waited {max(waits):.2f}s"
    warnings = _lines(caplog, logging.WARNING)
    assert len(warnings) == 1 and "Redis is unreachable" in warnings[0], warnings


def test_an_event_published_once_redis_is_back_is_heard_promptly(own_redis: OwnRedis) -> None:
    """After an outage of a few seconds, the events published in the first seconds after Redis was back were
    lost: the publishing bus tried Redis again with one event in 4 s (the others dropped), and a listening
    bus's subscription reconnected after waits doubling up to 4 s (what was published before it had
    subscribed again reached nobody). Measured from Redis listening again to the first event heard, by a
    bus of its own as another process's notifiers would be; a training publishes an event every 20 ms."""
    listening, publishing = RedisBus(own_redis.url), RedisBus(own_redis.url)
    heard: dict[int, float] = {}
    listening.subscribe(lambda event: heard.setdefault(event.step or 0, time.monotonic()))
    steps = iter(range(1, 1_000_000))

    def publish_one() -> None:
        publishing.publish(_progress("r", next(steps)))
        time.sleep(0.02)  # the pace of a training's steps, not a wait for anything

    try:
        wait_for(lambda: (publish_one(), heard)[1], 10, what="a first event")
        own_redis.stop()
        wait_for(lambda: (publish_one(), publishing.outage.down and listening.outage.down)[1], 10)
        down_since = time.monotonic()
        # long enough for the waits of the old backoffs to have grown past 4 s (tries at 4 s, then 8 s)
        while time.monotonic() < down_since + 4.5:
            publish_one()
        own_redis.start()
        back, first_after = time.monotonic(), next(steps)
        wait_for(lambda: (publish_one(), max(heard) > first_after)[1], 15, what="an event after the outage")
        delay = min(at for step, at in heard.items() if step > first_after) - back
        assert delay < 1.5, f"the first event heard came {delay:.2f}s after Redis was back"
    finally:
        listening.close()
        publishing.close()
