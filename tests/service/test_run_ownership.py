"""One run, one executor: a live owner keeps its run however stale its heartbeat (stopped, or busy in its main
thread), a second executor cannot start, a dead owner's run is taken over; queued runs a queue lost are
enqueued again; a killed worker leaves no orphan process. Real executor and worker processes, real Redis."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from svc_helpers import metrics, record, start_worker, stop, wait_for

from tldrlab import launch
from tldrlab.config import get_settings
from tldrlab.errors import RunOwnedError
from tldrlab.runs import RunStatus, create_run, open_registry
from tldrlab.service.app import create_app
from tldrlab.service.queue import open_queue
from tldrlab.service.worker import WorkerConfig, build_worker

STALE_S = 0.5  # the resumer's threshold: it only ever takes a dead owner's run (a free run-directory lock)
LIVE_STALE_S = 1.0  # the stale threshold of the worker watching a live run
RESUMER = WorkerConfig(burst=True, heartbeat_s=0.2, poll_s=0.05, stale_after_s=STALE_S)


def execute_elsewhere(run_id: str, log: Path) -> subprocess.Popen[bytes]:
    """Execute a registered run in its own process, outside any worker (what the CLI does)."""
    code = "import sys; from tldrlab import launch; launch.execute(sys.argv[1])"
    out = open(log, "ab")  # noqa: SIM115 - the process owns it
    return subprocess.Popen(
        [sys.executable, "-c", code, run_id], env=dict(os.environ), stdout=out, stderr=subprocess.STDOUT
    )


@pytest.fixture(autouse=True)
def quick_heartbeats(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TLDRLAB_RUN_HEARTBEAT_S", "0.2")
    get_settings.cache_clear()


@pytest.mark.slow
def test_a_live_run_is_never_taken_over_nor_run_twice(tmp_path: Path) -> None:
    # Each step keeps the main thread silent for longer than a worker's stale threshold (like loading data).
    run_id = create_run("smoke", {"steps": 3, "checkpoint_every": 1, "step_sleep_s": 1.5, "seed": 1}).id
    owner = execute_elsewhere(run_id, tmp_path / "owner.log")
    worker = None
    try:
        wait_for(lambda: len(metrics(run_id)) >= 1, 90, what="the first step")
        ages = []
        for _ in range(7):  # inside a 1.5 s step: the heartbeat thread keeps the row fresh
            ages.append(time.time() - (record(run_id).heartbeat_at or 0))
            time.sleep(0.2)
        assert max(ages) < LIVE_STALE_S * 0.8, ages
        open_queue().enqueue(run_id)  # the queue delivers it to a worker as well
        worker = start_worker("--stale-after-s", str(LIVE_STALE_S), log=tmp_path / "worker.log")
        owner.send_signal(signal.SIGSTOP)  # alive, but nothing of it runs: no heartbeat at all
        try:
            time.sleep(LIVE_STALE_S + 1.5)
            paused = record(run_id)
            assert time.time() - (paused.heartbeat_at or 0) > LIVE_STALE_S  # stale by any measure
            assert paused.status == RunStatus.RUNNING and paused.attempts == 1, paused.message
            assert paused.owner and paused.owner.split(":")[1] == str(owner.pid)
            with pytest.raises(RunOwnedError, match="another process"):
                launch.execute(run_id)  # a second executor cannot start
            assert record(run_id).owner == paused.owner and record(run_id).attempts == 1
        finally:
            owner.send_signal(signal.SIGCONT)
        assert owner.wait(timeout=90) == 0, (tmp_path / "owner.log").read_text()[-2000:]
    finally:
        stop(owner)
        if worker is not None:
            stop(worker)
    final = record(run_id)
    assert final.status == RunStatus.COMPLETED and final.attempts == 1, final.message
    rows = metrics(run_id)
    assert [r["step"] for r in rows] == [1, 2, 3] and {r["pid"] for r in rows} == {owner.pid}


@pytest.mark.slow
def test_a_killed_run_is_taken_over_and_resumed(tmp_path: Path) -> None:
    run_id = create_run("smoke", {"steps": 20, "checkpoint_every": 4, "step_sleep_s": 0.05, "seed": 3}).id
    owner = execute_elsewhere(run_id, tmp_path / "owner.log")
    try:
        wait_for(lambda: len(metrics(run_id)) >= 6, 90, what="6 steps")
        owner.send_signal(signal.SIGKILL)
        owner.wait(timeout=10)
    finally:
        stop(owner)
    assert record(run_id).status == RunStatus.RUNNING  # nobody knows yet
    wait_for(lambda: time.time() - (record(run_id).heartbeat_at or 0) > STALE_S, 30, what="a stale heartbeat")
    build_worker(config=RESUMER).run()  # reconciles: the owner is dead, the run is requeued and resumed
    final = record(run_id)
    assert final.status == RunStatus.COMPLETED and final.attempts == 2, final.message
    rows = metrics(run_id)
    assert [r["step"] for r in rows] == list(range(1, 21))
    assert rows[0]["pid"] == owner.pid and rows[-1]["pid"] == os.getpid()


@pytest.mark.parametrize("queue_kind", ["rq", "sqlite"])
def test_queued_runs_the_queue_lost_are_enqueued_again(
    queue_kind: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    if queue_kind == "rq":
        monkeypatch.setenv("TLDRLAB_QUEUE_URL", request.getfixturevalue("redis_url"))
        get_settings.cache_clear()
    client = TestClient(create_app())
    ids = [
        client.post("/runs", json={"kind": "smoke", "config": {"steps": 3}}).json()["id"] for _ in range(2)
    ]
    cli_run = create_run("smoke", {"steps": 2}).id  # a CLI run waiting for `--resume`: not the queue's
    if queue_kind == "rq":  # Redis restarted without its data
        import redis

        redis.Redis.from_url(os.environ["TLDRLAB_QUEUE_URL"]).flushall()
    else:
        open_registry().db.execute("DELETE FROM jobs")
    time.sleep(1.2)  # queued for longer than the worker's stale threshold below
    build_worker(config=WorkerConfig(burst=True, heartbeat_s=0.1, poll_s=0.05, stale_after_s=1.0)).run()
    for run_id in ids:
        assert record(run_id).status == RunStatus.COMPLETED, record(run_id).message
    assert record(cli_run).status == RunStatus.QUEUED


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"  # a zombie has exited (only its parent's bookkeeping is left)


def test_a_killed_worker_leaves_no_orphan_process(redis_url: str, tmp_path: Path) -> None:
    worker = start_worker(env={"TLDRLAB_QUEUE_URL": redis_url}, log=tmp_path / "worker.log")
    children: list[int] = []
    try:
        children = wait_for(lambda: _children(worker.pid), 60, what="the worker's scheduler process")
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
        wait_for(lambda: not any(_running(c) for c in children), 15, what="the worker's children to exit")
    finally:
        stop(worker)
        for child in children:
            if _running(child):
                os.kill(child, signal.SIGKILL)


def test_the_run_lock_admits_one_holder(tmp_path: Path) -> None:
    from tldrlab.runs.ownership import RunLock, owner_alive

    assert not owner_alive(tmp_path)  # never executed
    first = RunLock.acquire(tmp_path, "host:1:aaaa")
    try:
        assert owner_alive(tmp_path)
        with pytest.raises(RunOwnedError, match="host:1:aaaa"):
            RunLock.acquire(tmp_path, "host:2:bbbb", wait_s=0.2)
    finally:
        first.release()
    assert not owner_alive(tmp_path)
    RunLock.acquire(tmp_path, "host:2:bbbb", wait_s=0.2).release()
