"""How many bullets the default digest (two_stage: the extractive draft, then the bundled LM) shows per real
beer.stackexchange.com thread, and how many of them are the draft's key sentences added after the model's
kept bullets (`top_up`, summarizers/two_stage.py).

    nice -n 10 env OMP_NUM_THREADS=1 .venv/bin/python bench/digest_top_up.py --threads 30 [--offset 0]

Threads as bench/digest_citations.py picks them (3+ posts, the `report` half). One digest per thread (k 8,
max_bullets 5, cache off): greedy decoding makes the model's bullets the same with any `top_up`, which only
appends, so the count without it is the count of the bullets not marked `from_draft`.
"""

from __future__ import annotations

import argparse
import collections
import os
import statistics
import tempfile

from digest_citations import pick_threads
from headline import need_data

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--split", choices=["tune", "report"], default="report")
    parser.add_argument("--threads", type=int, default=30)
    parser.add_argument("--offset", type=int, default=0)
    args = parser.parse_args()
    need_data()

    import torch

    from tldrlab.digest.ingest import ingest_threads
    from tldrlab.digest.pipeline import DigestOptions, digest_events
    from tldrlab.embed import get_embedder
    from tldrlab.store import open_store

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    os.environ["TLDRLAB_DIGEST_MODEL"] = "smollm2"
    threads = pick_threads(args.split, args.threads, args.offset)
    embedder = get_embedder("minilm")
    model_counts: list[int] = []
    shown_counts: list[int] = []
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["TLDRLAB_HOME"] = tmp
        store = open_store(url=f"sqlite:///{tmp}/bench.db", dim=embedder.dim, embedder=embedder.name)
        ingest_threads(threads, store, embedder)
        options = DigestOptions(k=8, max_bullets=5, use_cache=False)
        for number, thread in enumerate(threads, start=1):
            digest = next(
                e.digest for e in digest_events(store, thread.id, options, embedder=embedder) if e.digest
            )
            model = sum(not b.from_draft for b in digest.bullets)
            fell_back = model == len(digest.bullets) and digest.bullets == digest.draft
            model_counts.append(0 if fell_back else model)
            shown_counts.append(len(digest.bullets))
            print(f"{number:3d} {thread.id:>6} model {model_counts[-1]} shown {shown_counts[-1]}", flush=True)
    print(f"threads: {len(threads)} ({args.split}, offset {args.offset})")
    for name, counts in (
        ("model's bullets kept (top_up 0)", model_counts),
        ("bullets shown (top_up 3)", shown_counts),
    ):
        histogram = dict(sorted(collections.Counter(counts).items()))
        print(f"{name}: mean {statistics.mean(counts):.2f}, threads by count {histogram}")


if __name__ == "__main__":
    main()
