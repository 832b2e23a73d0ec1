"""bench/cuda/cuda_check.py (helper of bench/cuda_check.sh): resume comparison and the summary it writes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HELPER = Path(__file__).resolve().parents[1] / "bench" / "cuda" / "cuda_check.py"


def _run_dir(root: Path, name: str, losses: list[float]) -> Path:
    run = root / "home" / "tiny" / "runs" / name
    run.mkdir(parents=True)
    rows = [
        {"step": i + 1, "train_loss": loss, "tokens_per_s": 100.0 * (i + 1), "mfu": 0.1 * (i + 1)}
        for i, loss in enumerate(losses)
    ]
    rows.append({"step": len(losses), "eval_loss": 1.0})
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (run / "manifest.json").write_text(json.dumps({"kind": "train", "status": "completed"}))
    line = {"message": "trained", "tokens_per_s": 123.0, "mfu": 0.25}
    (run / "log.jsonl").write_text(json.dumps(line) + "\n")
    return run


def _helper(*args: Path | str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, str(HELPER), *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def test_compare_reports_equal_losses_and_the_first_differing_step(tmp_path: Path) -> None:
    a = _run_dir(tmp_path, "a", [3.0, 2.5, 2.0])
    b = _run_dir(tmp_path, "b", [3.0, 2.5, 2.0])
    c = _run_dir(tmp_path, "c", [3.0, 2.25, 2.0])
    same = json.loads(_helper("compare", a, b).stdout)
    assert same["equal"] is True and same["max_abs_diff"] == 0.0 and same["steps_a"] == 3
    differ = json.loads(_helper("compare", a, c).stdout)
    assert differ["equal"] is False and differ["max_abs_diff"] == 0.25 and differ["first_diff_step"] == 2


def test_summary_lists_stages_and_run_figures(tmp_path: Path) -> None:
    _run_dir(tmp_path, "train-1", [3.0, 2.0])
    out = tmp_path / "out"
    out.mkdir()
    (out / "stages.jsonl").write_text(json.dumps({"stage": "train_gpt2_auto", "rc": 0, "seconds": 7}) + "\n")
    done = _helper("summary", out, tmp_path / "home")
    assert done.returncode == 0, done.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stages"][0]["stage"] == "train_gpt2_auto"
    figures = summary["runs"]["tiny/train-1"]
    assert figures["tokens_per_s"] == 123.0 and figures["mfu"] == 0.25 and figures["last_train_loss"] == 2.0
    # the second half's median: the first steps' start-up is left out
    assert figures["steady"] == {"tokens_per_s": 200.0, "mfu": 0.2}
    assert "| train_gpt2_auto | 0 | 7 |" in (out / "summary.md").read_text()
