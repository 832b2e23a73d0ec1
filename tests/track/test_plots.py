"""PNG curves drawn from a real metrics.jsonl."""

from __future__ import annotations

from pathlib import Path

from tldrlab.runs.atomic import append_jsonl
from tldrlab.track.plots import plot_run_metrics


def test_plots_from_metrics_jsonl(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    for step in range(1, 21):
        append_jsonl(run_dir / "metrics.jsonl", {"step": step, "train_loss": 3.0 / step, "lr": 0.01})
        if step % 5 == 0:
            append_jsonl(
                run_dir / "metrics.jsonl",
                {"step": step, "eval_loss": 2.0 / step, "eval_rouge1": step / 40, "best": True},
            )
    written = plot_run_metrics(run_dir)
    assert sorted(p.name for p in written) == ["eval.png", "lr.png", "train_loss.png"]
    for path in written:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 2000


def test_no_metrics_no_plots(tmp_path: Path) -> None:
    assert plot_run_metrics(tmp_path) == []
