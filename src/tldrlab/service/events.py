"""Run events: lifecycle (queued, started, completed, failed, cancelled) and metrics (progress, checkpoint,
eval), plus log lines.

Events are derived from what a run already writes (its registry row, metrics.jsonl, log.jsonl) by
`RunTail.poll()`: any process that can read the home directory — the API serving SSE, a worker feeding
notifiers — sees the same events, whichever process runs the job. Workers also publish what they derive on a
bus (`BUSES`: in-process `memory`, or Redis pub/sub `redis` at scale-out, channels `runs:<id>:events` and
`tldrlab:events`) for notifiers in other processes.
"""

from __future__ import annotations

import heapq
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel, Field

from tldrlab.config import Settings, get_settings
from tldrlab.errors import NotFoundError
from tldrlab.runs import RunRecord, RunRegistry, RunStatus
from tldrlab.service.redis_outage import (
    RedisOutage,
    bounded_retry,
    outage_retry,
    redis_client,
    unreachable_errors,
)

EventType = Literal[
    "queued", "started", "progress", "checkpoint", "eval", "completed", "failed", "cancelled", "log"
]
STATUS_EVENTS: dict[str, EventType] = {
    RunStatus.QUEUED: "queued",
    RunStatus.RUNNING: "started",
    RunStatus.COMPLETED: "completed",
    RunStatus.FAILED: "failed",
    RunStatus.CANCELLED: "cancelled",
}
ALL_CHANNEL = "tldrlab:events"
log = logging.getLogger("tldrlab.events")


class RunEvent(BaseModel):
    """One thing that happened to a run."""

    type: EventType
    """What happened."""
    run_id: str
    """The run it happened to."""
    time: float = Field(default_factory=time.time)
    """Unix time of the event (of the underlying line when there is one)."""
    kind: str | None = None
    """The run's kind (train, tokenizer, ...)."""
    status: str | None = None
    """The run's status after the event (lifecycle events)."""
    message: str | None = None
    """Human-readable status message or log line."""
    step: int | None = None
    """Training step (metrics, checkpoint and eval events)."""
    progress: float | None = None
    """Fraction done, 0..1, when known: on lifecycle events and on the newest metrics line a poll read (the
    registry's progress is the run's now, not that of an older line)."""
    metrics: dict[str, float] = Field(default_factory=dict)
    """Numeric metrics of this step."""
    level: str | None = None
    """Log level (log events)."""


def _numeric(row: dict[str, Any]) -> dict[str, float]:
    return {
        k: float(v)
        for k, v in row.items()
        if k not in ("step", "time", "pid") and isinstance(v, int | float) and not isinstance(v, bool)
    }


