"""Sweeps on the queue: the `sweep` and `elm_optimize` run kinds, whose trials the worker system executes.

`sweep_job(run, config)` runs the sweep engine (`tldrlab.sweep.runner.sweep_in_run`) with a `WorkerExecutor`:
each trial run is put on the queue and executed by a worker, with the same claim (compare-and-set),
heartbeats, failure classes and retries, preemption and dead-worker recovery as any run. In a worker the
sweep hands its trials to that worker (they run inside the sweep's execution, each its own run); in the CLI's
process a worker of its own takes that part. With `workers` > 1 the sweep starts that many worker processes
on the queue and only coordinates; they work the sweep's lane of the queue alone (`queue.base`: the jobs of
the sweep run's trials), never another run waiting in the home, which stopping them with the sweep preempted.

A trial that failed transiently waits out the queue's backoff (`worker.retry_delay_s`) before its next
attempt, wherever it executes: its worker process gets it back from the queue no earlier, and this process's
worker is handed it again by the sweep no earlier either (`WorkerExecutor.execute`).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from multiprocessing.process import BaseProcess
from typing import Any

from tldrlab.config import Settings, get_settings
from tldrlab.elm.config import ElmOptimizeConfig
from tldrlab.elm.prepare import load_split
from tldrlab.elm.search import BASE_ATTR, elm_sweep_config
from tldrlab.runs import Run, preempt
from tldrlab.service.events import queued_event
from tldrlab.service.worker import CURRENT_WORKER, Worker, WorkerConfig, build_worker, lane_of, run_worker
from tldrlab.sweep.config import SweepConfig
from tldrlab.sweep.runner import open_study, sweep_in_run
from tldrlab.sweep.spec import parse_sweep
from tldrlab.sweep.storage import refused_study_writes, resolve_storage_url
from tldrlab.threads import adopt_threads, plan_for_share, worker_process_context

log = logging.getLogger("tldrlab.worker")

HELPER = WorkerConfig(heartbeat_s=1.0, stale_after_s=10.0, reconcile_every_s=2.0, poll_s=0.1)
"""How the worker processes of a parallel sweep behave."""

WAIT_S = 0.2
"""Seconds between looks at a trial run another worker executes."""


def stop_when_sweep_process_dies() -> None:
    """In a sweep's worker process: when the sweep's process that started it dies, by any signal (SIGKILL,
    the OOM killer) or exit, stop as on SIGTERM: the running trial checkpoints and goes back to the sweep's
    lane (a command trial runs to its end), and the worker exits. Without it the worker ran on for good,
    holding CPUs and taking the trials of a sweep that nobody would tell.

    `die_with_parent` (PR_SET_PDEATHSIG) does not cover this: it is applied at `os.fork` in children of a
    process that called `children_die_with_this_process`, while a spawned worker is started by fork+exec
    (no Python fork hooks run) and a fork server's by a server that installed none; and a fork server's
    worker's parent is the server, not the sweep's process, which the server outlives as long as any process
    it started (each holds its "alive" pipe). multiprocessing gives either kind of child the read end of a
    pipe whose write end only the starting process holds (`parent_process().sentinel`): it reads end of file
    once that process is gone, however it died."""
    parent = multiprocessing.parent_process()
    if parent is None:  # not started by multiprocessing: nobody to outlive
        return

    def watch() -> None:
        parent.join()  # returns at the sentinel's end of file: the sweep's process is gone
        if preempt.stop_requested():
            return  # already stopping (the sweep's own SIGTERM): a second signal would be a hard stop
        log.warning(f"the sweep's process {parent.pid} died: this worker stops after its current step")
        os.kill(os.getpid(), signal.SIGTERM)  # the worker's handler, whichever queue installed it

    threading.Thread(target=watch, name="sweep-process-watch", daemon=True).start()


def _helper_process(settings: Settings, threads: dict[str, Any], sweep_run_id: str) -> None:
    """Entry point of a parallel sweep's worker process: it takes that sweep run's trials only, and stops
    when the sweep's process dies."""
    stop_when_sweep_process_dies()
    adopt_threads(threads)
    run_worker(settings, HELPER, lane=sweep_run_id)


