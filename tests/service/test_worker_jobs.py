"""Workers in this process: real smoke trainings through the embedded queue, claims, retries, cancels."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
from svc_helpers import metrics, record, wait_for

from tldrlab.config import get_settings
from tldrlab.kinds import KINDS, RunKind
from tldrlab.runs import RunStatus, create_run, open_registry
from tldrlab.runs.run import read_manifest
from tldrlab.service.events import MemoryBus, RunEvent
from tldrlab.service.worker import Worker, WorkerConfig, build_worker, claim_run, reconcile
from tldrlab.train.smoke import SmokeConfig

FAST = WorkerConfig(burst=True, heartbeat_s=0.1, poll_s=0.05, backoff_base_s=0.2, stale_after_s=1.0)


def _submit(kind: str = "smoke", **config: object) -> str:
    worker_queue = build_worker(config=FAST).queue
    run_id = create_run(kind, dict(config)).id
    worker_queue.enqueue(run_id)
    return run_id


def test_worker_runs_a_real_training_and_publishes_events() -> None:
    run_id = _submit(steps=12, checkpoint_every=4)
    worker = build_worker(config=FAST)
    seen: list[RunEvent] = []
    assert isinstance(worker.bus, MemoryBus)
    worker.bus.subscribe(seen.append)
    worker.run()
    final = record(run_id)
    assert final.status == RunStatus.COMPLETED
    assert final.message is not None and final.message.startswith("completed")
    assert "final_eval_loss" in final.message
    assert [m["step"] for m in metrics(run_id)] == list(range(1, 13))
    result = json.loads((Path(final.run_dir) / "artifacts" / "result.json").read_text())
    assert result["final_loss"] == pytest.approx(final.metrics["final_loss"])
    types = [e.type for e in seen]
    assert {"started", "progress", "checkpoint", "completed"} <= set(types)
    assert types.index("completed") == len(types) - 1


def test_same_job_delivered_twice_runs_once() -> None:
    run_id = _submit(steps=20, step_sleep_s=0.02)
    build_worker(config=FAST).queue.enqueue(run_id)  # a duplicate delivery (deduped by the SQLite queue)
    first, second = build_worker(config=FAST), build_worker(config=FAST)
    outcomes: list[str] = []
    threads = [
        threading.Thread(target=lambda w=w: outcomes.append(w.handle(run_id))) for w in (first, second)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["completed", "duplicate"]
    assert first.handle(run_id) == "duplicate"  # a late third delivery too
    assert [m["step"] for m in metrics(run_id)] == list(range(1, 21))
    assert record(run_id).attempts == 1


def test_claim_is_compare_and_set() -> None:
    registry = open_registry()
    run_id = create_run("smoke", {}).id
    assert claim_run(registry, run_id, "w1", stale_before=time.time() - 30)
    assert not claim_run(registry, run_id, "w2", stale_before=time.time() - 30)  # w1 is alive
    assert claim_run(registry, run_id, "w2", stale_before=time.time() + 1)  # w1's heartbeat is stale


def test_transient_failure_retries_with_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(KINDS, "flaky", RunKind("flaky", SmokeConfig, "svc_helpers:flaky_job", "test"))
    run_id = _submit("flaky", steps=5)
    worker = build_worker(config=FAST)
    assert worker.handle(run_id) == "retrying"
    retried = record(run_id)
    assert retried.status == RunStatus.QUEUED and "transient failure" in (retried.message or "")
    assert worker.queue.claim("w") is None  # type: ignore[attr-defined]  # backoff: not due yet
    time.sleep(0.25)  # the first backoff (backoff_base_s)
    build_worker(config=FAST).run()
    assert record(run_id).status == RunStatus.COMPLETED
    assert record(run_id).attempts == 2


def test_a_transient_failure_after_a_cancel_request_is_not_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retried, the run went back to the queue, where no worker claims a run with a cancel request: it read
    `queued` for good."""
    job = "svc_helpers:cancelled_then_flaky_job"
    monkeypatch.setitem(KINDS, "flaky", RunKind("flaky", SmokeConfig, job, "test"))
    run_id = _submit("flaky", steps=5)
    worker = build_worker(config=FAST)
    assert worker.handle(run_id) == "failed:transient"
    ended = record(run_id)
    assert ended.status == RunStatus.FAILED and ended.cancel_requested and ended.attempts == 1


