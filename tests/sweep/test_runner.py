"""Sweeps for real: command-line trials with pruning, resume after kill -9, status/best/export, and two
worker processes sharing one study on a real PostgreSQL."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from cliutil import run_captured, run_cli
from tldrlab.cli.main import main
from tldrlab.errors import NotFoundError
from tldrlab.runs import open_registry
from tldrlab.runs.run import create_run, read_manifest
from tldrlab.service.queue import open_queue
from tldrlab.sweep.config import SweepConfig
from tldrlab.sweep.report import study_best
from tldrlab.sweep.runner import run_sweep
from tldrlab.sweep.spec import load_sweep
from tldrlab.sweep.storage import load_study, resolve_storage_url

TOY = Path(__file__).with_name("toy_program.py")


def write_sweep(path: Path, **overrides: Any) -> Path:
    raw: dict[str, Any] = {
        "name": "toy",
        "program": str(TOY),
        "method": "random",
        "seed": 1,
        "metric": {"name": "loss", "goal": "minimize"},
        "parameters": {"x": {"min": 0.0, "max": 1.0}, "steps": {"value": 6}},
    }
    raw.update(overrides)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def evals_done(run_id: str) -> int:
    return int((Path(open_registry().get(run_id).run_dir) / "evals.txt").read_text())


@pytest.mark.slow
def test_median_pruning_stops_bad_trials_early(tmp_path: Path) -> None:
    sweep = write_sweep(
        tmp_path / "s.yaml",
        parameters={
            "x": {"values": [0.7, 0.65, 0.0, 0.05, 0.1]},
            "steps": {"value": 6},
            # a pruned program must still be running when the runner reads its second evaluation: with a fixed
            # 0.25 s a step, a loaded machine's runner read all six after the program ended (CI, at 78da899);
            # a bad x now waits 3 s after each evaluation from the second, which pruning cuts short (a bad x
            # among the startup trials, which are never pruned, pays it: the grid's order is the sampler's)
            "sleep": {"value": 0.05},
            "hold_when_bad": {"value": 3},
        },
        method="grid",
        # seed 12: the grid's order is 0.7, 0.65 (the two startup trials, both good), then 0.0, 0.1, 0.05, all
        # three prunable; seed 1 put 0.0 first, a startup trial that held 3 s at four evaluations (12 s idle)
        seed=12,
        early_terminate={"type": "median", "min_iter": 2, "n_startup_trials": 2},
    )
    lines: list[str] = []
    summary = run_sweep(load_sweep(sweep), echo=lines.append)
    study = load_study("toy", None)
    trials = study.get_trials()
    assert len(trials) == 5 and summary["trials"]["COMPLETE"] + summary["trials"].get("PRUNED", 0) == 5
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert pruned, [(_t.params, _t.state) for _t in trials]
    for t in pruned:  # the program was stopped: fewer evaluations, and a bad x
        assert evals_done(t.user_attrs["run_id"]) < 6 and len(t.intermediate_values) < 6
        assert t.user_attrs["params"]["x"] <= 0.1
    for t in complete:
        assert evals_done(t.user_attrs["run_id"]) == 6
    # the best trial is x near 0.7 and its value is the last reported loss
    assert study.best_trial.user_attrs["params"]["x"] in (0.7, 0.65)
    assert study.best_value == pytest.approx((study.best_trial.user_attrs["params"]["x"] - 0.7) ** 2 + 1 / 6)
    # every trial is a run naming its study and trial, children of one sweep run
    for t in trials:
        manifest = read_manifest(open_registry().get(t.user_attrs["run_id"]).run_dir)
        assert manifest["tags"] == {"study": "toy", "trial": t.number}
        assert manifest["parent_id"] == summary["run_id"] and manifest["kind"] == "trial"
    assert any("PRUNED" in line for line in lines) and any("ETA" in line for line in lines)


@pytest.mark.slow
def test_hyperband_prunes_and_failed_programs_fail_the_trial(tmp_path: Path) -> None:
    sweep = write_sweep(
        tmp_path / "s.yaml",
        method="grid",
        parameters={"x": {"values": [0.7, 0.0, 0.6, 0.05, 0.1, 0.65]}, "steps": {"value": 9}},
        early_terminate={"type": "hyperband", "min_iter": 1, "s": 2, "eta": 3},
    )
    run_sweep(load_sweep(sweep), echo=lambda line: None)
    study = load_study("toy", None)
    states = [t.state for t in study.get_trials()]
    assert TrialState.PRUNED in states and TrialState.COMPLETE in states
    assert all(len(t.intermediate_values) < 9 for t in study.get_trials() if t.state == TrialState.PRUNED)

    failing = write_sweep(tmp_path / "f.yaml", name="failing", parameters={"fail": {"value": True}})
    with pytest.raises(Exception, match="exited with code 3: failing on purpose"):
        run_sweep(load_sweep(failing), trials=5, echo=lambda line: None)
    assert [t.state for t in load_study("failing", None).get_trials()] == [TrialState.FAIL] * 3
    with pytest.raises(NotFoundError, match="study 'failing' has no complete trial yet"):  # `sweep best`
        study_best(load_study("failing", None))


@pytest.mark.slow
def test_status_best_export_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sweep = write_sweep(
        tmp_path / "s.yaml", parameters={"x": {"values": [0.2, 0.7, 0.9]}, "steps": {"value": 2}}
    )
    out_dir = tmp_path / "report"

    def cli(*argv: str) -> str:
        try:
            main(list(argv))
        except SystemExit as exc:
            assert exc.code in (0, None), capsys.readouterr()
        return capsys.readouterr().out

    cli("sweep", "run", str(sweep), "--trials", "1")
    assert "skipped param_importances" in cli(
        "sweep", "export", "toy", "--out", str(out_dir)
    )  # 1 trial: a note
    assert not (out_dir / "plots" / "param_importances.png").exists()
    cli("sweep", "run", str(sweep), "--trials", "3")  # resumes to 3 trials in total
    status = cli("sweep", "status", "toy")
    assert "COMPLETE" in status and "x" in status
    best = json.loads(cli("sweep", "best", "toy", "--json"))
    assert best["params"] == {"x": 0.7, "steps": 2} and best["value"] == pytest.approx(0.5)
    exported = json.loads(cli("sweep", "export", "toy", "--out", str(out_dir), "--json"))
    assert exported["trials"] == 3 and str(out_dir / "trials.csv") in exported["files"]
    rows = list(csv.DictReader((out_dir / "trials.csv").open()))
    assert len(rows) == 3 and {r["state"] for r in rows} == {"COMPLETE"}
    assert sorted(float(r["param:x"]) for r in rows) == [0.2, 0.7, 0.9]
    assert json.loads((out_dir / "best.json").read_text())["number"] == best["number"]
    for name in ("optimization_history", "param_importances", "parallel_coordinate", "intermediate_values"):
        png = out_dir / "plots" / f"{name}.png"
        assert png.read_bytes()[:4] == b"\x89PNG", name


def _counts(study_name: str, storage: str | None = None) -> dict[TrialState, int]:
    study = optuna.load_study(study_name=study_name, storage=resolve_storage_url(storage))
    counts: dict[TrialState, int] = {}
    for t in study.get_trials():
        counts[t.state] = counts.get(t.state, 0) + 1
    return counts


@pytest.mark.slow
def test_resume_after_kill_9_keeps_finished_trials_and_resumes_the_interrupted_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sweep = write_sweep(
        tmp_path / "s.yaml",
        parameters={"x": {"min": 0.0, "max": 1.0}, "steps": {"value": 8}, "sleep": {"value": 0.25}},
    )
    cmd = [sys.executable, "-m", "tldrlab", "sweep", "run", str(sweep), "--trials", "3"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(os.environ))
    storage = resolve_storage_url(None)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            study = optuna.load_study(study_name="toy", storage=storage)
            trials = study.get_trials()
        except Exception:  # not created yet
            trials = []
        done = [t for t in trials if t.state == TrialState.COMPLETE]
        running = [t for t in trials if t.state == TrialState.RUNNING and "run_id" in t.user_attrs]
        if done and running and len(running[0].intermediate_values) >= 2:
            # stopped while the test looks: its trial's run cannot end in between. On a loaded machine the
            # few steps it had left could pass between seeing them and the kill, and the run was completed
            # ("completed" == "running" below); then the next trial is the one interrupted.
            proc.send_signal(signal.SIGSTOP)
            if open_registry().get(running[0].user_attrs["run_id"]).status.value == "running":
                break
            proc.send_signal(signal.SIGCONT)
        time.sleep(0.1)
    else:
        proc.kill()
        pytest.fail("the sweep never got a trial running after a finished one")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = {t.number: t for t in optuna.load_study(study_name="toy", storage=storage).get_trials()}
    interrupted = next(t for t in before.values() if t.state == TrialState.RUNNING)
    finished_before = {n: t.datetime_complete for n, t in before.items() if t.state == TrialState.COMPLETE}
    assert open_registry().get(interrupted.user_attrs["run_id"]).status.value == "running"  # left behind

    # the same command again, in this process (only the killed sweep needs a process of its own)
    code, _, err = run_captured(cmd[3:], capsys)
    assert code == 0, err[-2000:]
    after = optuna.load_study(study_name="toy", storage=storage).get_trials()
    by_number = {t.number: t for t in after}
    for number, completed_at in finished_before.items():  # kept as they were, not re-run
        assert by_number[number].state == TrialState.COMPLETE
        assert by_number[number].datetime_complete == completed_at
    # the interrupted trial is the same trial, its run taken over by the worker system and finished
    resumed = by_number[interrupted.number]
    assert resumed.state == TrialState.COMPLETE and resumed.params == interrupted.params
    assert [t.state for t in after].count(TrialState.COMPLETE) == 3 and len(after) == 3  # no re-run copies
    run = open_registry().get(interrupted.user_attrs["run_id"])
    assert run.status.value == "completed" and run.attempts == 2
    assert f"trial {interrupted.number} COMPLETE" in err  # the progress lines are on stderr
    sweeps = open_registry().list(kind="sweep")
    assert sorted(r.status.value for r in sweeps) == [
        "completed",
        "failed",
    ]  # the killed one is not "running"


def _sqlalchemy_url(postgres_url: str) -> str:
    # the fixture's URI may use a unix socket: postgresql://postgres:@/db?host=/tmp/dir
    assert postgres_url.startswith("postgresql://")
    return postgres_url


@pytest.mark.slow
def test_two_worker_processes_share_one_postgres_study(
    tmp_path: Path, postgres_url: str, warm_worker_processes: Callable[..., None]
) -> None:
    warm_worker_processes("tldrlab.service.sweeps")
    url = _sqlalchemy_url(postgres_url)
    assert resolve_storage_url(url).startswith("postgresql+psycopg://")
    sweep = write_sweep(
        tmp_path / "s.yaml",
        parameters={"x": {"min": 0.0, "max": 1.0}, "steps": {"value": 4}, "sleep": {"value": 0.2}},
    )
    summary = run_sweep(load_sweep(sweep), trials=6, workers=2, storage=url, echo=lambda line: None)
    study = load_study("toy", url)
    complete = [t for t in study.get_trials() if t.state == TrialState.COMPLETE]
    assert 6 <= len(complete) <= 7 and summary["trials"]["COMPLETE"] == len(complete)
    pids = {t.user_attrs["worker"]["pid"] for t in complete}
    assert len(pids) == 2 and os.getpid() not in pids  # both spawned workers completed trials
    assert len({t.user_attrs["params"]["x"] for t in complete}) == len(complete)  # different seeds per worker
    # the default SQLite storage does not know this study
    with pytest.raises(Exception, match="no study 'toy'"):
        load_study("toy", None)


def test_sweep_run_json_prints_json_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`sweep run --json` is for scripts: its stdout parses as JSON. The study line and each trial's line
    went to stdout before the JSON object, so `tldrlab sweep run s.yaml --json | jq` failed."""
    sweep = write_sweep(tmp_path / "s.yaml", parameters={"x": {"values": [0.7]}, "steps": {"value": 2}})
    try:
        main(["sweep", "run", str(sweep), "--trials", "1", "--json"])
    except SystemExit as exc:
        assert exc.code in (0, None), capsys.readouterr()
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert result["trials"] == {"COMPLETE": 1} and result["best"]["params"] == {"x": 0.7, "steps": 2}
    assert "trial 0 COMPLETE" in captured.err  # the progress lines are still shown, on stderr


