"""Arguments at the edges (a path longer than the system takes, a directory or broken YAML given as a config
file) are a one-line error and a non-zero exit, never a traceback or a message that spans lines."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from cliutil import run_captured

LONG = "a" * 5000
"""A file name over the 255 bytes Linux allows: Path.exists() raises ENAMETOOLONG instead of saying False."""


@pytest.mark.parametrize(
    "argv",
    [
        ["eval", LONG],
        ["train", "--data", LONG],
        ["data", "inspect", LONG],
        ["tokenizer", "show", LONG],
        ["runs", "import", LONG],
        ["eval", "some-run", "--config", f"/tmp/{LONG}"],
    ],
    ids=["eval", "train", "data inspect", "tokenizer show", "runs import", "--config"],
)
def test_a_path_too_long_for_the_system_is_a_one_line_error(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_captured(argv, capsys)  # before: OSError [Errno 36] and its traceback
    assert code == 2, err
    assert err.startswith("error [invalid_input] File name too long: ") and err.count("\n") == 1, err
    assert "(5000 characters)" in err or "(5005 characters)" in err  # not the whole name, 5000 times "a"


@pytest.mark.parametrize("command", [["eval", "some-run"], ["sweep", "run"]], ids=["--config", "sweep run"])
def test_a_directory_given_as_a_config_file_says_so(
    command: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [*command, "--config", str(tmp_path)] if command[0] == "eval" else [*command, str(tmp_path)]
    code, _, err = run_captured(argv, capsys)  # before: "config file not found" (exit 3): it is there
    assert code == 2 and f"{tmp_path} is a directory: give a" in err and err.count("\n") == 1, err


def test_a_config_file_that_is_a_pipe_is_read(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # `--config <(yq ... base.yaml)` (a pipe, as /dev/stdin) answered "config file not found" (exit 3): it
    # is there, but not a regular file
    fifo = tmp_path / "config.yaml"
    os.mkfifo(fifo)
    # opening a FIFO to write blocks until the command opens it to read: the handshake, no sleep
    writer = threading.Thread(target=fifo.write_text, args=("steps: 7\n",), daemon=True)
    writer.start()
    code, out, err = run_captured(["smoke", "--config", str(fifo), "--print-config"], capsys)
    if writer.is_alive():  # the command never opened it: the writer is let go by reading it here
        fifo.read_text()
    writer.join()
    assert code == 0 and "steps: 7" in out.splitlines(), (out, err)


def test_a_blank_sweep_file_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_captured(["sweep", "run", ""], capsys)  # before: "sweep file not found: ." (exit 3)
    assert code == 2 and "the sweep file is empty" in err, err


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("model_run: [1\n", "expected ',' or ']', but got '<stream end>' (line 2, column 1)"),
        ("model_run: a\n  data: b\n", "mapping values are not allowed here (line 2, column 7)"),
    ],
)
def test_a_config_file_that_is_not_yaml_is_a_one_line_error_saying_where(
    text: str, where: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(text)
    code, _, err = run_captured(["eval", "--config", str(config)], capsys)
    assert code == 2 and err.count("\n") == 1, err  # before: PyYAML's text, the line quoted, a caret
    assert f"{config}: cannot parse the config: " in err and where in err, err
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(text)
    code, _, err = run_captured(["sweep", "run", str(sweep)], capsys)
    assert code == 2 and err.count("\n") == 1 and f"{sweep}: not valid YAML: " in err and where in err, err


@pytest.mark.parametrize(("text", "got"), [("- a\n- b\n", "list"), ("42\n", "int"), ("just text\n", "str")])
def test_a_config_file_that_is_not_a_mapping_is_refused(
    text: str, got: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(text)
    code, _, err = run_captured(["eval", "some-run", "--config", str(config)], capsys)
    assert code == 2 and f"the config must be a mapping of settings, got {got}" in err, err


NO_USER = "~no-such-user-tldrlab"
"""`~name` of a user this machine does not have: Path.expanduser raises RuntimeError on it."""


@pytest.mark.parametrize(
    "argv",
    [
        ["--home", f"{NO_USER}/home", "runs", "list"],
        ["eval", f"{NO_USER}/model"],
        ["train", "--data", f"{NO_USER}/data.txt"],
        ["tokenizer", "show", f"{NO_USER}/tok"],
        ["data", "register", f"{NO_USER}/data.txt"],
        ["models", "import", f"{NO_USER}/m.gguf"],
    ],
    ids=["--home", "eval", "train", "tokenizer show", "data register", "models import"],
)
def test_a_tilde_path_of_an_unknown_user_is_a_one_line_error(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_captured(argv, capsys)  # before: RuntimeError "Could not determine home directory."
    assert code == 2 and err.count("\n") == 1, err
    assert f"cannot expand {NO_USER}: no such user's home directory here" in err, err


def test_a_tilde_in_a_path_option_is_the_users_home_not_a_directory_named_tilde(
    tldrlab_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # `--out=~/backups/` reaches the program unexpanded (a shell expands ~ at a word's start only): path
    # options and arguments took it literally: `runs export` wrote into ./~/backups/ where it ran
    from tldrlab.runs import start_run

    user_home, elsewhere = tmp_path / "me", tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.setenv("HOME", str(user_home))
    monkeypatch.chdir(elsewhere)
    with start_run("train", {}) as run:
        (run.artifacts_dir / "weights.bin").write_bytes(b"w")
    code, out, err = run_captured(["runs", "export", run.id, "--out=~/backups/"], capsys)
    assert code == 0, err
    assert (user_home / "backups" / f"{run.id}.tar.gz").is_file() and not (elsewhere / "~").exists(), out
    code, _, err = run_captured(["runs", "import", "~/backups/missing.tar.gz"], capsys)
    assert code == 3 and f"no archive at {user_home}/backups/missing.tar.gz" in err, err


def test_a_key_given_twice_in_a_config_or_sweep_file_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # PyYAML keeps the last value silently: a job file with two `train:` sections trained with the first
    # one's max_steps dropped (5000 steps instead of 500)
    job = tmp_path / "job.yaml"
    job.write_text(
        "train: {max_steps: 500}\nmodel: char_lstm\ndata: {path: corpus.txt}\ntrain: {batch_size: 8}\n"
    )
    code, out, err = run_captured(["train", "--config", str(job), "--print-config"], capsys)
    assert code == 2 and not out and err.count("\n") == 1, err
    assert "duplicate key 'train' (first on line 1) (line 4, column 1)" in err, err
    # merge keys still override as YAML means them to
    job.write_text(
        "model: char_lstm\ndata: {path: corpus.txt}\ntrain:\n  <<: {lr: 0.1, max_steps: 7}\n  lr: 0.2\n"
    )
    code, out, err = run_captured(["train", "--config", str(job), "--print-config"], capsys)
    assert code == 0 and "lr: 0.2" in out and "max_steps: 7" in out, err
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(
        "program: tldrlab.train\nmethod: grid\nmethod: random\nparameters: {train.lr: {values: [1]}}\n"
    )
    code, _, err = run_captured(["sweep", "run", str(sweep)], capsys)
    assert code == 2 and "duplicate key 'method' (first on line 2)" in err, err
