"""`tldrlab sweep run --quiet` prints the sweep's own lines only (the study, each trial as it ends), as
the walk-through in docs/sweeps.md shows: it printed every line its trials' runs logged ("training
char_lstm ...", "evaluation", "checkpoint written", ...) and Optuna's "A new study created in memory"
lines on stderr."""

from __future__ import annotations

from pathlib import Path

import pytest

from tldrlab.errors import InvalidInputError
from tldrlab.sweep.config import SweepConfig
from tldrlab.sweep.runner import launch_sweep


def _sweep(text: Path) -> dict[str, object]:
    return {
        "name": "quiet",
        "program": "tldrlab.train",
        "method": "grid",
        "metric": {"name": "eval_loss", "goal": "minimize"},
        "parameters": {"train.lr": {"values": [1e-3]}},
        "config": {
            "model": "char_lstm",
            "model_settings": {"hidden_dim": 8, "embedding_dim": 8, "num_layers": 1},
            "data": {"path": str(text)},
            "tokenizer": {"method": "char"},
            "train": {"max_steps": 2, "batch_size": 2},
            "wandb": "disabled",
        },
    }


def test_a_quiet_sweep_echoes_its_own_lines_only(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    text = tmp_path / "text.txt"
    text.write_text("To be, or not to be, that is the question.\n" * 20)
    quiet: list[str] = []
    launch_sweep(SweepConfig(sweep=_sweep(text), quiet=True), echo=quiet.append)
    assert quiet[0].startswith("study 'quiet'") and quiet[-1].startswith("trial 0 COMPLETE"), quiet
    assert not any(line.startswith(("training char_lstm", "checkpoint", "evaluation")) for line in quiet)
    assert "A new study created" not in capfd.readouterr().err
    # without --quiet the trials' run logs are shown too
    loud: list[str] = []
    launch_sweep(SweepConfig(sweep=_sweep(text), study="loud"), echo=loud.append)
    assert any(line.startswith("training char_lstm") for line in loud), loud


def test_a_failing_sweep_leaves_its_error_to_the_caller(tmp_path: Path) -> None:
    """The command printed the error of a sweep that stopped twice: the echo got the run's own
    "run failed: ..." line, which the console leaves out for the command to print once."""
    toy = Path(__file__).with_name("toy_program.py")
    sweep = {
        "name": "failing",
        "program": str(toy),
        "method": "grid",
        "metric": {"name": "loss", "goal": "minimize"},
        "parameters": {"x": {"values": [0.1, 0.2]}, "fail": {"value": True}},
    }
    lines: list[str] = []
    with pytest.raises(InvalidInputError, match="3 trials failed in a row"):
        launch_sweep(SweepConfig(sweep=sweep, quiet=True), echo=lines.append)
    assert [line for line in lines if line.startswith("trial ")] and not [
        line for line in lines if "run failed" in line
    ], lines
