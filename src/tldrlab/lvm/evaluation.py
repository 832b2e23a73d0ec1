"""`tldrlab lvm evaluate`: trained LVMs and the baselines scored the same way on the same split.

Metrics per method, on the chosen split (test by default):
- `mse`: mean squared error per dimension to the true next concept;
- `cosine`: mean cosine similarity to it;
- `top1` / `top5`: nearest-concept decoding through an exact inner-product index over every concept of the
  split's articles: is the true next concept the nearest (among the 5 nearest) to the prediction?
- `top1_excl` / `top5_excl`: the same with the context's own concepts removed from the candidates (otherwise
  copy-last wins by retrieving itself).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tldrlab.errors import InvalidInputError
from tldrlab.lvm.baselines import BASELINES, Predictor
from tldrlab.lvm.index import ConceptIndex, build_index
from tldrlab.lvm.sequences import SequenceSet, SplitArrays
from tldrlab.runs.atomic import atomic_write_json, atomic_write_text

METRICS = ("mse", "cosine", "top1", "top5", "top1_excl", "top5_excl")


@dataclass
class MethodScore:
    name: str
    kind: str
    """`baseline` or `model`."""
    metrics: dict[str, float]
    info: dict[str, Any]


def score_predictions(preds: np.ndarray, split: SplitArrays, candidates: ConceptIndex) -> dict[str, float]:
    """MSE, mean cosine and retrieval hit rates of `preds` against the split's true next concepts."""
    preds = np.asarray(preds, dtype=np.float32)
    targets = split.targets
    norms = np.linalg.norm(preds, axis=1) * np.linalg.norm(targets, axis=1)
    cosine = (preds * targets).sum(1) / np.maximum(norms, 1e-12)
    _, top = candidates.search(preds, k=5)
    exclude = [{int(i) for i in row if i >= 0} for row in split.context_ids]
    _, top_excl = candidates.search(preds, k=5, exclude=exclude)
    truth = split.target_ids[:, None]
    return {
        "mse": float(((preds - targets) ** 2).mean()),
        "cosine": float(cosine.mean()),
        "top1": float((top[:, :1] == truth).any(1).mean()),
        "top5": float((top == truth).any(1).mean()),
        "top1_excl": float((top_excl[:, :1] == truth).any(1).mean()),
        "top5_excl": float((top_excl == truth).any(1).mean()),
    }


def candidate_index(sequences: SequenceSet, split: str) -> ConceptIndex:
    """Exact index over all concepts of the split's articles (the retrieval candidates)."""
    rows = sequences.candidate_rows(split)
    if len(rows) == 0:
        raise InvalidInputError(f"the {split} split has no articles")
    return build_index(sequences.vectors[rows], sequences.concept_ids[rows], ivf_threshold=len(rows) + 1)


def evaluate_methods(
    sequences: SequenceSet,
    models: dict[str, Any],
    *,
    split: str = "test",
    baselines: list[str] | None = None,
) -> list[MethodScore]:
    """Score every baseline (fitted on train, tuned on val) and every model on `split`."""
    import torch

    from tldrlab.lvm.training import predict

    train, val, scored = (sequences.split_arrays(s) for s in ("train", "val", split))
    if len(scored) == 0:
        raise InvalidInputError(f"the {split} split has no sequences")
    candidates = candidate_index(sequences, split)
    results: list[MethodScore] = []
    for name in baselines if baselines is not None else list(BASELINES):
        if name not in BASELINES:
            raise InvalidInputError(f"unknown baseline {name!r}; choose from {', '.join(BASELINES)}")
        predictor: Predictor
        predictor, info = BASELINES[name](train, val)
        preds = predictor(scored.contexts, scored.mask)
        results.append(MethodScore(name, "baseline", score_predictions(preds, scored, candidates), info))
    for label, model in models.items():
        if getattr(model, "config", None) is not None and model.config.dim != sequences.dim:
            raise InvalidInputError(
                f"model {label} expects {model.config.dim}-d concepts; sequences are {sequences.dim}-d"
            )
        with torch.no_grad():
            preds = predict(model, scored.contexts, scored.mask).numpy()
        results.append(
            MethodScore(label, "model", score_predictions(preds, scored, candidates), {"model": model.name})
        )
    return results


def markdown_table(results: list[MethodScore]) -> str:
    lines = [
        "| method | kind | MSE | cosine | top-1 | top-5 | top-1 (ctx excl.) | top-5 (ctx excl.) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        m = r.metrics
        lines.append(
            f"| {r.name} | {r.kind} | {m['mse']:.5f} | {m['cosine']:.4f} | {m['top1']:.4f} | "
            f"{m['top5']:.4f} | "
            f"{m['top1_excl']:.4f} | {m['top5_excl']:.4f} |"
        )
    return "\n".join(lines) + "\n"


def verdict(results: list[MethodScore]) -> dict[str, Any]:
    """Does some model beat every baseline on mean cosine and on top-1 with context excluded?"""
    baselines = [r for r in results if r.kind == "baseline"]
    models = [r for r in results if r.kind == "model"]
    if not baselines or not models:
        return {"goal_met": False, "winners": []}
    best_cos = max(r.metrics["cosine"] for r in baselines)
    best_top1 = max(r.metrics["top1_excl"] for r in baselines)
    winners = [
        r.name for r in models if r.metrics["cosine"] > best_cos and r.metrics["top1_excl"] > best_top1
    ]
    return {
        "goal_met": bool(winners),
        "winners": winners,
        "best_baseline_cosine": best_cos,
        "best_baseline_top1_excl": best_top1,
    }


def plot_results(results: list[MethodScore], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r.name for r in results]
    colors = ["#999999" if r.kind == "baseline" else "#1f77b4" for r in results]
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for ax, metric, title in zip(
        axes,
        ("cosine", "top1_excl", "top5_excl"),
        ("mean cosine to the true next concept", "top-1, context excluded", "top-5, context excluded"),
        strict=True,
    ):
        values = [r.metrics[metric] for r in results]
        ax.bar(range(len(values)), values, color=colors)
        ax.set_xticks(range(len(values)), names, rotation=45, ha="right")
        ax.set_title(title)
        for i, v in enumerate(values):
            ax.text(i, v, f"{v:.3f}", ha="center", va="bottom", fontsize=8)
    fig.suptitle("LVM next-concept prediction (grey: baselines, blue: models)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(results: list[MethodScore], directory: Path, meta: dict[str, Any]) -> dict[str, Path]:
    """evaluation.json, evaluation.md and evaluation.png in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    body = {
        **meta,
        "results": [{"name": r.name, "kind": r.kind, "metrics": r.metrics, "info": r.info} for r in results],
        "verdict": verdict(results),
    }
    paths = {
        "json": directory / "evaluation.json",
        "markdown": directory / "evaluation.md",
        "plot": directory / "evaluation.png",
    }
    atomic_write_json(paths["json"], body)
    atomic_write_text(paths["markdown"], markdown_table(results))
    plot_results(results, paths["plot"])
    return paths