class _LineTail:
    """New complete lines of a file since the last call (copes with a file rewritten shorter)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0

    def read(self) -> list[tuple[int, dict[str, Any]]]:
        """The new rows, each with the file offset just past its line (where a later read resumes)."""
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return []
        if size < self.offset:  # rewritten (a resume dropped lines past its checkpoint)
            self.offset = size
            return []
        if size == self.offset:
            return []
        with self.path.open("rb") as handle:
            handle.seek(self.offset)
            chunk = handle.read(size - self.offset)
        end = chunk.rfind(b"\n")
        if end < 0:
            return []
        start = self.offset
        self.offset += end + 1
        rows = []
        for line in chunk[: end + 1].splitlines(keepends=True):
            start += len(line)
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict):
                rows.append((start, value))
        return rows


class RunTail:
    """Derives the events of one run from its registry row and files, incrementally.

    Each event comes with a cursor (`poll_with_cursors`): where the tail stands once that event is delivered
    (the offsets reached in log.jsonl and metrics.jsonl, the status and attempt last reported). It is the
    SSE event id: a client that reconnects with it as `Last-Event-ID` gets a tail started there
    (`cursor=`), so the events after that one and none before. A plain counter could not be that: a
    reconnecting stream reads the history in one poll, its log and metrics lines merged by time, and the live
    polls may have delivered them in another order (a log line in one poll, a metrics line stamped earlier
    in the next)."""

    def __init__(
        self, registry: RunRegistry, run_id: str, *, include_logs: bool = True, cursor: str | None = None
    ) -> None:
        self.registry = registry
        self.record: RunRecord = registry.get(run_id)
        run_dir = Path(self.record.run_dir)
        self.metrics = _LineTail(run_dir / "metrics.jsonl")
        self.logs = _LineTail(run_dir / "log.jsonl")
        self.include_logs = include_logs
        self._status: str | None = None
        self._attempts = -1
        self.gone = False
        """The run was deleted: no event will come (a stream of it ends)."""
        resumed = parse_cursor(cursor)
        if resumed is not None:
            self.logs.offset, self.metrics.offset, self._status, self._attempts = resumed

    def cursor(self, logs: int, metrics: int) -> str:
        """The cursor once the log lines up to `logs`, the metrics lines up to `metrics` and the current
        status are delivered (`parse_cursor` reads it back)."""
        return f"{logs}.{metrics}.{self._status or '-'}.{self._attempts}"

    @property
    def finished(self) -> bool:
        return self._status in ("completed", "failed", "cancelled")

    def poll(self) -> list[RunEvent]:
        return [event for event, _ in self.poll_with_cursors()]

    def poll_with_cursors(self) -> list[tuple[RunEvent, str]]:
        """The new events, each with the cursor just past it (its SSE id)."""
        try:
            record = self.registry.get(self.record.id)
        except NotFoundError:
            self.gone = True
            return []
        self.record = record
        run_id, kind = record.id, record.kind
        delivered = {"logs": self.logs.offset, "metrics": self.metrics.offset}  # before these lines
        # (time, which file, offset past the line, event) of each new line of either file
        logs: list[tuple[float, str, int, RunEvent]] = []
        for end, row in self.logs.read():
            message = str(row.get("message", ""))
            when = float(row.get("ts", time.time()))
            if row.get("event") == "checkpoint" or message.startswith("checkpoint"):
                step = row.get("step")
                event = RunEvent(
                    type="checkpoint",
                    run_id=run_id,
                    kind=kind,
                    time=when,
                    message=message,
                    step=int(step) if isinstance(step, int) else None,
                )
            elif self.include_logs:
                event = RunEvent(
                    type="log",
                    run_id=run_id,
                    kind=kind,
                    time=when,
                    message=message,
                    level=str(row.get("level", "INFO")),
                )
            else:
                continue
            logs.append((when, "logs", end, event))
        rows = self.metrics.read()
        metrics: list[tuple[float, str, int, RunEvent]] = []
        for index, (end, row) in enumerate(rows):
            numbers = _numeric(row)
            is_eval = any(k.startswith(("eval", "val")) for k in numbers)
            event = RunEvent(
                type="eval" if is_eval else "progress",
                run_id=run_id,
                kind=kind,
                time=float(row.get("time", time.time())),
                step=int(row.get("step", 0)),
                metrics=numbers,
                # the registry's progress is the run's now: true of the newest line only (a replayed
                # history said 100 % at step 1 of a finished run)
                progress=record.progress if index == len(rows) - 1 else None,
            )
            metrics.append((event.time, "metrics", end, event))
        # the two files' lines merged by time (each file's own order kept), as the live polls interleaved
        # them: a history read in one poll gave the whole log, then every step. Each cursor says how far
        # each file is delivered at that point of the merge
        events: list[tuple[RunEvent, str]] = []
        for _, source, end, event in heapq.merge(logs, metrics, key=lambda line: line[0]):
            delivered[source] = end
            events.append((event, self.cursor(delivered["logs"], delivered["metrics"])))
        status = record.status.value
        # A new attempt (requeued, then running again) is a new "started" even if we missed the "queued".
        if status != self._status or (status == "running" and record.attempts != self._attempts):
            self._status = status
            self._attempts = record.attempts
            events.append((status_event(record), self.cursor(self.logs.offset, self.metrics.offset)))
        return events


def status_event(record: RunRecord) -> RunEvent:
    """The lifecycle event of a run's current status, from its row alone."""
    return RunEvent(
        type=STATUS_EVENTS[record.status.value],
        run_id=record.id,
        kind=record.kind,
        # when it happened, not when it was noticed (an SSE history replays it much later)
        time=record.entered_status_at() or time.time(),
        status=record.status.value,
        message=record.message,
        progress=record.progress,
        metrics={k: float(v) for k, v in record.metrics.items() if isinstance(v, int | float)},
    )


