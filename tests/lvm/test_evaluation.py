from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from lvm_synthetic import rotating_table

from tldrlab.lvm.baselines import BASELINES, context_mean, copy_last, decayed_mean, fit_decay
from tldrlab.lvm.evaluation import (
    MethodScore,
    evaluate_methods,
    margin_interval,
    markdown_table,
    markdown_verdict,
    metric_interval,
    verdict,
    write_report,
)
from tldrlab.lvm.models import LVMConfig, build_lvm
from tldrlab.lvm.sequences import build_sequences


def test_decayed_mean_spans_copy_last_to_the_mean_and_ignores_padding() -> None:
    rng = np.random.default_rng(0)
    contexts = rng.normal(size=(4, 5, 8)).astype(np.float32)
    mask = np.ones((4, 5), dtype=bool)
    mask[1, :2] = False
    contexts[1, :2] = 0.0  # padded positions are zero vectors, as in SplitArrays
    np.testing.assert_allclose(decayed_mean(contexts, mask, 1.0), context_mean(contexts, mask), atol=1e-6)
    np.testing.assert_allclose(decayed_mean(contexts, mask, 1e-6), copy_last(contexts, mask), atol=1e-4)
    half = decayed_mean(contexts, mask, 0.5)
    expected = (contexts[1, 2] * 0.25 + contexts[1, 3] * 0.5 + contexts[1, 4]) / 1.75
    np.testing.assert_allclose(half[1], expected, atol=1e-6)


def test_fit_decay_keeps_the_decay_that_scores_best_on_the_asked_metric() -> None:
    contexts = np.random.default_rng(1).normal(size=(3, 4, 6)).astype(np.float32)
    mask = np.ones((3, 4), dtype=bool)
    seen: list[float] = []

    def tune(predictor):  # type: ignore[no-untyped-def]
        # a stand-in tuning split that rewards predictions close to the 0.3-decayed mean on one metric
        # and close to the plain mean on the other
        pred = predictor(contexts, mask)
        seen.append(float(np.abs(pred).sum()))
        return {
            "cosine": -float(np.abs(pred - decayed_mean(contexts, mask, 0.9)).sum()),
            "top1_excl": -float(np.abs(pred - decayed_mean(contexts, mask, 0.3)).sum()),
        }

    _, by_cosine = fit_decay(tune, "cosine")
    _, by_top1 = fit_decay(tune, "top1_excl")
    assert (by_cosine, by_top1) == (0.9, 0.3) and len(seen) == 18


def test_evaluate_reports_decay_baselines_with_their_tuned_decay(tmp_path: Path) -> None:
    table = rotating_table(n_articles=12, length=30, dim=16, step=0.6)
    seqs = build_sequences(table, context=4, seed=0, val_fraction=0.17, test_fraction=0.17)
    results = {r.name: r for r in evaluate_methods(seqs, {})}
    assert list(results) == list(BASELINES)
    # on a circle the newest concept is the best guess of the next, so tuning picks the smallest decay
    assert results["decay"].info["decay"] == 0.1
    assert results["mean"].metrics["cosine"] < results["decay"].metrics["cosine"]
    assert results["decay"].metrics["cosine"] < results["copy_last"].metrics["cosine"]
    assert 0.0 < results["decay_top1"].info["decay"] < 1.0


def _score(name: str, kind: str, per_window: dict[str, np.ndarray], article: np.ndarray) -> MethodScore:
    metrics = {m: float(v.mean()) for m, v in per_window.items()}
    return MethodScore(name, kind, metrics, {}, per_window=per_window, article=article)


