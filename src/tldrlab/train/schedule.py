"""Learning-rate schedules: linear warm-up, then cosine / linear decay or a constant rate.

The schedule is a pure function of the step (no scheduler object with hidden state), so an exact resume only
needs the step, and rebuilding the optimizer after a model restructure (PerforatedAI) keeps the schedule.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from tldrlab.train.config import TrainConfig


def _constant(progress: float) -> float:
    return 1.0


def _linear(progress: float) -> float:
    return 1.0 - progress


def _cosine(progress: float) -> float:
    return 0.5 * (1.0 + math.cos(math.pi * progress))


SCHEDULES: dict[str, Callable[[float], float]] = {
    "constant": _constant,
    "linear": _linear,
    "cosine": _cosine,
}
"""Decay shape after warm-up: progress in [0, 1] -> multiplier in [0, 1]."""


def lr_at(step: int, config: TrainConfig) -> float:
    """The learning rate of optimizer step `step` (0-based)."""
    if config.warmup_steps and step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    decay_steps = max(1, config.max_steps - config.warmup_steps)
    progress = min(1.0, (step - config.warmup_steps) / decay_steps)
    floor = config.min_lr_ratio
    return config.lr * (floor + (1.0 - floor) * SCHEDULES[config.lr_schedule](progress))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def build_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only (biases, norms and 1-d parameters are not decayed)."""
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for param in model.parameters():
        if not param.requires_grad:
            continue
        (decay if param.dim() >= 2 else no_decay).append(param)
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=lr_at(0, config))
