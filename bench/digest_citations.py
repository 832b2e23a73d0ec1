"""Citations of the local LM's digest bullets on real beer.stackexchange.com threads: valid? supported?

    .venv/bin/python bench/digest_citations.py --split tune --threads 30 --out /tmp/tune.jsonl [-p k=v ...]
    .venv/bin/python bench/digest_citations.py --analyze /tmp/report.jsonl [--measure cosine --threshold 0.5]
    .venv/bin/python bench/digest_citations.py --tune /tmp/cite-tune.jsonl --labels labels.jsonl

Threads with 3+ posts are split in two halves by a hash of their id (crc32 even: `tune`, odd: `report`). The
support threshold is chosen on `tune` (with hand labels of a sample of its bullet/sentence pairs), and the
shares are reported on `report`, so the reported figures were not used to pick the threshold.

For each thread: highlights (k=8, the digest default), then the `local` summarizer (default: the bundled
model) with every bullet kept (`unsupported=mark`, threshold 0). Per bullet, as the model wrote it (repeats
removed, at most max_bullets): the numbers it cites, which of them do not exist, and the support of each
cited sentence (and of every key sentence, to see whether the cited one is the best) by both measures
(MiniLM cosine, content-word overlap). Timing per thread: first token, total, tokens generated.

A bullet is *valid* when the model cited at least one number and every number it cited exists; it is
*supported* (for a measure and threshold) when it is valid and at least one cited sentence reaches the
threshold, which is what the digest keeps by default.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import zlib
from pathlib import Path
from typing import Any

from headline import need_data

os.environ.setdefault("HF_HUB_OFFLINE", "1")

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "stackexchange_beer" / "Posts.xml"


def split_of(thread_id: str) -> str:
    return "tune" if zlib.crc32(thread_id.encode()) % 2 == 0 else "report"


def pick_threads(split: str, count: int, offset: int = 0) -> list[Any]:
    from tldrlab.digest.ingest import load_threads

    threads = [t for t in load_threads(DATA) if len(t.posts) >= 3 and split_of(t.id) == split]
    return threads[offset : offset + count]


def parse_params(items: list[str]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for item in items:
        key, _, value = item.partition("=")
        try:
            params[key] = json.loads(value)
        except ValueError:
            params[key] = value
    return params


def run(args: argparse.Namespace) -> None:
    import tempfile

    import torch

    from tldrlab.digest.highlights import HighlightOptions, thread_highlights
    from tldrlab.digest.ingest import ingest_threads
    from tldrlab.digest.summarizers import SummaryContext, build_summarizer
    from tldrlab.digest.summarizers.local import candidate_bullets, prompt_order
    from tldrlab.digest.summarizers.support import CitedBullet, support_scores
    from tldrlab.embed import get_embedder
    from tldrlab.store import open_store

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    threads = pick_threads(args.split, args.threads, args.offset)
    embedder = get_embedder("minilm")
    params = {"model_path": "smollm2", **parse_params(args.param or []), "unsupported": "mark"}
    params["support_threshold"] = 0.0
    summarizer = build_summarizer("local", params)
    tokenizer = summarizer_tokenizer(summarizer)  # loads the model before anything is timed
    from tldrlab.digest.cited_list import token_classes
    from tldrlab.digest.local_model import eos_ids, load_local_model

    token_classes(tokenizer, eos_ids(load_local_model(summarizer.model_path, summarizer.precision)))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp, out.open("w") as sink:
        store = open_store(url=f"sqlite:///{tmp}/bench.db", dim=embedder.dim, embedder=embedder.name)
        ingest_threads(threads, store, embedder)
        for number, thread in enumerate(threads, start=1):
            highlights = thread_highlights(
                store, thread.id, HighlightOptions(k=8), embedder=embedder, thread=thread
            )
            context = SummaryContext(thread=thread, highlights=highlights, embedder=embedder, max_bullets=5)
            started = time.perf_counter()
            first = None
            pieces: list[str] = []
            for event in summarizer.stream(context):
                if isinstance(event, str):
                    first = first if first is not None else time.perf_counter() - started
                    pieces.append(event)
            total = time.perf_counter() - started
            text = "".join(pieces)
            # numbers name the key sentences in the order the prompt listed them
            highlights = prompt_order(highlights, summarizer.sentence_order)
            candidates = candidate_bullets(text, len(highlights), context.max_bullets)
            cited = [CitedBullet(c.text, c.cited) for c in candidates]
            cosine = support_scores(cited, highlights, measure="cosine", embedder=embedder)
            overlap = support_scores(cited, highlights, measure="overlap")
            every = [CitedBullet(c.text, list(range(len(highlights)))) for c in candidates]
            all_cosine = support_scores(every, highlights, measure="cosine", embedder=embedder)
            all_overlap = support_scores(every, highlights, measure="overlap")
            tokens = len(tokenizer(text, add_special_tokens=False)["input_ids"])
            record = {
                "thread_id": thread.id,
                "title": thread.title,
                "posts": len(thread.posts),
                "highlights": [h.text for h in highlights],
                "text": text,
                "bullets": [
                    {
                        "text": c.text,
                        "cited": c.cited,
                        "invalid": c.invalid,
                        "cosine": cs,
                        "overlap": ov,
                        "all_cosine": [round(x, 4) for x in acs],
                        "all_overlap": [round(x, 4) for x in aov],
                    }
                    for c, cs, ov, acs, aov in zip(
                        candidates, cosine, overlap, all_cosine, all_overlap, strict=True
                    )
                ],
                "first_token_s": first,
                "total_s": total,
                "generated_tokens": tokens,
                "params": params,
            }
            sink.write(json.dumps(record) + "\n")
            sink.flush()
            print(
                f"[{number}/{len(threads)}] thread {thread.id}: {len(candidates)} bullets, "
                f"{tokens} tokens in {total:.1f} s (first token {first or 0:.1f} s)",
                flush=True,
            )
        store.close()
    analyze(out, args.measure, args.threshold)


def summarizer_tokenizer(summarizer: Any) -> Any:
    from tldrlab.digest.local_model import load_local_model

    return load_local_model(summarizer.model_path, summarizer.precision).tokenizer


def load(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def shares(records: list[dict[str, Any]], measure: str, threshold: float) -> dict[str, Any]:
    bullets = [b for r in records for b in r["bullets"]]
    valid = [b for b in bullets if b["cited"] and not b["invalid"]]
    supported = [b for b in valid if any(s >= threshold for s in b[measure])]
    novelty = [1.0 - max(b["overlap"], default=0.0) for b in bullets]
    words = [len(b["text"].split()) for b in bullets]
    return {
        "threads": len(records),
        "bullets": len(bullets),
        "bullets_per_thread": round(len(bullets) / max(1, len(records)), 2),
        "uncited": sum(1 for b in bullets if not b["cited"] and not b["invalid"]),
        "with_invalid_number": sum(1 for b in bullets if b["invalid"]),
        "valid_share": round(len(valid) / max(1, len(bullets)), 3),
        "supported_share": round(len(supported) / max(1, len(bullets)), 3),
        "measure": measure,
        "threshold": threshold,
        "novel_word_share_mean": round(statistics.fmean(novelty), 3) if novelty else None,
        "words_per_bullet_mean": round(statistics.fmean(words), 1) if words else None,
        "first_token_s_p50": round(statistics.median(r["first_token_s"] or 0 for r in records), 2),
        "total_s_p50": round(statistics.median(r["total_s"] for r in records), 2),
        "tokens_per_s": round(
            sum(r["generated_tokens"] for r in records) / sum(r["total_s"] for r in records), 2
        ),
    }


def analyze(path: Path, measure: str, threshold: float) -> None:
    print(json.dumps(shares(load(path), measure, threshold), indent=2))


def tune(path: Path, labels_path: Path) -> None:
    """Pick each measure's threshold on hand-labelled (bullet, cited sentence) pairs of the tune half:
    the threshold with the best accuracy (ties: the higher threshold, which drops more)."""
    records = {r["thread_id"]: r for r in load(path)}
    labels = load(labels_path)
    for measure in ("cosine", "overlap"):
        pairs = []
        for label in labels:
            bullet = records[label["thread_id"]]["bullets"][label["bullet"]]
            position = bullet["cited"].index(label["sentence"])
            pairs.append((bullet[measure][position], bool(label["supported"])))
        best = (-1.0, 0.0)
        for step in range(0, 101):
            threshold = step / 100
            accuracy = sum((score >= threshold) == truth for score, truth in pairs) / len(pairs)
            if accuracy >= best[0]:
                best = (accuracy, threshold)
        positives = sum(truth for _, truth in pairs)
        print(
            f"{measure}: best threshold {best[1]:.2f}, accuracy {best[0]:.3f} on {len(pairs)} labelled pairs "
            f"({positives} supported)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--split", choices=["tune", "report"], default="tune")
    parser.add_argument("--threads", type=int, default=30)
    parser.add_argument("--offset", type=int, default=0)
    parser.add_argument("--out", default="/tmp/digest-citations.jsonl")
    parser.add_argument("-p", "--param", action="append", help="local summarizer parameter key=value")
    parser.add_argument("--measure", choices=["cosine", "overlap"], default="cosine")
    parser.add_argument("--threshold", type=float, default=None)
    parser.add_argument("--analyze", type=Path, help="print the shares of an earlier --out file")
    parser.add_argument("--tune", type=Path, help="a tune-split --out file to choose thresholds on")
    parser.add_argument("--labels", type=Path, help="hand labels for --tune")
    args = parser.parse_args()
    if args.threshold is None:
        from tldrlab.digest.summarizers.support import DEFAULT_THRESHOLD

        args.threshold = DEFAULT_THRESHOLD
    if args.tune:
        if not args.labels:
            sys.exit("--tune needs --labels")
        tune(args.tune, args.labels)
    elif args.analyze:
        analyze(args.analyze, args.measure, args.threshold)
    else:
        need_data(DATA)
        run(args)


if __name__ == "__main__":
    main()
