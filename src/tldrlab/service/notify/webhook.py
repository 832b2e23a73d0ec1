"""Generic webhook notifier: POST each event as JSON, with a timeout and bounded retries, off the run's
thread (a slow receiver never slows training). Progress events are throttled per run."""

from __future__ import annotations

import atexit
import logging
import math
import queue
import threading
import time

import httpx

from tldrlab.service.events import RunEvent
from tldrlab.service.notify.base import redact

log = logging.getLogger("tldrlab.notify.webhook")


class WebhookNotifier:
    """Callable notifier; `close()` waits for pending deliveries."""

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 5.0,
        retries: int = 3,
        backoff_s: float = 0.5,
        progress_every_s: float = 30.0,
    ) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self.retries = max(1, retries)
        self.backoff_s = backoff_s
        self.progress_every_s = progress_every_s
        self.delivered = 0
        self.failed = 0
        self._exiting = False
        """Set at the process's exit: each pending event is tried once, without backoff."""
        self._last_progress: dict[str, float] = {}
        self._pending: queue.Queue[RunEvent | None] = queue.Queue()
        self._thread = threading.Thread(target=self._deliver_loop, name="webhook", daemon=True)
        self._thread.start()
        # the delivery thread is a daemon, ended with its process: a worker's last events (`completed`, just
        # published as a burst worker returns, or as a stopped one exits) were queued and never sent
        atexit.register(self._deliver_pending_at_exit)

    def __call__(self, event: RunEvent) -> None:
        if event.type == "log":
            return
        if event.type == "progress":
            now = time.monotonic()
            if now - self._last_progress.get(event.run_id, -1e9) < self.progress_every_s:
                return
            self._last_progress[event.run_id] = now
        self._pending.put(event)

    def _deliver_loop(self) -> None:
        with httpx.Client(timeout=self.timeout_s) as client:
            while (event := self._pending.get()) is not None:
                self._deliver(client, event)
                self._pending.task_done()
            self._pending.task_done()

    def _deliver(self, client: httpx.Client, event: RunEvent) -> None:
        body = {
            "event": event.type,
            "run_id": event.run_id,
            "kind": event.kind,
            "status": event.status,
            "message": event.message,
            "step": event.step,
            "progress": event.progress,
            # JSON has no NaN or infinity (a diverged fp16 step's loss, an overflowed perplexity): httpx
            # refuses to encode them, and that ValueError ended the delivery thread, so this event and
            # every later one of the process were never sent
            "metrics": {
                name: value if math.isfinite(value) else None for name, value in event.metrics.items()
            },
            "time": event.time,
        }
        body["message"] = redact(event.message) or None
        for attempt in range(1, self.retries + 1):
            try:
                response = client.post(self.url, json=body)
                if response.status_code < 500 and response.status_code != 429:
                    self.delivered += response.is_success
                    self.failed += not response.is_success
                    return
            except httpx.HTTPError as exc:
                log.debug(f"webhook attempt {attempt} failed: {type(exc).__name__}")
            if attempt == self.retries or self._exiting:
                break
            time.sleep(self.backoff_s * 2 ** (attempt - 1))
        self.failed += 1
        log.warning(f"webhook gave up on a {event.type} event of run {event.run_id} after {attempt} tries")

    def flush(self, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while self._pending.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.02)

    def _deliver_pending_at_exit(self) -> None:
        """At the process's exit, wait for the events still pending, as long as one event's tries may take,
        each event tried once: with their retries and backoff, a receiver that refuses connections held the
        exit for the whole wait."""
        self._exiting = True
        self.flush(timeout_s=self.timeout_s * self.retries)
        if left := self._pending.unfinished_tasks:
            log.warning(f"webhook: {left} event(s) not delivered before the process exited")

    def close(self) -> None:
        atexit.unregister(self._deliver_pending_at_exit)
        self._pending.put(None)
        self._thread.join(timeout=self.timeout_s * self.retries + 5)
