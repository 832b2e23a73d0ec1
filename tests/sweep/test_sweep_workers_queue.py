"""A sweep's trials on the job queue, on both queues (embedded SQLite, Redis + RQ): the worker processes of
`sweep run --workers K` take the sweep's trials only, a trial put back on the queue (preempted, its worker
dead) goes where those workers look, and a trial's retry waits out the queue's backoff."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from optuna.trial import TrialState
from test_runner import write_sweep

from cliutil import run_captured
from tldrlab.config import get_settings
from tldrlab.kinds import KINDS
from tldrlab.runs import RunStatus, create_run, open_registry
from tldrlab.runs.db import table_exists
from tldrlab.runs.ownership import owner_alive
from tldrlab.service.queue import open_queue
from tldrlab.service.worker import WorkerConfig, build_worker, reconcile, requeue
from tldrlab.sweep.config import SweepConfig
from tldrlab.sweep.mapping import suggest_params
from tldrlab.sweep.runner import open_study
from tldrlab.sweep.spec import load_sweep
from tldrlab.sweep.storage import RUN_ATTR, SWEEP_RUN_ATTR, load_study, resolve_storage_url
from tldrlab.sweep.trials import TRIAL_PROGRAMS
from tldrlab.threads import START_METHOD_ENV

QUEUES = ["sqlite", "rq"]
DRAIN = WorkerConfig(burst=True, heartbeat_s=0.2, poll_s=0.05, stale_after_s=1.0)
ATTEMPT_TIMES = "attempt_times.txt"
"""Where `flaky_trial_job` records when each attempt of a trial run began (and when its first one failed)."""


def _use_queue(kind: str, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> None:
    if kind == "rq":
        monkeypatch.setenv("TLDRLAB_QUEUE_URL", request.getfixturevalue("redis_url"))
        get_settings.cache_clear()


def _sweep(tmp_path: Path, steps: int) -> Path:
    parameters = {"x": {"min": 0.0, "max": 1.0}, "steps": {"value": steps}}
    return write_sweep(tmp_path / "s.yaml", parameters=parameters)


@pytest.mark.slow
@pytest.mark.parametrize("queue_kind", QUEUES)
def test_a_sweeps_workers_leave_a_run_waiting_in_the_home_alone(
    queue_kind: str,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    warm_worker_processes: Callable[..., None],
) -> None:
    """The K worker processes of `sweep run --workers K` took any job in the home: a training waiting there
    (submitted through the API, `runs submit`) ran in them, and was preempted and requeued when the sweep
    ended. It waits, untouched, for a worker of the home instead."""
    warm_worker_processes("tldrlab.service.sweeps")
    _use_queue(queue_kind, monkeypatch, request)
    waiting = create_run("smoke", {"steps": 3}).id
    open_queue().enqueue(waiting)  # first in line: any worker polling the queue takes it first
    sweep = _sweep(tmp_path, steps=2)

    code, _, err = run_captured(["sweep", "run", str(sweep), "--trials", "3", "--workers", "2"], capsys)

    assert code == 0, err[-2000:]
    registry = open_registry()
    (sweep_run,) = registry.list(kind="sweep")
    trials = registry.list(kind="trial", limit=None)
    assert len(trials) >= 3 and all(t.status is RunStatus.COMPLETED for t in trials[:3]), trials
    if queue_kind == "rq":  # its lane went with it: nothing of it is left in Redis for good
        assert not open_queue().redis.keys(f"*{sweep_run.id}*")  # type: ignore[attr-defined]
    untouched = registry.get(waiting)
    assert untouched.status is RunStatus.QUEUED, untouched.message
    assert untouched.attempts == 0 and untouched.started_at is None and untouched.worker is None
    # a worker of the home takes it, as it would have without the sweep
    build_worker(config=DRAIN).run()
    ran = registry.get(waiting)
    assert ran.status is RunStatus.COMPLETED and ran.attempts == 1, ran.message


@pytest.mark.parametrize("queue_kind", QUEUES)
def test_a_trial_put_back_on_the_queue_goes_to_its_sweeps_workers(
    queue_kind: str, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """A trial preempted (or retried: the same `requeue`) and one whose worker died (`reconcile`) go back
    where the sweep's workers look, its lane, and those take nothing else; a worker of the home takes the
    home's other runs (and may take a sweep's trial too)."""
    _use_queue(queue_kind, monkeypatch, request)
    registry = open_registry()
    config = SweepConfig(sweep=yaml.safe_load(_sweep(tmp_path, steps=2).read_text()), trials=2, workers=2)
    sweep_run = create_run("sweep", config, study="toy")

    def trial(number: int) -> str:
        trial_config = {"program": "command", "params": {"x": 0.5}, "sweep": config.sweep}
        tags = {"study": "toy", "trial": number}
        return create_run("trial", trial_config, parent_id=sweep_run.id, tags=tags, registry=registry).id

    preempted, orphaned = trial(0), trial(1)
    other = create_run("smoke", {"steps": 2}).id
    queue = open_queue()
    requeue(registry, queue, preempted, "requeued: its worker is shutting down")
    # the worker of `orphaned` died: running, its heartbeat stale, its run directory's lock free
    registry.update(orphaned, status=RunStatus.RUNNING, worker="gone:1:abcd", heartbeat_at=time.time() - 60)
    assert (orphaned, "queued") in reconcile(registry, queue, DRAIN)
    queue.enqueue(other)

    def taken_by(lane: str | None) -> list[str]:
        seen: list[str] = []
        worker = build_worker(config=DRAIN, lane=lane)
        worker.queue.work(
            seen.append, worker_id=worker.worker_id, should_stop=lambda: False, burst=True, lane=lane
        )
        return seen

    assert sorted(taken_by(sweep_run.id)) == sorted([preempted, orphaned])
    assert other in taken_by(None)


@pytest.mark.slow
@pytest.mark.parametrize("queue_kind", QUEUES)
def test_a_sweep_run_again_has_its_workers_continue_the_trial_the_stopped_one_left(
    queue_kind: str, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """A sweep stopped while its workers ran a trial left that trial run queued, a child of its sweep run,
    on that sweep's lane. Run again, the sweep is another run, whose workers take only its own trials: it
    continues that trial as its own (its parent now), on its lane, and its workers finish it."""
    _use_queue(queue_kind, monkeypatch, request)
    sweep = _sweep(tmp_path, steps=2)
    spec = load_sweep(sweep)
    registry = open_registry()
    # what the stopped sweep left: its study's trial running, the trial's run queued again by its worker
    study = open_study(spec, resolve_storage_url(None), "toy")
    asked = study.ask()
    config = SweepConfig(sweep=spec.raw, source=str(sweep), trials=2, workers=2)
    stopped = create_run("sweep", config, study="toy")
    registry.update(stopped.id, status=RunStatus.CANCELLED, message="cancelled: stopped")
    trial_config = TRIAL_PROGRAMS[spec.kind].config(spec, suggest_params(asked, spec))
    tags = {"study": "toy", "trial": asked.number}
    left = create_run("trial", trial_config, parent_id=stopped.id, tags=tags, registry=registry).id
    asked.set_user_attr(SWEEP_RUN_ATTR, stopped.id)
    asked.set_user_attr(RUN_ATTR, left)
    requeue(registry, open_queue(), left, "requeued: its worker is shutting down")

    # its own session: a sweep that waited for good is stopped with its workers
    argv = [sys.executable, "-m", "tldrlab", "sweep", "run", str(sweep), "--trials", "2", "--workers", "2"]
    proc = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail(f"the sweep never finished: {proc.communicate()[1][-2000:]}")

    assert proc.returncode == 0, err[-2000:]
    (again,) = [r for r in registry.list(kind="sweep") if r.id != stopped.id]
    continued = registry.get(left)
    assert continued.status is RunStatus.COMPLETED and continued.parent_id == again.id, continued.message
    trials = load_study("toy", None).get_trials()
    assert len(trials) == 2 and trials[asked.number].state is TrialState.COMPLETE  # no copy of it asked


def flaky_trial_job(run: Any, config: Any) -> Any:
    """A sweep trial (kind `trial`) whose first attempt fails like a database hiccup (transient: retried),
    recording when each attempt began, and when the first one failed."""
    from tldrlab.errors import ServiceUnavailableError
    from tldrlab.sweep.trials import trial_job

    times = Path(run.dir) / ATTEMPT_TIMES
    with times.open("a") as out:
        out.write(f"{time.time()}\n")
    if run.record.attempts == 1:
        with times.open("a") as out:
            out.write(f"{time.time()}\n")
        raise ServiceUnavailableError("the study's database did not answer")
    return trial_job(run, config)


@pytest.mark.parametrize("queue_kind", QUEUES)
def test_a_trial_that_failed_transiently_is_retried_after_the_queues_backoff(
    queue_kind: str, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """A trial executed by the sweep's own worker was handed to it again a fifth of a second after a
    transient failure, whatever the backoff the queue applies to any other run's retry."""
    _use_queue(queue_kind, monkeypatch, request)
    flaky = dataclasses.replace(KINDS["trial"], execute=f"{__name__}:flaky_trial_job")
    monkeypatch.setitem(KINDS, "trial", flaky)
    backoff_s = 1.5
    sweep = _sweep(tmp_path, steps=2)
    config = SweepConfig(sweep=yaml.safe_load(sweep.read_text()), source=str(sweep), trials=1, workers=1)
    sweep_run = create_run("sweep", config, study="toy")
    open_queue().enqueue(sweep_run.id)

    build_worker(config=DRAIN.model_copy(update={"backoff_base_s": backoff_s})).run()

    registry = open_registry()
    assert registry.get(sweep_run.id).status is RunStatus.COMPLETED, registry.get(sweep_run.id).message
    (trial,) = registry.list(kind="trial", limit=None)
    assert trial.status is RunStatus.COMPLETED and trial.attempts == 2, trial.message
    first_began, first_failed, second_began = (
        float(line) for line in (Path(trial.run_dir) / ATTEMPT_TIMES).read_text().split()
    )
    assert first_began <= first_failed
    assert second_began - first_failed >= backoff_s, f"retried after {second_began - first_failed:.2f}s"


