"""The console is quiet by default (progress bars and results) and complete with --verbose: real processes."""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from cliutil import run_captured
from tldrlab import logs

REPO = Path(__file__).resolve().parents[1]


def tldrlab(*argv: str, home: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "TLDRLAB_HOME": str(home),
        "PYTHONPATH": str(REPO / "src"),
        "WANDB_MODE": "offline",  # the banners come from offline runs, the default for users
        "COLUMNS": "120",
    }
    for name in ("TRANSFORMERS_VERBOSITY", "HF_HUB_DISABLE_PROGRESS_BARS", "WANDB_SILENT", "TQDM_DISABLE"):
        env.pop(name, None)
    return subprocess.run(
        [sys.executable, "-m", "tldrlab", *argv],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )


def not_progress(stderr: str) -> list[str]:
    """stderr lines that are not (redraws of) a progress bar."""
    return [line for line in stderr.splitlines() if line.strip() and not line.startswith("train:")]  # \r too


@pytest.mark.slow
def test_a_two_arm_experiment_prints_progress_bars_and_its_table_only(
    tmp_path: Path, shared_data: Path
) -> None:
    data = tmp_path / "pairs.jsonl"
    source = shared_data / "debian_descriptions" / "debian_descriptions.validation.jsonl"
    data.write_text("".join(source.read_text(encoding="utf-8").splitlines(keepends=True)[:40]))
    proc = tldrlab(
        *("experiment", "dendrites", "--data", str(data), "--arms", "baseline,compressed", "--seeds", "1"),
        *(
            "--train-limit",
            "20",
            "--eval-size",
            "4",
            "--test-size",
            "2",
            "--budget",
            "2",
            "--eval-every",
            "2",
        ),
        *("--batch-size", "4", "--max-source-tokens", "16", "--vocab-size", "300", "--no-bertscore"),
        home=tmp_path / "home",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    # before: W&B banners and run summaries, transformers' FutureWarning, INFO lines, and from the first ROUGE
    # on every log line twice (absl's root handler): about 75 lines for this run
    assert not_progress(proc.stderr) == [], proc.stderr
    assert proc.stderr.count("train:   0%") == 2  # a bar per arm
    assert "| baseline |" in proc.stdout and "| compressed |" in proc.stdout


def test_verbose_shows_what_the_quiet_default_leaves_out(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("to be or not to be\n" * 50)
    argv = ("tokenizer", "train", "--method", "char", "--vocab-size", "40", str(corpus))
    quiet = tldrlab(*argv, home=tmp_path / "home", cwd=tmp_path)
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr.strip() == ""
    assert "tokenizer" in quiet.stdout  # the result summary
    verbose = tldrlab("--verbose", *argv, home=tmp_path / "home", cwd=tmp_path)
    assert verbose.returncode == 0, verbose.stderr
    assert "INFO" in verbose.stderr and "tokenizer trained" in verbose.stderr


def test_a_failing_run_prints_its_error_once(tmp_path: Path) -> None:
    bad = tmp_path / "thread.json"
    # the first thread reads (a bad first record is refused before a run exists), the second fails the run
    good = {"id": "t1", "title": "Dates", "posts": [{"id": "p1", "text": "Which parser?"}]}
    bad.write_text(json.dumps([good, {"id": "x", "posts": [{"id": 1}]}]))
    proc = tldrlab("ingest", str(bad), "--format", "native", home=tmp_path / "home", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.count("error [invalid_input]") == 1
    assert "run failed" not in proc.stderr  # before: the run's log line said it a second time
    log = next((tmp_path / "home" / "runs").glob("ingest-*/log.jsonl")).read_text()
    assert "run failed" in log  # the run's own log keeps it


def test_a_warning_raised_during_a_run_goes_to_its_log_not_to_the_quiet_console(tmp_path: Path) -> None:
    """Python warnings (a library's FutureWarning) are kept in the run's log.jsonl; the quiet console leaves
    them out, the verbose one shows them. (The two-arm experiment above checked the log with a warning
    transformers raised for tldrlab's `past_key_values`, which tldrlab no longer passes.)"""
    code = (
        "import sys, warnings\n"
        "from pydantic import BaseModel\n"
        "from tldrlab.logs import configure_console\n"
        "from tldrlab.runs import start_run\n"
        "configure_console(verbose=sys.argv[1] == 'verbose', command=True)\n"
        "class Toy(BaseModel):\n"
        "    steps: int = 1\n"
        "with start_run('toy', Toy()) as run:\n"
        "    warnings.warn('the old keyword goes in 9.0', FutureWarning)\n"
        "    print(run.dir)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "TLDRLAB_HOME": str(tmp_path / "home")}
    for mode, shown in (("quiet", False), ("verbose", True)):
        proc = subprocess.run(
            [sys.executable, "-c", code, mode], env=env, capture_output=True, text=True, timeout=120
        )
        assert proc.returncode == 0, proc.stderr
        log = (Path(proc.stdout.strip()) / "log.jsonl").read_text()
        assert "FutureWarning: the old keyword goes in 9.0" in log, log
        assert ("FutureWarning: the old keyword" in proc.stderr) is shown, proc.stderr


def test_libraries_progress_bars_are_off_unless_verbose(tmp_path: Path) -> None:
    """A library's own tqdm bar (transformers de-quantizing a GGUF file, ...) is off on the quiet console;
    tldrlab's bars, which say `disable=` themselves, stay."""
    code = (
        "import os, sys\n"
        "from tldrlab.logs import configure_console\n"
        "configure_console(verbose=sys.argv[1] == 'verbose')\n"
        "from tqdm.auto import tqdm\n"
        "for _ in tqdm(range(3), desc='library-bar'): pass\n"
        "for _ in tqdm(range(3), desc='tldrlab-bar', disable=False): pass\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    env.pop("TQDM_DISABLE", None)
    for mode, library_shown in (("quiet", False), ("verbose", True)):
        proc = subprocess.run(
            [sys.executable, "-c", code, mode], env=env, capture_output=True, text=True, timeout=120
        )
        assert proc.returncode == 0, proc.stderr
        assert "tldrlab-bar" in proc.stderr
        assert ("library-bar" in proc.stderr) is library_shown, proc.stderr


def test_the_test_process_draws_no_library_progress_bar(capsys: pytest.CaptureFixture[str]) -> None:
    """tqdm reads TQDM_DISABLE when it is imported: set later (the quiet console of a command run in this
    process, after another test imported tqdm) it changed nothing, and libraries' bars filled the captured
    output. tests/conftest.py sets it before anything imports tqdm; tldrlab's own bars, which say `disable=`,
    still draw."""
    from tqdm.auto import tqdm

    for _ in tqdm(range(3), desc="library-bar"):
        pass
    for _ in tqdm(range(3), desc="tldrlab-bar", disable=False):
        pass
    err = capsys.readouterr().err
    assert "library-bar" not in err and "tldrlab-bar" in err, err


def test_quiet_shows_no_progress_bar_of_any_run_it_starts(tmp_path: Path) -> None:
    """`--quiet` ("warnings and errors only; no progress bars") turned off the training loop's bar only:
    a training's final evaluation drew its `eval blocks` bar, and kinds whose config has no `progress`
    field for `--quiet` to set (an evaluation, an LVM ingest) drew theirs."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("To be, or not to be, that is the question.\n" * 20)
    argv = (
        *("train", "--model", "char_lstm", "--data", str(corpus), "--tokenizer.method", "char"),
        *("--model-settings", "hidden_dim=8", "--model-settings", "embedding_dim=8"),
        *("--train.max-steps", "2", "--train.batch-size", "2", "--wandb", "disabled", "--quiet"),
    )
    proc = tldrlab(*argv, home=tmp_path / "home", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == "", proc.stderr
    assert "eval_loss=" in proc.stdout  # the result, with the final evaluation's figures


def test_a_bar_off_a_terminal_writes_lines_and_keeps_its_last_state(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A training's stderr sent to a file (`tldrlab train ... 2> train.log`, a pipe, CI's log) got its bar's
    every frame, redrawn with `\\r` as on a terminal: one line of the file holding all of them (ten a second).
    Off a terminal (pytest's capture is one) a bar now writes whole lines, at most one per
    PROGRESS_LINE_EVERY_S and its last state, which stays even for bars that clear themselves on a terminal
    (the final evaluation's)."""
    lines = (shared_data / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8").splitlines()[:300]
    (tmp_path / "text.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    train = {"max_steps": 30, "eval_every": 0, "batch_size": 4, "device": "cpu", "plot": False, "lr": 3e-3}
    config = {
        "model": "char_lstm",
        "model_settings": {"embedding_dim": 8, "hidden_dim": 16, "num_layers": 1},
        "tokenizer": {"method": "char", "vocab_size": 100},
        "data": {"block_size": 16, "max_val_examples": 8},
        "train": train,
    }
    (tmp_path / "job.json").write_text(json.dumps(config), encoding="utf-8")
    argv = ["train", "--config", str(tmp_path / "job.json"), "--data", str(tmp_path / "text.txt")]
    code, _, err = run_captured([*argv, "--wandb", "disabled"], capsys)
    assert code == 0, err
    assert "\r" not in err, err
    bar_lines = [line for line in err.splitlines() if line.startswith("train:")]
    # its first state and its last: 30 steps take well under PROGRESS_LINE_EVERY_S
    assert len(bar_lines) == 2 and "30/30" in bar_lines[-1], err
    assert err.splitlines()[-1].startswith("eval blocks: 100%"), err  # cleared on a terminal, kept here


class _Stop(Exception):
    """What the test's signal handler raises, as RQ's SIGTERM handler raises StopRequested."""


class _SignalledWhileWritten(io.StringIO):
    """A stream that gets SIGUSR1 while a line is being written to it: Python runs the signal's handler
    there, inside the logging handler's emit."""

    def write(self, text: str) -> int:
        signal.raise_signal(signal.SIGUSR1)
        return super().write(text)


@pytest.mark.parametrize("kind", ["console", "log file"])
def test_a_signal_handlers_exception_raised_while_a_line_is_written_reaches_the_caller(
    kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """RQ's worker stops by raising StopRequested from its SIGTERM handler. One that landed while a tldrlab
    handler wrote a line was taken by logging for an error of its own: printed as a "--- Logging error ---"
    traceback and dropped (a worker stopped during a Redis outage printed it, and CI failed on it)."""

    def on_signal(signum: int, frame: object) -> None:
        raise _Stop

    handler = (
        logs.console_handler(Console(file=_SignalledWhileWritten()))
        if kind == "console"
        else logs.json_file_handler(tmp_path / "log.jsonl")
    )
    if kind == "log file":
        assert isinstance(handler, logging.StreamHandler)
        handler.setStream(_SignalledWhileWritten())
    logger = logging.getLogger(f"tldrlab.tests.signalled.{kind}")
    logger.propagate = False
    logger.addHandler(handler)
    previous = signal.signal(signal.SIGUSR1, on_signal)
    try:
        with pytest.raises(_Stop):
            logger.warning("Redis is unreachable")
    finally:
        signal.signal(signal.SIGUSR1, previous)
        logger.removeHandler(handler)
        handler.close()
    assert "Logging error" not in capsys.readouterr().err
    # an error of the stream itself is still logging's to report, as before
    assert not logs.raised_by_a_signal_handler(OSError("stream closed"))
