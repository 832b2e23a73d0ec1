"""The causal-LM experiment's tables and plots: per arm mean +- std over seeds, and each arm's difference from
the baseline (A), the compressed control (C) and Lead-1 with 95 % paired bootstrap intervals.

A difference is computed per test record: the record's score averaged over the arm's seeds minus the same for
the reference arm, then averaged over records; the interval resamples the test records (2,000 bootstrap
samples, `tldrlab.evaluate.bootstrap`). It measures how sure the difference is given these test records and
seeds; with two seeds the spread between seeds is reported next to it (std), not folded into the interval.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tldrlab.evaluate.bootstrap import paired_bootstrap_interval
from tldrlab.experiments import results
from tldrlab.experiments.results import dendrite_note, failed_arm_lines, format_metric
from tldrlab.runs.atomic import atomic_write_text

METRICS = (
    "parameters",
    "rouge1",
    "rouge2",
    "rougeL",
    "bertscore_f1",
    "latency_ms",
    "train_seconds",
    "teacher_seconds",
    "eval_loss",
    "steps",
    "dendrites",
)
"""Columns of the results table, in order (those no row has are left out)."""

QUALITY = ("rouge1", "rouge2", "rougeL", "bertscore_f1")
"""The per-record metrics differences are computed for."""

LABELS = {
    "parameters": "params",
    "rouge1": "ROUGE-1",
    "rouge2": "ROUGE-2",
    "rougeL": "ROUGE-L",
    "bertscore_f1": "BERTScore F1",
    "latency_ms": "latency ms/summary",
    "latency_cpu_ms": "CPU ms/summary",
    "train_seconds": "train s",
    "train_cpu_seconds": "train CPU s",
    "teacher_seconds": "teacher s",
    "eval_loss": "eval loss",
    "steps": "steps",
    "dendrites": "dendrites",
}
REFERENCES = (("baseline", "vs A (baseline)"), ("compressed", "vs C (compressed)"), ("lead1", "vs Lead-1"))


def summarize_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per arm (first-seen order): its seeds and mean / sample std of every numeric metric."""
    return results.summarize_rows(rows, METRICS)


def per_record_means(rows: list[dict[str, Any]], arm: str, metric: str) -> np.ndarray | None:
    """The arm's per-record scores averaged over its seeds (None when no row of the arm has them)."""
    found = [r["per_record"][metric] for r in rows if r["arm"] == arm and metric in r.get("per_record", {})]
    return np.mean(np.asarray(found, dtype=np.float64), axis=0) if found else None


