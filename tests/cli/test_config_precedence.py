"""Run-kind commands: defaults < `--config FILE` < flags, the config a real run records, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from cliutil import run_captured
from tldrlab.runs import open_registry


def _printed(argv: list[str], capsys: pytest.CaptureFixture[str]) -> dict:
    code, out, err = run_captured([*argv, "--print-config"], capsys)
    assert code == 0, err
    return yaml.safe_load(out)


def test_experiment_config_file_values_win_over_defaults(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The file's model_size / batch_size / lr used to arrive as the flag defaults tiny / 16 / 0.001."""
    config = tmp_path / "exp.yaml"
    config.write_text(
        yaml.safe_dump(
            {"data": "records.jsonl", "model_size": "small", "batch_size": 4, "lr": 0.0005,
             "compression": {"d_model": 32}, "dendrites": {"switch_every": 5}}
        )
    )  # fmt: skip
    printed = _printed(["experiment", "dendrites", "--config", str(config)], capsys)
    assert (printed["model_size"], printed["batch_size"], printed["lr"]) == ("small", 4, 0.0005)
    assert printed["eval_size"] == 64 and printed["arms"] == ["baseline", "compressed", "compressed_pai"]
    # a section given in part keeps the rest of its default
    assert printed["compression"] == {**printed["compression"], "compression_ratio": 0.5, "d_model": 32}
    assert printed["dendrites"]["switch_every"] == 5 and printed["dendrites"]["max_dendrites"] == 2
    # flags win over the file; lists as comma lists or JSON; --budget sets the minutes budget
    printed = _printed(
        ["experiment", "dendrites", "--config", str(config), "--lr", "0.002", "--seeds", "1,2",
         "--arms", '["baseline"]', "--budget", "30m", "--no-bertscore", "--compression.d-model", "48"],
        capsys,
    )  # fmt: skip
    assert (printed["model_size"], printed["lr"], printed["seeds"]) == ("small", 0.002, [1, 2])
    assert printed["arms"] == ["baseline"] and printed["budget_minutes"] == 30.0
    assert printed["bertscore"] is False and printed["compression"]["d_model"] == 48


def test_sections_keep_their_own_defaults_and_names_take_underscores(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "elm").mkdir()
    printed = _printed(["elm", "train", "--data", str(tmp_path / "elm"), "--train.max_steps", "5"], capsys)
    # ELM's loop defaults (batch 8, lr 1e-3, bertscore_f1) stay; TrainConfig's own (16, 3e-4) do not
    train = printed["train"]
    assert (train["max_steps"], train["batch_size"], train["lr"], train["best_metric"]) == (
        5, 8, 0.001, "bertscore_f1",
    )  # fmt: skip
    assert printed["data"] == str((tmp_path / "elm").resolve())  # existing paths are made absolute


