"""A run whose process was killed (SIGKILL) in a home with no worker does not read `running` for good: the
command line's views settle it as a worker's reconcile settles an orphan, and `--resume` finishes it. A real
`tldrlab smoke` process, killed mid-run."""

from __future__ import annotations

import json
import os
import platform
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cliutil import run_captured, run_cli
from netutil import free_port, start_serve, wait_for_port
from tldrlab.config import get_settings
from tldrlab.errors import TldrlabError
from tldrlab.launch import launch_run
from tldrlab.runs import RunRecord, RunStatus, create_run, open_registry
from tldrlab.runs.atomic import read_jsonl
from tldrlab.runs.db import sqlite_path, table_exists
from tldrlab.runs.reconcile import update_manifest
from tldrlab.runs.registry import SUBMITTED_VIA
from tldrlab.service.app import create_app
from tldrlab.service.events import open_bus
from tldrlab.service.queue import open_queue
from tldrlab.service.worker import Worker, WorkerConfig, live_workers, reconcile


def _steps(record: RunRecord) -> list[int]:
    rows = read_jsonl(Path(record.run_dir) / "metrics.jsonl")
    return [int(row["step"]) for row in rows if "train_loss" in row]


def _smoke_runs() -> list[RunRecord]:
    return open_registry().list(kind="smoke")


TOKENIZER = {"corpus": ["corpus.txt"], "method": "char", "vocab_size": 40}


def _orphan(
    kind: str = "tokenizer",
    config: dict[str, Any] = TOKENIZER,
    host: str | None = None,
    tags: dict[str, str] | None = None,
) -> RunRecord:
    """A run whose process died on this machine (or `host`): running, no lock held, heartbeat long stale."""
    run = create_run(kind, config, tags=tags)
    long_ago = time.time() - 3600
    registry = open_registry()
    registry.update(
        run.id,
        status=RunStatus.RUNNING,
        owner=f"{host or platform.node()}:999999999:dead",
        heartbeat_at=long_ago,
        started_at=long_ago,
    )
    update_manifest(run.run_dir, status="running")  # as its process wrote it when it started
    return registry.get(run.id)


@contextmanager
def unwritable(path: Path) -> Iterator[None]:
    """`path` refuses writes for the rest of the block, even to root (whose writes file modes do not stop):
    immutable (`chattr +i`) as root, read-only modes for another user."""
    if os.geteuid() == 0:
        subprocess.run(["chattr", "+i", str(path)], check=True)
        try:
            yield
        finally:
            subprocess.run(["chattr", "-i", str(path)], check=True)
        return
    mode = path.stat().st_mode
    path.chmod(mode & ~0o222)
    try:
        yield
    finally:
        path.chmod(mode)


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


def _listed(out: str) -> dict[str, str]:
    return {row["id"]: row["status"] for row in map(json.loads, out.splitlines()) if row}


