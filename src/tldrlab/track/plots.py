"""PNG curves of a run, drawn from its metrics.jsonl (matplotlib, Agg backend, no display needed).

    plot_run_metrics(run_dir)  ->  plots/train_loss.png, plots/eval.png, plots/lr.png

Lines of metrics.jsonl hold `step` plus metrics; train lines have `train_loss` / `lr`, eval lines `eval_*`
and other validation metrics. Files are written atomically so a reader never sees half a PNG.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tldrlab.runs.atomic import atomic_write_bytes, read_jsonl

TRAIN_KEYS = ("train_loss",)
"""Metrics drawn on the training-loss figure."""

SKIP_EVAL_KEYS = {"step", "time", "best", "train_loss", "lr", "tokens_per_s", "steps_per_s"}
"""Keys never drawn on the evaluation figure."""


def _series(rows: list[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for row in rows:
        value = row.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            xs.append(float(row["step"]))
            ys.append(float(value))
    return xs, ys


def _marker(xs: list[float]) -> str | None:
    """A marker for a series of one point: a line through one point draws nothing (a run shorter than
    `log_every` logs its train loss and learning rate once, at its end)."""
    return "o" if len(xs) == 1 else None


def _save(fig: Any, path: Path) -> None:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    atomic_write_bytes(path, buffer.getvalue())


def plot_metrics(rows: list[dict[str, Any]], out_dir: Path, title: str = "") -> list[Path]:
    """Draw train loss, eval metrics (one panel each) and learning rate; return the PNGs written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []

    xs, ys = _series(rows, "train_loss")
    if xs:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.plot(xs, ys, marker=_marker(xs), label="train loss")
        ex, ey = _series(rows, "eval_loss")
        if ex:
            ax.plot(ex, ey, "o-", label="eval loss")
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.set_title(f"{title} loss".strip())
        ax.legend()
        ax.grid(alpha=0.3)
        _save(fig, out_dir / "train_loss.png")
        plt.close(fig)
        written.append(out_dir / "train_loss.png")

    eval_keys = sorted(
        {
            k
            for row in rows
            if "train_loss" not in row
            for k, v in row.items()
            if k not in SKIP_EVAL_KEYS and isinstance(v, int | float) and not isinstance(v, bool)
        }
    )
    if eval_keys:
        cols = min(3, len(eval_keys))
        nrows = (len(eval_keys) + cols - 1) // cols
        fig, axes = plt.subplots(nrows, cols, figsize=(4 * cols, 3 * nrows), squeeze=False)
        for ax, key in zip(axes.flat, eval_keys, strict=False):
            ex, ey = _series([r for r in rows if "train_loss" not in r], key)
            ax.plot(ex, ey, "o-")
            ax.set_title(key)
            ax.set_xlabel("step")
            ax.grid(alpha=0.3)
        for ax in list(axes.flat)[len(eval_keys) :]:
            ax.axis("off")
        fig.suptitle(f"{title} evaluation".strip())
        fig.tight_layout()
        _save(fig, out_dir / "eval.png")
        plt.close(fig)
        written.append(out_dir / "eval.png")

    xs, ys = _series(rows, "lr")
    if xs:
        fig, ax = plt.subplots(figsize=(6, 2.5))
        ax.plot(xs, ys, marker=_marker(xs))
        ax.set_xlabel("step")
        ax.set_ylabel("learning rate")
        ax.grid(alpha=0.3)
        _save(fig, out_dir / "lr.png")
        plt.close(fig)
        written.append(out_dir / "lr.png")
    return written


def plot_run_metrics(run_dir: Path | str) -> list[Path]:
    """Draw a run's curves into <run_dir>/plots from its metrics.jsonl."""
    run_dir = Path(run_dir)
    rows = read_jsonl(run_dir / "metrics.jsonl") if (run_dir / "metrics.jsonl").exists() else []
    return plot_metrics(rows, run_dir / "plots", title=run_dir.name)


@dataclass(frozen=True)
class ComparisonPanels:
    """The metrics a comparison chart draws, of how many, the line saying so when some are left out, and the
    chart's title (the baseline, the tolerance as the report words it, that line)."""

    shown: list[str]
    total: int
    note: str
    title: str


def comparison_panels(comparison: Any, max_panels: int = 12) -> ComparisonPanels:
    """At most `max_panels` of the comparison's metrics, in its order: those a run regresses on first, so a
    regression is never cut from the chart (a final evaluation alone has some 40 metrics)."""
    names: list[str] = comparison.metrics
    regressed = {r.metric for r in comparison.regressions}
    chosen = set(
        ([name for name in names if name in regressed] + [n for n in names if n not in regressed])[
            :max_panels
        ]
    )
    shown = [name for name in names if name in chosen]
    note = ""
    if len(shown) < len(names):
        note = (
            f"{len(shown)} of {len(names)} metrics shown, those with a regression first; the table lists all"
        )
    title = (
        f"baseline {comparison.baseline} (dark); red: worse than it by more than {comparison.tolerance:.1%}"
    )
    return ComparisonPanels(shown, len(names), note, title + (f"\n{note}" if note else ""))


def plot_comparison(comparison: Any, path: Path, max_panels: int = 12) -> Path:
    """Runs side by side (`tldrlab.runs.compare.Comparison`): one bar panel per metric, the baseline dark,
    runs that regress on the metric red."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = comparison_panels(comparison, max_panels)
    names = panels.shown or ["(no shared metrics)"]
    columns = min(3, len(names))
    rows = (len(names) + columns - 1) // columns
    width = max(4.0, 0.55 * len(comparison.runs) + 2.0)
    fig, axes = plt.subplots(rows, columns, figsize=(width * columns, 3.2 * rows), squeeze=False)
    labels = [run["id"] for run in comparison.runs]
    regressed = {(r.run_id, r.metric) for r in comparison.regressions}
    for ax, name in zip(axes.flat, names, strict=False):
        values = [run["metrics"].get(name) for run in comparison.runs]
        colours = [
            "#1f2937"
            if run["id"] == comparison.baseline
            else "#dc2626"
            if (run["id"], name) in regressed
            else "#4477aa"
            for run in comparison.runs
        ]
        heights = [float(v) if isinstance(v, int | float) else 0.0 for v in values]
        ax.bar(range(len(labels)), heights, color=colours)
        ax.set_xticks(range(len(labels)))
        ax.set_xticklabels([label[-14:] for label in labels], rotation=30, ha="right", fontsize=7)
        way = comparison.directions.get(name)
        hint = {"lower": " (lower is better)", "higher": " (higher is better)"}.get(way or "", "")
        ax.set_title(name + hint, fontsize=9)
        for i, value in enumerate(values):
            if not isinstance(value, int | float):
                ax.text(i, 0, "n/a", ha="center", va="bottom", fontsize=7)
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    fig.suptitle(panels.title, fontsize=10)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
    return path