def test_status_of_a_storage_file_that_is_not_there_creates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`sweep status NAME --storage sqlite:///typo/x.db` created the directory and an empty study database
    at the typo before saying there was no such study."""
    missing = tmp_path / "typo" / "x.db"
    for command in ("status", "best"):
        code, _, err = run_captured(["sweep", command, "toy", "--storage", f"sqlite:///{missing}"], capsys)
        assert code == 3 and f"no sweep storage file {missing}" in err, (code, err)
    assert not missing.parent.exists()


def test_an_unreachable_storage_is_a_one_line_error_without_its_password(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The driver's error came whole: libpq's hint and SQLAlchemy's link made the error three lines."""
    url = "postgresql://someone:s3cret@127.0.0.1:1/sweeps"  # nothing listens on port 1
    code, _, err = run_captured(["sweep", "status", "toy", "--storage", url], capsys)
    assert code != 0 and err.startswith("error [service_unavailable] cannot open the sweep storage"), err
    assert len(err.strip().splitlines()) == 1 and "s3cret" not in err, err


def test_sweep_run_stores_the_base_config_of_the_file(tmp_path: Path) -> None:
    """The command line's sweep run stores the sweep file's base config as written, as the API now does
    (tests/service/test_sweep_submit.py): not the config its check validated with a draw of the parameters."""
    text = tmp_path / "text.txt"
    text.write_text("To be, or not to be, that is the question.\n" * 20)
    base = {
        "model": "char_lstm",
        "model_settings": {"hidden_dim": 8, "embedding_dim": 8, "num_layers": 1},
        "data": {"path": str(text)},
        "tokenizer": {"method": "char"},
        "train": {"max_steps": 2, "batch_size": 2, "lr": 5e-3},
        "wandb": "disabled",
    }
    sweep = write_sweep(
        tmp_path / "s.yaml",
        name="as-written",
        program="tldrlab.train",
        metric={"name": "eval_loss", "goal": "minimize"},
        parameters={"train.lr": {"min": 1e-4, "max": 1e-2}},
        config=base,
    )
    assert run_cli(["sweep", "run", str(sweep), "--trials", "1", "--quiet"]) == 0
    (record,) = open_registry().list(kind="sweep")
    assert record.config["sweep"]["config"] == base
    assert record.config["sweep"]["parameters"] == {"train.lr": {"min": 1e-4, "max": 1e-2}}


