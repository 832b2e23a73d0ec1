"""The cosine / retrieval trade-off of the simple LVM baselines: copy-last mixed with mean + ridge.

    .venv/bin/python bench/lvm_baseline_mix.py [SEQUENCES.npz] [--split test]

The goal of the LVM issue is one prediction that beats every baseline on mean cosine (mean + ridge is best)
and on top-1 retrieval with the context excluded (copy-last is best). This prints what the two-parameter
family `unit(last) + a * unit(mean_ridge)` reaches for a sweep of `a`, on the same split and candidates as
`tldrlab lvm evaluate`: a model has to get past this frontier, not just past each baseline alone.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from tldrlab.config import get_settings
from tldrlab.lvm.baselines import BASELINES
from tldrlab.lvm.evaluation import candidate_index, score_predictions
from tldrlab.lvm.sequences import load_sequences

MIX_WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 1000.0)


def unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("sequences", nargs="?", help="sequences NPZ (default: <home>/lvm/sequences.npz)")
    parser.add_argument("--split", default="test", choices=("test", "val"))
    args = parser.parse_args()
    path = Path(args.sequences or get_settings().home / "lvm" / "sequences.npz")
    sequences = load_sequences(path)
    train, val = sequences.split_arrays("train"), sequences.split_arrays("val")
    scored = sequences.split_arrays(args.split)
    candidates = candidate_index(sequences, args.split)
    mean_ridge, _ = BASELINES["mean_ridge"](train, val)
    last = unit(scored.contexts[:, -1])
    smooth = unit(mean_ridge(scored.contexts, scored.mask))
    print(f"{path} ({args.split}: {len(scored)} windows)")
    print("| a | cosine | top-1 (ctx excl.) | top-5 (ctx excl.) |")
    print("|---|---|---|---|")
    for weight in MIX_WEIGHTS:
        metrics = score_predictions(last + weight * smooth, scored, candidates)
        cells = [f"{metrics[name]:.4f}" for name in ("cosine", "top1_excl", "top5_excl")]
        print(f"| {weight:g} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