def test_user_input_and_fatal_failures_are_not_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(KINDS, "broken", RunKind("broken", SmokeConfig, "svc_helpers:broken_job", "test"))
    bad_config = _submit(steps="many")
    broken = _submit("broken")
    worker = build_worker(config=FAST)
    assert worker.handle(bad_config) == "failed:user_input"
    assert worker.handle(broken) == "failed:fatal"
    bad, bug = record(bad_config), record(broken)
    assert bad.status == RunStatus.FAILED and bad.error_code == "invalid_config"
    assert "invalid smoke config" in (bad.message or "") and bad.tags["failure_class"] == "user_input"
    assert bug.status == RunStatus.FAILED and bug.error_code == "internal_error"
    assert bug.tags["failure_class"] == "fatal" and "ZeroDivisionError" in (bug.message or "")
    worker.run()  # the queue still delivers both jobs: nothing runs again
    assert worker.queue.depth() == 0
    assert record(bad_config).attempts == 1 and record(broken).attempts == 1


def test_cancel_running_and_queued_runs() -> None:
    running = _submit(steps=500, step_sleep_s=0.01)
    worker = build_worker(config=FAST)
    thread = threading.Thread(target=worker.handle, args=(running,))
    thread.start()
    wait_for(lambda: len(metrics(running)) >= 3, 30, what="training to start")
    open_registry().request_cancel(running)
    thread.join(timeout=30)
    cancelled = record(running)
    assert cancelled.status == RunStatus.CANCELLED and cancelled.message and "cancel" in cancelled.message
    assert len(metrics(running)) < 500

    queued = _submit(steps=5)
    open_registry().request_cancel(queued)
    assert worker.handle(queued) == "cancelled"
    assert record(queued).status == RunStatus.CANCELLED and metrics(queued) == []


def test_reconcile_requeues_or_fails_runs_of_dead_workers() -> None:
    registry = open_registry()
    config = WorkerConfig(stale_after_s=0.5, max_attempts=2)
    worker: Worker = build_worker(config=config)
    alive = create_run("smoke", {}).id
    dead = create_run("smoke", {}).id
    exhausted = create_run("smoke", {}).id
    old = time.time() - 10
    registry.update(alive, status=RunStatus.RUNNING, heartbeat_at=time.time(), worker="w-alive", attempts=1)
    registry.update(dead, status=RunStatus.RUNNING, heartbeat_at=old, worker="w-dead", attempts=1)
    registry.update(exhausted, status=RunStatus.RUNNING, heartbeat_at=old, worker="w-dead", attempts=2)
    actions = dict(reconcile(registry, worker.queue, config))
    assert actions == {dead: "queued", exhausted: "failed"}
    assert record(alive).status == RunStatus.RUNNING
    assert "stopped responding" in (record(dead).message or "")
    assert record(exhausted).error_code == "worker_lost"
    assert worker.queue.claim("w") == dead  # type: ignore[attr-defined]
    assert get_settings().home.exists()


def test_reconcile_ends_a_dead_workers_run_cancelled_when_a_cancel_was_asked_for() -> None:
    """A run asked to cancel whose worker died before it stopped was requeued: back in the queue, where no
    worker claims a run with a cancel request, and it read `queued` for good."""
    registry = open_registry()
    config = WorkerConfig(stale_after_s=0.5, max_attempts=2)
    worker: Worker = build_worker(config=config)
    asked = create_run("smoke", {}).id
    registry.update(
        asked, status=RunStatus.RUNNING, heartbeat_at=time.time() - 10, worker="w-dead", attempts=1
    )
    registry.request_cancel(asked)
    assert dict(reconcile(registry, worker.queue, config)) == {asked: "cancelled"}
    ended = record(asked)
    assert ended.status == RunStatus.CANCELLED and ended.error_code == "cancelled" and ended.ended_at
    assert "stopped responding" in (ended.message or "")
    assert read_manifest(ended.run_dir)["status"] == "cancelled"
    assert worker.queue.depth() == 0  # nothing enqueued
