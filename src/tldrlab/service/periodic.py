"""The periodic cleanup inside `tldrlab serve`: a retention pass (`tldrlab.runs.retention.prune`) when the
server starts and every `retention.every_s` seconds after, while `retention.enabled` is set. A failing pass is
logged and the next one runs on time; each action is a cleanup event (`GET /cleanup/events`, the runs
page).

The policy's `kinds` are resolved here, where the server reads them (the app, this loop and the workers):
`tldrlab.runs.retention` sits below the kind registry and compares the names as they are.
"""

from __future__ import annotations

import logging
import threading

from tldrlab.config import Settings
from tldrlab.errors import UnknownKindError
from tldrlab.kinds import kind_names_by_recorded_name, recorded_kind_names
from tldrlab.runs.retention import prune

log = logging.getLogger("tldrlab.cleanup")


def check_retention_setting(settings: Settings) -> Settings:
    """`settings` with `retention.kinds` naming every kind it means under all its names: an old name (eval)
    means its kind, whose runs are recorded under the current name and, if older, the old one; an unknown
    name is refused (UnknownKindError) instead of pruning nothing without a word."""
    policy = settings.retention
    if not policy.kinds:  # every kind
        return settings
    try:
        names = list(recorded_kind_names(*policy.kinds))
    except UnknownKindError as exc:
        raise UnknownKindError(
            f"retention.kinds (TLDRLAB_RETENTION__KINDS): {exc.message}", **exc.details
        ) from exc
    if names == policy.kinds:
        return settings
    return settings.model_copy(update={"retention": policy.model_copy(update={"kinds": names})})


class PeriodicCleanup:
    """A daemon thread running retention passes until `stop()`."""

    def __init__(self, settings: Settings) -> None:
        self.settings = check_retention_setting(settings)
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
                report = prune(kind_names=kind_names_by_recorded_name(), settings=self.settings)
                log.info(
                    f"retention pass: {len(report.actions)} action(s), {report.bytes_freed} bytes freed, "
                    f"{len(report.pending)} pending"
                )
            except Exception as exc:  # a broken pass must not stop the server or the next pass
                log.warning(f"retention pass failed: {type(exc).__name__}: {exc}")
            self.passes += 1
            self._stop.wait(self.settings.retention.every_s)
