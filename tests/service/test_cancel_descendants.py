"""Cancelling a run (`POST /runs/{id}/cancel`, the runs page, Discord's /cancel) stops it and the runs it is
executing inside it: a sweep's trial, a training's final evaluation. The sweep's loop never read its cancel
request and the request never reached its trials: a sweep cancelled during its first of three trials ran all
three and ended `completed`, still flagged `cancel_requested`."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from cliutil import run_captured
from tldrlab.errors import RunCancelledError
from tldrlab.launch import launch_run
from tldrlab.runs import RunStatus, create_run, execute_run, open_registry
from tldrlab.service.app import create_app
from tldrlab.sweep.config import SweepConfig
from tldrlab.sweep.runner import launch_sweep
from tldrlab.train import loop as loop_module

TOY = Path(__file__).parents[1] / "sweep" / "toy_program.py"


def test_cancelling_a_running_sweep_stops_it_and_its_running_trial(
    tldrlab_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(loop_module, "CANCEL_CHECK_EVERY_S", 0.0)  # a trial reads its request every step
    text = tldrlab_home / "data" / "text.txt"
    text.parent.mkdir(parents=True)
    text.write_text("To be, or not to be, that is the question.\n" * 20)
    sweep = {
        "name": "cancel-me",
        "program": "tldrlab.train",
        "method": "grid",
        "metric": {"name": "eval_loss", "goal": "minimize"},
        "parameters": {"train.lr": {"values": [1e-3, 2e-3, 3e-3]}},
        "config": {
            "model": "char_lstm",
            "model_settings": {"hidden_dim": 8, "embedding_dim": 8, "num_layers": 1},
            "data": {"path": str(text)},
            "tokenizer": {"method": "char"},
            "train": {
                "max_steps": 200,
                "batch_size": 2,
                "eval_every": 200,
                "checkpoint_every": 2,
                "progress": False,
            },
            "wandb": "disabled",
        },
    }
    client = TestClient(create_app())
    registry = open_registry()
    cancels: list[int] = []

    def cancel_once_a_trial_trains(line: str) -> None:
        """The sweep's echo (every line it and its trials log): cancel it through the API mid-trial."""
        sweeps = registry.list(kind="sweep")
        trials = [r for r in registry.list(kind="train") if sweeps and r.parent_id == sweeps[0].id]
        if not cancels and any(t.status is RunStatus.RUNNING for t in trials):
            cancels.append(client.post(f"/runs/{sweeps[0].id}/cancel").status_code)

    with pytest.raises(RunCancelledError):
        # not quiet: the echo gets the trial's own lines too, and cancels while the trial trains
        launch_sweep(SweepConfig(sweep=sweep, trials=3), echo=cancel_once_a_trial_trains)
    assert cancels == [200]
    (sweep_run,) = registry.list(kind="sweep")
    assert sweep_run.status is RunStatus.CANCELLED
    (trial,) = [r for r in registry.list(kind="train") if r.parent_id == sweep_run.id]  # no second trial
    assert trial.status is RunStatus.CANCELLED and trial.cancel_requested
    assert trial.metrics.get("steps", 0) < 200  # stopped mid-way, not trained to the end


def test_cancelling_a_run_cancels_its_queued_children_at_once_and_flags_running_ones(
    tldrlab_home: Path,
) -> None:
    client = TestClient(create_app())
    registry = open_registry()
    parent = create_run("sweep", {})
    registry.update(parent.id, status=RunStatus.RUNNING)
    queued = create_run("train", {}, parent_id=parent.id)
    running = create_run("train", {}, parent_id=parent.id)
    registry.update(running.id, status=RunStatus.RUNNING)
    grandchild = create_run("evaluate", {}, parent_id=running.id)
    done = create_run("train", {}, parent_id=parent.id)
    registry.update(done.id, status=RunStatus.COMPLETED, message="completed: steps=4")
    response = client.post(f"/runs/{parent.id}/cancel")
    assert response.status_code == 200 and response.json()["cancel_requested"]
    assert registry.get(queued.id).status is RunStatus.CANCELLED
    assert registry.get(grandchild.id).status is RunStatus.CANCELLED
    flagged = registry.get(running.id)
    assert flagged.status is RunStatus.RUNNING and flagged.cancel_requested
    assert flagged.message == "cancel requested; stopping after the current step"
    untouched = registry.get(done.id)  # a finished child keeps how it ended
    assert untouched.status is RunStatus.COMPLETED and not untouched.cancel_requested
    assert untouched.message == "completed: steps=4"


def test_cancelling_a_sweep_stops_its_command_line_trial_program(tldrlab_home: Path) -> None:
    """A command-line trial's program ran to its end: nothing in the trial read the cancel request."""
    sweep = {
        "name": "cancel-command",
        "program": str(TOY),
        "method": "grid",
        "metric": {"name": "loss", "goal": "minimize"},
        "parameters": {"x": {"values": [0.1, 0.2]}, "steps": {"value": 200}, "sleep": {"value": 0.05}},
    }
    client = TestClient(create_app())
    registry = open_registry()
    cancelled: list[int] = []

    def cancel_once_the_program_reports() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not cancelled:
            trials = registry.list(kind="trial")
            if trials and (Path(trials[0].run_dir) / "evals.txt").exists():
                cancelled.append(client.post(f"/runs/{trials[0].parent_id}/cancel").status_code)
            time.sleep(0.05)

    canceller = threading.Thread(target=cancel_once_the_program_reports)
    canceller.start()
    try:
        with pytest.raises(RunCancelledError):
            launch_sweep(SweepConfig(sweep=sweep, trials=2, quiet=True), echo=lambda line: None)
    finally:
        canceller.join()
    assert cancelled == [200]
    (trial,) = registry.list(kind="trial")  # no second trial
    assert trial.status is RunStatus.CANCELLED
    reported = (Path(trial.run_dir) / "metrics.jsonl").read_text().splitlines()
    assert 1 <= len(reported) < 200  # the program was stopped mid-way (its evals.txt may be cut by the kill)


