"""The sweep storage's registry scans read every queued / running sweep, not the newest 1000: a sweep queued
behind 1000 newer ones still holds its study name at submit, and a killed sweep run behind 1000 newer
running ones is still found dead. Filler rows are inserted through the registry in one transaction (cheap);
both backends."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tldrlab.config import get_settings
from tldrlab.runs import open_registry
from tldrlab.runs.registry import RunRecord, RunStatus
from tldrlab.service.app import create_app
from tldrlab.sweep.storage import fail_dead_sweep_runs

FILLER = 1001
"""More newer sweeps of the kind and status than the scans read before (1000)."""


def _sweep(data: Path, name: str, lrs: list[float]) -> dict[str, Any]:
    return {
        "name": name,
        "program": "tldrlab.train",
        "method": "grid",
        "metric": {"name": "eval_loss", "goal": "minimize"},
        "parameters": {"train.lr": {"values": lrs}},
        "config": {"model": "char_lstm", "data": {"path": str(data)}, "train": {"max_steps": 2}},
    }


def _filler(config: dict[str, Any], since: float, running_on: str | None = None) -> None:
    """FILLER queued sweep rows (running for worker `running_on` when given), each newer than `since`, in
    one commit (seconds, not minutes)."""
    runs = open_registry()
    with runs.db.transaction():
        for i in range(FILLER):
            run_id = f"sweep-filler-{i:04d}"
            runs.insert(
                RunRecord(
                    id=run_id,
                    kind="sweep",
                    status=RunStatus.QUEUED,
                    config=config,
                    run_dir=f"/gone/{run_id}",
                    created_at=since + 1 + i,
                )
            )
            if running_on is not None:
                runs.update(run_id, status=RunStatus.RUNNING, worker=running_on)


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tldrlab_home: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "postgres":
        monkeypatch.setenv("TLDRLAB_DATABASE_URL", request.getfixturevalue("postgres_url"))
        get_settings.cache_clear()
    return str(request.param)


def test_a_sweep_queued_behind_a_thousand_newer_ones_still_holds_its_study(
    backend: str, tldrlab_home: Path
) -> None:
    data = tldrlab_home / "data" / "text.txt"
    data.parent.mkdir(parents=True)
    data.write_text("To be, or not to be, that is the question.\n" * 20)
    client = TestClient(create_app())
    first = client.post(
        "/runs", json={"kind": "sweep", "config": {"sweep": _sweep(data, "old-study", [5e-3])}}
    )
    assert first.status_code == 202, first.text
    queued = open_registry().get(first.json()["id"])
    assert queued.status is RunStatus.QUEUED
    # newer queued sweeps of another study (the same search, so each one's config is read as it would be)
    _filler({"sweep": _sweep(data, "filler-study", [1e-3])}, queued.created_at)
    assert len(open_registry().list(kind="sweep", status="queued", limit=None)) == FILLER + 1

    clash = client.post(
        "/runs", json={"kind": "sweep", "config": {"sweep": _sweep(data, "old-study", [1e-3])}}
    )
    assert clash.status_code == 409 and clash.json()["code"] == "conflict", clash.text
    assert f"queued sweep run {queued.id}" in clash.json()["message"]
    assert len(open_registry().list(kind="sweep", limit=None)) == FILLER + 1  # no run was made for it
    same = client.post(
        "/runs", json={"kind": "sweep", "config": {"sweep": _sweep(data, "old-study", [5e-3])}}
    )
    assert same.status_code == 202, same.text  # the same sweep shares the study


def test_a_dead_sweep_run_behind_a_thousand_newer_running_ones_is_failed(backend: str) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a pid whose process has exited: the killed `tldrlab sweep run`
    host = platform.node()
    runs = open_registry()
    now = time.time()
    runs.insert(
        RunRecord(
            id="sweep-dead",
            kind="sweep",
            status=RunStatus.QUEUED,
            config={},
            run_dir="/gone/sweep-dead",
            created_at=now,
            tags={"study": "dead-study"},
        )
    )
    runs.update("sweep-dead", status=RunStatus.RUNNING, worker=f"{host}:{gone.pid}")
    # newer running sweeps of another study, alive (this process)
    _filler({}, now, running_on=f"{host}:{os.getpid()}")

    assert fail_dead_sweep_runs("dead-study") == ["sweep-dead"]
    dead = open_registry().get("sweep-dead")
    assert dead.status is RunStatus.FAILED and dead.error_code == "worker_died"
    assert {r.status for r in open_registry().list(kind="sweep", limit=None) if r.id != "sweep-dead"} == {
        RunStatus.RUNNING
    }
