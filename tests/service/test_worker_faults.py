"""Fault tests with real worker processes on both queues: kill -9, SIGTERM, Redis down, duplicates.

Each training is a real smoke training (a linear model through the recipe driver and loop) slowed to ~0.05 s
a step so a worker can be interrupted mid-run; an uninterrupted run of the same config (without the pause) in
this process is the reference.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from svc_helpers import FAST_WORKER, metrics, record, start_worker, stop, wait_for

from netutil import free_port, start_redis
from tldrlab import launch
from tldrlab.config import get_settings
from tldrlab.runs import RunRecord, RunStatus, create_run, open_registry
from tldrlab.runs.atomic import read_jsonl
from tldrlab.runs.run import read_manifest
from tldrlab.service.app import create_app
from tldrlab.service.queue import open_queue
from tldrlab.service.worker import WorkerConfig, build_worker

# The worker that takes a dead worker's run over (this process): a run is only ever taken from a dead owner
# (nobody holds its run directory's lock), so the heartbeat's age need not outlast FAST_WORKER's
# --stale-after-s (2 s) here: half a second of silence after the kill is enough, and no test waits longer.
STALE_S = 0.5
RESUMER = WorkerConfig(burst=True, heartbeat_s=0.2, poll_s=0.05, stale_after_s=STALE_S)
CONFIG = {"steps": 40, "checkpoint_every": 5, "step_sleep_s": 0.05, "seed": 3}


def _use_queue(kind: str, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> dict[str, str]:
    if kind == "rq":
        url = request.getfixturevalue("redis_url")
        monkeypatch.setenv("TLDRLAB_QUEUE_URL", url)
        get_settings.cache_clear()
        return {"TLDRLAB_QUEUE_URL": url}
    return {}


def _reference_losses() -> list[float]:
    # without the pause: `step_sleep_s` only sleeps after each step (a hook), the losses are the same
    run_id = create_run("smoke", {**CONFIG, "step_sleep_s": 0.0}).id
    launch.execute(run_id)
    return [m["train_loss"] for m in metrics(run_id)]


def _submit() -> str:
    run_id = create_run("smoke", CONFIG).id
    open_queue().enqueue(run_id)
    return run_id


@pytest.mark.slow
# On Redis: test_kill_9_during_a_real_training_resumes_exactly (the real `train` kind).
@pytest.mark.parametrize("queue_kind", ["sqlite"])
def test_kill_9_worker_then_another_resumes_without_losing_or_repeating_steps(
    queue_kind: str, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    env = _use_queue(queue_kind, monkeypatch, request)
    run_id = _submit()
    first = start_worker(env=env, log=tmp_path / "w1.log")
    try:
        wait_for(lambda: len(metrics(run_id)) >= 12, 90, what="the first worker to train 12 steps")
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    finally:
        stop(first)
    steps_before_kill = len(metrics(run_id))
    assert record(run_id).status == RunStatus.RUNNING  # nobody knows yet that its worker died
    # Another worker (this process) sees the stale heartbeat, requeues the run and resumes it.
    wait_for(lambda: time.time() - (record(run_id).heartbeat_at or 0) > STALE_S, 30, what="a stale heartbeat")
    build_worker(config=RESUMER).run()
    final = record(run_id)
    assert final.status == RunStatus.COMPLETED, final.message
    rows = metrics(run_id)
    assert [r["step"] for r in rows] == list(range(1, 41))  # none lost, none twice
    assert [r["train_loss"] for r in rows] == pytest.approx(_reference_losses(), rel=1e-6)
    pids = [r["pid"] for r in rows]
    assert pids[0] == first.pid and pids[-1] == os.getpid()
    resumed_at = pids.index(os.getpid())  # first step of the second worker = checkpoint + 1
    assert resumed_at % CONFIG["checkpoint_every"] == 0 and 0 < resumed_at <= steps_before_kill
    logs = read_jsonl(Path(final.run_dir) / "log.jsonl")
    assert any(line["message"] == "resumed from checkpoint" and line["step"] == resumed_at for line in logs)
    assert final.attempts == 2


def test_a_final_evaluation_whose_worker_was_killed_ends_cancelled_and_the_resumed_training_evaluates_anew(
    tmp_path: Path, shared_data: Path
) -> None:
    """A worker killed (kill -9) while a training ran its final evaluation (an `evaluate` run inside the
    training's execution) left both `running`. The next worker's reconcile requeued both onto the queue: the
    training resumed and evaluated anew, in an evaluation run of its own, and a worker also ran the first
    evaluation on its own, a second final evaluation of the same model, for nothing. That one ends cancelled
    instead, saying it was part of the training, and only the resumed training's evaluation runs."""
    from test_service_training import char_lstm_config

    lines = (shared_data / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8").splitlines()[:300]
    text = tmp_path / "text.txt"
    text.write_text("\n".join(lines) + "\n", encoding="utf-8")
    config = char_lstm_config(text, steps=4, eval_every=4, checkpoint_every=2)
    # long enough an evaluation to be killed in: every held-out sample generated to 400 characters
    config["final_eval"] = {"max_samples": 64, "max_new_tokens": 400}
    training = create_run("train", config).id
    open_queue().enqueue(training)
    registry = open_registry()

    def evaluations() -> list[RunRecord]:
        return registry.list(kind="evaluate", parent_id=training)

    log = tmp_path / "w1.log"
    first = start_worker(log=log)
    try:
        wait_for(
            lambda: [r for r in evaluations() if r.status is RunStatus.RUNNING],
            180,
            every=0.02,
            what="the final evaluation to start",
        )
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    finally:
        stop(first)
    (killed,) = evaluations()
    assert killed.status is RunStatus.RUNNING and record(training).status is RunStatus.RUNNING
    wait_for(
        lambda: time.time() - (record(training).heartbeat_at or 0) > STALE_S, 30, what="a stale heartbeat"
    )
    wait_for(
        lambda: time.time() - (record(killed.id).heartbeat_at or 0) > STALE_S, 30, what="a stale heartbeat"
    )
    build_worker(config=RESUMER).run()  # reconciles both orphans, then runs what the queue holds
    resumed = record(training)
    assert resumed.status is RunStatus.COMPLETED, resumed.message
    first_evaluation = registry.get(killed.id)
    assert first_evaluation.status is RunStatus.CANCELLED, first_evaluation.message
    assert first_evaluation.message is not None and f"part of run {training}" in first_evaluation.message
    assert read_manifest(first_evaluation.run_dir)["status"] == "cancelled"
    final_eval_run = read_manifest(resumed.run_dir)["final_eval_run"]
    assert final_eval_run != killed.id and registry.get(final_eval_run).status is RunStatus.COMPLETED
    assert {r.id for r in evaluations()} == {killed.id, final_eval_run}  # none run a third time


@pytest.mark.slow
@pytest.mark.parametrize("queue_kind", ["sqlite", "rq"])
def test_sigterm_checkpoints_and_requeues(
    queue_kind: str, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    env = _use_queue(queue_kind, monkeypatch, request)
    run_id = _submit()
    worker = start_worker(env=env, log=tmp_path / "w.log")
    try:
        wait_for(lambda: len(metrics(run_id)) >= 8, 90, what="training to start")
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0, (tmp_path / "w.log").read_text()[-2000:]
    finally:
        stop(worker)
    requeued = record(run_id)
    assert requeued.status == RunStatus.QUEUED
    assert requeued.message and requeued.message.startswith("requeued") and "preempted" in requeued.message
    done = len(metrics(run_id))
    assert 8 <= done < 40
    checkpoints = sorted(Path(requeued.run_dir, "checkpoints").glob("step-*"))
    assert f"step-{done:08d}" in {p.name for p in checkpoints}  # the step it was on, finished and saved
    assert queue_kind != "sqlite" or open_queue().depth() == 1  # type: ignore[attr-defined]
    # Another worker (this process) picks the requeued run up and finishes it exactly.
    build_worker(config=RESUMER).run()
    rows = metrics(run_id)
    assert record(run_id).status == RunStatus.COMPLETED
    assert [r["step"] for r in rows] == list(range(1, 41))
    assert [r["train_loss"] for r in rows] == pytest.approx(_reference_losses(), rel=1e-6)
    assert rows[done]["pid"] == os.getpid() and rows[done - 1]["pid"] == worker.pid


@pytest.mark.slow
def test_redis_down_at_start_then_back(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    port = free_port()
    monkeypatch.setenv("TLDRLAB_QUEUE_URL", f"redis://127.0.0.1:{port}/0")
    get_settings.cache_clear()
    client = TestClient(create_app())  # the API starts while Redis is down
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.json()["checks"]["queue"] != "ok"
    refused = client.post("/runs", json={"kind": "smoke", "config": {"steps": 3}})
    assert refused.status_code == 503
    assert refused.json()["code"] == "service_unavailable" and refused.json()["request_id"]
    assert client.get("/runs").json()["runs"] == [] or all(
        r["status"] != "queued" for r in client.get("/runs").json()["runs"]
    )

    redis_proc = start_redis(port, tmp_path)
    try:
        assert client.get("/readyz").status_code == 200
        accepted = client.post("/runs", json={"kind": "smoke", "config": {"steps": 3}})
        assert accepted.status_code == 202 and accepted.json()["status"] == "queued"
        redis_proc.terminate()  # down again while the API runs ...
        redis_proc.wait(timeout=10)
        assert client.get("/readyz").status_code == 503
        assert client.post("/runs", json={"kind": "smoke", "config": {}}).status_code == 503
        redis_proc = start_redis(port, tmp_path)  # ... and back on the same port
        assert client.get("/readyz").status_code == 200
        assert client.post("/runs", json={"kind": "smoke", "config": {}}).status_code == 202
    finally:
        redis_proc.terminate()
        redis_proc.wait(timeout=10)


def test_a_worker_started_while_redis_is_down_says_so(tmp_path: Path) -> None:
    # `tldrlab worker` with Redis down printed RQ's ConnectionError traceback (exit 1)
    env = {
        **os.environ,
        "TLDRLAB_QUEUE_URL": f"redis://127.0.0.1:{free_port()}/0",
        "TLDRLAB_HOME": str(tmp_path),
    }
    done = subprocess.run(
        [sys.executable, "-m", "tldrlab", "worker"], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 7, done.stderr
    assert "[service_unavailable] the job queue (Redis) is unreachable" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.slow
def test_kill_9_during_a_real_training_resumes_exactly(
    redis_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, shared_data: Path
) -> None:
    """The real `train` kind (char_lstm) on Redis: kill -9 mid-run, resume elsewhere, same losses."""
    from test_service_training import char_lstm_config

    lines = (shared_data / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8").splitlines()[:400]
    text = tmp_path / "text.txt"
    text.write_text("\n".join(lines) + "\n", encoding="utf-8")
    config = char_lstm_config(text, steps=40, eval_every=20, checkpoint_every=5)
    config["model_settings"] = {"embedding_dim": 32, "hidden_dim": 128, "num_layers": 1}
    config["data"]["block_size"] = 64
    config["train"]["batch_size"] = 16
    monkeypatch.setenv("TLDRLAB_QUEUE_URL", redis_url)
    get_settings.cache_clear()

    def losses(run_id: str) -> dict[int, float]:
        rows = [m for m in metrics(run_id) if "train_loss" in m]
        steps = [m["step"] for m in rows]
        assert steps == sorted(set(steps)), f"a step was logged twice: {steps}"
        return {m["step"]: m["train_loss"] for m in rows}

    run_id = create_run("train", config).id
    open_queue().enqueue(run_id)
    first = start_worker(env={"TLDRLAB_QUEUE_URL": redis_url}, log=tmp_path / "w1.log")
    try:
        wait_for(lambda: len(losses(run_id)) >= 8, 120, every=0.02, what="training to pass step 8")
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    finally:
        stop(first)
    assert record(run_id).status == RunStatus.RUNNING
    wait_for(lambda: time.time() - (record(run_id).heartbeat_at or 0) > STALE_S, 30, what="a stale heartbeat")
    build_worker(config=RESUMER).run()
    assert record(run_id).status == RunStatus.COMPLETED, record(run_id).message
    resumed = losses(run_id)
    reference_id = create_run("train", config).id
    launch.execute(reference_id)
    reference = losses(reference_id)
    assert sorted(resumed) == list(range(1, 41))
    assert [resumed[s] for s in sorted(resumed)] == pytest.approx(
        [reference[s] for s in sorted(reference)], rel=1e-4
    )


@pytest.mark.slow
@pytest.mark.parametrize("queue_kind", ["sqlite", "rq"])
def test_a_second_sigterm_is_a_hard_stop_and_another_worker_resumes(
    queue_kind: str, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    env = _use_queue(queue_kind, monkeypatch, request)
    # two steps: the signals arrive inside the second (and last) one, which a warm stop would have finished
    config = {"steps": 2, "checkpoint_every": 1, "step_sleep_s": 3.5, "seed": 3}
    run_id = create_run("smoke", config).id
    open_queue().enqueue(run_id)
    worker = start_worker(env=env, log=tmp_path / "w.log")
    try:
        first = Path(record(run_id).run_dir, "checkpoints", "step-00000001")
        wait_for(first.is_dir, 90, what="the first step's checkpoint")
        time.sleep(0.2)  # past that checkpoint's bookkeeping: inside the second step
        worker.send_signal(signal.SIGTERM)  # warm: would checkpoint after this 3.5-second step
        # a second signal within a second of the worker handling the first counts as the same one (as in
        # rq): the second is sent a second after the worker says it handled the first, not after it was
        # sent (a loaded machine ran the first handler late, and the second was dropped as its duplicate)
        wait_for(lambda: "stopping after the current step" in _one_line(tmp_path / "w.log"), 30, what="warm")
        time.sleep(1.1)
        sent = time.monotonic()
        worker.send_signal(signal.SIGTERM)  # cold: exit now
        code = worker.wait(timeout=30)
        assert time.monotonic() - sent < 2.5, "the second SIGTERM did not stop the worker at once"
        assert code == 128 + signal.SIGTERM, (tmp_path / "w.log").read_text()[-2000:]
    finally:
        stop(worker)
    assert "hard stop" in _one_line(tmp_path / "w.log")
    stopped = record(run_id)
    assert stopped.status == RunStatus.RUNNING  # not requeued by the worker: it just vanished
    done = len(metrics(run_id))
    # its heartbeat goes stale; a worker's reconciliation resumes it
    wait_for(lambda: time.time() - (record(run_id).heartbeat_at or 0) > STALE_S, 30, what="a stale heartbeat")
    build_worker(config=RESUMER).run()
    final = record(run_id)
    assert final.status == RunStatus.COMPLETED and final.attempts == 2
    assert [r["step"] for r in metrics(run_id)] == [1, 2] and done == 1


def _one_line(log: Path) -> str:
    """A worker's log with its line breaks folded: rich wraps its lines."""
    return " ".join(log.read_text().split())


def _worker_row(pid: int) -> dict[str, object] | None:
    from tldrlab.runs import open_registry

    rows = open_registry().db.query("SELECT state, current_run FROM workers WHERE pid = ?", (pid,))
    return dict(rows[0]) if rows else None


def test_a_short_redis_outage_does_not_stall_delayed_retries(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A Redis outage killed the whole RQ worker whenever it sent a command outside its wait for a job (its
    registry cleaning, the bookkeeping after a job): RQ's `work` quit on the error and its `teardown` raised
    it again, so once Redis came back no worker was left to run the delayed retry. Here the outage starts
    while the worker runs a run and lasts past the run's end, so the worker's bookkeeping meets it; Redis
    comes back only once the worker says it is waiting for Redis, or has died (as it did). The run finishes
    once, the worker carries on, and a delayed job queued after the outage runs."""
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    monkeypatch.setenv("TLDRLAB_QUEUE_URL", url)
    get_settings.cache_clear()
    log = tmp_path / "w.log"
    redis_proc = start_redis(port, tmp_path)
    # at the default level: the lines saying Redis is unreachable, and that it answers again, are warnings
    worker = start_worker(env={"TLDRLAB_QUEUE_URL": url}, log=log)
    try:
        running = create_run("smoke", {"steps": 6, "checkpoint_every": 3, "step_sleep_s": 0.2, "seed": 3}).id
        open_queue().enqueue(running)
        wait_for(lambda: len(metrics(running)) >= 2, 90, what="the run to be running")
        redis_proc.terminate()  # the outage starts mid-run ...
        redis_proc.wait(timeout=10)
        # ... and lasts until the worker is done with the run, and waits for Redis (or died of the outage)
        wait_for(lambda: record(running).status == RunStatus.COMPLETED, 60, what="the run to finish")
        wait_for(lambda: _worker_row(worker.pid) == {"state": "idle", "current_run": None}, 30)
        wait_for(lambda: worker.poll() is not None or "the worker keeps trying" in log.read_text(), 90)
        redis_proc = start_redis(port, tmp_path)  # back on the same port (empty: no persistence)
        assert worker.poll() is None, f"the worker died in the outage: {log.read_text()[-3000:]}"
        retried = create_run("smoke", {"steps": 2}).id
        open_queue().enqueue(retried, delay_s=0.5)  # what a transient failure's retry does
        wait_for(
            lambda: record(retried).status == RunStatus.COMPLETED,
            30,
            what=f"the delayed job to run; worker log: {log.read_text()[-1500:]}",
        )
        assert worker.poll() is None
        final = record(running)  # run once: not lost, not run again
        assert final.status == RunStatus.COMPLETED and final.attempts == 1
        assert [m["step"] for m in metrics(running)] == list(range(1, 7))
        text = " ".join(log.read_text().split())  # rich wraps its lines
        assert text.count("the worker keeps trying") == 1, text[-3000:]  # once per outage, not per attempt
        assert "Redis answers again" in text
        # the run's events met the outage too: said once by the bus, not once an event
        assert text.count("run events are not published") <= 1, text[-3000:]
        assert "could not publish" not in text, text[-3000:]
    finally:
        stop(worker)
        redis_proc.terminate()
        redis_proc.wait(timeout=10)


def test_a_worker_stopped_during_a_redis_outage_exits_cleanly(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The worker waits out an outage (the test above), but a SIGTERM still stops it: it does not wait for
    Redis to record its death (RQ's record of it expires), and exits 0 without a traceback."""
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    log = tmp_path / "w.log"
    redis_proc = start_redis(port, tmp_path)
    worker = start_worker(env={"TLDRLAB_QUEUE_URL": url}, log=log)
    try:
        import redis

        client = redis.Redis.from_url(url)
        wait_for(lambda: client.exists("rq:scheduler-lock:tldrlab-runs"), 60, what="the worker to start")
        redis_proc.terminate()
        redis_proc.wait(timeout=10)
        wait_for(lambda: "the worker keeps trying" in log.read_text(), 60, what="the outage to be met")
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=60) == 0, log.read_text()[-3000:]
        text = " ".join(log.read_text().split())
        assert "worker stopped while Redis was unreachable" in text and "Traceback" not in text, text[-3000:]
    finally:
        stop(worker)
        if redis_proc.poll() is None:
            redis_proc.terminate()
        redis_proc.wait(timeout=10)


SIGTERM_WHILE_LOGGING_THE_OUTAGE = r"""
import logging, os, signal, sys, threading, time

import tldrlab.service.redis_outage as redis_outage


class SignalWhileWriting(logging.Handler):
    # Sends this process SIGTERM while RQ's loop (the main thread) writes a line in the outage, the way a
    # console handler meets a signal mid-write: the signal handler runs inside `emit`, which hands what it
    # raises (RQ's stop) to `handleError`, which prints it as a logging error and drops it.
    def emit(self, record):
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.5)  # the signal handler runs here
        except Exception:
            self.handleError(record)


line = logging.getLogger("test.signal-while-writing")
line.addHandler(SignalWhileWriting())
outage_failed = redis_outage.RedisOutage.failed
sent = []


def failed(self, error):
    # The outage line itself is written once, by whichever thread fails first (RQ's pubsub thread or its
    # loop): the loop's first failure writes a line of its own, so the signal lands in the loop's write.
    outage_failed(self, error)
    if threading.current_thread() is threading.main_thread() and not sent:
        sent.append(True)
        line.handle(line.makeRecord(line.name, logging.WARNING, "", 0, "outage met", None, None))


redis_outage.RedisOutage.failed = failed
from tldrlab.cli.main import main

sys.argv = ["tldrlab", "worker", *sys.argv[1:]]
main()
"""


def test_a_sigterm_lost_while_the_outage_line_is_written_still_stops_the_worker(tmp_path: Path) -> None:
    """The SIGTERM lands while the worker writes "Redis is unreachable": RQ's signal handler raises its stop
    there, and `logging` swallows it. The worker still exits 0 within seconds: its outage retry, told to give
    up, raised a connection error, which RQ's wait for a job retries for good (up to a minute apart); it
    raises RQ's stop instead."""
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    log = tmp_path / "w.log"
    redis_proc = start_redis(port, tmp_path)
    with open(log, "ab") as out:
        worker = subprocess.Popen(
            [sys.executable, "-c", SIGTERM_WHILE_LOGGING_THE_OUTAGE, *FAST_WORKER],
            env={**os.environ, "TLDRLAB_QUEUE_URL": url},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        import redis

        client = redis.Redis.from_url(url)
        wait_for(lambda: client.exists("rq:scheduler-lock:tldrlab-runs"), 60, what="the worker to start")
        redis_proc.terminate()
        redis_proc.wait(timeout=10)
        assert worker.wait(timeout=30) == 0, log.read_text()[-3000:]
        text = " ".join(log.read_text().split())
        assert "--- Logging error ---" in text, text[-3000:]  # the signal did land mid-write
        assert "worker stopped while Redis was unreachable" in text, text[-3000:]
    finally:
        stop(worker)
        if redis_proc.poll() is None:
            redis_proc.terminate()
        redis_proc.wait(timeout=10)


@pytest.mark.slow
def test_a_preempted_experiment_restarts_on_the_queue_and_its_first_attempt_s_arm_ends_cancelled(
    redis_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, shared_data: Path
) -> None:
    """An experiment (a kind that does not resume) on a worker stopped by SIGTERM goes back on the queue and
    the next worker runs it from the start, with an arm run of its own: its first attempt's arm run read
    `queued`, "waiting to be resumed", for good (nothing resumes an experiment's arm, no queue holds it). It
    ends cancelled, saying the experiment restarts, and the restart's arm is another run."""
    env = {"TLDRLAB_QUEUE_URL": redis_url}
    monkeypatch.setenv("TLDRLAB_QUEUE_URL", redis_url)
    get_settings.cache_clear()
    config = {
        "data": str(shared_data / "scitldr" / "scitldr_a.dev.jsonl"), "arms": ["baseline"], "seeds": [1],
        "budget_steps": 100000, "eval_every": 50000, "batch_size": 4, "train_limit": 40, "eval_size": 4,
        "test_size": 3, "max_source_tokens": 16, "vocab_size": 300,
    }  # fmt: skip
    experiment = create_run("experiment", config).id
    open_queue().enqueue(experiment)
    registry = open_registry()

    def arms(status: RunStatus) -> list[str]:
        return [r.id for r in registry.list(kind="experiment_arm", parent_id=experiment, status=status.value)]

    worker = start_worker(env=env, log=tmp_path / "w1.log")
    try:
        wait_for(lambda: arms(RunStatus.RUNNING), 120, what="the experiment's arm to train")
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=60) == 0, (tmp_path / "w1.log").read_text()[-2000:]
    finally:
        stop(worker)
    requeued = record(experiment)
    assert requeued.status is RunStatus.QUEUED and "preempted" in (requeued.message or "")
    (first_arm,) = registry.list(kind="experiment_arm", parent_id=experiment)
    assert first_arm.status is RunStatus.CANCELLED, first_arm.message
    assert first_arm.error_code == "cancelled" and first_arm.message is not None
    assert f"part of {experiment}" in first_arm.message and "starts it again" in first_arm.message
    assert read_manifest(first_arm.run_dir)["status"] == "cancelled"
    # the next worker restarts the experiment from scratch: a new arm run, the first one left as it ended
    again = start_worker(env=env, log=tmp_path / "w2.log")
    try:
        restarted = wait_for(lambda: arms(RunStatus.RUNNING), 120, what="the restarted experiment's arm")
    finally:
        stop(again)
    assert restarted[0] != first_arm.id and record(experiment).attempts == 2
    assert registry.get(first_arm.id).status is RunStatus.CANCELLED
