"""Signals shared by the highlight scorers and the baselines: tokens, centrality, BM25, min-max."""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
STOPWORD_TEXT = """
a an the and or but if then of to in on at by for with from as is are was were be been being it its this
that these those i you he she we they me him her us them my your our their what which who whom how why
when where do does did have has had not no so than too very can will just should would could about into
over under again there here all any both each few more most other some such only own same s t don
"""
STOPWORDS = frozenset(STOPWORD_TEXT.split())


def tokenize(text: str) -> list[str]:
    return [t for t in TOKEN.findall(text.lower()) if t not in STOPWORDS]


def minmax(values: np.ndarray) -> np.ndarray:
    """Scale to [0, 1]; a constant vector becomes all zeros (it carries no ranking information)."""
    if values.size == 0:
        return values.astype(np.float64)
    low, high = float(values.min()), float(values.max())
    if high - low < 1e-12:
        return np.zeros_like(values, dtype=np.float64)
    return (values - low) / (high - low)


def centrality(vectors: np.ndarray) -> np.ndarray:
    """Cosine of each (unit) vector to the normalised centroid of all of them."""
    if len(vectors) == 0:
        return np.zeros(0)
    centroid = vectors.mean(axis=0)
    norm = float(np.linalg.norm(centroid))
    if norm < 1e-12:
        return np.zeros(len(vectors))
    return np.asarray(vectors @ (centroid / norm), dtype=np.float64)


def bm25_scores(texts: Sequence[str], query: str) -> np.ndarray:
    from rank_bm25 import BM25Okapi

    corpus = [tokenize(t) or ["_"] for t in texts]
    terms = tokenize(query)
    if not terms or not corpus:
        return np.zeros(len(texts))
    return np.asarray(BM25Okapi(corpus).get_scores(terms), dtype=np.float64)


def neighbour_mean(values: np.ndarray, groups: Sequence[str], radius: int) -> np.ndarray:
    """Mean of each value's window (+-radius) among consecutive items of the same group."""
    out = np.empty_like(values, dtype=np.float64)
    start = 0
    for end in range(1, len(values) + 1):
        if end == len(values) or groups[end] != groups[start]:
            run = values[start:end].astype(np.float64)
            sums = np.concatenate([[0.0], np.cumsum(run)])
            for i in range(len(run)):
                lo, hi = max(0, i - radius), min(len(run), i + radius + 1)
                out[start + i] = (sums[hi] - sums[lo]) / (hi - lo)
            start = end
    return out