def _running(pid: int) -> bool:
    """Whether process `pid` runs: a zombie (dead, not reaped yet by whoever adopted it) does not."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


STOPPED_WITHIN_S = 45.0
"""How long the worker processes of a killed sweep may take to stop: a warm stop lets a command trial run to
its end (10 s here; 14 s seen on a loaded machine)."""


@pytest.mark.slow
@pytest.mark.parametrize("start_method", ["spawn", "forkserver"])
def test_the_workers_of_a_sweep_killed_with_sigkill_stop(start_method: str, tmp_path: Path) -> None:
    """`sweep run --workers 2` killed with SIGKILL (kill -9, the OOM killer) left its worker processes
    running for good: holding CPUs, waiting on its lane for trials that no sweep would ever tell. Each now
    sees the sweep's process die and stops as on SIGTERM, whichever way it was started (spawned in
    production, forked from a fork server in the tests), and leaves its trial finished or queued, never
    `running` with a live owner."""
    parameters = {"x": {"min": 0.0, "max": 1.0}, "steps": {"value": 100}, "sleep": {"value": 0.1}}
    sweep = write_sweep(tmp_path / "s.yaml", parameters=parameters)
    cmd = [sys.executable, "-m", "tldrlab", "sweep", "run", str(sweep), "--trials", "6", "--workers", "2"]
    env = {**os.environ, START_METHOD_ENV: start_method}
    err_path = tmp_path / "sweep.err"  # a file, not a pipe: the workers, which outlive the sweep, write to it
    with err_path.open("w") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=env, start_new_session=True)
    registry = open_registry()
    helpers: set[int] = set()
    try:
        deadline = time.monotonic() + 120
        while len(helpers) < 2:  # both worker processes are running a trial
            assert proc.poll() is None and time.monotonic() < deadline, err_path.read_text()[-2000:]
            time.sleep(0.1)
            if table_exists(registry.db, "workers"):
                rows = registry.db.query("SELECT pid FROM workers WHERE state = 'busy'")
                helpers = {int(row["pid"]) for row in rows}
        assert proc.pid not in helpers

        proc.kill()
        proc.wait()

        deadline = time.monotonic() + STOPPED_WITHIN_S
        while (running := {pid for pid in helpers if _running(pid)}) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not running, (
            f"worker processes {sorted(running)} still run {STOPPED_WITHIN_S:.0f} s after their sweep was "
            f"killed: {err_path.read_text()[-2000:]}"
        )
    finally:
        for pid in helpers:  # none left behind for the next tests, whatever failed
            if _running(pid):
                os.kill(pid, signal.SIGKILL)
    workers = registry.db.query("SELECT pid, state FROM workers")
    assert {row["state"] for row in workers} == {"stopped"}, workers  # each stopped as on SIGTERM
    trials = registry.list(kind="trial", limit=None)
    assert len(trials) >= 2, trials
    for trial in trials:
        assert not (trial.status is RunStatus.RUNNING and owner_alive(trial.run_dir)), trial
        assert trial.status in (RunStatus.COMPLETED, RunStatus.QUEUED), (trial.status, trial.message)
