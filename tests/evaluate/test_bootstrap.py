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
