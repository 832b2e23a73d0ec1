"""Extractive baselines for the summarizer tables, scored exactly as `tldrlab eval` scores a model.

    .venv/bin/python bench/summary_baselines.py --data ../shared/data/debian_descriptions --split validation
    .venv/bin/python bench/summary_baselines.py --data ../shared/data/scitldr --split dev --methods lead1,top1

The records are the first `--max-samples` records of the split that have a reference (the ones `tldrlab eval
--split S --max-samples N` generates for), so the figures sit in the same table as the models':
- `lead1`: the document's first sentence;
- `top1`: the digest's top query-free highlight (MiniLM vectors, centrality + title, as `tldrlab highlights`
  ranks a thread), for data with sentences (SciTLDR) or split into sentences here.

Prints one JSON object per method: ROUGE-1/2/L/Lsum F1 against the first reference, the max over references
when records have several, BERTScore P/R/F1 (offline MiniLM) and the seconds per summary.

`--against RUN_DIR/eval_table.csv` (an evaluation run's per-example table) adds, per method, the model's
ROUGE minus the method's on the same records (matched by id), with a paired bootstrap 95 % interval
(2,000 resamples of records, `tldrlab.evaluate.bootstrap`).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from headline import need_data

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from tldrlab.data.readers import read_records
from tldrlab.data.sentences import split_sentences
from tldrlab.data.threads import Post, Thread
from tldrlab.evaluate.bootstrap import paired_bootstrap_interval
from tldrlab.evaluate.metrics import ROUGE_TYPES, bertscore, rouge_per_sample
from tldrlab.evaluate.run_eval import max_over_references


def sentences_of(record: Any) -> list[str]:
    return list(record.sentences or [s.text for s in split_sentences(record.document)]) or [record.document]


def lead1(records: list[Any]) -> list[str]:
    return [sentences_of(r)[0] for r in records]


def top1(records: list[Any]) -> list[str]:
    from tldrlab.digest.highlights import HighlightOptions, rank_highlights
    from tldrlab.embed import get_embedder
    from tldrlab.store.base import SentenceRecord

    embedder = get_embedder("minilm")
    picks = []
    for record in records:
        texts = sentences_of(record)
        title = str(record.provenance.get("title") or "")
        vectors = embedder.encode([*texts, title] if title else texts)
        thread = Thread(id=record.id, title=title, posts=[Post(id="d", number=1, text=record.document)])
        rows = [SentenceRecord(record.id, "d", 1, i, 0, len(t), t) for i, t in enumerate(texts)]
        best = rank_highlights(
            rows,
            vectors[: len(texts)],
            HighlightOptions(k=1),
            thread=thread,
            title_vector=vectors[-1] if title else None,
        )
        picks.append(best[0].text if best else texts[0])
    return picks


METHODS = {"lead1": lead1, "top1": top1}


def model_minus_method(table: Path, records: list[Any], rows: list[dict[str, float]]) -> dict[str, Any]:
    """The model's per-example ROUGE (an eval_table.csv) minus the method's, mean and paired interval."""
    with table.open(newline="", encoding="utf-8") as handle:
        model = {row["id"]: row for row in csv.DictReader(handle)}
    pairs = [(model[r.id], mine) for r, mine in zip(records, rows, strict=True) if r.id in model]
    if not pairs:
        raise SystemExit(f"{table}: no record ids in common with the {len(records)} baseline records")
    out: dict[str, Any] = {"paired_examples": len(pairs)}
    for key in ("rouge1", "rouge2", "rougeL"):
        diff = np.array([float(theirs[key]) - mine[key] for theirs, mine in pairs])
        low, high = paired_bootstrap_interval(diff)
        out[f"model_minus_{key}"] = [round(float(diff.mean()), 4), round(low, 4), round(high, 4)]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--split", default=None)
    parser.add_argument("--max-samples", type=int, default=200)
    parser.add_argument("--methods", default="lead1")
    parser.add_argument("--no-bertscore", action="store_true")
    parser.add_argument("--against", type=Path, help="a model's eval_table.csv: paired differences")
    args = parser.parse_args()
    need_data(Path(args.data))
    records = [r for r in read_records(args.data, None, split=args.split) if r.summaries][: args.max_samples]
    refs = [r.summary for r in records]
    for name in args.methods.split(","):
        started = time.perf_counter()
        preds = METHODS[name](records)
        seconds = (time.perf_counter() - started) / len(records)
        rows = rouge_per_sample(preds, refs)
        result: dict[str, Any] = {
            "method": name,
            "data": args.data,
            "split": args.split,
            "examples": len(records),
        }
        result.update({k: sum(r[k] for r in rows) / len(rows) for k in ROUGE_TYPES})
        if any(len(r.summaries) > 1 for r in records):
            result.update(max_over_references(preds, records))
        if not args.no_bertscore:
            result.update(bertscore(preds, refs))
        result["seconds_per_summary"] = seconds
        result["pred_words_mean"] = sum(len(p.split()) for p in preds) / len(preds)
        if args.against is not None:
            result.update(model_minus_method(args.against, records, rows))
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
