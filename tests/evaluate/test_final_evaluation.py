"""A training run's final evaluation: it shows a progress bar only when the training does, and a later
`tldrlab eval RUN` leaves it intact (what `tldrlab runs compare` reads as the run's `eval.*`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cliutil import run_captured
from tldrlab.runs import open_registry


def _train(tmp_path: Path, capsys: pytest.CaptureFixture[str], *flags: str) -> tuple[str, str]:
    """A two-step char_lstm training run ending with its final evaluation: (run id, its stderr)."""
    text = tmp_path / "text.txt"
    text.write_text("To be, or not to be, that is the question. Whether tis nobler in the mind.\n" * 60)
    argv = ["train", "--model", "char_lstm", "--data", str(text), "--train.max-steps", "2"]
    argv += ["--train.batch-size", "2", "--final-eval.max-samples", "2", "--wandb", "disabled", *flags]
    code, _, err = run_captured(argv, capsys)
    assert code == 0, err
    (record,) = open_registry().list(kind="train")
    return record.id, err


def test_train_no_progress_hides_the_final_evaluations_bar_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--train.no-progress` hid the training's bar while its final evaluation still drew `eval blocks`;
    only `-q` hid both."""
    run_id, err = _train(tmp_path, capsys, "--train.no-progress")
    assert "eval blocks" not in err and "step/s" not in err, err
    # the bar this looks for is there when asked for: an evaluation of the run draws it, --no-progress not
    code, _, err = run_captured(["eval", run_id, "--max-samples", "2"], capsys)
    assert code == 0 and "eval blocks" in err, err
    code, _, err = run_captured(["eval", run_id, "--max-samples", "2", "--no-progress"], capsys)
    assert code == 0 and "eval blocks" not in err, err
