"""SIGTERM to a command running a run: the first asks the run's loop to stop after its step (a run without
steps goes on), a second one later stops it at once, so no kind ignores SIGTERM for good."""

from __future__ import annotations

import os
import signal

import pytest

from tldrlab.errors import RunCancelledError
from tldrlab.launch import preempt_on_sigterm
from tldrlab.runs import preempt


def test_the_first_sigterm_asks_to_stop_and_a_second_stops_now(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(preempt, "HARD_STOP_AFTER_S", 0.0)
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(RunCancelledError, match="second SIGTERM"), preempt_on_sigterm():
        os.kill(os.getpid(), signal.SIGTERM)
        assert preempt.stop_requested()  # a loop would checkpoint and preempt; work without steps goes on
        os.kill(os.getpid(), signal.SIGTERM)
        pytest.fail("the second SIGTERM did not stop the work")
    assert signal.getsignal(signal.SIGTERM) is before and not preempt.stop_requested()


def test_the_same_stop_sent_twice_at_once_is_one_stop() -> None:
    with preempt_on_sigterm():  # the default 1 s: a process manager and a terminal both signalling
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGTERM)
        assert preempt.stop_requested()
    assert not preempt.stop_requested()
