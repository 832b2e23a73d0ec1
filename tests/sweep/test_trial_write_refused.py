"""A sweep whose trial run the system refuses a write (its checkpoint over the file-size limit) stops with one
line telling what running the sweep again does: the study resumes with its finished trials, the refused trial
stays failed and a new one takes its place; the trial run's own record (its registry row and manifest) says
the same. A standalone training's hint ("resume the run (<id>)") is wrong there: its study trial was told it
failed, so no sweep ever resumes that run.

The limit is a real one (RLIMIT_FSIZE): in the test's own process around a run's write for the wording,
and set in a sweep's process before it starts (as in tests/runs/test_write_refused.py) for the command line's
end to end, over the study's and the registry's databases, under the trial's first checkpoint (a char LSTM of
hidden size 256 writes a 1.2 MB model.safetensors). The interpreter ignores SIGXFSZ, so the write fails with
EFBIG instead of killing the process.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from optuna.trial import TrialState

from cliutil import run_captured
from tldrlab.errors import FileTooLargeError
from tldrlab.runs import RunStatus, create_run, execute_run, open_registry
from tldrlab.sweep.runner import _refusal_of
from tldrlab.sweep.storage import load_study

SRC = Path(__file__).resolve().parents[2] / "src"
LIMIT = 600 * 1024


def _sweep_file(tmp_path: Path) -> Path:
    data = tmp_path / "corpus.txt"
    data.write_text("".join(f"line {i}: the quick brown fox jumps over the lazy dog.\n" for i in range(400)))
    sweep = tmp_path / "sweep.yaml"
    raw = {
        "name": "refused",
        "program": "tldrlab.train",
        "method": "random",
        "seed": 1,
        "metric": {"name": "eval_loss", "goal": "minimize"},
        "parameters": {"train.lr": {"values": [0.01, 0.02]}},
        "config": {
            "model": "char_lstm",
            "model_settings": {"embedding_dim": 32, "hidden_dim": 256, "num_layers": 1},
            "data": {"path": str(data), "block_size": 32, "val_fraction": 0.1, "max_val_examples": 8},
            "tokenizer": {"method": "char", "vocab_size": 100},
            "train": {
                "max_steps": 2,
                "eval_every": 2,
                "checkpoint_every": 2,
                "batch_size": 4,
                "device": "cpu",
            },
        },
    }
    sweep.write_text(yaml.safe_dump(raw))
    return sweep


def _sweep(sweep: Path, db: Path, home: Path, limit: int | None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TLDRLAB_HOME": str(home), "PYTHONPATH": str(SRC), "COLUMNS": "400"}
    env["WANDB_MODE"] = "disabled"

    def limited() -> None:
        if limit is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    command = ["sweep", "run", str(sweep), "--trials", "1", "--storage", f"sqlite:///{db}"]
    return subprocess.run(
        [sys.executable, "-m", "tldrlab", "-q", *command],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=limited,
    )


def test_a_trial_run_s_refused_write_is_recorded_with_the_sweep_s_hint(
    tldrlab_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # before: the trial run's own record (its registry row and manifest, what `runs show` and GET /runs/{id}
    # show) said "... then resume the run (<id>) or start it again"; only the sweep's error line was reworded
    registry = open_registry()  # the home's database, made while unlimited
    sweep = create_run("sweep", {}, tags={"study": "refused"}, registry=registry)
    trial = create_run(
        "toy", {}, parent_id=sweep.id, tags={"study": "refused", "trial": 3}, registry=registry
    )
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    try:
        with pytest.raises(FileTooLargeError) as raised, execute_run(trial, registry=registry) as run:
            resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, hard))  # the interpreter ignores SIGXFSZ
            (run.dir / "checkpoint.bin").write_bytes(bytes(LIMIT + 1))
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    said = (
        f"file too large for this process's file-size limit ({LIMIT} bytes, `ulimit -f`) ({run.dir}): raise "
        "the limit (`ulimit -f unlimited`), then run the sweep again: it resumes the study, whose finished "
        "trials are kept (trial 3 stays failed: a new trial takes its place)"
    )
    assert raised.value.message == said
    code, out, _ = run_captured(["runs", "show", trial.id], capsys)
    shown = json.loads(out)
    assert code == 0 and shown["run"]["error_code"] == "file_too_large"
    assert shown["run"]["message"] == shown["manifest"]["message"] == f"failed: {said}"

    # the sweep stops with that line, the trial named
    refused = _refusal_of(registry.get(trial.id), 3)
    assert isinstance(refused, FileTooLargeError) and refused.message == f"trial 3: {said}"


@pytest.mark.slow
def test_a_trial_refused_a_write_stops_the_sweep_saying_to_run_the_sweep_again(
    tldrlab_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # before: "error [file_too_large] trial 0: ... raise the limit (`ulimit -f unlimited`), then resume the
    # run (<the trial run's id>) or start it again": a standalone training's hint; no sweep resumes that run,
    # and the trial's progress line printed it too
    open_registry()  # the home's database, made while unlimited
    sweep, db = _sweep_file(tmp_path), tmp_path / "sweeps.db"
    done = _sweep(sweep, db, tldrlab_home, LIMIT)

    assert done.returncode == 9 and "Traceback" not in done.stderr, done.stderr
    errors = [line for line in done.stderr.splitlines() if "error" in line]
    (trial_run,) = [r for r in open_registry().list() if r.kind == "train"]
    assert trial_run.status is RunStatus.FAILED and trial_run.error_code == "file_too_large"
    assert errors == [
        f"error [file_too_large] trial 0: file too large for this process's file-size limit ({LIMIT} bytes, "
        f"`ulimit -f`) ({trial_run.run_dir}): raise the limit (`ulimit -f unlimited`), then run the sweep "
        "again: it resumes the study, whose finished trials are kept (trial 0 stays failed: a new trial "
        "takes its place)"
    ], done.stderr
    assert trial_run.message == f"failed: {errors[0].removeprefix('error [file_too_large] trial 0: ')}"

    # what the message says running the sweep again does, it does: `tldrlab sweep run` again, without the
    # limit, in this process (the real command's entry point; a second interpreter importing torch cost ~45%
    # of this test's time, and only the first run needs a process of its own, for its limit)
    code, _, err = run_captured(
        ["-q", "sweep", "run", str(sweep), "--trials", "1", "--storage", f"sqlite:///{db}"], capsys
    )
    assert code == 0, err
    trials = load_study("refused", f"sqlite:///{db}").get_trials()
    assert [(t.number, t.state) for t in trials] == [(0, TrialState.FAIL), (1, TrialState.COMPLETE)]
    assert open_registry().get(trial_run.id).status is RunStatus.FAILED
