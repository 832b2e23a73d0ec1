"""Process-wide "please stop soon" flag, set by a worker's SIGTERM handler (or Ctrl-C handlers).

Long loops call `stop_requested()` between steps; when it is set they finish the current step, write a
checkpoint and raise `RunPreemptedError`, and the worker puts the run back on the queue.
"""

from __future__ import annotations

import threading

_stop = threading.Event()

HARD_STOP_AFTER_S = 1.0
"""A second stop signal this long after the first is a hard stop (sooner, it is the same stop sent twice, as
when both a process manager and a terminal signal the process; rq ignores those too)."""


def request_stop() -> None:
    _stop.set()


def stop_requested() -> bool:
    return _stop.is_set()


def reset() -> None:
    _stop.clear()
