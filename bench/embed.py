"""Embedder throughput and agreement: raw PyTorch MiniLM vs the ONNX Runtime backends, on real sentences.

Sentences come from the beer Stack Exchange dump (../shared/data/stackexchange_beer/Posts.xml). Each backend
encodes the same sentences `--repeats` times, interleaved with the PyTorch baseline in the same process, and
the best pass counts (the machine is shared; the best pass is the least disturbed one). Cosine is measured
per sentence against the PyTorch vectors.

    HF_HUB_OFFLINE=1 nice .venv/bin/python bench/embed.py --sentences 2000 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from headline import add_quick, headline, need_data

REPO = Path(__file__).resolve().parents[1]
POSTS = REPO.parent / "shared" / "data" / "stackexchange_beer" / "Posts.xml"


def beer_sentences(limit: int) -> list[str]:
    from tldrlab.data.readers import read_threads
    from tldrlab.data.sentences import split_sentences

    texts: list[str] = []
    for thread in read_threads(POSTS):
        for post in thread.posts:
            texts += [s.text for s in split_sentences(post.text)]
        if len(texts) >= limit:
            break
    return texts[:limit]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sentences", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--backends", nargs="+", default=["minilm-onnx", "minilm-onnx-int8"])
    parser.add_argument(
        "--threads", type=int, help="threads for both torch and ONNX Runtime (default: theirs)"
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    add_quick(parser, sentences=256, repeats=1)
    args = parser.parse_args()
    need_data(POSTS)

    import torch

    from tldrlab.embed import get_embedder
    from tldrlab.embed.onnx import OnnxEmbedder, OnnxExportConfig

    if args.threads:
        torch.set_num_threads(args.threads)
    texts = beer_sentences(args.sentences)
    print(f"{len(texts)} sentences from {POSTS.name}; torch threads {torch.get_num_threads()}")
    baseline = get_embedder("minilm")
    modes = {"minilm-onnx": "attention", "minilm-onnx-int8": "all"}
    backends = {
        name: OnnxEmbedder(name, config=OnnxExportConfig(quantize=modes[name]), threads=args.threads)  # type: ignore[arg-type]
        if name in modes and args.threads
        else get_embedder(name)
        for name in args.backends
    }
    for embedder in [baseline, *backends.values()]:  # warm up (first-call allocation, lazy init)
        embedder.encode(texts[:128], batch_size=args.batch_size)

    best: dict[str, float] = {}
    vectors: dict[str, np.ndarray] = {}
    for _ in range(args.repeats):
        for name, embedder in [("minilm", baseline), *backends.items()]:
            started = time.perf_counter()
            vectors[name] = embedder.encode(texts, batch_size=args.batch_size)
            rate = len(texts) / (time.perf_counter() - started)
            best[name] = max(best.get(name, 0.0), rate)

    rows = []
    for name in ["minilm", *backends]:
        cosine = np.sum(vectors[name] * vectors["minilm"], axis=1)
        rows.append(
            {
                "embedder": name,
                "sentences_per_s": round(best[name], 1),
                "speedup_vs_torch": round(best[name] / best["minilm"], 2),
                "cosine_min": round(float(cosine.min()), 4),
                "cosine_mean": round(float(cosine.mean()), 5),
                "cosine_p1": round(float(np.percentile(cosine, 1)), 4),
            }
        )
    print(f"{'embedder':<18} {'sent/s':>8} {'x torch':>8} {'cos min':>8} {'cos mean':>9} {'cos p1':>8}")
    for r in rows:
        print(
            f"{r['embedder']:<18} {r['sentences_per_s']:>8} {r['speedup_vs_torch']:>8} {r['cosine_min']:>8} "
            f"{r['cosine_mean']:>9} {r['cosine_p1']:>8}"
        )
    for r in rows[1:]:
        headline(f"embedding speed {r['embedder']} / PyTorch minilm", r["speedup_vs_torch"], "> 1")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"sentences": len(texts), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
