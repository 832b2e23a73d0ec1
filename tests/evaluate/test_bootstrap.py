"""The paired bootstrap shared by the LVM verdict and the highlight benchmarks."""

from __future__ import annotations

import numpy as np
import pytest

from tldrlab.evaluate.bootstrap import paired_bootstrap_interval


def test_interval_brackets_the_mean_and_respects_units() -> None:
    rng = np.random.default_rng(1)
    clear = 0.1 + rng.normal(0, 0.01, size=300)
    low, high = paired_bootstrap_interval(clear)
    assert 0.09 < low < clear.mean() < high < 0.11
    # 30 units of 10 items each, the whole unit moving together: far wider than 300 independent items
    unit_effect = np.repeat(rng.normal(0, 0.2, size=30), 10)
    groups = np.repeat(np.arange(30), 10)
    items = paired_bootstrap_interval(unit_effect)
    units = paired_bootstrap_interval(unit_effect, groups)
    assert units[1] - units[0] > 2 * (items[1] - items[0])
    assert paired_bootstrap_interval(np.full(5, 0.25)) == pytest.approx((0.25, 0.25))
    with pytest.raises(ValueError):
        paired_bootstrap_interval(np.array([]))
    # one unit, however many items: every resample is that unit, a zero-width interval that looks certain
    with pytest.raises(ValueError, match="two units"):
        paired_bootstrap_interval(np.array([0.3]))
    with pytest.raises(ValueError, match="two units"):
        paired_bootstrap_interval(rng.normal(0, 1, size=50), np.zeros(50))


def test_interval_has_the_asked_confidence_and_weights_items_not_units() -> None:
    # independent normal items: a 95% interval is about 2 * 1.96 standard errors wide (90% would be 1.645)
    rng = np.random.default_rng(7)
    items = rng.normal(0.0, 1.0, size=400)
    low, high = paired_bootstrap_interval(items)
    standard_error = items.std() / np.sqrt(items.size)
    assert 0.93 < (high - low) / (2 * 1.96 * standard_error) < 1.07
    narrower = paired_bootstrap_interval(items, confidence=0.8)
    assert 0.93 < (narrower[1] - narrower[0]) / (2 * 1.2816 * standard_error) < 1.07
    # units of unequal size: 20 of ten items near 1, 20 of one item near 0; the item-weighted mean is about
    # 0.9, the mean of the unit means 0.5: the interval must bracket the former, like `differences.mean()`
    values = np.concatenate([rng.normal(1.0, 0.05, size=200), rng.normal(0.0, 0.05, size=20)])
    groups = np.concatenate([np.repeat(np.arange(20), 10), np.arange(20, 40)])
    low, high = paired_bootstrap_interval(values, groups)
    assert 0.8 < low < values.mean() < high < 1.0
