"""Classic unsupervised sentence rankers, used as baselines for the highlight benchmarks.

Each takes the sentences of one document and returns one score per sentence (higher is better):
- `lead`: earlier is better.
- `lexrank` (Erkan & Radev 2004): eigenvector centrality of the TF-IDF cosine graph, edges above a threshold.
- `textrank` (Mihalcea & Tarau 2004): PageRank on word overlap normalised by log sentence lengths.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np

from tldrlab.digest.signals import tokenize


def lead(texts: Sequence[str]) -> np.ndarray:
    return -np.arange(len(texts), dtype=np.float64)


def tfidf_matrix(texts: Sequence[str]) -> np.ndarray:
    """Rows: L2-normalised TF-IDF vectors with IDF from the document's own sentences."""
    docs = [Counter(tokenize(t)) for t in texts]
    vocab = sorted({w for d in docs for w in d})
    index = {w: i for i, w in enumerate(vocab)}
    df = Counter(w for d in docs for w in d)
    n = len(texts)
    matrix = np.zeros((n, len(vocab)))
    for row, doc in enumerate(docs):
        for word, count in doc.items():
            matrix[row, index[word]] = count * (math.log((1 + n) / (1 + df[word])) + 1.0)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms > 0, norms, 1.0)


def pagerank(
    weights: np.ndarray, damping: float = 0.85, iterations: int = 100, tol: float = 1e-8
) -> np.ndarray:
    """Stationary distribution of a random walk on a weighted graph (dangling rows jump uniformly)."""
    n = len(weights)
    if n == 0:
        return np.zeros(0)
    sums = weights.sum(axis=1, keepdims=True)
    transition = np.where(sums > 0, weights / np.where(sums > 0, sums, 1.0), 1.0 / n)
    rank = np.full(n, 1.0 / n)
    for _ in range(iterations):
        updated = (1 - damping) / n + damping * transition.T @ rank
        if np.abs(updated - rank).sum() < tol:
            return updated
        rank = updated
    return rank


def lexrank(texts: Sequence[str], threshold: float = 0.1) -> np.ndarray:
    if len(texts) < 2:
        return np.zeros(len(texts))
    tfidf = tfidf_matrix(texts)
    sims = tfidf @ tfidf.T
    graph = (sims > threshold).astype(np.float64)
    np.fill_diagonal(graph, 0.0)  # self-similarity is no vote of centrality
    return pagerank(graph)


def textrank(texts: Sequence[str]) -> np.ndarray:
    n = len(texts)
    if n < 2:
        return np.zeros(n)
    presence = (tfidf_matrix(texts) > 0).astype(np.float64)  # which words each sentence has
    overlap = presence @ presence.T
    log_len = np.log(presence.sum(axis=1) + 1.0)
    denom = log_len[:, None] + log_len[None, :]
    weights = np.where(denom > 0, overlap / np.where(denom > 0, denom, 1.0), 0.0)
    np.fill_diagonal(weights, 0.0)
    return pagerank(weights)


BASELINES: dict[str, Callable[[Sequence[str]], np.ndarray]] = {
    "lead": lead,
    "lexrank": lexrank,
    "textrank": textrank,
}