def differences(rows: list[dict[str, Any]], lead: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Each arm minus each reference (A, C, Lead-1), per quality metric: mean and 95 % interval."""
    pool = list(rows)
    if lead is not None:
        pool.append({"arm": "lead1", "seed": 0, "per_record": lead["per_record"]})
    arms = [a for a in dict.fromkeys(r["arm"] for r in rows)]
    out = []
    for arm in arms:
        for reference, _ in REFERENCES:
            if reference == arm:
                continue
            for metric in QUALITY:
                mine, theirs = per_record_means(pool, arm, metric), per_record_means(pool, reference, metric)
                if mine is None or theirs is None or mine.shape != theirs.shape:
                    continue
                diff = mine - theirs
                # one record gives no interval (resampling it draws the same difference every time)
                low, high = paired_bootstrap_interval(diff) if diff.size > 1 else (None, None)
                out.append(
                    {
                        "arm": arm,
                        "reference": reference,
                        "metric": metric,
                        "difference": float(diff.mean()),
                        "low": low,
                        "high": high,
                    }
                )
    return out


def markdown_table(
    summary: list[dict[str, Any]], lead: dict[str, Any] | None, failures: list[dict[str, Any]] | None = None
) -> str:
    columns = [m for m in METRICS if any(f"{m}_mean" in s for s in summary)] or ["parameters"]
    lines = [
        "| arm | seeds | " + " | ".join(LABELS[m] for m in columns) + " |",
        "|" + "---|" * (len(columns) + 2),
    ]
    for entry in summary:
        n = len(entry["seeds"])
        cells = [
            format_metric(m, entry[f"{m}_mean"], entry[f"{m}_std"], n) if f"{m}_mean" in entry else "–"
            for m in columns
        ]
        lines.append(f"| {entry['arm']} | {n} | " + " | ".join(cells) + " |")
    if lead is not None:
        cells = [f"{lead[m]:.4f}" if m in QUALITY and m in lead else "–" for m in columns]
        lines.append("| Lead-1 (first sentence) | – | " + " | ".join(cells) + " |")
    lines += failed_arm_lines(failures or [], len(columns))
    return "\n".join(lines) + "\n"


def differences_table(found: list[dict[str, Any]]) -> str:
    references = [(r, label) for r, label in REFERENCES if any(d["reference"] == r for d in found)]
    lines = [
        "| arm | metric | " + " | ".join(label for _, label in references) + " |",
        "|" + "---|" * (len(references) + 2),
    ]
    for arm in dict.fromkeys(d["arm"] for d in found):
        for metric in QUALITY:
            cells = []
            for reference, _ in references:
                hit = next(
                    (d for d in found if (d["arm"], d["reference"], d["metric"]) == (arm, reference, metric)),
                    None,
                )
                cells.append(
                    "–"
                    if hit is None
                    else f"{hit['difference']:+.4f}"
                    + (f" [{hit['low']:+.4f}, {hit['high']:+.4f}]" if hit["low"] is not None else "")
                )
            if any(c != "–" for c in cells):
                lines.append(f"| {arm} | {LABELS[metric]} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def per_seed_table(rows: list[dict[str, Any]]) -> str:
    columns = [m for m in METRICS if any(m in r for r in rows)]
    lines = [
        "| arm | seed | " + " | ".join(LABELS[m] for m in columns) + " |",
        "|" + "---|" * (len(columns) + 2),
    ]
    for row in rows:
        cells = [
            format_metric(m, float(row[m]), 0.0, 1) if isinstance(row.get(m), int | float) else "–"
            for m in columns
        ]
        lines.append(f"| {row['arm']} | {row['seed']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def csv_text(rows: list[dict[str, Any]]) -> str:
    return results.csv_text(rows, METRICS)


def plot_comparison(summary: list[dict[str, Any]], lead: dict[str, Any] | None, path: Path) -> Path:
    """Bars per arm (mean ± std over seeds); Lead-1 as a dashed line on the quality panels."""
    metrics = ("parameters", "rougeL", "bertscore_f1", "eval_loss", "latency_ms", "train_seconds")
    title = "compressed pretrained LM: arms (mean ± std over seeds)"
    return results.plot_arm_bars(summary, metrics, LABELS, path, title, reference=lead)


def plot_differences(found: list[dict[str, Any]], path: Path) -> Path:
    """Each arm's difference from A and from C (ROUGE-L, BERTScore F1) with its 95 % interval."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = ("rougeL", "bertscore_f1")
    references = [r for r, _ in REFERENCES if any(d["reference"] == r for d in found)]
    fig, axes = plt.subplots(
        1, len(metrics), figsize=(5.5 * len(metrics), 0.5 + 0.45 * max(len(found) // 8, 4)), squeeze=False
    )
    for ax, metric in zip(axes.flat, metrics, strict=True):
        labels, centers, lows, highs, colors = [], [], [], [], []
        for i, reference in enumerate(references):
            for d in (d for d in found if d["metric"] == metric and d["reference"] == reference):
                labels.append(f"{d['arm']} − {reference}")
                centers.append(d["difference"])
                # no interval (one record): a point without error bars
                lows.append(d["difference"] - d["low"] if d["low"] is not None else 0.0)
                highs.append(d["high"] - d["difference"] if d["high"] is not None else 0.0)
                colors.append(["#4c72b0", "#dd8452", "#55a868"][i % 3])
        y = list(range(len(labels)))[::-1]
        for yi, c, lo, hi, col in zip(y, centers, lows, highs, colors, strict=True):
            ax.errorbar(c, yi, xerr=[[lo], [hi]], fmt="o", color=col, capsize=3)
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_yticks(y, labels, fontsize=8)
        ax.set_title(f"{LABELS[metric]}: difference, 95 % bootstrap interval")
        ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_lm_results(
    out_dir: Path,
    rows: list[dict[str, Any]],
    lead: dict[str, Any] | None,
    config: Any,
    *,
    plots: bool = True,
    failures: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """results.md / results.csv (and with `plots`: comparison.png / differences.png) in `out_dir`; the
    JSON-ready results. `failures`: the arms that failed (`results.failures_so_far`), each a row saying
    why."""
    summary = summarize_rows(rows)
    found = differences(rows, lead)
    table = markdown_table(summary, lead, failures)
    diff_table = differences_table(found) if found else ""
    compression = config.compression
    trained_how = dendrite_note(rows)
    note = (
        f"Model {config.model}; {config.budget_steps} steps per arm (batch {config.batch_size}, "
        f"lr {config.lr}, compressed_random lr {config.random_lr}), "
        f"seeds {', '.join(map(str, config.seeds))}, data {config.data}; "
        f"compression ratio {compression.ratio}, importance {compression.importance}.\n"
        + (f"\n{trained_how}\n" if trained_how else "")
    )
    text = "\n\n".join(
        part
        for part in (
            table,
            "Differences (95 % paired bootstrap intervals over test records):\n\n" + diff_table
            if diff_table
            else "",
            "Per seed:\n\n" + per_seed_table(rows),
            note,
        )
        if part
    )
    atomic_write_text(out_dir / "results.md", text)
    atomic_write_text(out_dir / "results.csv", csv_text(rows))
    files = {"results.md": out_dir / "results.md", "results.csv": out_dir / "results.csv"}
    if plots and summary:
        files["comparison.png"] = plot_comparison(summary, lead, out_dir / "comparison.png")
    if plots and found:
        files["differences.png"] = plot_differences(found, out_dir / "differences.png")
    return {
        "rows": [{k: v for k, v in r.items() if k != "per_record"} for r in rows],
        "summary": summary,
        "differences": found,
        "lead1": {k: v for k, v in lead.items() if k != "per_record"} if lead else None,
        "table_markdown": table,
        "differences_markdown": diff_table,
        "note": trained_how,
        "files": {name: str(path) for name, path in files.items()},
    }