def queued_event(record: RunRecord) -> RunEvent:
    """The `queued` event of a queued run. Built from the row alone, so every process that builds it (the API
    that queued the run, a sweep queueing its trial, a worker announcing runs nobody heard of) builds the
    same JSON, and the notifiers' once-per-event claim sends it once. A run put back on the queue after an
    attempt (preempted, its worker dead) is queued again: its event is the one its worker's `RunTail` derived
    when it requeued it (`status_event`: the time it was requeued, the message saying why)."""
    if record.attempts > 0:
        return status_event(record)
    return RunEvent(
        type="queued", run_id=record.id, kind=record.kind, status="queued", time=record.created_at
    )


_CURSOR = re.compile(r"(\d{1,19})\.(\d{1,19})\.([^.]+)\.(-?\d{1,19})", re.ASCII)
"""A `RunTail.cursor`: log offset, metrics offset, status (`-` for none), attempts."""


def parse_cursor(cursor: str | None) -> tuple[int, int, str | None, int] | None:
    """(log offset, metrics offset, status, attempts) of a `RunTail.cursor`; None for no cursor or one this
    server did not make (an SSE client then gets the whole history, as on a first connection)."""
    # ASCII digits only, at most 19 of them (any file offset; what `cursor` writes): `str.isdigit` took "²"
    # and `lstrip("-")` took "--1", which `int` then refused, and `int` refuses 4301+ digits: the client's
    # Last-Event-ID header was a 500
    found = _CURSOR.fullmatch((cursor or "").strip())
    if found is None:
        return None
    logs, metrics, status, attempts = found.groups()
    if status != "-" and status not in STATUS_EVENTS:
        return None
    return int(logs), int(metrics), None if status == "-" else status, int(attempts)


def sse_format(event: RunEvent, event_id: int | str) -> str:
    return f"id: {event_id}\nevent: {event.type}\ndata: {event.model_dump_json()}\n\n"


# -- buses ---------------------------------------------------------------------------------------------------
Subscriber = Callable[[RunEvent], None]

CLAIM_TTL_S = 3600
"""How long a RedisBus claim lasts: far longer than one event takes to reach every subscriber."""


