"""A run whose process was killed (SIGKILL) in a home with no worker does not read `running` for good: the
command line's views settle it as a worker's reconcile settles an orphan, and `--resume` finishes it. A real
`tldrlab smoke` process, killed mid-run."""

from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cliutil import run_captured, run_cli
from tldrlab.config import get_settings
from tldrlab.runs import RunRecord, RunStatus, create_run, open_registry
from tldrlab.runs.atomic import read_jsonl


def _steps(record: RunRecord) -> list[int]:
    rows = read_jsonl(Path(record.run_dir) / "metrics.jsonl")
    return [int(row["step"]) for row in rows if "train_loss" in row]


def _smoke_runs() -> list[RunRecord]:
    return open_registry().list(kind="smoke")


def test_a_killed_command_line_run_is_settled_by_runs_list_and_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # nothing reconciled a run killed with SIGKILL but a worker: in a home with none, `runs list` and
    # `runs show` said `running` for good
    monkeypatch.setenv("TLDRLAB_RUN_HEARTBEAT_S", "0.2")
    get_settings.cache_clear()
    argv = ["smoke", "--steps", "30", "--checkpoint-every", "4", "--step-sleep-s", "0.05"]
    with (tmp_path / "run.log").open("ab") as log:
        owner = subprocess.Popen(
            [sys.executable, "-m", "tldrlab", *argv], env=dict(os.environ), stdout=log, stderr=log
        )
    try:
        deadline = time.monotonic() + 90
        while not (_smoke_runs() and len(_steps(_smoke_runs()[0])) >= 6):
            assert time.monotonic() < deadline and owner.poll() is None, (tmp_path / "run.log").read_text()
            time.sleep(0.05)
        owner.send_signal(signal.SIGKILL)
        owner.wait(timeout=10)
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait(timeout=10)
    (killed,) = _smoke_runs()
    assert killed.status is RunStatus.RUNNING  # nothing recorded how it ended
    time.sleep(0.8)  # its heartbeat goes stale (the lock is free at once)

    code, out, _ = run_captured(["runs", "list", "--json"], capsys)
    assert code == 0
    (listed,) = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert listed["id"] == killed.id and listed["status"] == "queued", listed
    assert f"--resume {killed.id}" in listed["message"] and str(owner.pid) in listed["message"]
    code, out, _ = run_captured(["runs", "show", killed.id], capsys)
    shown = json.loads(out)
    assert code == 0 and shown["run"]["status"] == "queued" and shown["manifest"]["status"] == "queued"

    assert run_cli([*argv[:1], "--resume", killed.id]) == 0  # from its last checkpoint
    final = open_registry().get(killed.id)
    assert final.status is RunStatus.COMPLETED and final.attempts == 2, final.message
    assert _steps(final) == list(range(1, 31))  # every step once: resumed, not restarted


def test_a_killed_run_of_a_kind_that_does_not_resume_fails_and_can_be_deleted(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # a tokenizer run whose process died (its owner on this machine, no lock held, heartbeat long stale):
    # `runs delete` refused it as running, for good
    registry = open_registry()
    run = create_run("tokenizer", {"corpus": ["corpus.txt"], "method": "char", "vocab_size": 40})
    long_ago = time.time() - 3600
    registry.update(
        run.id,
        status=RunStatus.RUNNING,
        owner=f"{platform.node()}:999999999:dead",
        heartbeat_at=long_ago,
        started_at=long_ago,
    )
    code, out, _ = run_captured(["runs", "delete", run.id, "--dry-run", "--json"], capsys)
    assert code == 0, out
    settled = registry.get(run.id)
    assert settled.status is RunStatus.FAILED and settled.error_code == "worker_lost", settled.message
    assert "999999999" in (settled.message or "") and "--resume" not in (settled.message or "")
    assert json.loads((Path(run.run_dir) / "manifest.json").read_text())["status"] == "failed"
    assert run_cli(["runs", "delete", run.id]) == 0
