"""The `smoke` run kind: a real, tiny training through the recipe driver that checks a worker deployment.

A linear model is fitted to synthetic data (a few hundred parameters, milliseconds a step) by the same driver
and loop as every other recipe, so it behaves like a real training where the service cares: checkpoints every
`checkpoint_every` steps, resumes exactly from the newest one (metric lines past it are dropped, so no step
is logged twice), checks cancellation and the preemption flag between steps, heartbeats with progress, and
exports its weights (`artifacts/weights.json`). Every metrics line carries the process id that trained the
step, so fault tests can see which worker did what.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import torch
from torch import nn

from tldrlab.runs import Run
from tldrlab.runs.atomic import atomic_write_text
from tldrlab.train.config import SmokeConfig, TrainConfig
from tldrlab.train.loop import TrainHooks, TrainResult, TrainState
from tldrlab.train.recipe import Recipe, RecipeExport, RecipeSetup, Tracking, run_recipe

__all__ = ["SMOKE", "SmokeConfig", "smoke_job"]

EXAMPLES_PER_BATCH = 8  # the training set holds this many batches (then the next epoch reshuffles)
EVAL_EXAMPLES = 256


class SmokeTask:
    """y = x·w + noise with a true `w` drawn from the seed; the loss is the mean squared error."""

    def __init__(self, config: SmokeConfig) -> None:
        gen = torch.Generator().manual_seed(config.seed)
        self.true_w = torch.randn(config.features, 1, generator=gen)
        self.train_x, self.train_y = self._draw(config.batch_size * EXAMPLES_PER_BATCH, config.features, gen)
        self.eval_x, self.eval_y = self._draw(EVAL_EXAMPLES, config.features, gen)

    def _draw(self, n: int, features: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.randn(n, features, generator=gen)
        return x, x @ self.true_w + 0.01 * torch.randn(n, 1, generator=gen)

    def train_dataset(self) -> torch.utils.data.Dataset[Any]:
        return torch.utils.data.TensorDataset(self.train_x, self.train_y)

    def collate(self, items: list[Any]) -> dict[str, torch.Tensor]:
        return {"x": torch.stack([x for x, _ in items]), "y": torch.stack([y for _, y in items])}

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
        return nn.functional.mse_loss(model(batch["x"]), batch["y"]), int(batch["x"].shape[0])

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        return {"eval_loss": float(nn.functional.mse_loss(model(self.eval_x), self.eval_y))}


class SmokeHooks(TrainHooks):
    """A start line naming the process; the process id on every metrics line; `step_sleep_s` after every
    step."""

    def __init__(self, run: Run | None, config: SmokeConfig) -> None:
        self.run, self.steps, self.step_sleep_s = run, config.steps, config.step_sleep_s

    def on_train_start(self, state: TrainState, model: nn.Module) -> None:
        if self.run is not None:
            self.run.log("smoke training started", steps=self.steps, step=state.step, pid=os.getpid())

    def on_step_end(self, state: TrainState, loss: float) -> None:
        if self.step_sleep_s:
            time.sleep(self.step_sleep_s)

    def log_fields(self, state: TrainState) -> dict[str, Any]:
        return {"pid": os.getpid()}


def setup(run: Run | None, config: SmokeConfig) -> RecipeSetup:
    loop = TrainConfig(
        max_steps=config.steps,
        batch_size=config.batch_size,
        lr=config.lr,
        weight_decay=0.0,
        lr_schedule="constant",
        max_grad_norm=None,
        device="cpu",
        precision="fp32",
        eval_every=0,  # one evaluation, at the end
        checkpoint_every=config.checkpoint_every,
        log_every=1,
        seed=config.seed,
        plot=False,
        progress=False,
    )
    return RecipeSetup(
        model=nn.Linear(config.features, 1),
        task=SmokeTask(config),
        loop=loop,
        hooks=[SmokeHooks(run, config)],
        tracking=Tracking(mode=config.wandb, tags=["smoke"], config=config.model_dump()),
    )


def export(run: Run, config: SmokeConfig, setup: RecipeSetup, result: TrainResult) -> RecipeExport:
    weights = run.artifacts_dir / "weights.json"
    model: Any = result.model
    atomic_write_text(weights, json.dumps({"weight": model.weight.detach().tolist()[0]}))
    final_loss = result.metrics["eval_loss"]
    return RecipeExport(
        summary={"final_loss": final_loss, "steps": result.steps},
        artifacts=[(weights, "model")],
        result={"final_loss": final_loss},
    )


SMOKE: Recipe[SmokeConfig] = Recipe("smoke", lambda config: config.seed, setup, export)


def smoke_job(run: Run, config: SmokeConfig) -> dict[str, Any]:
    """Execute a `smoke` run: the recipe through the driver; returns the final held-out loss."""
    return run_recipe(run, SMOKE, config).export.result