def test_cancelling_a_training_during_its_final_evaluation_ends_it_cancelled_and_resumable(
    tldrlab_home: Path,
) -> None:
    """The final evaluation (an `evaluate` run inside the training's execution) swallowed every tldrlab
    error as "the final evaluation failed", a cancel included: the training cancelled there ended
    `completed` without its evaluation, its cancel request ignored."""
    text = tldrlab_home / "data" / "text.txt"
    text.parent.mkdir(parents=True)
    text.write_text("To be, or not to be, that is the question.\n" * 20)
    config = {
        "model": "char_lstm",
        "model_settings": {"hidden_dim": 8, "embedding_dim": 8, "num_layers": 1},
        "data": {"path": str(text)},
        "tokenizer": {"method": "char"},
        "train": {"max_steps": 3, "batch_size": 2, "progress": False},
        "wandb": "disabled",
    }
    client = TestClient(create_app())
    registry = open_registry()
    cancels: list[int] = []

    def cancel_when_the_evaluation_starts(line: str) -> None:
        if line.startswith("loading the model of") and not cancels:
            (training,) = registry.list(kind="train")
            cancels.append(client.post(f"/runs/{training.id}/cancel").status_code)

    with pytest.raises(RunCancelledError):
        launch_run("train", config, echo=cancel_when_the_evaluation_starts)
    assert cancels == [200]
    (training,) = registry.list(kind="train")
    (evaluation,) = registry.list(kind="evaluate")
    assert training.status is RunStatus.CANCELLED and evaluation.status is RunStatus.CANCELLED
    assert evaluation.parent_id == training.id and (Path(training.run_dir) / "model").is_dir()
    resumed = launch_run("train", {}, resume=training.id)  # the model is there: only the evaluation is left
    assert resumed.record.status is RunStatus.COMPLETED and resumed.result is not None
    assert resumed.result["steps"] == 3 and resumed.result["final_eval_run"] != evaluation.id


def test_the_command_line_cancels_as_the_api_does(capsys: pytest.CaptureFixture[str]) -> None:
    """There was no `tldrlab runs cancel`: in a home without the API, a queued run (and an arm waiting for its
    experiment) could not be cancelled at all."""
    registry = open_registry()
    queued = create_run("train", {})
    child = create_run("evaluate", {}, parent_id=queued.id)
    code, out, err = run_captured(["runs", "cancel", queued.id[:-2]], capsys)  # a unique prefix will do
    assert code == 0 and out.strip() == f"cancelled run {queued.id}", (out, err)
    assert registry.get(queued.id).status is RunStatus.CANCELLED
    assert registry.get(child.id).status is RunStatus.CANCELLED
    assert registry.get(child.id).message == f"cancelled: run {queued.id}, which it is part of, was cancelled"

    code, _, err = run_captured(["runs", "cancel", queued.id], capsys)
    assert code == 4 and f"[conflict] run {queued.id} already cancelled" in err and "Traceback" not in err

    with execute_run(create_run("train", {})) as running:  # alive: this process holds it
        code, out, err = run_captured(["runs", "cancel", running.id, "--json"], capsys)
        assert code == 0, err
        shown = json.loads(out)
        assert shown["status"] == "running" and shown["cancel_requested"] is True, shown
        assert shown["message"] == "cancel requested; stopping after the current step"


def test_a_run_cancelled_while_it_waits_to_run_again_does_not_read_as_never_started(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A run a worker put back on the queue after it had trained (preempted, or retried after a transient
    failure), cancelled while it waited, read `cancelled before it started`: its checkpoints and metrics were
    there, and `--resume` continued it from them."""
    from svc_helpers import metrics, wait_for

    from tldrlab.runs import preempt
    from tldrlab.service.worker import WorkerConfig, build_worker

    worker = build_worker(config=WorkerConfig(burst=True, heartbeat_s=0.1, poll_s=0.05))
    runs = [create_run("smoke", {"steps": 500, "step_sleep_s": 0.01, "checkpoint_every": 2}) for _ in "ab"]
    for run in runs:
        outcomes: list[str] = []
        handling = threading.Thread(
            target=lambda run_id=run.id, into=outcomes: into.append(worker.handle(run_id))
        )
        handling.start()
        wait_for(lambda run_id=run.id: len(metrics(run_id)) >= 3, 30, what="training to start")
        preempt.request_stop()  # what a worker's SIGTERM does
        handling.join(timeout=30)
        preempt.reset()
        assert outcomes == ["preempted"] and open_registry().get(run.id).status is RunStatus.QUEUED
    by_api, by_cli = runs
    answer = TestClient(create_app()).post(f"/runs/{by_api.id}/cancel").json()
    code, _, err = run_captured(["runs", "cancel", by_cli.id], capsys)
    assert code == 0, err
    for run in runs:
        ended = open_registry().get(run.id)
        assert ended.status is RunStatus.CANCELLED and ended.message, ended
        assert "before it started" not in ended.message and "waited to run again" in ended.message, ended
    assert answer["message"] == open_registry().get(by_api.id).message
