"""A training run's final evaluation: it shows a progress bar only when the training does, and a later
`tldrlab eval RUN` leaves it intact (what `tldrlab runs compare` reads as the run's `eval.*`)."""

from __future__ import annotations

import json
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


FINAL_FILES = ("eval.json", "eval_summary.json", "samples.jsonl", "eval_table.csv", "eval.png")


def test_a_later_eval_leaves_the_final_evaluation_that_runs_compare_reads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`tldrlab eval RUN` wrote its files next to the model over the final evaluation's, so `runs compare`
    showed as the run's `eval.*` whichever evaluation ran last. A later evaluation now writes under
    `evaluations/<its run id>/`; compare reads the final one and names it."""
    run_id, _ = _train(tmp_path, capsys, "--train.no-progress")
    run_dir = Path(open_registry().get(run_id).run_dir)
    final_run = json.loads((run_dir / "manifest.json").read_text())["final_eval_run"]
    final = {name: (run_dir / name).read_bytes() for name in FINAL_FILES}
    assert json.loads(final["eval_summary.json"])["run_id"] == final_run
    code, out, err = run_captured(["eval", run_id, "--max-samples", "1", "--no-progress", "--json"], capsys)
    assert code == 0, err
    later = json.loads(out)
    assert {name: (run_dir / name).read_bytes() for name in FINAL_FILES} == final
    assert Path(later["out_dir"]) == run_dir / "evaluations" / later["run_id"]
    later_summary = json.loads((Path(later["out_dir"]) / "eval_summary.json").read_text())
    assert later_summary["run_id"] == later["run_id"] and later_summary["evaluated_run"] == run_id
    plot = str(tmp_path / "compare.png")
    code, out, err = run_captured(["runs", "compare", run_id, "--plot", plot, "--json"], capsys)
    assert code == 0, err
    (row,) = json.loads(out)["runs"]
    final_metrics = json.loads(final["eval_summary.json"])["metrics"]
    assert row["evaluation"] == final_run and row["metrics"]["eval.loss"] == final_metrics["loss"], row
    code, out, err = run_captured(["runs", "compare", run_id, "--plot", plot], capsys)
    assert code == 0 and f"eval.* from each run's final evaluation ({run_id}: {final_run})" in out, out