class WorkerExecutor:
    """The trials of the sweep run `sweep_run_id` through the worker system: queued on the sweep's lane, then
    executed by this process's worker (or the sweep's worker processes), waiting while a run is held by
    another worker or backs off before a retry."""

    def __init__(self, worker: Worker, settings: Settings, sweep_run_id: str) -> None:
        self.worker = worker
        self.settings = settings
        self.sweep_run_id = sweep_run_id
        self.helpers: list[BaseProcess] = []

    def submit(self, run_id: str, *, announce: bool = True) -> None:
        record = self.worker.registry.get(run_id)
        self.worker.queue.enqueue(run_id, lane=lane_of(record))
        if announce:  # a trial is a queued run like any other: notifiers hear of it queued
            self.worker.publish([queued_event(record)])

    def drop_lane(self) -> None:
        """Forget the sweep's own deliveries of its trials (`JobQueue.drop_lane`) once it is done with them;
        never fails the sweep (a lane left behind is only a few jobs no worker takes)."""
        try:
            self.worker.queue.drop_lane(self.sweep_run_id)
        except Exception as exc:
            log.warning(f"could not drop the queue lane of sweep run {self.sweep_run_id}: {exc}")

    def execute(self, run_id: str) -> str:
        """Execute the trial run here; "retrying" while it waits out a transient failure's backoff. The sweep
        asks again later: its loop heartbeats the sweep and stops it when asked meanwhile, which a wait here
        for up to `WorkerConfig.backoff_max_s` would not. Handed back at once, a trial's retry was attempted
        a fifth of a second after its failure, whatever the backoff."""
        while True:
            if self.worker.backoff_left_s(run_id) > 0:
                return "retrying"
            outcome = self.worker.handle(run_id)
            record = self.worker.registry.get(run_id)
            if record.status.finished or outcome in ("preempted", "cancelled", "retrying"):
                return outcome
            time.sleep(WAIT_S)  # executing in another worker

    def start_helpers(self, count: int) -> None:
        context = worker_process_context()
        threads = plan_for_share(count).as_dict()
        for index in range(count):
            process = context.Process(
                target=_helper_process,
                args=(self.settings, threads, self.sweep_run_id),
                name=f"tldrlab-sweep-worker-{index}",
            )
            process.start()
            self.helpers.append(process)

    def stop_helpers(self) -> None:
        for process in self.helpers:
            process.terminate()  # SIGTERM: an idle worker exits; a busy one checkpoints its run first
        for process in self.helpers:
            process.join(timeout=60)
            if process.is_alive():
                process.kill()
        self.helpers = []


@contextmanager
def executor_for(run: Run) -> Iterator[WorkerExecutor]:
    """The executor of a sweep executing as `run`: the worker running it, else one for this process (whose
    bus subscriptions, Redis listening threads at scale-out, end with the sweep)."""
    settings = get_settings()
    worker = CURRENT_WORKER.get()
    if worker is not None:
        executor = WorkerExecutor(worker, settings, run.id)
        try:
            yield executor
        finally:
            executor.drop_lane()
        return
    # The CLI's process: its own worker handles the trials. A trial whose process died is taken over at
    # once when nobody owns it (run ownership), so no heartbeat has to go stale first.
    worker = build_worker(settings, WorkerConfig(stale_after_s=0.5))
    executor = WorkerExecutor(worker, settings, run.id)
    try:
        yield executor
    finally:
        executor.drop_lane()
        close = getattr(worker.bus, "close", None)
        if close is not None:
            close()


def sweep_job(run: Run, config: SweepConfig) -> dict[str, Any]:
    """Run kind `sweep`: the study's trials as queued runs, children of `run`; the summary names the best."""
    with executor_for(run) as executor:
        return sweep_in_run(run, config, executor)


def elm_optimize_job(run: Run, config: ElmOptimizeConfig) -> dict[str, Any]:
    """Run kind `elm_optimize`: the ELM search space as a sweep (trials are `elm_train` runs)."""
    load_split(config.base.data, "train")  # a missing or broken data directory fails before any trial
    sweep = elm_sweep_config(config)
    url = resolve_storage_url(config.storage)
    with refused_study_writes(url):
        study = open_study(parse_sweep(sweep.sweep), url, config.study)
        if BASE_ATTR not in study.user_attrs:  # a resumed study keeps the base config it started with
            study.set_user_attr(BASE_ATTR, sweep.sweep["config"])
    with executor_for(run) as executor:
        return sweep_in_run(run, sweep, executor)
