"""`tldrlab lvm evaluate`: trained LVMs and the baselines scored the same way on the same split.

Metrics per method, on the chosen split (validation by default; `test` and `cross` only when named: they
are reported, never chosen by):
- `mse`: mean squared error per dimension to the true next concept;
- `cosine`: mean cosine similarity to it;
- `top1` / `top5`: nearest-concept decoding through an exact inner-product index over every concept of the
  split's articles: is the true next concept the nearest (among the 5 nearest) to the prediction?
- `top1_excl` / `top5_excl`: the same with the context's own concepts removed from the candidates (otherwise
  copy-last wins by retrieving itself).

The verdict asks whether a model beats every baseline on mean cosine and on top-1 with the context excluded,
and says how sure that is: a paired bootstrap over the evaluation articles (articles, not windows, are the
independent units) gives a 95 % interval for each model's margin over the best baseline on each metric.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tldrlab.choices import unknown_choice
from tldrlab.errors import InvalidInputError
from tldrlab.evaluate.bootstrap import BOOTSTRAP_SAMPLES, paired_bootstrap_interval
from tldrlab.lvm.baselines import BASELINES, Predictor
from tldrlab.lvm.index import ConceptIndex, build_index
from tldrlab.lvm.sequences import SequenceSet, SplitArrays
from tldrlab.report import Column, Report, Table
from tldrlab.runs.atomic import atomic_write_json, atomic_write_text

METRICS = ("mse", "cosine", "top1", "top5", "top1_excl", "top5_excl")


@dataclass
class MethodScore:
    name: str
    kind: str
    """`baseline` or `model`."""
    metrics: dict[str, float]
    info: dict[str, Any]
    per_window: dict[str, np.ndarray] | None = None
    """Each metric per evaluation window (for the bootstrap); not written to the report."""
    article: np.ndarray | None = None
    """Article index of each window."""


GOAL_METRICS = ("cosine", "top1_excl")


def example_scores(preds: np.ndarray, split: SplitArrays, candidates: ConceptIndex) -> dict[str, np.ndarray]:
    """Every metric per window (n,): the split's scores are their means."""
    preds = np.asarray(preds, dtype=np.float32)
    targets = split.targets
    norms = np.linalg.norm(preds, axis=1) * np.linalg.norm(targets, axis=1)
    _, top = candidates.search(preds, k=5)
    exclude = [{int(i) for i in row if i >= 0} for row in split.context_ids]
    _, top_excl = candidates.search(preds, k=5, exclude=exclude)
    truth = split.target_ids[:, None]
    return {
        "mse": ((preds - targets) ** 2).mean(1),
        "cosine": (preds * targets).sum(1) / np.maximum(norms, 1e-12),
        "top1": (top[:, :1] == truth).any(1).astype(np.float64),
        "top5": (top == truth).any(1).astype(np.float64),
        "top1_excl": (top_excl[:, :1] == truth).any(1).astype(np.float64),
        "top5_excl": (top_excl == truth).any(1).astype(np.float64),
    }


