"""Scoring an arm's summaries and writing the experiment's table (Markdown, CSV, JSON) and plot (PNG).

Per arm and seed: parameters, ROUGE-1/2/L, BERTScore F1, highlight precision@3 (records with highlight labels:
source sentences ranked by cosine similarity to the generated summary under the product's MiniLM embedder,
`HIGHLIGHT_EMBEDDER` from `tldrlab.embed`), mean latency per summary (batch 1, greedy, CPU) and training time.
Across seeds: mean and sample standard deviation.
"""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from tldrlab.embed import get_embedder
from tldrlab.errors import RunCancelledError, RunPreemptedError
from tldrlab.evaluate.generate import lazy_seq2seq_cache
from tldrlab.evaluate.metrics import bertscore, rouge_scores
from tldrlab.experiments.dendrites import GRADIENT_DESCENT_NOTE
from tldrlab.report import Report
from tldrlab.runs.atomic import atomic_write_text
from tldrlab.tokenizers.plain import plain_ids

METRICS = (
    "parameters",
    "rouge1",
    "rouge2",
    "rougeL",
    "bertscore_f1",
    "highlight_p_at_3",
    "latency_ms",
    "train_seconds",
    "eval_loss",
    "steps",
    "dendrites",
)
"""Columns of the results table, in order (those no row has are left out)."""

LABELS = {
    "parameters": "params",
    "rouge1": "ROUGE-1",
    "rouge2": "ROUGE-2",
    "rougeL": "ROUGE-L",
    "bertscore_f1": "BERTScore F1",
    "highlight_p_at_3": "Highlight P@3",
    "latency_ms": "latency ms/summary",
    "train_seconds": "train s",
    "eval_loss": "eval loss",
    "steps": "steps",
    "dendrites": "dendrites",
}

DENDRITE_ARM = "compressed_pai"
"""The arm PerforatedAI adds dendrites to (in the T5 and the causal-LM experiment alike)."""


def dendrite_note(rows: list[dict[str, Any]]) -> str | None:
    """How the dendrites were trained, when a dendrite arm is among `rows`; None otherwise (the note was
    written under every table, also where no PerforatedAI arm ran)."""
    return GRADIENT_DESCENT_NOTE if any(r.get("arm") == DENDRITE_ARM for r in rows) else None


# -- failed arms --------------------------------------------------------------------------------------------
# An arm that fails fails its experiment; the table published until then lacked its row, so a two-row table
# read as a two-arm experiment. The failure is kept next to the finished rows and the table says it.
def failure_path(rows_dir: Path, seed: int, arm: str) -> Path:
    return rows_dir / f"seed{seed}-{arm}.failed.json"


def record_failure(rows_dir: Path, seed: int, arm: str, error: Exception) -> bool:
    """Keep why the arm failed (one line); False for a run stopped or cancelled (not a failure: it
    resumes)."""
    if isinstance(error, RunPreemptedError | RunCancelledError):
        return False
    lines = str(error).strip().splitlines()
    reason = f"{type(error).__name__}: {lines[0] if lines else 'no message'}"
    rows_dir.mkdir(exist_ok=True)
    failure = {"arm": arm, "seed": seed, "error": reason[:300]}
    atomic_write_text(failure_path(rows_dir, seed, arm), json.dumps(failure))
    return True


def failures_so_far(rows_dir: Path, seeds: list[int], arms: list[str]) -> list[dict[str, Any]]:
    """The failed (seed, arm)s, in the experiment's order."""
    paths = (failure_path(rows_dir, seed, arm) for seed in seeds for arm in arms)
    return [json.loads(path.read_text()) for path in paths if path.exists()]


def failed_arm_lines(failures: list[dict[str, Any]], columns: int) -> list[str]:
    """A table row per failed arm and seed: the reason in the first metric column (pipes escaped)."""
    lines = []
    for failure in failures:
        reason = str(failure["error"]).replace("|", "\\|")
        cells = [f"**failed**: {reason}", *["–"] * (columns - 1)]
        lines.append(f"| {failure['arm']} | seed {failure['seed']} | " + " | ".join(cells) + " |")
    return lines


HIGHLIGHT_EMBEDDER = "minilm-onnx"
"""The embedder ranking source sentences for highlight P@3: the product's default all-MiniLM-L6-v2 on ONNX
Runtime (~0.2 s to load where the PyTorch encoder takes seconds), named here rather than read from the
settings so that an experiment's figure does not change with a user's `TLDRLAB_EMBEDDER`."""