def test_verdict_bootstraps_over_articles_and_separates_clear_from_noisy_wins() -> None:
    rng = np.random.default_rng(0)
    article = np.repeat(np.arange(20), 50)
    base_cos = rng.uniform(0.3, 0.6, size=1000)
    base_hit = (rng.uniform(size=1000) < 0.1).astype(np.float64)
    baseline = _score("copy_last", "baseline", {"cosine": base_cos, "top1_excl": base_hit}, article)
    clear = _score(
        "clear",
        "model",
        {"cosine": base_cos + 0.05, "top1_excl": np.maximum(base_hit, rng.uniform(size=1000) < 0.1)},
        article,
    )
    # better on average by a hair, but article by article it is a coin flip
    noise = np.repeat(rng.normal(0, 0.05, size=20), 50)
    noisy = _score("noisy", "model", {"cosine": base_cos + 0.002 + noise, "top1_excl": base_hit}, article)
    low, high = margin_interval(clear, baseline, "cosine")
    assert low == pytest.approx(0.05) and high == pytest.approx(0.05)
    low, high = margin_interval(noisy, baseline, "cosine")
    assert low < 0 < high
    outcome = verdict([baseline, clear, noisy])
    assert outcome["winners"] == ["clear"] and outcome["significant_winners"] == ["clear"]
    assert outcome["margins"]["noisy"]["top1_excl"]["margin"] == 0.0
    assert outcome["best_baseline_top1_excl_name"] == "copy_last"
    text = markdown_verdict(outcome)
    assert "| clear | +0.0500 [+0.0500, +0.0500] |" in text
    assert "on both: clear; with both intervals above zero: clear." in text


def test_one_article_gives_no_interval_and_no_significant_win() -> None:
    """Resampling one article always draws the same windows: a zero-width interval, so a model ahead by any
    hair on a one-article test split was reported as a winner 'with both intervals above zero'."""
    rng = np.random.default_rng(0)
    article = np.zeros(40, dtype=int)
    base_cos, base_hit = rng.uniform(0.3, 0.6, size=40), np.zeros(40)
    baseline = _score("copy_last", "baseline", {"cosine": base_cos, "top1_excl": base_hit}, article)
    ahead = _score("ahead", "model", {"cosine": base_cos + 0.001, "top1_excl": base_hit + 0.025}, article)
    assert metric_interval(ahead, "cosine") is None
    outcome = verdict([baseline, ahead])
    assert outcome["winners"] == ["ahead"] and outcome["significant_winners"] == []
    assert "interval95" not in outcome["margins"]["ahead"]["cosine"]
    assert "| ahead | +0.0010 | +0.0250 |" in markdown_verdict(outcome)


def test_every_method_gets_a_95_interval_of_each_goal_metric_over_articles(tmp_path: Path) -> None:
    article = np.repeat(np.arange(10), 20)
    # windows of one article agree: the interval is as wide as the spread between articles
    per_article = np.linspace(0.2, 0.6, 10)
    steady = _score(
        "steady", "baseline", {"cosine": np.full(200, 0.4), "top1_excl": np.full(200, 0.1)}, article
    )
    spread = _score(
        "spread", "model", {"cosine": per_article[article], "top1_excl": np.full(200, 0.1)}, article
    )
    assert metric_interval(steady, "cosine") == pytest.approx((0.4, 0.4))
    interval = metric_interval(spread, "cosine")
    assert interval is not None and 0.2 < interval[0] < 0.4 < interval[1] < 0.6
    assert metric_interval(MethodScore("bare", "model", {"cosine": 0.5}, {}), "cosine") is None

    table = rotating_table(n_articles=12, length=30, dim=16, step=0.6)
    results = evaluate_methods(
        build_sequences(table, context=4, seed=0, val_fraction=0.17, test_fraction=0.17), {}
    )
    text = markdown_table(results)
    paths = write_report(results, tmp_path, {"split": "test"})
    body = json.loads(paths["json"].read_text())
    for r, row in zip(results, body["results"], strict=True):
        for metric in ("cosine", "top1_excl"):
            low, high = row["intervals95"][metric]
            assert low - 1e-6 <= r.metrics[metric] <= high + 1e-6  # float32 scores
        assert f"| {r.metrics['cosine']:.4f} [{row['intervals95']['cosine'][0]:.4f}, " in text
    assert "cosine [95 % interval]" in text and "top-1 (ctx excl.) [95 % interval]" in text


def test_learned_skip_can_start_as_a_decaying_mean() -> None:
    model = build_lvm("gru", LVMConfig(dim=8, hidden=16, context=4, skip="learned", skip_decay=0.5))
    contexts = torch.randn(3, 4, 8)
    mask = torch.ones(3, 4, dtype=torch.bool)
    expected = decayed_mean(contexts.numpy(), mask.numpy(), 0.5)
    np.testing.assert_allclose(model(contexts, mask).detach().numpy(), expected, atol=1e-6)
    with pytest.raises(ValueError, match="skip_decay"):
        LVMConfig(skip_decay=0.0)
