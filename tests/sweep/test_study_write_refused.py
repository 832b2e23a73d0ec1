"""A sweep whose study database the system refuses to let grow: one line naming that database (exit 9, a
`disk_full` / `file_too_large` code, the sweep run failed with it), never Optuna's "An exception is raised
during the commit" or SQLAlchemy's traceback, and the study keeps its finished trials for the sweep to resume.

The full disk is a real one: a small tmpfs holding the study alone, mounted in a private mount namespace
(`mountutil.in_mount_namespace`), so the run registry elsewhere records how the sweep ended. The file-size
limit (RLIMIT_FSIZE) would refuse the registry's writes as soon as the study's, so it is set in a script that
writes the study only. A PostgreSQL study's disk is a tablespace on a tmpfs the session's server sees
(`mountutil.shared_tmpfs`, in the machine's own mount namespace), its size cut to the study's tables plus room
for a few trials once they are made (conftest's `small_disk_postgres`).
"""

from __future__ import annotations

import os
import re
import resource
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from mountutil import in_mount_namespace, resize_tmpfs, tmpfs_used
from tldrlab.errors import DiskFullError
from tldrlab.runs import RunStatus, open_registry
from tldrlab.sweep.runner import run_sweep
from tldrlab.sweep.spec import load_sweep
from tldrlab.sweep.storage import open_storage

SRC = Path(__file__).resolve().parents[2] / "src"
TOY = Path(__file__).with_name("toy_program.py")
ROOM_FOR_TRIALS = 28 * 1024
"""What the tmpfs holds beyond an empty study's database: a few trials of `STEPS` evaluations each."""
STEPS = 100


def _tmpfs_size(tmp_path: Path) -> str:
    """An empty study's database as this Optuna makes it (its tables: some 110 KB with Optuna 4), plus
    `ROOM_FOR_TRIALS`, in whole pages: a fixed size broke as soon as an Optuna release grew its schema."""
    probe = tmp_path / "probe.db"
    optuna.create_study(study_name="toy", storage=f"sqlite:///{probe}")
    size = probe.stat().st_size + ROOM_FOR_TRIALS
    return f"{-(-size // 4096) * 4}k"


def _env(home: Path) -> dict[str, str]:
    return {**os.environ, "TLDRLAB_HOME": str(home), "PYTHONPATH": str(SRC), "COLUMNS": "400"}


def _sweep_file(tmp_path: Path) -> Path:
    """A sweep of the toy program, `STEPS` evaluations a trial (each a row of the study)."""
    sweep = tmp_path / "sweep.yaml"
    raw = {
        "name": "toy",
        "program": str(TOY),
        "method": "random",
        "seed": 1,
        "metric": {"name": "loss", "goal": "minimize"},
        "parameters": {"x": {"min": 0.0, "max": 1.0}, "steps": {"value": STEPS}},
    }
    sweep.write_text(yaml.safe_dump(raw))
    return sweep


def test_a_sweep_whose_study_fills_the_disk_stops_with_one_line_and_resumes(
    tldrlab_home: Path, tmp_path: Path
) -> None:
    # before: the sweep's run failed as "no space left on device (<the sweep run's directory>)", or its trials
    # one by one until "3 trials failed in a row", each naming its own run directory, not the study's database
    sweep = _sweep_file(tmp_path)
    mount, kept = tmp_path / "studies", tmp_path / "kept.db"
    mount.mkdir()
    db = mount / "sweeps.db"
    command = f"{sys.executable} -m tldrlab sweep run {sweep} --trials 20 --storage sqlite:///{db}"
    # the study is copied out of the tmpfs, which ends with the namespace
    size = _tmpfs_size(tmp_path)
    script = (
        f"mount -t tmpfs -o size={size} tmpfs {mount} && {{ {command}; rc=$?; cp {db} {kept}; exit $rc; }}"
    )
    done = in_mount_namespace(script, _env(tldrlab_home), timeout=120)

    assert done.returncode == 9 and "Traceback" not in done.stderr, done.stderr
    last = done.stderr.splitlines()[-1]
    assert re.fullmatch(
        rf"error \[disk_full\] (trial \d+: )?no space left on device writing the database {db}: free some "
        "space, then run the sweep again: it resumes the study, whose finished trials are kept",
        last,
    ), done.stderr
    assert [line for line in done.stderr.splitlines() if line.startswith("error")] == [last]
    sweep_run = next(r for r in open_registry().list() if r.kind == "sweep")
    assert sweep_run.status is RunStatus.FAILED and sweep_run.error_code == "disk_full"
    assert sweep_run.message == f"failed: {last.removeprefix('error [disk_full] ')}"

    # the trials that finished are in the study, as the sweep said, and the sweep goes on from them
    url = f"sqlite:///{kept}"
    finished = optuna.load_study(study_name="toy", storage=url).get_trials(states=(TrialState.COMPLETE,))
    said = re.findall(r"^trial (\d+) COMPLETE value=", done.stderr, re.MULTILINE)
    assert finished and [str(t.number) for t in finished] == said
    summary = run_sweep(load_sweep(sweep), trials=len(finished) + 1, storage=url, echo=lambda line: None)
    assert summary["trials"]["COMPLETE"] == len(finished) + 1
    again = optuna.load_study(study_name="toy", storage=url).get_trials(states=(TrialState.COMPLETE,))
    assert [(t.number, t.value) for t in again[:-1]] == [(t.number, t.value) for t in finished]