def test_print_config_is_what_a_real_run_records(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # a data-set directory: its splits are detected as the run is prepared, and printed as it records them
    # (`train_split: null` was printed for a run that then recorded `train`)
    text = tmp_path / "data"
    text.mkdir()
    play = (shared_data / "tinyshakespeare" / "input.txt").read_text()
    (text / "train.txt").write_text(play[:4000])
    (text / "test.txt").write_text(play[4000:5000])
    config = tmp_path / "job.json"
    config.write_text(
        json.dumps(
            {
                "model": "char_lstm",
                "model_settings": {"embedding_dim": 8, "hidden_dim": 16, "num_layers": 1},
                "tokenizer": {"method": "char", "vocab_size": 100},
                "data": {"path": str(text), "block_size": 16, "max_val_examples": 4},
                "train": {"max_steps": 50, "batch_size": 2, "eval_every": 0, "plot": False},
            }
        )
    )
    argv = ["train", "--config", str(config), "--max-steps", "3", "--wandb", "disabled", "--seed", "7", "-q"]
    printed = _printed(argv, capsys)
    assert (printed["data"]["train_split"], printed["data"]["val_split"]) == ("train", None)
    assert printed["train"]["max_steps"] == 3 and printed["train"]["seed"] == 7
    assert printed["train"]["batch_size"] == 2 and printed["wandb"] == "disabled"
    code, out, err = run_captured(argv, capsys)
    assert code == 0, err
    (record,) = open_registry().list(kind="train")
    assert record.config == printed  # exactly what --print-config showed
    assert record.id in out and "3 steps" in out


def test_bad_settings_are_clear_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_captured(["train", "--data", str(tmp_path), "--lr", "-1"], capsys)
    assert code == 2 and "train.lr" in err and "greater than 0" in err
    code, _, err = run_captured(["train", "--max-steps", "5"], capsys)
    assert code == 2 and "data.path" in err and "--data.path" in err
    code, _, err = run_captured(["train", "--data", str(tmp_path), "--no-such-option", "1"], capsys)
    assert code == 2 and "No such option" in err and "Traceback" not in err
    code, _, err = run_captured(["train", "--data", str(tmp_path), "--train.lr-schedule", "cubic"], capsys)
    assert code == 2 and "cubic" in err
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2\n")
    code, _, err = run_captured(["train", "--config", str(bad)], capsys)
    assert code == 2 and "cannot parse" in err
    bad.write_text("- just\n- a list\n")
    code, _, err = run_captured(["train", "--config", str(bad)], capsys)
    assert code == 2 and "mapping" in err
    bad.write_bytes("train: {lr: 0.1}  # Latin-1: caf\u00e9\n".encode("latin-1"))  # was a UnicodeDecodeError
    code, _, err = run_captured(["train", "--config", str(bad)], capsys)
    assert code == 2 and "not UTF-8" in err and "Traceback" not in err, err
    code, _, err = run_captured(["train", "--config", str(tmp_path / "missing.yaml")], capsys)
    assert code == 3 and "not found" in err
    code, _, err = run_captured(["train", "--resume", "train-x", "--max-steps", "5"], capsys)
    assert code == 2 and "--resume" in err
    code, _, err = run_captured(["experiment", "dendrites", "--data", "x", "--budget", "soon"], capsys)
    assert code == 2 and "--budget" in err
    code, _, err = run_captured(["train", "--data", str(tmp_path), "--model-settings", "{oops"], capsys)
    assert code == 2 and "not valid JSON" in err
    assert open_registry().list() == []


def test_a_boolean_for_a_number_in_a_config_file_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """YAML's `yes` is a boolean, which pydantic's lax mode took as 1: `max_steps: yes` trained one step."""
    config = tmp_path / "train.yaml"
    config.write_text("data: {path: x.txt}\ntrain: {max_steps: yes, save_best: no}\n")
    code, out, err = run_captured(["train", "--config", str(config)], capsys)
    assert code == 2 and out == "" and "Traceback" not in err, err
    assert "invalid train config: train.max_steps: expected a number, got the boolean true" in err
    assert len(err.strip().splitlines()) == 1, err
    # a number there, and a boolean for a boolean setting, are taken as before
    config.write_text("data: {path: x.txt}\ntrain: {max_steps: 7, lr: 0.5, save_best: no}\n")
    printed = _printed(["train", "--config", str(config)], capsys)
    assert (printed["train"]["max_steps"], printed["train"]["lr"], printed["train"]["save_best"]) == (
        7,
        0.5,
        False,
    )
    assert open_registry().list() == []


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["elm", "train", "--max-steps", "5", "--train.max-steps", "1000"],
         "--max-steps 5 and --train.max-steps 1000 set the same setting: give one of them"),
        (["elm", "train", "--train.eval-every=7", "--eval-interval", "3"],
         "--train.eval-every 7 and --eval-interval 3 set the same setting: give one of them"),
        (["train", "--lr", "0.1", "--train.lr", "0.2"],
         "--lr 0.1 and --train.lr 0.2 set the same setting: give one of them"),
        (["train", "--data.bertscore", "--no-bertscore"],
         "--data.bertscore and --no-bertscore set the same setting: give one of them"),
    ],
)  # fmt: skip
def test_two_flags_for_one_setting_with_different_values_are_a_usage_error(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`elm train --max-steps 5 --train.max-steps 1000` trained 5 steps, `train --lr 0.1 --train.lr 0.2` took
    0.2: of two flags setting one thing, one was silently dropped. Both are named, exit 2."""
    (tmp_path / "data.txt").write_text("some text\n")
    code, out, err = run_captured([*argv, "--data", str(tmp_path / "data.txt"), "--print-config"], capsys)
    command = " ".join(argv[: 2 if argv[0] == "elm" else 1])
    lines = err.splitlines()
    assert code == 2 and out == "" and len(lines) == 2 and lines[0] == f"error [usage] {message}", err
    assert lines[1].startswith("Try '") and lines[1].endswith(f" {command} --help' for help."), err


def test_two_flags_for_one_setting_with_the_same_value_and_a_file_with_a_flag_still_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "elm").mkdir()
    elm = ["elm", "train", "--data", str(tmp_path / "elm")]
    printed = _printed([*elm, "--max-steps", "5", "--train.max-steps", "5"], capsys)
    assert (printed["max_steps"], printed["train"]["max_steps"]) == (5, 5)
    lrs = ["--lr", "1e-3", "--train.lr=0.001", "--lr", "0.001"]
    printed = _printed(["train", "--data", "x.txt", *lrs], capsys)
    assert printed["train"]["lr"] == 0.001  # the same number however written; one name given twice as ever
    printed = _printed(["train", "--data", "x.txt", "--seed", "3", "--seed", "4"], capsys)
    assert printed["train"]["seed"] == 4
    # a value from the file and one flag: the flag wins, as before
    config = tmp_path / "elm.yaml"
    config.write_text(yaml.safe_dump({"train": {"max_steps": 1000, "lr": 0.5}}))
    printed = _printed([*elm, "--config", str(config), "--max-steps", "5", "--lr", "0.25"], capsys)
    assert (printed["max_steps"], printed["train"]["lr"]) == (5, 0.25)


def test_a_shorthand_flag_yields_to_the_flags_naming_its_fields(capsys: pytest.CaptureFixture[str]) -> None:
    """`lvm train --steps 10 --train.warmup-steps 5` warmed up over all 10 steps and `--eval-every 5
    --train.checkpoint-every 10` checkpointed every 5: a shorthand's implied settings overrode the flags
    naming them. Two flags for one setting with different values (`--steps 10 --train.max-steps 20`, and
    `experiment dendrites --budget 300 --budget-steps 100`) kept one of them without a word."""
    train = _printed(["lvm", "train", "--steps", "10", "--train.warmup-steps", "5"], capsys)["train"]
    assert (train["max_steps"], train["warmup_steps"]) == (10, 5)
    train = _printed(["lvm", "train", "--eval-every", "5", "--train.checkpoint-every", "10"], capsys)["train"]
    assert (train["eval_every"], train["checkpoint_every"]) == (5, 10)
    train = _printed(["lvm", "train", "--select", "val_cosine", "--train.best-mode", "min"], capsys)["train"]
    assert (train["best_metric"], train["best_mode"]) == ("val_cosine", "min")
    train = _printed(["lvm", "train", "--steps", "10"], capsys)["train"]  # alone it sets them all
    assert (train["max_steps"], train["warmup_steps"]) == (10, 10)
    for argv in (
        ["lvm", "train", "--steps", "10", "--train.max-steps", "20"],
        ["lvm", "train", "--eval-every", "5", "--train.eval-every", "7"],
        ["lvm", "train", "--select", "val_cosine", "--train.best-metric", "eval_loss"],
        ["experiment", "dendrites", "--data", "x", "--budget", "300", "--budget-steps", "100"],
        ["experiment", "dendrites", "--data", "x", "--budget", "30m", "--budget-steps", "100"],
    ):
        code, _, err = run_captured([*argv, "--print-config"], capsys)
        assert code == 2 and "set the same setting: give one of them" in err, (argv, err)


def test_a_shorthands_implied_settings_yield_to_the_config_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`lvm train --config c.yaml --steps 10` warmed up over 10 steps (min(50, steps)) though c.yaml set 5:
    what a shorthand implies went in as a flag, over the file. The file's values win over what a shorthand
    implies; what the shorthand itself sets, and every flag, win over the file."""
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"train": {"warmup_steps": 5, "checkpoint_every": 7, "max_steps": 99}}))
    train = _printed(["lvm", "train", "--config", str(config), "--steps", "10", "--eval-every", "2"], capsys)[
        "train"
    ]
    assert (train["max_steps"], train["warmup_steps"]) == (10, 5)
    assert (train["eval_every"], train["checkpoint_every"]) == (2, 7)
    # with nothing set elsewhere, the shorthand's implied settings still apply, and yield to a flag
    train = _printed(["lvm", "train", "--steps", "10", "--eval-every", "2"], capsys)["train"]
    assert (train["warmup_steps"], train["checkpoint_every"]) == (10, 2)
    train = _printed(
        ["lvm", "train", "--config", str(config), "--steps", "10", "--train.warmup-steps", "3"], capsys
    )
    assert train["train"]["warmup_steps"] == 3


def test_a_shorthands_own_setting_wins_over_the_config_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # `experiment dendrites --budget` is a shorthand too (steps or minutes): what it sets is a flag's value
    config = tmp_path / "exp.yaml"
    config.write_text(yaml.safe_dump({"data": "records.jsonl", "budget_steps": 50, "budget_minutes": 5}))
    printed = _printed(["experiment", "dendrites", "--config", str(config), "--budget", "200"], capsys)
    assert (printed["budget_steps"], printed["budget_minutes"]) == (200, 5)
    printed = _printed(["experiment", "dendrites", "--config", str(config), "--budget", "30m"], capsys)
    assert (printed["budget_steps"], printed["budget_minutes"]) == (50, 30)