class EventBus(Protocol):
    shared: bool
    """Whether other processes receive this bus's events (Redis): an event published while none of them
    listens is lost to them, which `tldrlab.service.worker` makes up for with `queued` events."""

    def publish(self, event: RunEvent) -> None:
        """Hand `event` to every subscriber. On Redis, an event that cannot reach it is dropped, the outage
        logged once (`RedisBus`)."""
        ...

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call `callback` for every event from now on; returns an unsubscribe function."""
        ...

    def first_to_claim(self, key: str, ttl_s: int = CLAIM_TTL_S) -> bool:
        """True for the first caller with `key` among every process subscribed to this bus (for `ttl_s`, an
        hour by default): what only one of them should do for an event all of them receive, such as notify
        about it."""
        ...

    def first_to_claim_each(self, keys: Sequence[str], ttl_s: int = CLAIM_TTL_S) -> list[bool]:
        """`first_to_claim` of each key, in one go (one round-trip to Redis however many keys). Both raise
        `RedisUnreachableError` while Redis is unreachable (the bus has logged it)."""
        ...


class MemoryBus:
    """In-process fan-out (embedded mode: notifiers live in the worker process)."""

    shared = False

    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []
        self._lock = threading.Lock()

    def publish(self, event: RunEvent) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        for callback in subscribers:
            callback(event)

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        with self._lock:
            self._subscribers.append(callback)

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._subscribers:
                    self._subscribers.remove(callback)

        return unsubscribe

    def first_to_claim(self, key: str, ttl_s: int = 0) -> bool:
        return True  # no other process receives this process's events

    def first_to_claim_each(self, keys: Sequence[str], ttl_s: int = 0) -> list[bool]:
        return [True] * len(keys)


RECONNECT_EVERY_S = 0.25
"""While Redis is unreachable, how often the bus tries it again: its watch (`RedisBus`) and each of its
subscriptions. Once Redis answers, an event published is delivered within about this long. A try costs a
refused connection, or against a host that does not answer `PROBE_TIMEOUT_S` of the watch's own thread:
a few tries a second, no loop."""
PROBE_TIMEOUT_S = 0.5
"""How long the watch's try may wait to connect, and then for Redis's answer: no retries."""


class RedisBus:
    """Redis pub/sub: every event goes to `runs:<id>:events` and to `tldrlab:events`.

    While Redis is unreachable an event published is dropped (pub/sub keeps nothing for a subscriber that is
    not connected, and every subscriber's connection is down too) and a subscription waits for Redis, then
    subscribes again; the bus's `outage` logs it once, not once an event.

    Once the outage is known, an event is dropped without asking Redis, and a thread of the bus's (its
    watch) tries Redis every `RECONNECT_EVERY_S`, through a client that waits at most `PROBE_TIMEOUT_S` and
    does not retry, until it answers; the subscriptions reconnect as often. Through the bus's own client,
    each event against a host that does not answer (packets dropped, not refused) waited out its timeouts,
    holding up the thread publishing it (a worker's heartbeat thread, a training's every step). The events
    were once tried one in 4 s from the publishing thread, and the subscriptions' waits doubled up to 4 s:
    what was published in the first seconds after Redis was back was still dropped, or went unheard. The
    first event of an outage, and every claim, wait out the bus's own client (`redis_outage.redis_client`:
    against a host that does not answer, some 1 s with the default settings; `redis_outage.call_bound_s` at
    most)."""

    shared = True

    def __init__(self, url: str, settings: Settings | None = None) -> None:
        self.url = url
        self.settings = settings or get_settings()
        # bounded (`redis_client`): a claim against a Redis that does not answer gives up within
        # `redis_outage.call_bound_s`, and a worker's maintenance pass moves on
        self.redis = redis_client(url, self.settings)
        self._probe = redis_client(
            url,
            self.settings,
            connect_timeout_s=PROBE_TIMEOUT_S,
            read_timeout_s=PROBE_TIMEOUT_S,
            retry=bounded_retry(0),
        )
        self._watch_lock = threading.Lock()
        self._watch: threading.Thread | None = None
        self._closed = threading.Event()
        self.outage = RedisOutage(
            log,
            "run events are not published meanwhile, lost to the notifiers of every process (the bus tries "
            f"again every {RECONNECT_EVERY_S:g}s, and its subscriptions reconnect as often)",
            "run events are published again",
        )
        self._subscriptions: list[Callable[[], None]] = []

    def publish(self, event: RunEvent) -> None:
        if self.outage.down:
            self._watch_outage()  # a claim may have met the outage first
            return  # dropped, as the outage's one warning said
        payload = event.model_dump_json()
        pipe = self.redis.pipeline()
        pipe.publish(f"runs:{event.run_id}:events", payload)
        pipe.publish(ALL_CHANNEL, payload)
        try:
            pipe.execute()
        except unreachable_errors() as exc:
            self.outage.failed(exc)
            self._watch_outage()
            return
        self.outage.answered()

    def _watch_outage(self) -> None:
        """Start the watch (`_wait_for_redis`) unless it runs, or the bus is closed."""
        with self._watch_lock:
            if self._watch is None and not self._closed.is_set():
                self._watch = threading.Thread(
                    target=self._wait_for_redis, name="redis-bus-watch", daemon=True
                )
                self._watch.start()

    def _wait_for_redis(self) -> None:
        """Try Redis every `RECONNECT_EVERY_S` until it answers (or a subscription's reconnect saw it answer:
        they share the outage), and end the outage: the next event is published. The publishing thread
        used to try, one event in 4 s, so the events of up to 4 s after Redis was back were dropped too."""
        while not self._closed.wait(RECONNECT_EVERY_S):
            if self.outage.down:
                try:
                    self._probe.ping()
                except unreachable_errors():
                    continue
                self.outage.answered()
            with self._watch_lock:  # with the lock, so a failure meanwhile finds a watch or starts one
                if not self.outage.down:
                    self._watch = None
                    return
        with self._watch_lock:
            self._watch = None

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        stopped = threading.Event()
        # a client of its own whose commands wait out an outage until unsubscribed: on redis-py's default
        # retry the listening thread died at the first outage, and this process's notifiers heard nothing
        # for good; reconnected, redis-py subscribes the connection again
        reconnect = (RECONNECT_EVERY_S, RECONNECT_EVERY_S)
        listener = redis_client(
            self.url, self.settings, retry=outage_retry(self.outage, stopped.is_set, backoff_s=reconnect)
        )
        pubsub = listener.pubsub(ignore_subscribe_messages=True)

        def handle(message: dict[str, Any]) -> None:
            callback(RunEvent.model_validate_json(message["data"]))

        def on_error(exc: BaseException, pubsub: Any, thread: Any) -> None:
            if stopped.is_set():
                thread.stop()  # given up waiting for Redis: unsubscribed
            elif isinstance(exc, Exception):
                # a subscriber's own failure (a notifier's bug): the next event still reaches it
                log.warning(f"run event subscriber failed: {type(exc).__name__}: {exc}")
                time.sleep(0.1)
            else:
                raise exc

        pubsub.subscribe(**{ALL_CHANNEL: handle})  # every process's events, from every subscribed process
        thread = pubsub.run_in_thread(sleep_time=0.1, daemon=True, exception_handler=on_error)

        def unsubscribe() -> None:
            stopped.set()
            thread.stop()
            thread.join(timeout=5)  # it reads within 0.1 s: closing under it was a thread's traceback
            pubsub.close()
            listener.close()

        self._subscriptions.append(unsubscribe)
        return unsubscribe

    def close(self) -> None:
        """Stop every subscription's listening thread, and the watch of an outage."""
        self._closed.set()
        while self._subscriptions:
            self._subscriptions.pop()()
        with self._watch_lock:
            watch = self._watch
        if watch is not None:
            watch.join(timeout=2 * PROBE_TIMEOUT_S + RECONNECT_EVERY_S)

    def first_to_claim(self, key: str, ttl_s: int = CLAIM_TTL_S) -> bool:
        with self.outage.asking("cannot claim an event"):
            return bool(self.redis.set(f"tldrlab:claimed:{key}", 1, nx=True, ex=ttl_s))

    def first_to_claim_each(self, keys: Sequence[str], ttl_s: int = CLAIM_TTL_S) -> list[bool]:
        # pipelined, not a transaction: each SET NX stays atomic on its own, which is all a claim needs
        pipe = self.redis.pipeline(transaction=False)
        for key in keys:
            pipe.set(f"tldrlab:claimed:{key}", 1, nx=True, ex=ttl_s)
        with self.outage.asking("cannot claim an event"):
            return [bool(result) for result in pipe.execute()]


BUSES: dict[str, Callable[[Settings], EventBus]] = {
    "memory": lambda settings: MemoryBus(),
    "redis": lambda settings: RedisBus(str(settings.queue_url), settings),
}


def open_bus(settings: Settings) -> EventBus:
    """Redis pub/sub when the queue is Redis, else an in-process bus."""
    return BUSES["redis" if settings.queue_url else "memory"](settings)