def score_predictions(preds: np.ndarray, split: SplitArrays, candidates: ConceptIndex) -> dict[str, float]:
    """MSE, mean cosine and retrieval hit rates of `preds` against the split's true next concepts."""
    return {name: float(values.mean()) for name, values in example_scores(preds, split, candidates).items()}


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
    split: str = "val",
    baselines: list[str] | None = None,
) -> list[MethodScore]:
    """Score every baseline (fitted on train, tuned on val) and every model on `split` (validation unless
    a test split is named; on val the baselines are scored where they were tuned, as the models' checkpoints
    were picked there)."""
    import torch

    # lazy: loads torch (this module stays light without it)
    from tldrlab.lvm.training import predict

    train, val, scored = (sequences.split_arrays(s) for s in ("train", "val", split))
    if len(scored) == 0:
        raise InvalidInputError(f"the {split} split has no sequences")
    candidates = candidate_index(sequences, split)
    tuning_split = "val" if len(val) else "train"  # as fit_ridge does
    tuning = val if len(val) else train

    @functools.cache  # built on first use: most baselines tune nothing
    def tuning_candidates() -> ConceptIndex:
        return candidate_index(sequences, tuning_split)

    def tune(predictor: Predictor) -> dict[str, float]:
        return score_predictions(predictor(tuning.contexts, tuning.mask), tuning, tuning_candidates())

    def method(name: str, kind: str, info: dict[str, Any], preds: np.ndarray) -> MethodScore:
        per_window = example_scores(preds, scored, candidates)
        metrics = {metric: float(values.mean()) for metric, values in per_window.items()}
        return MethodScore(name, kind, metrics, info, per_window=per_window, article=scored.article)

    results: list[MethodScore] = []
    for name in baselines if baselines is not None else list(BASELINES):
        if name not in BASELINES:
            raise InvalidInputError(unknown_choice("baseline", name, BASELINES))
        predictor: Predictor
        predictor, info = BASELINES[name](train, val, tune)
        results.append(method(name, "baseline", info, predictor(scored.contexts, scored.mask)))
    for label, model in models.items():
        if getattr(model, "config", None) is not None and model.config.dim != sequences.dim:
            raise InvalidInputError(
                f"model {label} expects {model.config.dim}-d concepts; sequences are {sequences.dim}-d"
            )
        with torch.no_grad():
            preds = predict(model, scored.contexts, scored.mask, tmd=scored.context_tmd).numpy()
        results.append(method(label, "model", {"model": model.name}, preds))
    return results


def resampled_articles(score: MethodScore) -> int:
    """How many evaluation articles the bootstrap can resample (0 without per-window scores). Intervals need
    two: resampling one article always draws the same windows, a zero-width interval that looks certain."""
    if score.per_window is None or score.article is None:
        return 0
    return len(np.unique(score.article))


def metric_interval(score: MethodScore, metric: str) -> tuple[float, float] | None:
    """95 % interval of one method's mean `metric`, resampling evaluation articles with replacement (None
    without per-window scores or with one article)."""
    if score.per_window is None or score.article is None or resampled_articles(score) < 2:
        return None
    return paired_bootstrap_interval(score.per_window[metric], score.article)


def metric_intervals(score: MethodScore) -> dict[str, list[float]]:
    """The goal metrics' 95 % intervals of one method (empty without per-window scores)."""
    intervals = {metric: metric_interval(score, metric) for metric in GOAL_METRICS}
    return {metric: list(interval) for metric, interval in intervals.items() if interval is not None}