@torch.no_grad()
def summarize_timed(model: Any, tokenizer: Any, documents: list[str], config: Any) -> tuple[list[str], float]:
    """Greedy summaries one document at a time (batch 1) and the mean seconds per summary."""
    model.eval()
    outputs, seconds = [], 0.0
    for document in documents:
        ids = plain_ids(tokenizer, document)[: config.max_source_tokens - 1]
        input_ids = torch.tensor([[*ids, tokenizer.eos_token_id]])
        started = time.perf_counter()
        generated = model.generate(
            input_ids=input_ids,
            attention_mask=torch.ones_like(input_ids),
            max_new_tokens=config.max_new_tokens,
            do_sample=False,
            num_beams=1,
            # compressed models may have more decoder than encoder layers
            cache=lazy_seq2seq_cache(),
        )
        seconds += time.perf_counter() - started
        outputs.append(tokenizer.decode(generated[0], skip_special_tokens=True).strip())
    return outputs, seconds / max(len(documents), 1)


def highlight_precision_at_k(records: list[Any], summaries: list[str], k: int = 3) -> float | None:
    """Mean fraction of the top-k source sentences (by similarity to the summary) labelled as highlights."""
    labelled = [
        (r, s)
        for r, s in zip(records, summaries, strict=True)
        if r.sentences and r.highlight_labels and any(r.highlight_labels)
    ]
    if not labelled:
        return None
    encoder = get_embedder(HIGHLIGHT_EMBEDDER)
    precisions = []
    for record, summary in labelled:
        vectors = encoder.encode([summary or " ", *record.sentences])  # unit rows: dot = cosine
        scores = vectors[1:] @ vectors[0]
        top = sorted(range(len(scores)), key=lambda i: -float(scores[i]))[:k]
        precisions.append(sum(record.highlight_labels[i] for i in top) / min(k, len(scores)))
    return sum(precisions) / len(precisions)


def evaluate_summaries(model: Any, tokenizer: Any, records: list[Any], config: Any) -> dict[str, Any]:
    """ROUGE, BERTScore, highlight P@3 and latency of the model's summaries of `records`."""

    predictions, latency = summarize_timed(model, tokenizer, [r.document for r in records], config)
    references = [r.summaries[0] for r in records]
    rouge = rouge_scores(predictions, references)
    row: dict[str, Any] = {
        "rouge1": rouge["rouge1"],
        "rouge2": rouge["rouge2"],
        "rougeL": rouge["rougeL"],
        "latency_ms": latency * 1000,
        "examples": [
            {"reference": ref, "prediction": pred}
            for ref, pred in zip(references[:3], predictions[:3], strict=True)
        ],
    }
    if config.bertscore:
        row["bertscore_f1"] = bertscore(predictions, references)["bertscore_f1"]
    if config.highlights:
        precision = highlight_precision_at_k(records, predictions)
        if precision is not None:
            row["highlight_p_at_3"] = precision
    return row


# -- aggregation and files ----------------------------------------------------------------------------------
def summarize_rows(rows: list[dict[str, Any]], metrics: tuple[str, ...] = METRICS) -> list[dict[str, Any]]:
    """Per arm (in first-seen order): its seeds, and mean / sample std of every numeric metric."""
    arms = list(dict.fromkeys(r["arm"] for r in rows))
    summary = []
    for arm in arms:
        mine = [r for r in rows if r["arm"] == arm]
        entry: dict[str, Any] = {"arm": arm, "seeds": [r["seed"] for r in mine]}
        for metric in metrics:
            values = [float(r[metric]) for r in mine if isinstance(r.get(metric), int | float)]
            if values:
                entry[f"{metric}_mean"] = statistics.fmean(values)
                entry[f"{metric}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
        summary.append(entry)
    return summary


def format_metric(metric: str, mean: float, std: float, n: int) -> str:
    """A table cell: counts as integers, times with one decimal, scores with four; ± std over n >= 2 seeds."""
    if metric in ("parameters", "steps", "dendrites"):
        text = f"{mean:,.0f}"
        return text if std == 0 else f"{text} ± {std:,.0f}"
    digits = 1 if metric.endswith(("_ms", "_seconds")) else 4
    return f"{mean:.{digits}f}" if n < 2 else f"{mean:.{digits}f} ± {std:.{digits}f}"


def markdown_table(summary: list[dict[str, Any]], failures: list[dict[str, Any]] | None = None) -> str:
    columns = [m for m in METRICS if any(f"{m}_mean" in s for s in summary)] or ["parameters"]
    header = "| arm | seeds | " + " | ".join(LABELS[m] for m in columns) + " |"
    lines = [header, "|" + "---|" * (len(columns) + 2)]
    for entry in summary:
        n = len(entry["seeds"])
        cells = [
            format_metric(m, entry[f"{m}_mean"], entry[f"{m}_std"], n) if f"{m}_mean" in entry else "–"
            for m in columns
        ]
        lines.append(f"| {entry['arm']} | {n} | " + " | ".join(cells) + " |")
    lines += failed_arm_lines(failures or [], len(columns))
    return "\n".join(lines) + "\n"


def csv_text(rows: list[dict[str, Any]], metrics: tuple[str, ...] = METRICS) -> str:
    """One line per arm and seed: its run and every metric some row has."""
    columns = ["arm", "seed", "run_id", *[m for m in metrics if any(m in r for r in rows)]]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: row.get(k, "") for k in columns})
    return buffer.getvalue()


