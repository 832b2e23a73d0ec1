"""What an evaluation leaves behind besides eval.json / samples.jsonl / eval.png: a compact summary, the
per-example table, and, where the data labels sentences worth highlighting, a per-sentence highlight table.

- `eval_summary.json`: model, task, data and split (and the fraction of it a training run held out,
  `val_fraction`), the numeric metrics, the registered data sets read, the
  files written; what `tldrlab runs compare` and dashboards read.
- `eval_table.csv`: one row per example (seq2seq: id, reference, prediction, ROUGE; LM: prompt and outputs;
  none, and no table, for an LM evaluation without continuations such as a training run's final one).
- `highlight_eval_table.csv` (records with `sentences` and `highlight_labels`: SciTLDR, QMSum): one row per
  sentence with its label and how much of it the model's summary covers (the share of its content words
  found in the prediction). Its metrics: `highlight_coverage_labelled` / `_other` (mean coverage of labelled
  and other sentences) and `highlight_auc` (how well coverage tells labelled sentences from the rest: 0.5 is
  chance, 1 means the summary draws on exactly the sentences the data marks as worth highlighting).

`evaluate_job` records them as run artifacts and logs them to W&B as one artifact of type `evaluation`.

Where they go besides the evaluation run itself (`evaluation_dir`): a training run's final evaluation writes
them next to the model, in the training run's directory, where `tldrlab runs compare` reads them; a later
evaluation of that model writes them under `evaluations/<its run id>/` there, so it never replaces them.
"""

from __future__ import annotations

import csv
import io
import json
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tldrlab.runs.atomic import atomic_write_json, atomic_write_text
from tldrlab.runs.run import EVALUATIONS

SUMMARY_FILE = "eval_summary.json"
FINAL_EVAL_TAG = "final_eval"
"""Run tag of the evaluation a training run ends with (set by the training run when it launches it)."""
TABLE_FILE = "eval_table.csv"
HIGHLIGHT_TABLE_FILE = "highlight_eval_table.csv"
TEXT_CELL_CHARS = 500
"""Long texts (documents, sentences) are cut to this many characters in the tables."""

_WORD = re.compile(r"[a-z0-9]+")
_STOP_TEXT = """a an the and or of to in on for with by at from as is are was were be been it its this
that these those we our you your they their he she his her not no but if then so than which who what when
where how"""
_STOP = frozenset(_STOP_TEXT.split())


def _content_words(text: str) -> list[str]:
    return [w for w in _WORD.findall(text.lower()) if w not in _STOP]


def highlight_rows(records: Sequence[Any], predictions: Sequence[str]) -> list[dict[str, Any]]:
    """Per labelled sentence: record id, sentence index, label, coverage by the prediction, the sentence."""
    rows: list[dict[str, Any]] = []
    for record, prediction in zip(records, predictions, strict=True):
        sentences, labels = record.sentences, record.highlight_labels
        if not sentences or labels is None or len(labels) != len(sentences):
            continue
        predicted = set(_content_words(prediction))
        for index, (sentence, label) in enumerate(zip(sentences, labels, strict=True)):
            words = _content_words(sentence)
            coverage = sum(w in predicted for w in words) / len(words) if words else 0.0
            rows.append(
                {
                    "id": record.id,
                    "sentence": index,
                    "label": int(label),
                    "coverage": round(coverage, 4),
                    "text": sentence[:TEXT_CELL_CHARS],
                }
            )
    return rows


def auc(scores: Sequence[float], labels: Sequence[int]) -> float | None:
    """ROC AUC of `scores` for binary `labels` (ties count half); None without both classes."""
    positives = [s for s, y in zip(scores, labels, strict=True) if y]
    negatives = [s for s, y in zip(scores, labels, strict=True) if not y]
    if not positives or not negatives:
        return None
    ranked = sorted((s, i) for i, s in enumerate(scores))
    ranks = [0.0] * len(scores)
    start = 0
    while start < len(ranked):
        end = start
        while end + 1 < len(ranked) and ranked[end + 1][0] == ranked[start][0]:
            end += 1
        for k in range(start, end + 1):
            ranks[ranked[k][1]] = (start + end) / 2 + 1
        start = end + 1
    positive_ranks = sum(r for r, y in zip(ranks, labels, strict=True) if y)
    n_pos, n_neg = len(positives), len(negatives)
    return (positive_ranks - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def highlight_metrics(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Coverage of labelled vs other sentences and its AUC (see the module docstring)."""
    if not rows:
        return {}
    labelled = [r["coverage"] for r in rows if r["label"]]
    other = [r["coverage"] for r in rows if not r["label"]]
    metrics: dict[str, float] = {"highlight_sentences": float(len(rows))}
    if labelled:
        metrics["highlight_coverage_labelled"] = sum(labelled) / len(labelled)
    if other:
        metrics["highlight_coverage_other"] = sum(other) / len(other)
    value = auc([r["coverage"] for r in rows], [r["label"] for r in rows])
    if value is not None:
        metrics["highlight_auc"] = value
    return metrics


def _cell(value: Any) -> Any:
    if isinstance(value, list | dict):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, str):
        return value[:TEXT_CELL_CHARS]
    return value


def write_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    """Rows as CSV (columns in first-seen order; lists and dicts as JSON), written atomically."""
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(v) for k, v in row.items()})
    atomic_write_text(path, buffer.getvalue())
    return path


def write_evaluation(
    out_dir: Path,
    result: dict[str, Any],
    samples: list[dict[str, Any]],
    highlights: list[dict[str, Any]],
    **extra: Any,
) -> list[Path]:
    """eval_summary.json, eval_table.csv and (with labelled sentences) highlight_eval_table.csv in `out_dir`;
    `extra` goes into the summary (the run ids, the data sets read). No samples, no table: an LM evaluation
    without continuations (`num_lm_samples` 0, as a training run's final one) reports its loss and
    perplexity only, and wrote an eval_table.csv with no rows (and no columns) that the summary listed."""
    written = [write_csv(out_dir / TABLE_FILE, samples)] if samples else []
    if highlights:
        written.append(write_csv(out_dir / HIGHLIGHT_TABLE_FILE, highlights))
    config = result.get("config", {})
    summary = {
        "model": result.get("model"),
        "task": result.get("task"),
        "data": config.get("data"),
        "split": config.get("split"),
        # a training run's held-out fraction of that split (None: all of it)
        "val_fraction": config.get("val_fraction"),
        "metrics": {k: v for k, v in result.get("metrics", {}).items() if isinstance(v, int | float)},
        "seconds": result.get("seconds"),
        "created_at": result.get("created_at", time.time()),
        "files": [p.name for p in written],
        **extra,
    }
    atomic_write_json(out_dir / SUMMARY_FILE, summary)
    return [out_dir / SUMMARY_FILE, *written]


def evaluation_dir(
    beside_model: Path | None, evaluated_run: str | None, run_id: str, final: bool
) -> Path | None:
    """Where an evaluation's files go besides its own run directory (None: nowhere else). `beside_model`
    is the evaluated model's place (a run's directory or a model directory; None for a GGUF file, the bundled
    or an installed model). A run's final evaluation (`final`) and an evaluation of a model that is no run's
    go there; a later evaluation of a run's model goes to its own `evaluations/<run id>/`: the final
    evaluation's files (what `tldrlab runs compare` reads as the run's `eval.*`) stay as they were."""
    if beside_model is None or evaluated_run is None or final:
        return beside_model
    return beside_model / EVALUATIONS / run_id
