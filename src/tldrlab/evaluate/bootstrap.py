"""Paired bootstrap intervals: how sure is a difference between two methods scored on the same cases?

Both methods are scored on the same items (windows, sentences, queries); the independent units are groups of
items (articles, threads, papers, queries). Resampling whole units with replacement and recomputing the
item-weighted mean difference gives the interval; pairing (one difference per item) removes the between-case
variance both methods share, which is what makes small margins measurable.
"""

from __future__ import annotations

import numpy as np

BOOTSTRAP_SAMPLES = 2000


def paired_bootstrap_interval(
    differences: np.ndarray,
    groups: np.ndarray | None = None,
    *,
    samples: int = BOOTSTRAP_SAMPLES,
    seed: int = 0,
    confidence: float = 0.95,
) -> tuple[float, float]:
    """`confidence` interval of the mean of `differences` (method A - method B, item by item).

    `groups[i]` names the unit item i belongs to (None: every item is its own unit); units are resampled
    with replacement and the mean is item-weighted, like the point estimate `differences.mean()`.
    ValueError with fewer than two units: callers show the difference without an interval then.
    """
    diff = np.asarray(differences, dtype=np.float64)
    if diff.size == 0:
        raise ValueError("paired_bootstrap_interval needs at least one difference")
    if groups is None:
        groups = np.arange(diff.size)
    units, inverse = np.unique(np.asarray(groups), return_inverse=True)
    if len(units) < 2:
        # resampling one unit draws the same items every time: a zero-width interval that reads as certainty
        raise ValueError(
            "paired_bootstrap_interval needs at least two units to resample (one gives a zero-width interval)"
        )
    sums = np.bincount(inverse, weights=diff)
    counts = np.bincount(inverse).astype(np.float64)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(sums), size=(samples, len(sums)))
    means = sums[picks].sum(1) / counts[picks].sum(1)
    tail = (1.0 - confidence) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)