LIMIT = 40 * 1024
"""Under the 100-odd KB of Optuna's tables, over the run registry's file (36 KB) and its -shm (32 KiB)."""


def test_a_study_over_the_file_size_limit_is_one_line_naming_it(tldrlab_home: Path, tmp_path: Path) -> None:
    # before: "error [service_unavailable] cannot open the sweep storage ...: (sqlite3.OperationalError) disk
    # I/O error", exit 7: a server's outage, not the process's file-size limit
    open_registry()  # the home's database, made while unlimited
    sweep = _sweep_file(tmp_path)
    db = tmp_path / "sweeps.db"
    done = subprocess.run(
        [sys.executable, "-m", "tldrlab", "sweep", "run", str(sweep), "--storage", f"sqlite:///{db}"],
        env=_env(tldrlab_home),
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, LIMIT)),
    )
    assert done.returncode == 9 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.splitlines() == [
        "error [file_too_large] file too large for this process's file-size limit "
        f"({LIMIT} bytes, `ulimit -f`) writing the database {db}: raise the limit (`ulimit -f unlimited`), "
        "then run the sweep again: it resumes the study, whose finished trials are kept"
    ]


def _named(url: str) -> str:
    """How a refusal names the PostgreSQL study `url`: SQLAlchemy's form of it, without the password."""
    password = urlsplit(url).password
    return url.replace("postgresql://", "postgresql+psycopg://").replace(f":{password}@", ":***@")


def _refusal_words(url: str) -> str:
    return (
        f"no space left on device writing the database {_named(url)}: free some space, then run the sweep "
        "again: it resumes the study, whose finished trials are kept"
    )


def test_a_postgres_study_whose_tables_fill_the_disk_is_one_line_naming_it(
    small_disk_postgres: tuple[str, Path],
) -> None:
    # before: "cannot open the sweep storage postgresql+psycopg://...: (psycopg.errors.DiskFull) could not
    # extend file ...", a service_unavailable error (exit 7): a server's outage, not its full disk
    url, mount = small_disk_postgres
    resize_tmpfs(mount, 4096)  # no room for an index's first page
    with pytest.raises(DiskFullError) as refused:
        open_storage(url)
    assert refused.value.message == _refusal_words(url)
    assert refused.value.details["public_message"] == DiskFullError.for_clients()


PG_ROOM_FOR_TRIALS = 224 * 1024
"""What the PostgreSQL study's tmpfs holds beyond its empty tables: the study's first rows (a page of each
table and of its indexes) and a few trials of `STEPS` evaluations each."""


def test_a_sweep_whose_postgres_study_fills_the_disk_stops_with_one_line_and_resumes(
    tldrlab_home: Path, tmp_path: Path, small_disk_postgres: tuple[str, Path]
) -> None:
    # before: "trial 1: no space left on device (<the trial run's directory>): free some space, ...", the
    # trial run's directory named (the sweep run's, when the sweep's own write was refused), never the study's
    # database
    url, mount = small_disk_postgres
    sweep = load_sweep(_sweep_file(tmp_path))
    open_storage(url)  # the study's tables, then room for a few trials
    resize_tmpfs(mount, tmpfs_used(mount) + PG_ROOM_FOR_TRIALS)
    lines: list[str] = []
    with pytest.raises(DiskFullError) as refused:
        run_sweep(sweep, trials=50, storage=url, echo=lines.append)

    said = refused.value.message
    assert re.fullmatch(rf"(trial \d+: )?{re.escape(_refusal_words(url))}", said), said
    assert f":{urlsplit(url).password}@" not in said
    sweep_run = next(r for r in open_registry().list() if r.kind == "sweep")
    assert sweep_run.status is RunStatus.FAILED and sweep_run.error_code == "disk_full"
    assert sweep_run.message == f"failed: {said}"

    # PostgreSQL undid the refused transaction only: the trials that finished are in the study, as the sweep
    # said, and once there is space the same sweep goes on from them
    finished = optuna.load_study(study_name="toy", storage=url).get_trials(states=(TrialState.COMPLETE,))
    completed = [m[1] for line in lines if (m := re.match(r"trial (\d+) COMPLETE value=", line))]
    assert finished and [str(t.number) for t in finished] == completed
    resize_tmpfs(mount, 1024 * 1024)
    summary = run_sweep(sweep, trials=len(finished) + 1, storage=url, echo=lambda line: None)
    assert summary["trials"]["COMPLETE"] == len(finished) + 1
    again = optuna.load_study(study_name="toy", storage=url).get_trials(states=(TrialState.COMPLETE,))
    assert [(t.number, t.value) for t in again[:-1]] == [(t.number, t.value) for t in finished]
