"""The kept checkpoint's direction (`train.best_mode`) follows `train.best_metric` when only the metric is
given. It stayed `min` (or a kind's default section's mode) whatever the metric: `tldrlab lvm train
--train.best-metric val_cosine` kept the checkpoint of the lowest validation cosine, `tldrlab train
--train.best-metric eval_rouge1` the lowest ROUGE, and `tldrlab elm train --train.best-metric eval_loss` the
highest loss (ELM's default section said `max` for its bertscore_f1)."""

from __future__ import annotations

from typing import Any

import pytest

from tldrlab.kinds import validate_config
from tldrlab.sweep.spec import best_follows_metric, parse_sweep
from tldrlab.train.config import TrainJobConfig


@pytest.mark.parametrize(
    ("kind", "config", "mode"),
    [
        ("lvm_train", {"sequences": "s.npz", "train": {"best_metric": "val_cosine"}}, "max"),
        ("lvm_train", {"sequences": "s.npz", "train": {"best_metric": "val_top1_excl"}}, "max"),
        ("lvm_train", {"sequences": "s.npz", "train": {"best_metric": "val_mse"}}, "min"),
        ("lvm_train", {"sequences": "s.npz"}, "min"),  # eval_loss, the default
        ("elm_train", {"data": "d", "train": {"best_metric": "eval_loss"}}, "min"),
        ("elm_train", {"data": "d", "train": {"best_metric": "eval_perplexity"}}, "min"),
        ("elm_train", {"data": "d"}, "max"),  # bertscore_f1, the default
        ("elm_train", {"data": "d", "train": {"best_metric": "eval_drift_similarity"}}, "max"),
    ],
)
def test_best_mode_follows_the_metric_given_alone(kind: str, config: dict[str, Any], mode: str) -> None:
    assert validate_config(kind, config).train.best_mode == mode  # type: ignore[attr-defined]


def test_a_generated_metric_of_a_train_job_is_maximised() -> None:
    job = TrainJobConfig.model_validate(
        {"data": {"path": "x", "generate_every": 1}, "train": {"best_metric": "eval_rouge1"}}
    )
    assert job.train.best_mode == "max"


def test_a_mode_given_is_kept() -> None:
    config = {"sequences": "s.npz", "train": {"best_metric": "val_cosine", "best_mode": "min"}}
    assert validate_config("lvm_train", config).train.best_mode == "min"  # type: ignore[attr-defined]
    config = {"data": "d", "train": {"best_metric": "eval_loss", "best_mode": "max"}}
    assert validate_config("elm_train", config).train.best_mode == "max"  # type: ignore[attr-defined]


def test_a_sweep_base_configs_own_best_metric_keeps_its_own_mode() -> None:
    """An `eval_loss` sweep (goal minimize) whose LVM base config keeps the best `val_cosine` checkpoint:
    the sweep gave that metric the goal's mode, `min`."""
    spec = parse_sweep(
        {
            "program": "tldrlab.lvm",
            "method": "random",
            "metric": {"name": "eval_loss", "goal": "minimize"},
            "parameters": {"train.lr": {"values": [1e-3]}},
            "config": {"sequences": "s.npz", "train": {"best_metric": "val_cosine"}},
        },
        source="inline",
    )
    raw = best_follows_metric({"sequences": "s.npz", "train": {"best_metric": "val_cosine"}}, spec)
    assert validate_config("lvm_train", raw).train.best_mode == "max"  # type: ignore[attr-defined]
    # a base config naming no metric still keeps the sweep's metric, judged by the sweep's goal
    raw = best_follows_metric({"sequences": "s.npz"}, spec)
    assert (raw["train"]["best_metric"], raw["train"]["best_mode"]) == ("eval_loss", "min")
