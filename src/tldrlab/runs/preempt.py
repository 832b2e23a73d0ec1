"""Process-wide "please stop soon" flag, set by a worker's SIGTERM handler (or Ctrl-C handlers).

Long loops call `stop_requested()` between steps; when it is set they finish the current step, write a
checkpoint and raise `RunPreemptedError`, and the worker puts the run back on the queue.
"""

from __future__ import annotations

import signal
import threading

_stop = threading.Event()
_asked_by: list[str] = []
"""The name of the signal that asked for the stop (empty: asked by code, or not asked)."""

HARD_STOP_AFTER_S = 1.0
"""A second stop signal this long after the first is a hard stop (sooner, it is the same stop sent twice, as
when both a process manager and a terminal signal the process; rq ignores those too)."""


def request_stop(signum: int | None = None) -> None:
    """`signum`: the signal that asked, named in the stop's message (a worker stops on SIGTERM or SIGINT)."""
    if signum is not None and not _asked_by:
        _asked_by.append(signal.Signals(signum).name)
    _stop.set()


def stop_reason() -> str:
    """What asked for the stop: the signal's name (SIGTERM, SIGINT), else `stop requested`."""
    return _asked_by[0] if _asked_by else "stop requested"


def stop_requested() -> bool:
    return _stop.is_set()


def reset() -> None:
    _stop.clear()
    _asked_by.clear()
