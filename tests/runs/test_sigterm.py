"""SIGTERM to a command running a run: the first asks the run's loop to stop after its step (a run without
steps goes on), a second one later stops it at once, so no kind ignores SIGTERM for good."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tldrlab.errors import RunCancelledError
from tldrlab.launch import preempt_on_sigterm
from tldrlab.runs import RunStatus, open_registry, preempt
from tldrlab.runs.run import read_manifest, start_run


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


@pytest.mark.slow
def test_sigterm_ends_a_run_that_does_not_resume_instead_of_leaving_it_queued(
    tldrlab_home: Path, shared_data: Path
) -> None:
    """`tldrlab experiment dendrites` stopped by SIGTERM left the experiment and its arm `queued`, "waiting
    to be resumed", though no `--resume` takes an experiment: they read queued for good. Both end cancelled
    now, and the command says why."""
    data = shared_data / "scitldr" / "scitldr_a.dev.jsonl"
    argv = [
        sys.executable, "-m", "tldrlab", "experiment", "dendrites", "--data", str(data), "--arms", "baseline",
        "--seeds", "1", "--budget", "100000", "--eval-every", "50000", "--batch-size", "4",
        "--train-limit", "40", "--eval-size", "4", "--test-size", "3", "--max-source-tokens", "16",
        "--vocab-size", "300", "-q",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2] / "src"), "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        registry = open_registry()
        deadline = time.monotonic() + 120
        while not any(r.status is RunStatus.RUNNING for r in registry.list(kind="experiment_arm")):
            assert process.poll() is None and time.monotonic() < deadline, process.communicate()
            time.sleep(0.1)
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130, err
    assert "runs of kind experiment do not resume: start it again" in err
    (experiment,) = registry.list(kind="experiment")
    (arm,) = registry.list(kind="experiment_arm")
    assert experiment.status is RunStatus.CANCELLED and arm.status is RunStatus.CANCELLED
    assert experiment.message is not None and "do not resume: start it again" in experiment.message
    assert arm.message is not None and f"part of {experiment.id}" in arm.message
    assert read_manifest(experiment.run_dir)["status"] == "cancelled"


def test_a_stopped_run_that_does_not_resume_ends_cancelled_unless_a_running_run_launched_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The real smoke training under a kind that does not resume, stopped after its first step: launched by
    a command it ends cancelled (nothing would resume it); launched inside a running run (as a training
    launches its final evaluation) its preemption goes to that run, which settles it as a worker does."""
    from tldrlab.errors import RunPreemptedError
    from tldrlab.kinds import KINDS, RunKind
    from tldrlab.launch import launch_run
    from tldrlab.runs import create_run
    from tldrlab.train.config import SmokeConfig

    once = RunKind("smoke_once", SmokeConfig, "tldrlab.train.smoke:smoke_job", "smoke, not resumable")
    monkeypatch.setitem(KINDS, once.name, once)
    registry = open_registry()
    parent = create_run("smoke", {})
    registry.update(parent.id, status=RunStatus.RUNNING)
    preempt.request_stop()
    with pytest.raises(RunPreemptedError):
        launch_run(once.name, {"steps": 5}, parent_id=parent.id)
    (child,) = registry.list(kind=once.name)
    assert child.status is RunStatus.QUEUED and child.parent_id == parent.id
    preempt.request_stop()
    with pytest.raises(RunCancelledError, match="runs of kind smoke_once do not resume: start it again"):
        launch_run(once.name, {"steps": 5})
    alone = next(r for r in registry.list(kind=once.name) if r.parent_id is None)
    assert alone.status is RunStatus.CANCELLED and alone.error_code == "cancelled"
    assert not preempt.stop_requested()


class _InterruptedFinalizer:
    """Ctrl-C pressed while the garbage collector runs this object's finalizer: the signal's
    KeyboardInterrupt is raised inside `__del__`, where Python prints it and drops it."""

    def __del__(self) -> None:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.01)  # the handler runs here, inside the finalizer


def test_a_ctrl_c_a_finalizer_swallowed_stops_the_run_at_its_next_check(
    capsys: pytest.CaptureFixture[str], request: pytest.FixtureRequest
) -> None:
    """A `sweep run` given Ctrl-C while a weakref callback ran (a garbage collection) printed "Exception
    ignored in ... KeyboardInterrupt", then ran its trial to the end and exited 0, as if no one had asked."""
    # Python's own Ctrl-C (a worker run in this process by an earlier test may have left RQ's handler)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    request.addfinalizer(lambda: signal.signal(signal.SIGINT, previous))
    with preempt_on_sigterm(), start_run("toy", {}) as run:
        _InterruptedFinalizer()  # collected at once: the KeyboardInterrupt is raised and dropped inside it
        with pytest.raises(KeyboardInterrupt):
            run.check_cancelled()  # between steps, as a trial's loop does each second
        run.check_cancelled()  # raised once: the run's own handling of it goes on without another
    assert "Exception ignored" not in capsys.readouterr().err  # kept, not printed as a traceback
    preempt.raise_lost_interrupt()  # nothing left over for the next command of this process