@pytest.mark.slow
def test_a_trial_whose_run_was_deleted_fails_and_the_sweep_goes_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A trial interrupted (Ctrl-C) whose run was then deleted (`runs delete`, allowed: it is cancelled) left
    its study trial running with no run to end it: the next `sweep run` waited for that run for good."""
    sweep = write_sweep(
        tmp_path / "s.yaml",
        parameters={"x": {"min": 0.0, "max": 1.0}, "steps": {"value": 60}, "sleep": {"value": 0.1}},
    )
    cmd = [sys.executable, "-m", "tldrlab", "sweep", "run", str(sweep), "--trials", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=dict(os.environ))
    runs = Path(os.environ["TLDRLAB_HOME"]) / "runs"
    deadline = time.monotonic() + 60
    while not list(runs.glob("trial-*/evals.txt")):  # the trial's program is running
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, interrupted = proc.communicate(timeout=60)
    assert proc.returncode == 130, interrupted
    (trial_run,) = open_registry().list(kind="trial")
    assert trial_run.status.value == "cancelled"
    code, _, err = run_captured(["runs", "delete", trial_run.id], capsys)
    assert code == 0, err

    again = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ), timeout=30)
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"run {trial_run.id} was deleted" in again.stderr
    states = [t.state for t in load_study("toy", None).get_trials()]
    assert states == [TrialState.FAIL, TrialState.COMPLETE]


@pytest.mark.slow
def test_sigterm_stops_a_sweep_whose_trials_run_in_its_workers(tmp_path: Path) -> None:
    """`sweep run --workers 2` given SIGTERM (a `timeout`, a service manager) said it would stop after the
    current step, then went on asking trials until the study held all of them: it never stopped."""
    sweep = write_sweep(
        tmp_path / "s.yaml",
        parameters={"x": {"min": 0.0, "max": 1.0}, "steps": {"value": 40}, "sleep": {"value": 0.1}},
    )
    cmd = [sys.executable, "-m", "tldrlab", "sweep", "run", str(sweep), "--trials", "6", "--workers", "2"]
    env = dict(os.environ)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    runs = Path(os.environ["TLDRLAB_HOME"]) / "runs"
    deadline = time.monotonic() + 60
    while len(list(runs.glob("trial-*/evals.txt"))) < 2:  # both workers are running a trial
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=20)  # the trials left take 4 s each, 12 s for the four
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail(f"the sweep went on after SIGTERM: {proc.communicate()[1][-2000:]}")
    assert proc.returncode != 0 and "Traceback" not in err, err
    assert len(load_study("toy", None).get_trials()) == 2  # no trial asked after the signal
    assert [r.status.value for r in open_registry().list(kind="sweep")] == ["cancelled"]


def test_sigint_to_the_worker_executing_a_sweep_is_named_in_its_stop(tmp_path: Path) -> None:
    """A worker stops on SIGTERM or SIGINT; a sweep it executed, stopped by SIGINT, was requeued saying
    `the sweep's process is stopping (SIGTERM)`."""
    sweep = write_sweep(
        tmp_path / "s.yaml",
        parameters={"x": {"min": 0.0, "max": 1.0}, "steps": {"value": 40}, "sleep": {"value": 0.1}},
    )
    config = SweepConfig(sweep=yaml.safe_load(sweep.read_text()), source=str(sweep), trials=4, workers=2)
    sweep_run = create_run("sweep", config, study="toy")
    open_queue().enqueue(sweep_run.id)
    worker = subprocess.Popen(
        [sys.executable, "-m", "tldrlab", "worker", "--burst", "--poll-s", "0.1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    runs = Path(os.environ["TLDRLAB_HOME"]) / "runs"
    deadline = time.monotonic() + 60
    while len(list(runs.glob("trial-*/evals.txt"))) < 2:  # both of its helper workers are running a trial
        assert worker.poll() is None and time.monotonic() < deadline, worker.communicate()
        time.sleep(0.05)
    worker.send_signal(signal.SIGINT)
    _, err = worker.communicate(timeout=60)
    requeued = open_registry().get(sweep_run.id)
    assert requeued.status.value == "queued", err
    assert "the sweep's process is stopping (SIGINT)" in (requeued.message or ""), requeued.message


@pytest.mark.slow
def test_ctrl_c_of_a_sweep_whose_trials_run_in_its_workers_says_it_was_interrupted(tmp_path: Path) -> None:
    """Ctrl-C of `sweep run --workers 2` (the terminal signals the whole process group) reaches the sweep's
    process as a bare KeyboardInterrupt, not a training loop's cancel: its run was recorded `cancelled: `,
    a message with nothing after the colon, in `runs list` and `runs show`."""
    sweep = write_sweep(
        tmp_path / "s.yaml",
        parameters={"x": {"min": 0.0, "max": 1.0}, "steps": {"value": 40}, "sleep": {"value": 0.1}},
    )
    cmd = [sys.executable, "-m", "tldrlab", "sweep", "run", str(sweep), "--trials", "4", "--workers", "2"]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=dict(os.environ),
        start_new_session=True,  # a process group of its own, as a terminal's foreground job has
    )  # fmt: skip
    runs = Path(os.environ["TLDRLAB_HOME"]) / "runs"
    deadline = time.monotonic() + 60
    while len(list(runs.glob("trial-*/evals.txt"))) < 2:  # both workers are running a trial
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in its terminal does
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    (sweep_run,) = open_registry().list(kind="sweep")
    assert sweep_run.status.value == "cancelled" and sweep_run.message == "cancelled: interrupted", sweep_run


def test_a_sweep_stopped_by_its_target_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A sweep with `metric.target` stops asking for trials once one reaches it: asked for 10, it printed
    `study toy: 2 complete` and exited 0, never saying why it stopped at 2."""
    sweep = write_sweep(
        tmp_path / "s.yaml",
        metric={"name": "loss", "goal": "minimize", "target": 0.4},
        parameters={"x": {"values": [0.7]}, "steps": {"value": 3}},  # loss 1/3 at once: past the target
    )
    code, out, err = run_captured(["sweep", "run", str(sweep), "--trials", "10"], capsys)
    assert code == 0, err
    assert "study toy: 1 complete" in out and "stopped at the target loss <= 0.4 (1 of 10 trials)" in out, out


