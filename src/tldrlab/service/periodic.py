"""The periodic cleanup inside `tldrlab serve`: a retention pass (`tldrlab.runs.retention.prune`) when the
server starts and every `retention.every_s` seconds after, while `retention.enabled` is set. A failing pass is
logged and the next one runs on time; each action is a cleanup event (`GET /cleanup/events`, the runs
page)."""

from __future__ import annotations

import logging
import threading

from tldrlab.config import Settings
from tldrlab.runs.retention import prune

log = logging.getLogger("tldrlab.cleanup")


class PeriodicCleanup:
    """A daemon thread running retention passes until `stop()`."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.passes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="periodic-cleanup", daemon=True)

    def start(self) -> PeriodicCleanup:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                report = prune(settings=self.settings)
                log.info(
                    f"retention pass: {len(report.actions)} action(s), {report.bytes_freed} bytes freed, "
                    f"{len(report.pending)} pending"
                )
            except Exception as exc:  # a broken pass must not stop the server or the next pass
                log.warning(f"retention pass failed: {type(exc).__name__}: {exc}")
            self.passes += 1
            self._stop.wait(self.settings.retention.every_s)
