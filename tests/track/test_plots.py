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


def _pixels_of(path: Path, rgb: tuple[int, int, int]) -> int:
    from PIL import Image

    with Image.open(path) as image:
        return sum(1 for pixel in image.convert("RGB").getdata() if pixel == rgb)


def test_a_single_logged_point_is_drawn(tmp_path: Path) -> None:
    # a run shorter than `log_every` logs its train loss and learning rate once, at its last step: a line
    # through one point draws nothing, so lr.png was an empty frame and train_loss.png showed only the
    # evaluations (its legend naming a train loss that was nowhere)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    append_jsonl(run_dir / "metrics.jsonl", {"step": 8, "train_loss": 4.1, "lr": 0.01})
    written = {p.name: p for p in plot_run_metrics(run_dir)}
    assert _pixels_of(written["lr.png"], (0x1F, 0x77, 0xB4)) > 10  # matplotlib's first colour, the point