def test_a_sweep_asked_for_fewer_trials_than_its_study_holds_says_there_is_nothing_to_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--trials 1` of a study holding 2 finished trials said "2/1 trials finished so far"."""
    sweep = write_sweep(tmp_path / "s.yaml", parameters={"x": {"values": [0.2, 0.7]}, "steps": {"value": 1}})
    code, _, err = run_captured(["sweep", "run", str(sweep), "--trials", "2"], capsys)
    assert code == 0, err
    code, out, err = run_captured(["sweep", "run", str(sweep), "--trials", "1"], capsys)
    assert code == 0 and "study toy: 2 complete" in out, err
    assert "it already holds 2 finished trials, 1 asked for: nothing to run" in " ".join(err.split()), err
    assert "2/1" not in err and len(open_registry().list("trial")) == 2


def test_a_trial_another_sweep_process_just_asked_is_left_to_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two `sweep run` of one study (two terminals, or machines sharing a PostgreSQL study): one asked a
    trial and was creating its run when the other's loop found that trial without a run and failed it as
    a killed sweep's leftover; the first then failed in the trial's own run, `UpdateFinishedTrialError`
    with a traceback, when the trial took its run id."""
    sweep = write_sweep(
        tmp_path / "s.yaml", parameters={"x": {"min": 0.0, "max": 1.0}, "steps": {"value": 1}}
    )
    code, _, err = run_captured(["sweep", "run", str(sweep), "--trials", "1"], capsys)
    assert code == 0, err
    other = optuna.load_study(
        study_name="toy", storage=resolve_storage_url(None)
    ).ask()  # its run not made yet

    code, _, err = run_captured(["sweep", "run", str(sweep), "--trials", "1"], capsys)
    assert code == 0, err
    trials = load_study("toy", None).get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.RUNNING], err
    other.set_user_attr("run_id", "trial-of-the-other-process")  # what that process does next


FLAKY = """import json, os, sys
from pathlib import Path

marker = Path(sys.argv[1])
if not marker.exists():  # its first run anywhere fails, as a program meeting a passing fault does
    marker.touch()
    sys.exit("a passing fault")
x = float(sys.argv[2].split("=", 1)[1])
print(json.dumps({"step": 1, "loss": x}))
"""


def test_a_grid_sweep_runs_its_failed_point_again_not_a_finished_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A grid whose point failed: with every point run once, Optuna's grid sampler draws a point at random
    for each trial asked after, so the sweep ran a point that had finished again and reported the grid
    complete (`2 complete`), the failed point never run again."""
    program = tmp_path / "flaky.py"
    program.write_text(FLAKY)
    sweep = write_sweep(
        tmp_path / "s.yaml",
        program=str(program),
        method="grid",
        command=["${interpreter}", "${program}", str(tmp_path / "ran-once"), "${args}"],
        parameters={"x": {"values": [0.3, 0.6]}},
    )
    code, _, err = run_captured(["sweep", "run", str(sweep)], capsys)
    assert code == 0, err
    trials = load_study("toy", None).get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE, TrialState.COMPLETE], err
    complete = sorted(t.params["x"] for t in trials if t.state == TrialState.COMPLETE)
    assert complete == [0.3, 0.6], err  # each point of the grid once