def test_runs_list_shows_the_runs_it_cannot_settle_in_a_read_only_database(
    tldrlab_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # settling an orphan is a write: in a home whose database refuses writes, `runs list` was a traceback
    # (sqlite3.OperationalError: attempt to write a readonly database) instead of the runs
    orphans = [_orphan(), _orphan()]
    with unwritable(tldrlab_home / "tldrlab.db"):
        # a process of its own, as a user's: SQLite would hand this one a writable descriptor of the
        # database that the test's own connections opened before
        listing = subprocess.run(
            [sys.executable, "-m", "tldrlab", "runs", "list", "--json"],
            env=dict(os.environ),
            capture_output=True,
            text=True,
            timeout=60,
        )
    code, out, err = listing.returncode, listing.stdout, listing.stderr
    assert code == 0, err
    assert _listed(out) == {orphan.id: "running" for orphan in orphans}  # as they are
    (warning,) = err.strip().splitlines()
    assert warning.startswith("warning could not settle 2 run(s) whose process died"), warning
    assert all(orphan.id in warning for orphan in orphans) and "readonly database" in warning, warning
    code, out, err = run_captured(["runs", "list", "--json"], capsys)  # writable again: settled
    assert code == 0 and "could not settle" not in err and set(_listed(out).values()) == {"failed"}


def test_runs_list_settles_the_others_when_one_manifest_cannot_be_written(
    capsys: pytest.CaptureFixture[str],
) -> None:
    stuck, other = _orphan(), _orphan()
    with unwritable(Path(stuck.run_dir)):  # its manifest's atomic write (a temp file beside it) fails
        code, out, err = run_captured(["runs", "list", "--json"], capsys)
    assert code == 0, err
    assert _listed(out)[other.id] == "failed"
    (warning,) = [line for line in err.splitlines() if "could not settle" in line]
    assert "could not settle 1 run(s)" in warning and stuck.id in warning and other.id not in warning
    assert "manifest.json" in warning, warning  # the path whose write failed
    assert json.loads((Path(other.run_dir) / "manifest.json").read_text())["status"] == "failed"


def test_a_manifest_left_running_by_a_settle_is_repaired_by_the_next_runs_list(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # the registry settled the orphan while its run directory refused the manifest write: once the directory
    # was writable again nothing wrote the manifest, which said `running` for good
    stuck, resumable = _orphan(), _orphan("smoke", {"steps": 5})
    with unwritable(Path(stuck.run_dir)), unwritable(Path(resumable.run_dir)):
        code, _, err = run_captured(["runs", "list", "--json"], capsys)
        assert code == 0 and stuck.id in err and resumable.id in err, err
        code, _, err = run_captured(["runs", "list", "--json"], capsys)  # still unwritable: still said
        assert code == 0 and stuck.id in err and resumable.id in err, err
    assert _manifest(stuck)["status"] == "running" and _manifest(resumable)["status"] == "running"
    registry = open_registry()
    assert registry.get(stuck.id).status is RunStatus.FAILED
    assert registry.get(resumable.id).status is RunStatus.QUEUED
    code, _, err = run_captured(["runs", "list", "--json"], capsys)  # writable again
    assert code == 0 and "could not settle" not in err, err
    assert _manifest(stuck)["status"] == "failed" and _manifest(stuck)["error_code"] == "worker_lost"
    assert _manifest(stuck)["ended_at"] is not None
    assert _manifest(resumable)["status"] == "queued"
    assert f"--resume {resumable.id}" in _manifest(resumable)["message"]
    assert registry.manifests_behind() == []  # repaired once, not on every listing


def test_a_workers_reconcile_repairs_a_manifest_it_could_not_write() -> None:
    orphan = _orphan("smoke", {"steps": 2})
    registry, queue = open_registry(), open_queue(get_settings())
    registry.update(orphan.id, worker=f"{platform.node()}:999999999", attempts=1)
    with unwritable(Path(orphan.run_dir)):
        assert reconcile(registry, queue, WorkerConfig()) == [(orphan.id, "queued")]
    assert _manifest(orphan)["status"] == "running"
    reconcile(registry, queue, WorkerConfig())  # its next pass
    assert _manifest(orphan)["status"] == "queued" and "requeued" in _manifest(orphan)["message"]


def _manifest(record: RunRecord) -> dict[str, Any]:
    manifest: dict[str, Any] = json.loads((Path(record.run_dir) / "manifest.json").read_text())
    return manifest


def test_runs_list_shows_the_runs_it_cannot_settle_on_a_read_only_postgres(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # a PostgreSQL server that refuses writes (a hot standby, a read-only role or transaction) answers
    # the settling UPDATE with an error: `runs list` was its traceback
    monkeypatch.setenv("TLDRLAB_DATABASE_URL", postgres_url)
    get_settings.cache_clear()
    orphan = _orphan()
    joint = "&" if "?" in postgres_url else "?"
    read_only = f"{postgres_url}{joint}options=-c%20default_transaction_read_only%3Don"
    monkeypatch.setenv("TLDRLAB_DATABASE_URL", read_only)
    get_settings.cache_clear()
    code, out, err = run_captured(["runs", "show", orphan.id], capsys)
    assert code == 0, err
    assert json.loads(out)["run"]["status"] == "running"
    (warning,) = [line for line in err.splitlines() if "could not settle" in line]
    assert orphan.id in warning and "read-only transaction" in warning, warning


def _get(port: int, path: str) -> Any:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as response:
        return json.loads(response.read())


def test_the_api_settles_killed_command_line_runs_of_its_machine_at_most_once_per_heartbeat(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a server with no worker (`serve --workers 0`) showed a killed command-line run `running` for good:
    # only a worker's reconcile or the command line's views settled it
    monkeypatch.setenv("TLDRLAB_RUN_HEARTBEAT_S", "4")
    get_settings.cache_clear()
    tokenizer, smoke = _orphan(), _orphan("smoke", {"steps": 5})
    api_run = _orphan(tags={SUBMITTED_VIA: "api"})  # the workers' to requeue
    elsewhere = _orphan(host="another-machine")  # its lock cannot be probed from here
    port = free_port()
    with (tmp_path / "serve.log").open("wb") as log:
        server = start_serve(port, log, 0)
    try:
        wait_for_port(port, timeout=60)
        listed = {run["id"]: run for run in _get(port, "/runs")["runs"]}
        assert listed[tokenizer.id]["status"] == "failed", listed[tokenizer.id]
        assert (
            listed[smoke.id]["status"] == "queued" and f"--resume {smoke.id}" in listed[smoke.id]["message"]
        )
        assert listed[api_run.id]["status"] == "running" and listed[elsewhere.id]["status"] == "running"
        # killed after that settle: the next ones come a heartbeat later, not with every request
        late = _orphan()
        assert _get(port, f"/runs/{late.id}")["status"] == "running"
        assert _get(port, "/runs")["count"] == 5 and open_registry().get(late.id).status is RunStatus.RUNNING
        deadline = time.monotonic() + 30
        while _get(port, f"/runs/{late.id}")["status"] == "running":
            assert time.monotonic() < deadline, "never settled"
            time.sleep(0.5)
        assert _get(port, f"/runs/{late.id}")["status"] == "failed"
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    assert open_registry().get(api_run.id).status is RunStatus.RUNNING


def _status_in_api(local_workers: int, run_id: str) -> str:
    """The run's status in GET /runs of a fresh real app (its first view settles what it settles)."""
    with TestClient(create_app(local_workers=local_workers)) as client:
        listed = {run["id"]: run["status"] for run in client.get("/runs").json()["runs"]}
    return listed[run_id]


def test_killed_command_line_runs_are_left_to_the_workers_where_there_are_any(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # a server with workers (and `runs list` beside one) settled a killed command-line run to "waiting for
    # --resume" after three missed heartbeats, before a worker's reconcile would requeue and resume it
    orphan = _orphan("smoke", {"steps": 5})
    assert _status_in_api(1, orphan.id) == "running"  # `serve --workers 1`: its worker's to requeue
    settings = get_settings()
    registry = open_registry()
    worker = Worker(settings, WorkerConfig(), open_queue(settings), registry, open_bus(settings))
    worker.register()  # a worker elsewhere (`tldrlab worker`), alive
    assert _status_in_api(0, orphan.id) == "running"
    code, out, _ = run_captured(["runs", "list", "--json"], capsys)
    assert code == 0 and _listed(out)[orphan.id] == "running"
    assert [run_id for run_id, _ in reconcile(registry, worker.queue, WorkerConfig())] == [orphan.id]
    assert registry.get(orphan.id).status is RunStatus.QUEUED and orphan.id in worker.queue.pending_run_ids()

    # no worker anywhere (`serve --workers 0`; the one above killed, its heartbeat stale): the API settles
    late = _orphan("smoke", {"steps": 5})
    long_ago = time.time() - 3600
    registry.db.execute("UPDATE workers SET heartbeat_at = ? WHERE id = ?", (long_ago, worker.worker_id))
    assert _status_in_api(0, late.id) == "queued"
    assert f"--resume {late.id}" in (registry.get(late.id).message or "")


def test_a_workers_reconcile_goes_on_past_a_run_it_cannot_settle() -> None:
    # the worker's reconcile raised the PermissionError of one orphan's manifest write: every other orphan
    # stayed unsettled, and a worker starting (it reconciles first) died with that traceback, at every restart
    dead_worker = f"{platform.node()}:999999999"
    stuck, other = (_orphan("smoke", {"steps": 2}) for _ in range(2))
    registry, queue = open_registry(), open_queue(get_settings())
    for orphan in (stuck, other):
        registry.update(orphan.id, worker=dead_worker, attempts=1)
    with unwritable(Path(stuck.run_dir)):
        actions = reconcile(registry, queue, WorkerConfig())
    assert sorted(actions) == sorted([(stuck.id, "queued"), (other.id, "queued")])
    assert {registry.get(orphan.id).status for orphan in (stuck, other)} == {RunStatus.QUEUED}
    assert queue.pending_run_ids() >= {stuck.id, other.id}  # both back on the queue: a worker resumes them
    assert json.loads((Path(other.run_dir) / "manifest.json").read_text())["status"] == "queued"


def _use_backend(backend: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """The home's own SQLite file, or a fresh PostgreSQL database, as the registry's database."""
    if backend == "postgres":
        monkeypatch.setenv("TLDRLAB_DATABASE_URL", request.getfixturevalue("postgres_url"))
        get_settings.cache_clear()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_live_workers_is_empty_without_a_workers_table_and_raises_when_the_database_fails(
    backend: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    # every exception read as "no workers": a lost connection let a view settle runs the workers requeue
    _use_backend(backend, request, monkeypatch)
    registry = open_registry()
    assert not table_exists(registry.db, "workers")
    assert live_workers(registry) == []  # no worker ever registered here
    settings = get_settings()
    worker = Worker(settings, WorkerConfig(), open_queue(settings), registry, open_bus(settings))
    worker.register()
    assert live_workers(registry) == [worker.worker_id]
    registry.db.close()
    with pytest.raises(Exception, match="closed"):
        live_workers(registry)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_views_do_not_settle_orphans_when_they_cannot_tell_whether_workers_run(
    backend: str,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # a workers table the registry cannot read (here one lacking its columns: the query fails, as a
    # permission or a lost connection makes it fail) was "no workers", so `runs list` and the API settled a
    # killed run the workers would requeue and resume
    _use_backend(backend, request, monkeypatch)
    orphan = _orphan("smoke", {"steps": 5})
    open_registry().db.execute("CREATE TABLE workers (id TEXT PRIMARY KEY)")
    code, out, err = run_captured(["runs", "list", "--json"], capsys)
    assert code == 0 and _listed(out)[orphan.id] == "running", err
    assert "not settled: cannot tell whether workers run" in err
    with caplog.at_level("WARNING", logger="tldrlab.service"):
        assert _status_in_api(0, orphan.id) == "running"
    assert any("cannot tell whether workers run" in r.getMessage() for r in caplog.records)
    assert open_registry().get(orphan.id).status is RunStatus.RUNNING


def test_a_settling_view_does_not_wait_out_a_write_lock_another_process_holds(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    # on SQLite the views settled orphans through the registry's own connection (busy timeout 30 s): while
    # another process held a write transaction, GET /runs (and `runs list`) waited the 30 s out (and every
    # request behind it on that connection with it), then answered what it could have answered at once
    monkeypatch.setenv("TLDRLAB_RUN_HEARTBEAT_S", "0.2")
    get_settings.cache_clear()
    orphan = _orphan("smoke", {"steps": 5})
    other = sqlite3.connect(sqlite_path(get_settings().resolved_database_url), isolation_level=None)
    with TestClient(create_app(local_workers=0)) as client:
        other.execute("BEGIN IMMEDIATE")  # another process mid-write (a run's heartbeat, a long migration)
        try:
            started = time.monotonic()
            with caplog.at_level("WARNING", logger="tldrlab.service"):
                listed = {run["id"]: run["status"] for run in client.get("/runs").json()["runs"]}
            waited = time.monotonic() - started
            started = time.monotonic()
            code, out, err = run_captured(["runs", "list", "--json"], capsys)
            waited_cli = time.monotonic() - started
        finally:
            other.execute("ROLLBACK")
            other.close()
        assert waited < 5 and listed[orphan.id] == "running", waited  # as known, left for the next pass
        assert code == 0 and waited_cli < 5 and _listed(out)[orphan.id] == "running", (waited_cli, err)
        assert "could not settle 1 run(s)" in err and "database is locked" in err, err
        assert any(orphan.id in r.getMessage() and "locked" in r.getMessage() for r in caplog.records)
        time.sleep(0.3)  # the next pass, the lock released: settled
        assert client.get(f"/runs/{orphan.id}").json()["status"] == "queued"


def test_a_dead_workers_lm_experiment_arm_waits_for_its_experiment_off_the_queue() -> None:
    """An lm_experiment continues its unfinished arm runs when it resumes. A worker killed mid-arm left the
    experiment and the arm `running`; the next worker's reconcile requeued both onto the queue, where a
    worker could take the arm on its own (training it beside, or racing, the resumed experiment). The arm now
    waits `queued` for its experiment, off the queue; the experiment goes back on the queue."""
    config = {"data": "records.jsonl", "arms": ["baseline"], "seeds": [1]}
    experiment = _orphan("lm_experiment", config)
    arm = create_run(
        "lm_experiment_arm",
        {**config, "arm": "baseline", "seed": 1},
        parent_id=experiment.id,
        tags={"arm": "baseline"},
    )
    registry, queue = open_registry(), open_queue(get_settings())
    long_ago = time.time() - 3600
    registry.update(
        arm.id, status=RunStatus.RUNNING, owner=f"{platform.node()}:999999999:dead", heartbeat_at=long_ago
    )
    actions = reconcile(registry, queue, WorkerConfig())
    assert sorted(actions) == sorted([(experiment.id, "queued"), (arm.id, "queued")])
    pending = queue.pending_run_ids()
    assert experiment.id in pending and arm.id not in pending
    waiting = registry.get(arm.id)
    assert waiting.status is RunStatus.QUEUED and f"run {experiment.id}" in (waiting.message or "")


def _lm_experiment_and_arm(attempts: int = 0) -> tuple[RunRecord, RunRecord]:
    """A dead worker's lm_experiment (with `attempts` made) and its arm, both left `running`."""
    config = {"data": "records.jsonl", "arms": ["baseline"], "seeds": [1]}
    experiment = _orphan("lm_experiment", config)
    arm = create_run(
        "lm_experiment_arm",
        {**config, "arm": "baseline", "seed": 1},
        parent_id=experiment.id,
        tags={"arm": "baseline"},
    )
    registry = open_registry()
    long_ago = time.time() - 3600
    dead = f"{platform.node()}:999999999"
    registry.update(experiment.id, worker=dead, attempts=attempts)
    registry.update(
        arm.id, status=RunStatus.RUNNING, worker=dead, owner=f"{dead}:dead", heartbeat_at=long_ago
    )
    update_manifest(arm.run_dir, status="running")
    return experiment, registry.get(arm.id)


def _cancelled_for(arm: RunRecord, experiment: RunRecord, end: str) -> None:
    """`arm` ended cancelled, in the registry and its manifest, naming its experiment and how that ended."""
    ended = open_registry().get(arm.id)
    assert ended.status is RunStatus.CANCELLED and ended.error_code == "cancelled", ended.message
    assert f"run {experiment.id}" in (ended.message or "") and end in (ended.message or ""), ended.message
    assert _manifest(ended)["status"] == "cancelled"


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_an_arm_waiting_for_its_lm_experiment_ends_cancelled_when_the_experiment_fails_for_good(
    backend: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An arm held `queued` for its lm_experiment waited for good once the experiment would never resume:
    here a dead worker's experiment past its attempts fails in the same reconcile pass that holds its arm
    (in either order of the two orphans), and nothing ever ran or settled the arm."""
    _use_backend(backend, request, monkeypatch)
    experiment, arm = _lm_experiment_and_arm(attempts=5)
    registry, queue = open_registry(), open_queue(get_settings())
    actions = reconcile(registry, queue, WorkerConfig(max_attempts=5))
    assert registry.get(experiment.id).status is RunStatus.FAILED
    assert (arm.id, "cancelled") in actions
    _cancelled_for(arm, experiment, "failed")
    assert arm.id not in queue.pending_run_ids()


@pytest.mark.parametrize(
    "by", ["a worker runs it", "the command line resumes it", "a worker cancels it", "the api cancels it"]
)
def test_an_arm_waiting_for_its_lm_experiment_ends_cancelled_when_the_experiment_ends(
    by: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The experiment, requeued by a reconcile that held its arm for it, ends for good before it reaches the
    arm: a worker runs it and it fails (its data is gone), or it is cancelled (a worker taking the cancelled
    job, the API's cancel). The arm waited for good (through the API's cancel, it ended with "cancelled
    before it started", naming no run)."""
    experiment, arm = _lm_experiment_and_arm()
    settings = get_settings()
    registry, queue = open_registry(), open_queue(settings)
    reconcile(registry, queue, WorkerConfig())
    assert registry.get(arm.id).status is RunStatus.QUEUED  # held for the experiment, off the queue
    worker = Worker(settings, WorkerConfig(), queue, registry, open_bus(settings))
    if by == "a worker runs it":
        assert worker.handle(experiment.id).startswith("failed")  # records.jsonl is not there
        end = "failed"
    elif by == "the command line resumes it":
        monkeypatch.chdir(tmp_path)
        (tmp_path / "records.jsonl").write_text("not a record\n")  # there, so the resume starts; unreadable
        with pytest.raises(TldrlabError):
            launch_run("lm_experiment", {}, resume=experiment.id)
        end = "failed"
    elif by == "a worker cancels it":
        registry.request_cancel(experiment.id)
        assert worker.handle(experiment.id) == "cancelled"
        end = "was cancelled"
    else:
        with TestClient(create_app(local_workers=0)) as client:
            assert client.post(f"/runs/{experiment.id}/cancel").status_code == 200
        end = "was cancelled"
    assert registry.get(experiment.id).status.finished
    _cancelled_for(arm, experiment, end)


@pytest.mark.parametrize("end", ["failed", "was deleted"])
def test_an_arm_left_waiting_for_an_lm_experiment_that_ended_is_cancelled_by_the_next_view(
    end: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """An experiment that ended without settling the arm waiting for it (a version without this rule, or a
    process that died in between), or whose row is gone (`runs delete` refuses a run with child runs, so
    removed otherwise: an import undone, a database edited by hand): the next view in a home with no worker
    (`runs list`), as a worker's reconcile pass, cancels the arm, which read `queued` for good."""
    experiment, arm = _lm_experiment_and_arm()
    registry, queue = open_registry(), open_queue(get_settings())
    reconcile(registry, queue, WorkerConfig())
    registry.update(experiment.id, status=RunStatus.FAILED, ended_at=time.time())
    if end == "was deleted":
        registry.delete(experiment.id)
    code, out, err = run_captured(["runs", "list", "--json"], capsys)
    assert code == 0 and _listed(out)[arm.id] == "cancelled", err
    _cancelled_for(arm, experiment, end)


@pytest.mark.parametrize("path", ["worker", "runs list", "api view"])
@pytest.mark.parametrize("kind", ["lm_experiment", "experiment"])
def test_a_run_that_ran_inside_its_parent_settles_alike_with_or_without_workers(
    path: str, kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A killed process's experiment and the arm running inside it: without workers, `runs list` and the
    API's views failed the arm (`worker_lost`), where a worker's reconcile holds an lm_experiment's arm
    `queued` for its experiment's resume and cancels an experiment's arm (the experiment starts its arms
    anew), naming the run it was part of. One rule now, whichever settles it."""
    config = {"data": "records.jsonl", "arms": ["baseline"], "seeds": [1]}
    parent = _orphan(kind, config)
    arm = create_run(f"{kind}_arm", {**config, "arm": "baseline", "seed": 1}, parent_id=parent.id)
    long_ago = time.time() - 3600
    registry, queue = open_registry(), open_queue(get_settings())
    registry.update(
        arm.id, status=RunStatus.RUNNING, owner=f"{platform.node()}:999999999:dead", heartbeat_at=long_ago
    )
    if path == "worker":
        reconcile(registry, queue, WorkerConfig())
    elif path == "runs list":
        code, _, err = run_captured(["runs", "list", "--json"], capsys)
        assert code == 0, err
    else:
        _status_in_api(0, arm.id)
    settled = registry.get(arm.id)
    assert f"run {parent.id}" in (settled.message or ""), settled.message
    if kind == "lm_experiment":  # its experiment continues it when it resumes
        assert settled.status is RunStatus.QUEUED and settled.error_code is None, settled.message
        assert "continues it when it resumes" in (settled.message or "")
        assert arm.id not in queue.pending_run_ids()
    else:  # its experiment starts its arms anew
        assert settled.status is RunStatus.CANCELLED and settled.error_code == "cancelled", settled.message
    assert _manifest(settled)["status"] == settled.status.value