def markdown_table(results: list[MethodScore]) -> str:
    """Every method's metrics; the goal metrics (cosine, top-1 excl.) with their 95 % intervals over the
    evaluation articles where per-window scores are known."""
    lines = [
        "| method | kind | MSE | cosine [95 % interval] | top-1 | top-5 | top-1 (ctx excl.) [95 % interval] "
        "| top-5 (ctx excl.) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        m = r.metrics
        intervals = metric_intervals(r)
        cosine, top1_excl = (
            f"{m[metric]:.4f}"
            + (" [{:.4f}, {:.4f}]".format(*intervals[metric]) if metric in intervals else "")
            for metric in ("cosine", "top1_excl")
        )
        lines.append(
            f"| {r.name} | {r.kind} | {m['mse']:.5f} | {cosine} | {m['top1']:.4f} | "
            f"{m['top5']:.4f} | {top1_excl} | {m['top5_excl']:.4f} |"
        )
    return "\n".join(lines) + "\n"


def markdown_verdict(outcome: dict[str, Any]) -> str:
    """The verdict as text: best baselines, each model's margins with their 95 % intervals, the goal."""
    if "best_baseline_cosine" not in outcome:
        return ""
    lines = [
        f"Best baselines: cosine {outcome['best_baseline_cosine']:.4f} "
        f"({outcome['best_baseline_cosine_name']}), top-1 excl. {outcome['best_baseline_top1_excl']:.4f} "
        f"({outcome['best_baseline_top1_excl_name']}).",
        "",
        "| model | cosine margin [95 % interval] | top-1 excl. margin [95 % interval] |",
        "|---|---|---|",
    ]
    for name, margins in outcome["margins"].items():
        cells = []
        for metric in GOAL_METRICS:
            m = margins[metric]
            interval = m.get("interval95")
            cells.append(
                f"{m['margin']:+.4f}" + (f" [{interval[0]:+.4f}, {interval[1]:+.4f}]" if interval else "")
            )
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    met = ", ".join(outcome["winners"]) if outcome["goal_met"] else "none"
    lines += [
        "",
        f"Models beating every baseline on both: {met}; with both intervals above zero: "
        f"{', '.join(outcome['significant_winners']) or 'none'}.",
    ]
    return "\n".join(lines) + "\n"


def margin_interval(
    model: MethodScore, baseline: MethodScore, metric: str, *, samples: int = BOOTSTRAP_SAMPLES, seed: int = 0
) -> tuple[float, float]:
    """95 % interval of `model - baseline` on `metric`, resampling evaluation articles with replacement."""
    if model.per_window is None or baseline.per_window is None or model.article is None:
        raise ValueError("margin_interval needs per-window scores (from evaluate_methods)")
    diff = model.per_window[metric] - baseline.per_window[metric]
    return paired_bootstrap_interval(diff, model.article, samples=samples, seed=seed)


def verdict(results: list[MethodScore]) -> dict[str, Any]:
    """Does some model beat every baseline on mean cosine and on top-1 with context excluded, and how surely?

    `winners` beat the best baseline of each metric on the point estimate; `significant_winners` also have
    the lower end of both bootstrap intervals above zero.
    """
    baselines = [r for r in results if r.kind == "baseline"]
    models = [r for r in results if r.kind == "model"]
    if not baselines:
        return {"goal_met": False, "winners": [], "significant_winners": [], "margins": {}}
    best = {metric: max(baselines, key=lambda r: r.metrics[metric]) for metric in GOAL_METRICS}
    margins: dict[str, dict[str, Any]] = {}
    for model in models:
        margins[model.name] = {}
        for metric, baseline in best.items():
            entry: dict[str, Any] = {
                "versus": baseline.name,
                "margin": model.metrics[metric] - baseline.metrics[metric],
            }
            # none from one article: its zero-width interval made any point win "significant"
            if baseline.per_window is not None and resampled_articles(model) >= 2:
                entry["interval95"] = list(margin_interval(model, baseline, metric))
            margins[model.name][metric] = entry
    winners = [name for name, m in margins.items() if all(m[x]["margin"] > 0 for x in GOAL_METRICS)]
    significant = [
        name
        for name in winners
        if all(margins[name][x].get("interval95", [0.0])[0] > 0 for x in GOAL_METRICS)
    ]
    return {
        "goal_met": bool(winners),
        "winners": winners,
        "significant_winners": significant,
        "best_baseline_cosine": best["cosine"].metrics["cosine"],
        "best_baseline_cosine_name": best["cosine"].name,
        "best_baseline_top1_excl": best["top1_excl"].metrics["top1_excl"],
        "best_baseline_top1_excl_name": best["top1_excl"].name,
        "margins": margins,
    }


def plot_results(results: list[MethodScore], path: Path) -> Path:
    """The goal's two metrics against each other: a model wins where it is right of and above both dashed
    lines (the best baseline on each metric). Points are numbered; the legend names them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(12, 6))
    for i, r in enumerate(results, start=1):
        baseline = r.kind == "baseline"
        x, y = r.metrics["cosine"], r.metrics["top1_excl"]
        ax.scatter(x, y, s=50, marker="s" if baseline else "o", color="#777777" if baseline else "#1f77b4")
        ax.annotate(str(i), (x, y), xytext=(4, 4), textcoords="offset points", fontsize=9)
        ax.plot([], [], " ", label=f"{i}. {r.name}")  # legend entry only
    baselines = [r for r in results if r.kind == "baseline"]
    if baselines:
        ax.axvline(max(r.metrics["cosine"] for r in baselines), color="#999999", linestyle="--", linewidth=1)
        ax.axhline(
            max(r.metrics["top1_excl"] for r in baselines), color="#999999", linestyle="--", linewidth=1
        )
    ax.set_xlabel("mean cosine to the true next concept")
    ax.set_ylabel("top-1 retrieval, context excluded")
    ax.set_title("LVM next-concept prediction (squares: baselines, circles: models)")
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, handlelength=0, frameon=False)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def summary_prefix(split: str) -> str:
    """What a split's results are named with: `<split>_` (`val_`, `cross_`), and nothing for the in-corpus
    test. The bare names were the test's when it was the default; they stay the test's, so that the test
    figures of every run read alike and line up in `runs compare`, while validation figures (the default now)
    never pass for test ones."""
    return "" if split == "test" else f"{split}_"


def report_stem(split: str) -> str:
    """File stem of a split's report, named as its summary metrics (`summary_prefix`): `evaluation` for the
    in-corpus test, `evaluation_<split>` otherwise (`evaluation_val`, `evaluation_cross`)."""
    return f"evaluation_{split}" if summary_prefix(split) else "evaluation"


def write_report(
    results: list[MethodScore],
    directory: Path,
    meta: dict[str, Any],
    outcome: dict[str, Any] | None = None,
    *,
    stem: str = "evaluation",
) -> dict[str, Path]:
    """<stem>.json, <stem>.md and <stem>.png in `directory` (`outcome`: the verdict, if known)."""
    directory.mkdir(parents=True, exist_ok=True)
    body = {
        **meta,
        "results": [
            {
                "name": r.name,
                "kind": r.kind,
                "metrics": r.metrics,
                "intervals95": metric_intervals(r),
                "info": r.info,
            }
            for r in results
        ],
        "verdict": outcome if outcome is not None else verdict(results),
    }
    paths = {
        "json": directory / f"{stem}.json",
        "markdown": directory / f"{stem}.md",
        "plot": directory / f"{stem}.png",
    }
    atomic_write_json(paths["json"], body)
    atomic_write_text(paths["markdown"], markdown_table(results) + "\n" + markdown_verdict(body["verdict"]))
    plot_results(results, paths["plot"])
    return paths


SPLIT_NAMES = {"test": "in-corpus test", "cross": "cross-corpus test", "val": "validation"}
REPORT_METRICS = [("MSE", "mse", 5), ("cosine", "cosine", 4), ("top-1", "top1", 4), ("top-5", "top5", 4)]
REPORT_METRICS += [("top-1 excl", "top1_excl", 4), ("top-5 excl", "top5_excl", 4)]


SPLIT_NOTES = {
    "val": "Measured on validation, where the baselines were tuned and the checkpoints picked (its figures "
    "flatter both); name `--split test` or `--split cross` only to report held-out figures.",
}


def evaluate_report(run_id: str, result: dict[str, Any]) -> Report:
    """Per split: every method's metrics and the verdict; then where the full report is, by file name."""
    report = Report()
    columns = [Column("method", key=True), Column("kind", optional=True)]
    columns += [Column(header, justify="right") for header, _, _ in REPORT_METRICS]
    for split in result["reports"]:
        rows = [
            [r["name"], r["kind"], *(f"{r['metrics'][key]:.{digits}f}" for _, key, digits in REPORT_METRICS)]
            for r in split["results"]
        ]
        title = f"{SPLIT_NAMES.get(split['split'], split['split'])} split, {split['sequences']} sequences"
        report.blocks += [Table(columns, rows, title), markdown_verdict(split["verdict"])]
        report.blocks += [SPLIT_NOTES[split["split"]]] if split["split"] in SPLIT_NOTES else []
    files = ", ".join(f"{report_stem(split['split'])}.{{md,json,png}}" for split in result["reports"])
    report.blocks.append(f"run {run_id}: {files} in its run directory (tldrlab runs show {run_id})")
    return report
