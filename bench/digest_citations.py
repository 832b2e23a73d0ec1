"""Citations of the local LM's digest bullets on real beer.stackexchange.com threads: valid? supported?

    .venv/bin/python bench/digest_citations.py --split tune --threads 30 --out /tmp/tune.jsonl [-p k=v ...]
    .venv/bin/python bench/digest_citations.py --analyze /tmp/report.jsonl [--measure cosine --threshold 0.5]
    .venv/bin/python bench/digest_citations.py --tune /tmp/cite-tune.jsonl --labels labels.jsonl
    (--analyze and --tune: --polarity off|on, the negation check of support.polarity_mismatch; default: the
    digest's default)

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
threshold, which is what the digest keeps by default. With the polarity check on, a cited sentence that
disagrees with the bullet in negation does not support it whatever its score (the records hold the raw
scores and the texts, so --analyze and --tune apply the check afterwards).
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
    params["support_polarity"] = False
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
            highlights = thread_highlights(store, thread.id, HighlightOptions(k=8), embedder=embedder)
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
            cosine = support_scores(cited, highlights, measure="cosine", embedder=embedder, polarity=False)
            overlap = support_scores(cited, highlights, measure="overlap", polarity=False)
            every = [CitedBullet(c.text, list(range(len(highlights)))) for c in candidates]
            all_cosine = support_scores(
                every, highlights, measure="cosine", embedder=embedder, polarity=False
            )
            all_overlap = support_scores(every, highlights, measure="overlap", polarity=False)
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
    analyze(out, args.measure, args.threshold, args.polarity == "on")


def summarizer_tokenizer(summarizer: Any) -> Any:
    from tldrlab.digest.local_model import load_local_model

    return load_local_model(summarizer.model_path, summarizer.precision).tokenizer


def load(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def refused(record: dict[str, Any], bullet: dict[str, Any], polarity: bool) -> list[bool]:
    """Per cited sentence: does the polarity check refuse it?"""
    from tldrlab.digest.summarizers.support import polarity_mismatch

    highlights = record["highlights"]
    return [polarity and polarity_mismatch(bullet["text"], highlights[i]) for i in bullet["cited"]]


def is_supported(
    record: dict[str, Any], bullet: dict[str, Any], measure: str, threshold: float, polarity: bool
) -> bool:
    scores = zip(bullet[measure], refused(record, bullet, polarity), strict=True)
    return any(score >= threshold and not no for score, no in scores)


def shares(
    records: list[dict[str, Any]], measure: str, threshold: float, polarity: bool = False
) -> dict[str, Any]:
    from tldrlab.digest.summarizers.support import polarity_mismatch

    bullets = [b for r in records for b in r["bullets"]]
    valid = [(r, b) for r in records for b in r["bullets"] if b["cited"] and not b["invalid"]]
    supported = [(r, b) for r, b in valid if is_supported(r, b, measure, threshold, polarity)]
    # supported by the measure alone, refused by the polarity check: what the check drops
    dropped = [
        (b["text"], r["highlights"][i])
        for r, b in valid
        if polarity and is_supported(r, b, measure, threshold, False) and (r, b) not in supported
        for i, score in zip(b["cited"], b[measure], strict=True)
        if score >= threshold
    ]
    # what the digest keeps after re-citing: some key sentence (cited or not) supports the bullet
    reaching = [
        (b["text"], r["highlights"][i], polarity and polarity_mismatch(b["text"], r["highlights"][i]))
        for r, b in valid
        for i, score in enumerate(b[f"all_{measure}"])
        if score >= threshold
    ]
    kept = {text for text, _, no in reaching if not no}
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
        "polarity": polarity,
        "supported_refused_by_polarity": len({text for text, _ in dropped}),
        "refused_pairs": [{"bullet": text, "sentence": sentence} for text, sentence in dropped],
        "kept_after_reciting_share": round(len(kept) / max(1, len(bullets)), 3),
        "key_sentence_pairs_at_threshold": len(reaching),
        "of_them_refused_by_polarity": [{"bullet": t, "sentence": s} for t, s, no in reaching if no],
        "novel_word_share_mean": round(statistics.fmean(novelty), 3) if novelty else None,
        "words_per_bullet_mean": round(statistics.fmean(words), 1) if words else None,
        "first_token_s_p50": round(statistics.median(r["first_token_s"] or 0 for r in records), 2),
        "total_s_p50": round(statistics.median(r["total_s"] for r in records), 2),
        "tokens_per_s": round(
            sum(r["generated_tokens"] for r in records) / sum(r["total_s"] for r in records), 2
        ),
    }


def analyze(path: Path, measure: str, threshold: float, polarity: bool = False) -> None:
    print(json.dumps(shares(load(path), measure, threshold, polarity), indent=2))


def confusion(pairs: list[tuple[float, bool]], threshold: float) -> str:
    """Accuracy, and precision / recall of "supported" (the positive class: what the digest keeps)."""
    kept = [truth for score, truth in pairs if score >= threshold]
    positives = sum(truth for _, truth in pairs)
    accuracy = sum((score >= threshold) == truth for score, truth in pairs) / len(pairs)
    precision = sum(kept) / len(kept) if kept else float("nan")
    recall = sum(kept) / positives if positives else float("nan")
    return f"accuracy {accuracy:.3f}, precision {precision:.3f}, recall {recall:.3f}"


def tune(path: Path, labels_path: Path, polarity: bool = False) -> None:
    """Pick each measure's threshold on hand-labelled (bullet, cited sentence) pairs of the tune half:
    the threshold with the best accuracy (ties: the higher threshold, which drops more). With `polarity`, a
    pair the negation check refuses scores 0."""
    from tldrlab.digest.summarizers.support import DEFAULT_THRESHOLD

    records = {r["thread_id"]: r for r in load(path)}
    labels = load(labels_path)
    fixed = {"cosine": DEFAULT_THRESHOLD, "overlap": 0.80}  # the thresholds chosen without the check
    for measure in ("cosine", "overlap"):
        pairs = []
        for label in labels:
            record = records[label["thread_id"]]
            bullet = record["bullets"][label["bullet"]]
            position = bullet["cited"].index(label["sentence"])
            no = refused(record, bullet, polarity)[position]
            pairs.append((0.0 if no else bullet[measure][position], bool(label["supported"])))
            if no:
                print(
                    f"  refused ({'supported' if label['supported'] else 'unsupported'} by label): "
                    f"{bullet['text']!r} / {label['sentence_text']!r}"
                )
        best = (-1.0, 0.0)
        for step in range(0, 101):
            threshold = step / 100
            accuracy = sum((score >= threshold) == truth for score, truth in pairs) / len(pairs)
            if accuracy >= best[0]:
                best = (accuracy, threshold)
        positives = sum(truth for _, truth in pairs)
        print(
            f"{measure}: best threshold {best[1]:.2f}, accuracy {best[0]:.3f} on {len(pairs)} labelled pairs "
            f"({positives} supported); at {fixed[measure]:.2f}: {confusion(pairs, fixed[measure])}"
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
    parser.add_argument(
        "--polarity", choices=["off", "on"], default=None, help="the negation check (default: the digest's)"
    )
    args = parser.parse_args()
    if args.threshold is None:
        from tldrlab.digest.summarizers.support import DEFAULT_THRESHOLD

        args.threshold = DEFAULT_THRESHOLD
    if args.polarity is None:
        from tldrlab.digest.summarizers.support import DEFAULT_POLARITY

        args.polarity = "on" if DEFAULT_POLARITY else "off"
    polarity = args.polarity == "on"
    if args.tune:
        if not args.labels:
            sys.exit("--tune needs --labels")
        tune(args.tune, args.labels, polarity)
    elif args.analyze:
        analyze(args.analyze, args.measure, args.threshold, polarity)
    else:
        need_data(DATA)
        run(args)


if __name__ == "__main__":
    main()
