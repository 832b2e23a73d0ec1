"""Baselines for next-concept prediction (registry `BASELINES`), fitted on the train split.

- `copy_last`: the last context concept.
- `mean`: the mean of the (real) context concepts.
- `ridge`: a linear map from the flattened context (N*d, padded positions zero) to the next concept.
- `mean_ridge`: the mean plus a ridge fitted to what the mean misses (the strongest simple baseline we know).

Ridge strength is picked from a small grid by mean cosine on the validation split (the train split when
there is none), so the baselines are tuned as fairly as the models.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from tldrlab.lvm.sequences import SplitArrays

Predictor = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""(contexts (n, N, d), mask (n, N)) -> predictions (n, d)."""

RIDGE_ALPHAS = (0.1, 1.0, 10.0, 100.0, 1000.0)


def copy_last(contexts: np.ndarray, mask: np.ndarray) -> np.ndarray:
    # contexts are left-padded, so the last position is always a real concept
    return np.asarray(contexts[:, -1], dtype=np.float32)


def context_mean(contexts: np.ndarray, mask: np.ndarray) -> np.ndarray:
    weights = mask.astype(np.float32)[..., None]
    return ((contexts * weights).sum(1) / np.maximum(weights.sum(1), 1.0)).astype(np.float32)


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


BaselineFit = Callable[[SplitArrays, SplitArrays], tuple[Predictor, dict[str, float]]]

BASELINES: dict[str, BaselineFit] = {
    "copy_last": lambda train, val: (copy_last, {}),
    "mean": lambda train, val: (context_mean, {}),
    "ridge": lambda train, val: _with_alpha(fit_ridge(train, val)),
    "mean_ridge": lambda train, val: _with_alpha(fit_ridge(train, val, offset=context_mean)),
}


def _with_alpha(fitted: tuple[Predictor, float]) -> tuple[Predictor, dict[str, float]]:
    return fitted[0], {"alpha": fitted[1]}
