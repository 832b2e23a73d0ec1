"""Process-wide "please stop soon" flag, set by a worker's SIGTERM handler (or Ctrl-C handlers).

Long loops call `stop_requested()` between steps; when it is set they finish the current step, write a
checkpoint and raise `RunPreemptedError`, and the worker puts the run back on the queue.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

_stop = threading.Event()
_interrupt_lost = threading.Event()
_keeping: list[None] = []
"""One entry per `keep_lost_interrupts` block open (a sweep's block holds its trials' blocks)."""
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


@contextmanager
def keep_lost_interrupts() -> Iterator[None]:
    """Ctrl-C raises KeyboardInterrupt wherever the main thread is; when that is a finalizer (the garbage
    collector running a `__del__` or a weakref callback), Python prints "Exception ignored in ..." and drops
    it, and the command went on as if no one had pressed it (a sweep's trial ran to its end and the sweep
    exited 0). Inside this block such a KeyboardInterrupt is kept instead of printed:
    `raise_lost_interrupt`, which the loops call between steps (`Run.check_cancelled`), raises it again."""
    previous: Callable[[Any], object] = sys.unraisablehook

    def hook(unraisable: Any) -> None:
        if isinstance(unraisable.exc_value, KeyboardInterrupt):
            _interrupt_lost.set()
            return
        previous(unraisable)

    sys.unraisablehook = hook
    _keeping.append(None)
    try:
        yield
    finally:
        _keeping.pop()
        sys.unraisablehook = previous
        if not _keeping:  # a trial's block that ends first leaves the Ctrl-C to its sweep's loop
            _interrupt_lost.clear()


def raise_lost_interrupt() -> None:
    """Raise the KeyboardInterrupt a finalizer swallowed (`keep_lost_interrupts`), once."""
    if _interrupt_lost.is_set():
        _interrupt_lost.clear()
        raise KeyboardInterrupt
