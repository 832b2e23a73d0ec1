"""Run lifecycle: completed / failed with a code / cancelled, and what the manifest records."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from pydantic import BaseModel

from tldrlab.errors import (
    ConfigError,
    ConflictError,
    InvalidInputError,
    RunCancelledError,
    RunPreemptedError,
)
from tldrlab.launch import launch_run
from tldrlab.runs import RunRecord, RunStatus, create_run, execute_run, open_registry, start_run
from tldrlab.runs.atomic import sha256_file
from tldrlab.runs.run import read_manifest
from tldrlab.train import loop as loop_module


class ToyConfig(BaseModel):
    lr: float = 0.1
    """learning rate"""
    steps: int = 3
    """steps"""


def test_completed_run_records_everything(tldrlab_home: Path) -> None:
    t0 = time.time()
    with start_run("toy", ToyConfig(lr=0.5), seed=7, tags={"study": "s1"}) as run:
        for step in range(3):
            run.log_metrics(step, loss=1.0 / (step + 1))
            run.heartbeat(progress=step / 3)
        run.log("halfway", step=2)
        run.set_environment(device="cpu", precision="fp32")
        artifact = run.artifacts_dir / "weights.bin"
        artifact.write_bytes(b"\x00\x01" * 1000)
        entry = run.add_artifact(artifact, kind="model")
        run.set_summary(loss=1 / 3)
        run_dir = run.dir
    assert run_dir.parent == tldrlab_home / "runs"
    manifest = read_manifest(run_dir)
    assert manifest["status"] == "completed" and manifest["config"] == {"lr": 0.5, "steps": 3}
    assert manifest["seed"] == 7 and manifest["tags"] == {"study": "s1"}
    assert manifest["device"] == "cpu" and manifest["precision"] == "fp32"
    assert {"python", "torch", "tldrlab"} <= set(manifest["versions"])
    assert t0 <= manifest["created_at"] <= manifest["started_at"] <= manifest["ended_at"] <= time.time()
    assert manifest["metrics"] == {"loss": pytest.approx(1 / 3)}
    assert manifest["artifacts"] == [
        {"path": "artifacts/weights.bin", "kind": "model", "size": 2000, "sha256": sha256_file(artifact)}
    ]
    assert entry["sha256"] == sha256_file(artifact)
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [0, 1, 2] and metrics[0]["loss"] == 1.0
    logs = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    assert any(entry["message"] == "halfway" and entry["step"] == 2 for entry in logs)
    record = open_registry().get(manifest["id"])
    assert record.status is RunStatus.COMPLETED and record.metrics["loss"] == pytest.approx(1 / 3)
    assert record.ended_at is not None and record.message is not None and "loss=" in record.message


def test_failed_run_keeps_the_error_code() -> None:
    with pytest.raises(ConfigError), start_run("toy", {"lr": 1}) as run:
        run_id = run.id
        raise ConfigError("lr too high")
    record = open_registry().get(run_id)
    assert record.status is RunStatus.FAILED and record.error_code == "invalid_config"
    assert record.message == "failed: lr too high"
    manifest = read_manifest(record.run_dir)
    assert manifest["status"] == "failed" and manifest["error_code"] == "invalid_config"


def test_unexpected_exception_is_an_internal_error() -> None:
    with pytest.raises(ZeroDivisionError), start_run("toy", {}) as run:
        run_id = run.id
        _ = 1 / 0
    record = open_registry().get(run_id)
    assert record.status is RunStatus.FAILED and record.error_code == "internal_error"
    assert "ZeroDivisionError" in (record.message or "")
    log = (Path(record.run_dir) / "log.jsonl").read_text()
    assert "ZeroDivisionError" in log  # the traceback goes to the run's log file


def test_cancel_requested_from_outside_ends_the_run_cancelled() -> None:
    record = create_run("toy", {"steps": 100})
    registry = open_registry()
    assert registry.get(record.id).status is RunStatus.QUEUED
    steps = 0
    with pytest.raises(RunCancelledError), execute_run(record.id) as run:
        for step in range(100):
            if step == 5:
                registry.request_cancel(record.id)  # e.g. `DELETE /runs/{id}` from another process
            run.check_cancelled()
            steps += 1
    assert steps == 5
    done = registry.get(record.id)
    assert done.status is RunStatus.CANCELLED and done.error_code == "cancelled" and done.attempts == 1
    assert read_manifest(done.run_dir)["status"] == "cancelled"


def test_run_ids_are_unique_and_directories_never_reused() -> None:
    first = create_run("toy", {})
    second = create_run("toy", {})
    assert first.id != second.id and first.run_dir != second.run_dir
    with pytest.raises(ConflictError, match="already exists"):
        create_run("toy", {}, run_id=first.id)


def test_ctrl_c_ends_the_run_cancelled_not_failed() -> None:
    with pytest.raises(KeyboardInterrupt), start_run("toy", {}) as run:
        run_id = run.id
        raise KeyboardInterrupt
    record = open_registry().get(run_id)
    assert record.status is RunStatus.CANCELLED and record.error_code == "cancelled"
    assert read_manifest(record.run_dir)["status"] == "cancelled"


def test_a_resumed_run_keeps_its_first_start_and_counts_its_attempts() -> None:
    record = create_run("toy", {})
    registry = open_registry()
    with pytest.raises(RunPreemptedError), execute_run(record.id):
        raise RunPreemptedError("the machine is going away")
    preempted = registry.get(record.id)
    assert preempted.status is RunStatus.QUEUED and preempted.started_at is not None
    first_manifest_start = read_manifest(record.run_dir)["started_at"]
    time.sleep(0.02)
    with execute_run(record.id):
        pass
    done = registry.get(record.id)
    assert done.status is RunStatus.COMPLETED and done.attempts == 2
    assert done.started_at == preempted.started_at
    assert read_manifest(record.run_dir)["started_at"] == first_manifest_start


def test_resuming_a_run_as_another_kind_names_both_kinds() -> None:
    """The message read "is a evaluate run" / "not a ingest run" for kinds starting with a vowel."""
    record = create_run("evaluate", {"model_run": "train-x"})
    with pytest.raises(InvalidInputError) as refused:
        launch_run("ingest", {}, resume=record.id)
    assert refused.value.message == f"run {record.id} is of kind evaluate, not ingest"


def test_a_run_cancelled_on_request_resumes_to_completion(monkeypatch: pytest.MonkeyPatch) -> None:
    """A run cancelled through the API (`POST /runs/{id}/cancel`, the runs page, Discord's /cancel) kept its
    cancel request: `tldrlab smoke --resume RUN` loaded its checkpoint and was cancelled again at the first
    check, so such a run could never be resumed (Ctrl-C, which sets no request, resumed fine)."""
    monkeypatch.setattr(loop_module, "CANCEL_CHECK_EVERY_S", 0.0)  # check the request between every step
    registry = open_registry()
    with pytest.raises(RunCancelledError):
        launch_run(
            "smoke",
            {"steps": 6, "checkpoint_every": 2},
            on_start=lambda record: registry.request_cancel(record.id),  # as the cancel route does
        )
    cancelled = registry.list(kind="smoke")[0]
    assert cancelled.status is RunStatus.CANCELLED and cancelled.cancel_requested
    while_running: list[RunRecord] = []

    def echo(line: str) -> None:  # called while the resumed run executes: its row as others see it
        while_running.append(registry.get(cancelled.id))

    resumed = launch_run("smoke", {}, resume=cancelled.id, echo=echo).record
    assert while_running and all(
        r.status is RunStatus.RUNNING and r.ended_at is None and r.error_code is None for r in while_running
    )
    assert resumed.status is RunStatus.COMPLETED and resumed.metrics["steps"] == 6
    assert not resumed.cancel_requested and resumed.attempts == 2 and resumed.error_code is None
    # a cancel asked for during the resumed execution is still honoured
    with pytest.raises(RunCancelledError):
        launch_run("smoke", {"steps": 6}, on_start=lambda record: registry.request_cancel(record.id))


def test_a_run_preempted_after_a_cancel_request_ends_cancelled() -> None:
    """A run asked to cancel whose worker was then stopped went back to `queued`, where no worker claims a
    cancelled run: it read `queued` for good (a cancelled sweep's trial in the helper worker it stops)."""
    record = create_run("toy", {})
    registry = open_registry()
    with pytest.raises(RunCancelledError, match="on request"), execute_run(record.id):
        registry.request_cancel(record.id)
        raise RunPreemptedError("the worker is shutting down")
    done = registry.get(record.id)
    assert done.status is RunStatus.CANCELLED and done.error_code == "cancelled" and done.ended_at is not None
    assert read_manifest(record.run_dir)["status"] == "cancelled"
