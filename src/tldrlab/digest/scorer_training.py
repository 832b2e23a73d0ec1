"""Training a learned highlight scorer (`highlight_scorer_train` runs): one listwise logistic model per mode.

Labels come from train splits only:
- `document` mode: SciTLDR train papers, positive = the sentence(s) `source_labels` marks;
- `forum` and `forum_votes` modes: forum threads of the `train` side of `highlight_cases.forum_split` with an
  accepted answer and 2+ answers, positive = sentences of the accepted answer (the flag itself is hidden);
  `forum` sees the threads with their votes hidden, `forum_votes` with them;
- `query` mode: QMSum train meetings, each specific query one case, positive = turns in its relevant spans.

The feature groups (`features.FEATURE_GROUPS`: `v1` always, plus `sentence_cues` and/or `query_context`),
the L2 penalty, and whether to add a learned direction in the sentence-embedding space, are chosen per mode
by 3-fold cross-validation over train cases (grouped by thread, paper or meeting, so no text is on both
sides of a fold) on the mode's own ranking measure (P@1; top-3 has the accepted answer; top-1 in it; P@5):
first every candidate feature set over the penalty grid without vectors, then the best set with vectors.
Features a mode leaves out get weight 0 in the file, so every mode's model spans all of `FEATURES`.
The result is a scorer file (`scorers/`), written atomically to `<run>/artifacts/highlight_scorer.json`
(and to `out` when set); ship it by copying it into `src/tldrlab/digest/scorers/` under a new version name.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tldrlab.digest.config import HighlightScorerTrainConfig
from tldrlab.digest.features import FEATURE_GROUPS, FEATURES, ScorerMode, sentence_features
from tldrlab.digest.highlight_cases import (
    HighlightCase,
    embed_cases,
    forum_cases,
    qmsum_cases,
    scitldr_cases,
)
from tldrlab.digest.scorers import LinearModel, LinearScorer
from tldrlab.embed import get_embedder
from tldrlab.errors import ConfigError
from tldrlab.runs import Run
from tldrlab.runs.atomic import atomic_write_json, sha256_file

REGULARISATION_GRID = (0.0001, 0.001, 0.01, 0.1, 1.0, 10.0, 100.0)


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(-scores, kind="stable")[:k]


def precision_at_1(scores: np.ndarray, labels: np.ndarray) -> float:
    return float(labels[top_k(scores, 1)].mean())


def top3_hit(scores: np.ndarray, labels: np.ndarray) -> float:
    return float(labels[top_k(scores, 3)].any())


def precision_at_5(scores: np.ndarray, labels: np.ndarray) -> float:
    return float(labels[top_k(scores, 5)].sum() / 5)


MODE_MEASURE: dict[ScorerMode, tuple[str, Callable[[np.ndarray, np.ndarray], float]]] = {
    "document": ("P@1", precision_at_1),
    "forum": ("top-3 has accepted", top3_hit),
    "forum_votes": ("top-1 in accepted", precision_at_1),
    "query": ("P@5", precision_at_5),
}


def case_features(case: HighlightCase, *, use_score: bool = True) -> np.ndarray:
    if case.vectors is None:
        raise ValueError(f"case {case.id} has no vectors (embed_cases first)")
    return sentence_features(
        case.records,
        case.vectors,
        case.thread,
        title_vector=case.title_vector,
        query=case.query,
        query_vector=case.query_vector,
        use_score=use_score,
    )


Row = tuple[np.ndarray, np.ndarray, np.ndarray, str]
"""(features, sentence vectors, labels, fold group) of one case."""


def training_rows(cases: Sequence[HighlightCase], mode: ScorerMode) -> list[Row]:
    """One row per case (forum threads: votes hidden for `forum`, shown for `forum_votes`). The fold group is
    the thread (the meeting for QMSum queries, which share turns and topics), so cross-validation never sees
    a held-out thread's text in training."""
    rows = []
    for case in cases:
        assert case.vectors is not None
        vectors = np.asarray(case.vectors, dtype=np.float64)
        labels = case.labels.astype(np.float64)
        features = case_features(case, use_score=mode != "forum")
        rows.append((features, vectors, labels, case.thread.id))
    return rows


