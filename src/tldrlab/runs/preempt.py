"""Process-wide "please stop soon" flag, set by a worker's SIGTERM handler (or Ctrl-C handlers).

Long loops call `stop_requested()` between steps; when it is set they finish the current step, write a
checkpoint and raise `RunPreemptedError`, and the worker puts the run back on the queue.
"""

from __future__ import annotations

import threading

_stop = threading.Event()


def request_stop() -> None:
    _stop.set()


def stop_requested() -> bool:
    return _stop.is_set()


def reset() -> None:
    _stop.clear()
