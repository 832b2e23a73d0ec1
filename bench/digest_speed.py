"""Digest speed: ingest throughput vs the raw embedder, and SSE latency for an ingested 50-post thread.

    .venv/bin/python bench/digest_speed.py [--sentences 2000] [--requests 20] [--embedder minilm-onnx]
    .venv/bin/python bench/digest_speed.py --sentences 0 --repeats 2 --skip-stream   # the whole beer dump
    .venv/bin/python bench/digest_speed.py --summarizer two_stage --requests 20 --skip-ingest   # with the LM

1. Ingest: sentences/s of ingest end to end divided by the raw embedder's sentences/s on the same sentences
   (already split), measured in this process with the same embedder instance (interleaved, best of
   `--repeats`). Two end-to-end figures: `ingest_threads` (split, embed and write pipelined; the threads
   already read) and `read + ingest` (also parsing the dump, as `tldrlab ingest` does). The stage times of
   the best end-to-end pass are printed too. Target: at least 0.9.
2. Stream: a real uvicorn server; `POST /stream_summary` (`--summarizer`, default extractive; cache off)
   on an ingested 50-post thread; time to the first SSE event, to the first `token` event and to the
   `digest` event, p50/p95 over `--requests` requests. Target (extractive): first event p50 under 150 ms.
   With `--summarizer two_stage` (the default digest: the extractive draft, then the local LM's cited
   bullets; the model is the `digest_model` setting, default the bundled SmolLM2) the first event is the
   draft and the first token is the model's; the model is loaded by the warm-up requests.

Data: real beer.stackexchange.com posts (../shared/data); the 50-post thread strings together the posts of
several real threads.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from headline import add_quick, headline, need_data

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the loopback helpers of the tests
from netutil import serve_app

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "stackexchange_beer" / "Posts.xml"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def fifty_post_thread(threads: list) -> object:  # type: ignore[type-arg]
    from tldrlab.data.threads import Thread

    posts = []
    for thread in threads:
        for post in thread.posts:
            if len(posts) == 50:
                break
            posts.append(post.model_copy(update={"number": len(posts) + 1, "id": f"{thread.id}-{post.id}"}))
    return Thread(id="bench-50", title=threads[0].title, posts=posts)


def bench_ingest(
    threads: list,  # type: ignore[type-arg]
    embedder: object,
    sentences_wanted: int,
    repeats: int,
    dump: Path | None,
) -> dict[str, object]:
    """`sentences_wanted` 0: every thread (then `dump` is re-read for the read + ingest figure)."""
    from tldrlab.data.readers import read_threads
    from tldrlab.digest.ingest import ingest_threads, post_sentence_records
    from tldrlab.store import open_store

    picked, total = [], 0
    for thread in threads:
        picked.append(thread)
        total += sum(len(post_sentence_records(thread, p)) for p in thread.posts)
        if sentences_wanted and total >= sentences_wanted:
            break
    texts = [r.text for t in picked for p in t.posts for r in post_sentence_records(t, p)]
    embedder.encode(texts[:64])  # type: ignore[attr-defined]  # warm-up
    raw, e2e, with_read = [], [], []
    best_stats = None

    def ingest_once(name: str, read: bool) -> tuple[float, object]:
        with tempfile.TemporaryDirectory() as tmp:
            store = open_store(url=f"sqlite:///{tmp}/{name}.db", dim=embedder.dim)  # type: ignore[attr-defined]
            started = time.perf_counter()
            source = read_threads(dump) if read and dump is not None else picked
            stats = ingest_threads(source, store, embedder, batch_size=64)  # type: ignore[arg-type]
            seconds = time.perf_counter() - started
            store.close()
        assert stats.sentences == len(texts), (stats.sentences, len(texts))
        return stats.sentences / seconds, stats

    for repeat in range(repeats):
        started = time.perf_counter()
        embedder.encode(texts, batch_size=64)  # type: ignore[attr-defined]
        raw.append(len(texts) / (time.perf_counter() - started))
        rate, stats = ingest_once(f"e{repeat}", read=False)
        e2e.append(rate)
        if rate >= max(e2e):
            best_stats = stats
        line = f"  repeat {repeat}: raw {raw[-1]:.1f}/s  ingest {e2e[-1]:.1f}/s"
        if dump is not None and not sentences_wanted:
            with_read.append(ingest_once(f"r{repeat}", read=True)[0])
            line += f"  read + ingest {with_read[-1]:.1f}/s"
        print(line, flush=True)
    out: dict[str, object] = {
        "threads": len(picked),
        "sentences": len(texts),
        "raw_sentences_per_s": max(raw),
        "ingest_sentences_per_s": max(e2e),
        "ratio": max(e2e) / max(raw),
        "stages_of_best": best_stats.metrics() if best_stats is not None else {},  # type: ignore[attr-defined]
    }
    if with_read:
        out["read_ingest_sentences_per_s"] = max(with_read)
        out["read_ratio"] = max(with_read) / max(raw)
    return out


def bench_stream(thread: object, requests: int, summarizer: str = "extractive") -> dict[str, float]:
    import httpx

    from tldrlab.service.app import create_app

    first, first_token, final = [], [], []
    with serve_app(create_app()) as base_url, httpx.Client(base_url=base_url, timeout=120) as client:
        created = client.post("/threads", json=thread.model_dump(mode="json"))  # type: ignore[attr-defined]
        assert created.status_code == 201, created.text
        body = {"thread_id": "bench-50", "use_cache": False, "summarizer": summarizer}
        for i in range(requests + 2):  # two warm-up requests
            started = time.perf_counter()
            got_first = got_token = got_digest = None
            with client.stream("POST", "/stream_summary", json=body) as response:
                for line in response.iter_lines():
                    now = time.perf_counter() - started
                    if line.startswith("event:") and got_first is None:
                        got_first = now
                    if line == "event: token" and got_token is None:
                        got_token = now
                    if line == "event: digest":
                        got_digest = now
            assert got_first is not None and got_digest is not None
            if i >= 2:
                first.append(got_first * 1000)
                first_token.append((got_token or got_digest) * 1000)
                final.append(got_digest * 1000)
            print(f"  request {i}: first event {got_first:.2f} s, digest {got_digest:.2f} s", flush=True)
    return {
        "first_event_p50_ms": statistics.median(first),
        "first_event_p95_ms": percentile(first, 0.95),
        "first_token_p50_ms": statistics.median(first_token),
        "first_token_p95_ms": percentile(first_token, 0.95),
        "digest_p50_ms": statistics.median(final),
        "digest_p95_ms": percentile(final, 0.95),
        "requests": len(first),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sentences", type=int, default=2000, help="0: the whole dump")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument(
        "--summarizer", default="extractive", help="the stream's summarizer (two_stage: with the LM)"
    )
    parser.add_argument("--skip-ingest", action="store_true", help="measure the stream only")
    add_quick(parser, sentences=300, repeats=1, requests=5)
    parser.add_argument("--embedder", default=None, help="default: the settings' default embedder")
    parser.add_argument("--threads", type=int, default=None, help="as `tldrlab --threads` (default: auto)")
    parser.add_argument("--skip-stream", action="store_true", help="only the ingest figures")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    need_data(DATA)
    from tldrlab.threads import configure_threads

    plan = configure_threads(args.threads)  # as the CLI does, before the embedder loads
    print(f"threads: {plan.as_dict()}", flush=True)
    with tempfile.TemporaryDirectory() as home:
        os.environ["TLDRLAB_HOME"] = home
        from tldrlab.config import get_settings
        from tldrlab.data.readers import read_threads
        from tldrlab.embed import get_embedder

        get_settings.cache_clear()
        threads = read_threads(DATA)
        embedder = get_embedder(args.embedder)
        if not args.skip_ingest:
            print(f"ingest vs raw embedder ({embedder.name}, batch 64):", flush=True)
            ingest = bench_ingest(threads, embedder, args.sentences, args.repeats, DATA)
            print(
                f"ingest: {ingest['sentences']} sentences from {ingest['threads']} threads; raw embedder "
                f"{ingest['raw_sentences_per_s']:.1f}/s, "
                f"ingest end to end {ingest['ingest_sentences_per_s']:.1f}/s, "
                f"ratio {ingest['ratio']:.2f} (target >= 0.9)"
                + (
                    f"; read + ingest {ingest['read_ingest_sentences_per_s']:.1f}/s, "
                    f"ratio {ingest['read_ratio']:.2f}"
                    if "read_ratio" in ingest
                    else ""
                )
            )
            headline("ingest sentences/s / raw embedder", ingest["ratio"], ">= 0.9")
            print(f"stages of the best pass: {ingest['stages_of_best']}", flush=True)
            if args.json:
                args.json.write_text(json.dumps({"threads": plan.as_dict(), "ingest": ingest}, indent=2))
        if args.skip_stream:
            return
        stream = bench_stream(fifty_post_thread(threads), args.requests, args.summarizer)
        if args.summarizer == "extractive":
            headline("stream first event p50 (ms)", stream["first_event_p50_ms"], "< 150")
        print(
            f"stream (50 posts, {args.summarizer}, cache off, {stream['requests']} requests): first event "
            f"p50 {stream['first_event_p50_ms']:.0f} ms / p95 {stream['first_event_p95_ms']:.0f} ms; "
            f"first token p50 {stream['first_token_p50_ms']:.0f} ms / "
            f"p95 {stream['first_token_p95_ms']:.0f} ms; "
            f"digest p50 {stream['digest_p50_ms']:.0f} ms / p95 {stream['digest_p95_ms']:.0f} ms"
        )


if __name__ == "__main__":
    main()