def plot_comparison(summary: list[dict[str, Any]], path: Path) -> Path:
    """Bars per arm (mean ± std over seeds) for parameters, quality, latency and training time."""
    metrics = ("parameters", "eval_loss", "rougeL", "bertscore_f1", "highlight_p_at_3", "latency_ms")
    title = "dendrite experiment (mean ± std over seeds)"
    return plot_arm_bars(summary, (*metrics, "train_seconds"), LABELS, path, title)


def plot_arm_bars(
    summary: list[dict[str, Any]],
    candidates: tuple[str, ...],
    labels: dict[str, str],
    path: Path,
    title: str,
    reference: dict[str, Any] | None = None,
) -> Path:
    """One panel per metric of `candidates` that the summary has: a bar per arm (mean ± std over seeds);
    `reference` values (Lead-1) as a dashed line on the panels they exist for."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [m for m in candidates if any(f"{m}_mean" in s for s in summary)]
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.4 * cols, 3.3 * rows), squeeze=False)
    arms = [s["arm"] for s in summary]
    colors = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860"]
    for ax, metric in zip(axes.flat, panels, strict=False):
        means = [s.get(f"{metric}_mean", 0.0) for s in summary]
        stds = [s.get(f"{metric}_std", 0.0) for s in summary]
        ax.bar(arms, means, yerr=stds, capsize=4, color=colors[: len(arms)])
        if reference is not None and metric in reference:
            ax.axhline(reference[metric], color="black", linestyle="--", linewidth=1, label="Lead-1")
            ax.legend(fontsize=8)
        ax.set_title(labels[metric])
        ax.tick_params(axis="x", labelrotation=25, labelsize=8)
        ax.grid(axis="y", alpha=0.3)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_results(
    out_dir: Path,
    rows: list[dict[str, Any]],
    config: Any,
    *,
    written: bool = False,
    failures: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """results.md / results.csv / comparison.png in `out_dir`; returns the JSON-ready results.

    `written`: the files already hold exactly these rows (the table published when the last arm finished),
    so only the results are returned: drawing the same comparison again cost ~0.4 CPU-s an experiment.
    `failures`: the arms that failed (`failures_so_far`), each a row of the table saying why."""
    summary = summarize_rows(rows)
    table = markdown_table(summary, failures)
    trained_how = dendrite_note(rows)
    if not written:
        # a time budget replaces the steps (dendrite_experiment.train_config): the note said "300 steps per
        # arm (or 1.0 min)", the default steps no arm was limited to
        budget = f"{config.budget_minutes} min" if config.budget_minutes else f"{config.budget_steps} steps"
        note = (
            f"Budget: {budget} per arm, seeds {', '.join(map(str, config.seeds))}, data {config.data}.\n"
            + (f"\n{trained_how}\n" if trained_how else "")
        )
        atomic_write_text(out_dir / "results.md", table + "\n" + note)
        atomic_write_text(out_dir / "results.csv", csv_text(rows))
        if summary:
            plot_comparison(summary, out_dir / "comparison.png")
    return {
        "rows": rows,
        "summary": summary,
        "table_markdown": table,
        "note": trained_how,
        "files": {
            name: str(out_dir / name)
            for name in ("results.md", "results.csv", "results.json", "comparison.png")
        },
    }


def results_report(run_id: str, result: dict[str, Any]) -> Report:
    """How a comparison's result reads (experiment, lm_experiment, elm_compare_lm): the table, the paired
    differences, the note on how the arms were trained, the files written."""
    blocks = [result["table_markdown"]]
    if result.get("differences_markdown"):
        blocks += ["Differences (95 % paired bootstrap intervals):", result["differences_markdown"]]
    if result.get("note"):
        blocks.append(result["note"])
    return Report(blocks + [f"{name}: {path}" for name, path in result["files"].items()])
