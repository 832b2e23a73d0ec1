"""Baselines for next-concept prediction (registry `BASELINES`), fitted on the train split.

- `copy_last`: the last context concept.
- `mean`: the mean of the (real) context concepts.
- `ridge`: a linear map from the flattened context (N*d, padded positions zero) to the next concept.
- `mean_ridge`: the mean plus a ridge fitted to what the mean misses (the strongest simple cosine baseline).
- `decay` / `decay_top1`: an exponentially decaying weighted mean of the context (weight `r**k` for the
  concept k steps before the last). Small `r` is close to copy-last, `r = 1` is the mean: one knob that
  trades retrieval for cosine, so it is tuned twice, once for each metric (decaying means beat copy-last on
  top-1 with the context excluded: recent concepts vote with the last one on where the text is going).

Ridge strength and decay are picked from small grids on the validation split (the train split when there is
none): by mean cosine, except `decay_top1` (by top-1 with the context excluded). The baselines are tuned as
fairly as the models, whose kept checkpoint is also picked on validation.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from tldrlab.lvm.sequences import SplitArrays

Predictor = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""(contexts (n, N, d), mask (n, N)) -> predictions (n, d)."""

Tuner = Callable[[Predictor], dict[str, float]]
"""Scores a predictor on the tuning split (tldrlab.lvm.evaluation metrics: cosine, top1_excl, ...)."""

RIDGE_ALPHAS = (0.1, 1.0, 10.0, 100.0, 1000.0)
DECAYS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def copy_last(contexts: np.ndarray, mask: np.ndarray) -> np.ndarray:
    # contexts are left-padded, so the last position is always a real concept
    return np.asarray(contexts[:, -1], dtype=np.float32)


def context_mean(contexts: np.ndarray, mask: np.ndarray) -> np.ndarray:
    weights = mask.astype(np.float32)[..., None]
    return ((contexts * weights).sum(1) / np.maximum(weights.sum(1), 1.0)).astype(np.float32)


def decayed_mean(contexts: np.ndarray, mask: np.ndarray, decay: float) -> np.ndarray:
    """Weighted mean of the real context concepts, weight `decay**k` k positions before the last."""
    steps_back = np.arange(contexts.shape[1] - 1, -1, -1, dtype=np.float32)
    weights = (decay**steps_back)[None, :] * mask.astype(np.float32)
    weights /= np.maximum(weights.sum(1, keepdims=True), 1e-12)
    return (contexts * weights[..., None]).sum(1).astype(np.float32)


def fit_decay(tune: Tuner, metric: str, decays: tuple[float, ...] = DECAYS) -> tuple[Predictor, float]:
    """The decay whose decayed mean scores best on `metric` on the tuning split: (predictor, decay)."""

    def predictor_for(decay: float) -> Predictor:
        return lambda contexts, mask: decayed_mean(contexts, mask, decay)

    scores = {decay: tune(predictor_for(decay))[metric] for decay in decays}
    best = max(scores, key=lambda d: scores[d])
    return predictor_for(best), best


def _features(contexts: np.ndarray) -> np.ndarray:
    flat = contexts.reshape(len(contexts), -1).astype(np.float64)
    return np.concatenate([flat, np.ones((len(flat), 1))], axis=1)  # bias column


def mean_cosine(pred: np.ndarray, target: np.ndarray) -> float:
    num = (pred * target).sum(1)
    den = np.linalg.norm(pred, axis=1) * np.linalg.norm(target, axis=1)
    return float((num / np.maximum(den, 1e-12)).mean())


def fit_ridge(
    train: SplitArrays,
    val: SplitArrays,
    offset: Predictor | None = None,
    alphas: tuple[float, ...] = RIDGE_ALPHAS,
) -> tuple[Predictor, float]:
    """Ridge regression from the flattened context to `target - offset(context)`; returns (predictor, alpha).

    One Gram matrix, one solve per alpha; the bias is not penalised.
    """
    x = _features(train.contexts)
    y = train.targets.astype(np.float64)
    if offset is not None:
        y = y - offset(train.contexts, train.mask)
    gram, xty = x.T @ x, x.T @ y
    penalty = np.eye(len(gram))
    penalty[-1, -1] = 0.0
    scored = val if len(val) else train
    best: tuple[float, float, np.ndarray] | None = None
    for alpha in alphas:
        weights = np.linalg.solve(gram + alpha * penalty, xty)
        pred = _features(scored.contexts) @ weights
        if offset is not None:
            pred = pred + offset(scored.contexts, scored.mask)
        score = mean_cosine(pred, scored.targets)
        if best is None or score > best[0]:
            best = (score, alpha, weights)
    assert best is not None
    _, alpha, weights = best

    def predict(contexts: np.ndarray, mask: np.ndarray) -> np.ndarray:
        pred = _features(contexts) @ weights
        if offset is not None:
            pred = pred + offset(contexts, mask)
        return pred.astype(np.float32)

    return predict, alpha


BaselineFit = Callable[[SplitArrays, SplitArrays, Tuner], tuple[Predictor, dict[str, float]]]
"""(train, val, tuner) -> (predictor, the settings it was fitted with)."""

BASELINES: dict[str, BaselineFit] = {
    "copy_last": lambda train, val, tune: (copy_last, {}),
    "mean": lambda train, val, tune: (context_mean, {}),
    "ridge": lambda train, val, tune: _with("alpha", fit_ridge(train, val)),
    "mean_ridge": lambda train, val, tune: _with("alpha", fit_ridge(train, val, offset=context_mean)),
    "decay": lambda train, val, tune: _with("decay", fit_decay(tune, "cosine")),
    "decay_top1": lambda train, val, tune: _with("decay", fit_decay(tune, "top1_excl")),
}


def _with(setting: str, fitted: tuple[Predictor, float]) -> tuple[Predictor, dict[str, float]]:
    return fitted[0], {setting: fitted[1]}