def standardise(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scale = x.std(axis=0)
    return x.mean(axis=0), np.where(scale > 1e-9, scale, 1.0)  # constant columns get weight ~0


def fit_linear(rows: Sequence[Row], regularisation: float, use_vectors: bool) -> LinearModel:
    """A conditional logit (a listwise logistic regression): per case, softmax over its sentences, fitted to
    put the probability mass on the labelled ones; L2 penalty `regularisation` on standardised inputs.

    Listwise rather than per sentence because what matters is the order within a thread, not a calibrated
    probability across threads. The weights are folded back onto raw features (and raw vectors)."""
    from scipy.optimize import minimize

    rows = [r for r in rows if r[2].sum() > 0]
    x = np.concatenate([r[0] for r in rows])
    mean, scale = standardise(x)
    inputs = (x - mean) / scale
    if use_vectors:
        v = np.concatenate([r[1] for r in rows])
        v_mean, v_scale = standardise(v)
        inputs = np.concatenate([inputs, (v - v_mean) / v_scale], axis=1)
    target = np.concatenate([r[2] / r[2].sum() for r in rows])
    sizes = np.array([len(r[2]) for r in rows])
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    case_of = np.repeat(np.arange(len(rows)), sizes)

    def loss_and_grad(w: np.ndarray) -> tuple[float, np.ndarray]:
        z = inputs @ w
        z = z - np.maximum.reduceat(z, starts)[case_of]
        e = np.exp(z)
        p = e / np.add.reduceat(e, starts)[case_of]
        loss = -float(target @ np.log(p + 1e-12)) / len(rows) + regularisation * float(w @ w)
        grad = -(inputs.T @ (target - p)) / len(rows) + 2 * regularisation * w
        return loss, grad

    result = minimize(loss_and_grad, np.zeros(inputs.shape[1]), jac=True, method="L-BFGS-B")
    weights = np.asarray(result.x, dtype=np.float64)
    bias = 0.0
    vector_weights = None
    if use_vectors:
        vector_weights = weights[x.shape[1] :] / v_scale
        bias -= float(vector_weights @ v_mean)
    return LinearModel(mean, scale, weights[: x.shape[1]], bias, vector_weights)


def cross_validate(
    rows: Sequence[Row], mode: ScorerMode, regularisation: float, use_vectors: bool, folds: int
) -> float:
    """Mean ranking measure over held-out cases, folds assigned round-robin over fold groups (threads)."""
    _, measure = MODE_MEASURE[mode]
    groups = list(dict.fromkeys(r[3] for r in rows))
    folds = min(folds, len(groups))
    group_fold = {g: i % folds for i, g in enumerate(groups)}
    fold_of = [group_fold[r[3]] for r in rows]
    values: list[float] = []
    for fold in range(folds):
        train = [r for r, f in zip(rows, fold_of, strict=True) if f != fold]
        held = [r for r, f in zip(rows, fold_of, strict=True) if f == fold]
        if not train or not held:
            continue
        model = fit_linear(train, regularisation, use_vectors)
        values.extend(measure(model.relevance(x, v), y) for x, v, y, _ in held)
    return float(np.mean(values)) if values else 0.0


def train_highlight_scorer(config: HighlightScorerTrainConfig, run: Run | None = None) -> LinearScorer:
    """Train one linear model per mode with data, report through `run`, return the scorer."""

    def say(message: str, progress: float) -> None:
        if run is not None:
            run.log(message)
            run.heartbeat(progress=progress, message=message)

    sources: list[tuple[tuple[ScorerMode, ...], str, Path, Callable[[], list[HighlightCase]]]] = []
    cache_dir = Path(config.vector_cache_dir) if config.vector_cache_dir else None
    if config.scitldr_train:
        path = Path(config.scitldr_train)
        load_papers = lambda: scitldr_cases(path, config.scitldr_limit)  # noqa: E731
        sources.append((("document",), "scitldr_train", path, load_papers))
    if config.forum_dump:
        dump = Path(config.forum_dump)
        load_threads = lambda: forum_cases(dump, "train", config.forum_limit)  # noqa: E731
        sources.append((("forum", "forum_votes"), "forum_dump", dump, load_threads))
    if config.qmsum_train:
        meetings = Path(config.qmsum_train)
        load_queries = lambda: qmsum_cases(meetings, config.qmsum_limit, config.qmsum_every)  # noqa: E731
        sources.append((("query",), "qmsum_train", meetings, load_queries))
    embedder = get_embedder(config.embedder)
    models: dict[str, LinearModel] = {}
    info: dict[str, Any] = {"embedder": config.embedder, "data": {}, "modes": {}}
    for step, (modes, label, path, load) in enumerate(sources):
        if not path.exists():
            raise ConfigError(f"{label}: {path} does not exist")
        say(f"{label}: reading and embedding {path.name}", step / len(sources))
        cases = load()
        threads = len({c.thread.id for c in cases})
        if threads < 2:
            raise ConfigError(
                f"{label}: {len(cases)} usable cases from {threads} thread(s) in {path}; need 2+"
            )
        embed_cases(cases, embedder, cache_dir)
        info["data"][label] = {"file": path.name, "sha256": sha256_file(path), "cases": len(cases)}
        for mode in modes:
            models[mode], info["modes"][mode] = fit_mode(cases, mode, label, config)
            say(f"{mode}: trained on {len(cases)} cases", (step + 1) / len(sources))
            if run is not None:
                best = info["modes"][mode]
                run.log_metrics(step, **{f"{mode}_cv": best["cross_validation"]["best"]})
    return LinearScorer(config.name, config.version, FEATURES, models, info)


def feature_sets(rows: Sequence[Row], optional: Sequence[str]) -> list[tuple[str, ...]]:
    """Candidate feature groups for a mode: `v1`, `v1` plus each optional group that varies in its rows, and
    `v1` plus all of those (a group constant on this data, e.g. query features without queries, is left
    out: it could not change a ranking)."""
    x = np.concatenate([r[0] for r in rows])
    varying = [
        g for g in optional if (x[:, [FEATURES.index(f) for f in FEATURE_GROUPS[g]]].std(axis=0) > 1e-9).any()
    ]
    sets = [("v1",), *(("v1", g) for g in varying)]
    return [*sets, ("v1", *varying)] if len(varying) > 1 else sets


def select_columns(rows: Sequence[Row], groups: Sequence[str]) -> tuple[list[Row], np.ndarray]:
    columns = np.array([FEATURES.index(f) for g in groups for f in FEATURE_GROUPS[g]], dtype=int)
    return [(x[:, columns], v, y, g) for x, v, y, g in rows], columns


def widen(model: LinearModel, columns: np.ndarray) -> LinearModel:
    """A model fitted on `columns` of `FEATURES` as one over all of them (weight 0 elsewhere)."""
    mean, scale, weights = np.zeros(len(FEATURES)), np.ones(len(FEATURES)), np.zeros(len(FEATURES))
    mean[columns], scale[columns], weights[columns] = model.mean, model.scale, model.weights
    return LinearModel(mean, scale, weights, model.bias, model.vector_weights)


def fit_mode(
    cases: Sequence[HighlightCase], mode: ScorerMode, label: str, config: HighlightScorerTrainConfig
) -> tuple[LinearModel, dict[str, Any]]:
    """Choose the feature groups, the L2 penalty and the vector direction by cross-validation (feature sets
    without vectors first, then the best set with them), then fit on all `cases`."""
    rows = training_rows(cases, mode)
    scores: dict[tuple[tuple[str, ...], float, bool], float] = {}
    for groups in feature_sets(rows, config.feature_groups):
        subset, _ = select_columns(rows, groups)
        for c in REGULARISATION_GRID:
            scores[(groups, c, False)] = cross_validate(subset, mode, c, False, config.folds)

    def simpler(key: tuple[tuple[str, ...], float, bool]) -> tuple[float, int, float, bool]:
        """Ties go to fewer groups, a stronger penalty, no vectors."""
        return scores[key], -len(key[0]), key[1], not key[2]

    best_groups = max(scores, key=simpler)[0]
    if config.use_vectors:
        subset, _ = select_columns(rows, best_groups)
        for c in REGULARISATION_GRID:
            scores[(best_groups, c, True)] = cross_validate(subset, mode, c, True, config.folds)
    groups, best, best_vectors = max(scores, key=simpler)
    subset, columns = select_columns(rows, groups)
    measure_name, _ = MODE_MEASURE[mode]
    return widen(fit_linear(subset, best, best_vectors), columns), {
        "trained_on": label,
        "cases": len(cases),
        "sentences": int(sum(len(r[1]) for r in rows)),
        "feature_groups": list(groups),
        "regularisation": best,
        "sentence_vectors": best_vectors,
        "cross_validation": {
            "measure": measure_name,
            "folds": config.folds,
            "best": round(scores[(groups, best, best_vectors)], 4),
            **{
                f"{'+'.join(g)} l2={c}{' +vectors' if v else ''}": round(x, 4)
                for (g, c, v), x in scores.items()
            },
        },
    }


def highlight_scorer_train_job(run: Run, config: HighlightScorerTrainConfig) -> dict[str, Any]:
    """Run kind `highlight_scorer_train`: train, write the scorer file atomically into the run's artifacts
    (recorded there) and, when `out` is set, to `out` as well (a path outside the run is no artifact)."""
    scorer = train_highlight_scorer(config, run)
    artifact = run.artifacts_dir / "highlight_scorer.json"
    artifact.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(artifact, scorer.to_dict())
    run.add_artifact(artifact, kind="highlight_scorer")
    out = Path(config.out) if config.out else artifact
    if out != artifact:
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out, scorer.to_dict())
    run.set_summary(
        **{f"{mode}_cv": e["cross_validation"]["best"] for mode, e in scorer.info["modes"].items()}
    )
    run.heartbeat(progress=1.0, message="highlight scorer trained")
    return {"scorer": str(out), "modes": sorted(scorer.models), "info": scorer.info}
