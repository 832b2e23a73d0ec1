"""Highlight quality beside Lead, LexRank, TextRank and chance, on the same cases.

    .venv/bin/python bench/digest_quality.py [--scitldr-limit N] [--qmsum-limit N] [--beer-limit N]

- SciTLDR dev (query-free): Precision@1, Precision@3 and Hit@3 against `source_labels`; the highlighter sees
  the abstract as one post titled with the paper title.
- QMSum val (query-aware, each specific query): turn Precision@5 and Recall@10 against
  `relevant_text_span`; every speaker turn is one unit.
- beer.stackexchange.com (query-free): share of threads (with an accepted answer and 2+ answers) whose
  top-3 highlights include a sentence of the accepted answer, with the accepted flag hidden (votes allowed).

Vectors come from the default embedder (MiniLM); all methods rank the same sentences.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from headline import add_quick, headline, scratch_png

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from tldrlab.data.sentences import split_sentences
from tldrlab.data.threads import Post, Thread
from tldrlab.digest.baselines import BASELINES
from tldrlab.digest.highlights import HighlightOptions, rank_highlights
from tldrlab.store.base import SentenceRecord

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
Ranker = Callable[[Sequence[str]], np.ndarray]


def top_k(scores: np.ndarray, k: int) -> list[int]:
    return [int(i) for i in np.argsort(-scores, kind="stable")[:k]]


def records_for(thread: Thread) -> list[SentenceRecord]:
    out = []
    for post in thread.posts:
        for s in split_sentences(post.text):
            out.append(
                SentenceRecord(thread.id, post.id, post.number, s.index, s.start, s.end, s.text, post.author)
            )
    return out


def ours_order(
    records: list[SentenceRecord],
    vectors: np.ndarray,
    thread: Thread,
    title_vector: np.ndarray | None,
    k: int,
    options: HighlightOptions,
    query_vector: np.ndarray | None = None,
) -> list[int]:
    """Indices (into records) of our top-k highlights."""
    picked = rank_highlights(
        records,
        vectors,
        options.model_copy(update={"k": k}),
        thread=thread,
        title_vector=title_vector,
        query_vector=query_vector,
    )
    where = {(r.post_id, r.sentence_index): i for i, r in enumerate(records)}
    return [where[(h.post_id, h.sentence_index)] for h in picked]


def scitldr(embedder: object, limit: int | None) -> dict[str, dict[str, float]]:
    rows = [json.loads(line) for line in (DATA / "scitldr" / "scitldr_a.dev.jsonl").open()]
    rows = [r for r in rows if len(r["source"]) >= 2 and any(r["source_labels"])][:limit]
    methods: dict[str, list[tuple[float, float, float]]] = {}

    def add(name: str, order: list[int], labels: list[int]) -> None:
        p1 = float(labels[order[0]])
        hits3 = sum(labels[i] for i in order[:3])
        methods.setdefault(name, []).append((p1, hits3 / 3, float(hits3 > 0)))

    chance = []
    all_texts = [t for row in rows for t in row["source"] + [row.get("title") or row["source"][0]]]
    all_vectors = embedder.encode(all_texts, batch_size=128)  # type: ignore[attr-defined]
    at_row = 0
    for row in rows:
        texts, labels = row["source"], row["source_labels"]
        vectors = all_vectors[at_row : at_row + len(texts) + 1]
        at_row += len(texts) + 1
        text = " ".join(texts)
        offsets, at = [], 0
        for sentence in texts:  # keep the given sentence split: labels index it
            start = text.index(sentence, at)
            offsets.append((start, start + len(sentence)))
            at = start + len(sentence)
        post = Post(id="abstract", number=1, text=text)
        thread = Thread(id=row["paper_id"], title=row.get("title") or "", posts=[post])
        records = [
            SentenceRecord(thread.id, "abstract", 1, i, s, e, texts[i]) for i, (s, e) in enumerate(offsets)
        ]
        title_vector = vectors[-1] if thread.title else None
        add("ours", ours_order(records, vectors[:-1], thread, title_vector, 3, HighlightOptions()), labels)
        no_title = HighlightOptions(title_weight=0.0)
        add("ours (no title)", ours_order(records, vectors[:-1], thread, None, 3, no_title), labels)
        for name, ranker in BASELINES.items():
            add(name, top_k(ranker(texts), 3), labels)
        n, r = len(texts), sum(labels)
        chance.append((r / n, r / n, 1 - math.comb(n - r, min(3, n)) / math.comb(n, min(3, n))))
    methods["chance"] = chance
    return {
        name: {
            "P@1": float(np.mean([v[0] for v in values])),
            "P@3": float(np.mean([v[1] for v in values])),
            "Hit@3": float(np.mean([v[2] for v in values])),
            "cases": len(values),
        }
        for name, values in methods.items()
    }


def qmsum(embedder: object, limit: int | None) -> dict[str, dict[str, float]]:
    rows = [json.loads(line) for line in (DATA / "qmsum" / "qmsum.val.jsonl").open()][:limit]
    results: dict[str, list[tuple[float, float]]] = {}

    def add(name: str, order: list[int], relevant: set[int]) -> None:
        p5 = sum(i in relevant for i in order[:5]) / 5
        r10 = sum(i in relevant for i in order[:10]) / len(relevant)
        results.setdefault(name, []).append((p5, r10))

    for row in rows:
        turns = [str(t.get("content") or "") for t in row["meeting_transcripts"]]
        vectors = embedder.encode(turns, batch_size=128)  # type: ignore[attr-defined]
        queries = [q for q in row.get("specific_query_list", []) if q.get("relevant_text_span")]
        query_vectors = embedder.encode([q["query"] for q in queries]) if queries else None  # type: ignore[attr-defined]
        post = Post(id="m", number=1, text="\n\n".join(turns))
        thread = Thread(id=row.get("meeting_id", "m"), posts=[post])
        records = [SentenceRecord(thread.id, "m", 1, i, 0, len(t), t) for i, t in enumerate(turns)]
        baseline_orders = {name: top_k(ranker(turns), 10) for name, ranker in BASELINES.items()}
        for query, query_vector in zip(
            queries, query_vectors if query_vectors is not None else [], strict=True
        ):
            relevant = set()
            for start, end in query["relevant_text_span"]:
                relevant.update(range(int(start), int(end) + 1))
            relevant &= set(range(len(turns)))
            if not relevant:
                continue
            q = query["query"]
            options = HighlightOptions(q=q, diversity=0.0, max_per_post=None)
            add(
                "ours (hybrid + context)",
                ours_order(records, vectors, thread, None, 10, options, query_vector),
                relevant,
            )
            no_context = options.model_copy(update={"query_context_weight": 0.0})
            add(
                "ours (hybrid)",
                ours_order(records, vectors, thread, None, 10, no_context, query_vector),
                relevant,
            )
            dense = no_context.model_copy(update={"query_vector_weight": 1.0})
            add("vector only", ours_order(records, vectors, thread, None, 10, dense, query_vector), relevant)
            sparse = no_context.model_copy(update={"query_vector_weight": 0.0})
            add("BM25 only", ours_order(records, vectors, thread, None, 10, sparse, query_vector), relevant)
            for name, order in baseline_orders.items():
                add(name, order, relevant)
            share = len(relevant) / len(turns)
            results.setdefault("chance", []).append((share, min(10, len(turns)) / len(turns)))
    return {
        name: {
            "turn P@5": float(np.mean([v[0] for v in values])),
            "turn R@10": float(np.mean([v[1] for v in values])),
            "cases": len(values),
        }
        for name, values in results.items()
    }


def beer(embedder: object, limit: int | None) -> dict[str, dict[str, float]]:
    from tldrlab.data.readers import read_threads

    threads = read_threads(DATA / "stackexchange_beer" / "Posts.xml")
    eligible = [
        t
        for t in threads
        if any(p.accepted for p in t.posts) and sum(p.kind == "answer" for p in t.posts) >= 2
    ][:limit]
    results: dict[str, list[float]] = {}
    cases = [(t, records_for(t)) for t in eligible]
    cases = [(t, r) for t, r in cases if len(r) >= 4]
    all_texts = [x for t, records in cases for x in [r.text for r in records] + [t.title]]
    all_vectors = embedder.encode(all_texts, batch_size=128)  # type: ignore[attr-defined]
    at_row = 0
    for thread, records in cases:
        vectors = all_vectors[at_row : at_row + len(records) + 1]
        at_row += len(records) + 1
        accepted_id = next(p.id for p in thread.posts if p.accepted)
        hidden = thread.model_copy(
            update={"posts": [p.model_copy(update={"accepted": False}) for p in thread.posts]}
        )
        texts = [r.text for r in records]
        is_accepted = [r.post_id == accepted_id for r in records]

        def add(name: str, order: list[int], flags: list[bool] = is_accepted) -> None:
            results.setdefault(name, []).append(float(any(flags[i] for i in order[:3])))

        options = HighlightOptions(use_accepted=False)
        add("ours", ours_order(records, vectors[:-1], hidden, vectors[-1], 3, options))
        no_votes = options.model_copy(update={"use_score": False})
        add("ours (no votes)", ours_order(records, vectors[:-1], hidden, vectors[-1], 3, no_votes))
        for name, ranker in BASELINES.items():
            add(name, top_k(ranker(texts), 3))
        n, a = len(records), sum(is_accepted)
        results.setdefault("chance", []).append(1 - math.comb(n - a, 3) / math.comb(n, 3))
    return {name: {"top-3 has accepted": float(np.mean(v)), "cases": len(v)} for name, v in results.items()}


def plot(all_results: dict[str, dict[str, dict[str, float]]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        (bench, metric)
        for bench, res in all_results.items()
        for metric in next(iter(res.values()))
        if metric != "cases"
    ]
    cols = min(3, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.6 * rows), squeeze=False)
    for ax in axes.flat[len(panels) :]:
        ax.axis("off")
    for ax, (bench, metric) in zip(axes.flat, panels, strict=False):
        names = list(all_results[bench])
        values = [all_results[bench][n][metric] for n in names]
        colors = ["#0b63c5" if n.startswith("ours") else "#999999" for n in names]
        ax.barh(names, values, color=colors)
        ax.invert_yaxis()
        ax.set_title(f"{bench}: {metric}", fontsize=10)
        for y, v in enumerate(values):
            ax.text(v, y, f" {v:.3f}", va="center", fontsize=8)
        ax.set_xlim(0, max(values) * 1.25 or 1)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scitldr-limit", type=int, default=None, help="SciTLDR dev papers (default: all)")
    parser.add_argument("--qmsum-limit", type=int, default=8, help="QMSum val meetings (default: 8)")
    parser.add_argument("--beer-limit", type=int, default=250, help="beer threads (default: 250)")
    parser.add_argument("--only", choices=["scitldr", "qmsum", "beer"], default=None)
    parser.add_argument("--out", type=Path, default=Path("docs/img/digest_quality.png"))
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument(
        "--merge", type=Path, nargs="+", default=None, help="only plot: merge --json files of separate runs"
    )
    add_quick(parser, scitldr_limit=60, qmsum_limit=1, beer_limit=40, out=scratch_png("digest_quality"))
    args = parser.parse_args()
    if args.merge:
        merged = {k: v for path in args.merge for k, v in json.loads(path.read_text()).items()}
        plot(merged, args.out)
        print(f"plot: {args.out}")
        return
    from tldrlab.embed import get_embedder

    embedder = get_embedder("minilm")
    benches = {"scitldr": scitldr, "qmsum": qmsum, "beer": beer}
    all_results = {}
    for name, fn in benches.items():
        if args.only and name != args.only:
            continue
        started = time.perf_counter()
        all_results[name] = fn(embedder, getattr(args, f"{name}_limit"))
        print(f"\n== {name} ({time.perf_counter() - started:.0f} s)")
        for method, figures in all_results[name].items():
            shown = "  ".join(f"{k}={v:.3f}" if k != "cases" else f"cases={v}" for k, v in figures.items())
            print(f"{method:18s} {shown}")
        sys.stdout.flush()
    for name, methods in all_results.items():  # ours vs the best classic baseline on the first metric
        metric = next(iter(methods["ours"]))
        best = max(methods[b][metric] for b in BASELINES if b in methods)
        headline(
            f"highlights {name} {metric} ours / best of {', '.join(BASELINES)}",
            methods["ours"][metric] / best,
            "> 1",
        )
    if args.json:
        args.json.write_text(json.dumps(all_results, indent=2))
    plot(all_results, args.out)
    print(f"\nplot: {args.out}")


if __name__ == "__main__":
    main()
