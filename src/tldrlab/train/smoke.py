"""The `smoke` run kind: a real, tiny, exactly-resumable training that checks a worker deployment.

It fits a linear model to synthetic data with SGD: a few hundred parameters, milliseconds a step. It behaves
like the real trainer where the service cares: checkpoints every `checkpoint_every` steps, resumes exactly
from the newest checkpoint (metrics past it are dropped, so no step is logged twice), checks cancellation and
the preemption flag between steps, heartbeats with progress. Batches are drawn from a generator seeded by
(seed, step), so an interrupted-and-resumed run logs the same losses as an uninterrupted one.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tldrlab.errors import RunPreemptedError
from tldrlab.runs import Run, preempt
from tldrlab.runs.atomic import atomic_write_text, read_jsonl


class SmokeConfig(BaseModel):
    """Kind `smoke`: a tiny linear model fitted with SGD on synthetic data."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    steps: int = Field(default=30, ge=1, le=100_000)
    """Optimisation steps."""
    checkpoint_every: int = Field(default=5, ge=1)
    """Write a checkpoint every this many steps (and at the end)."""
    step_sleep_s: float = Field(default=0.0, ge=0.0, le=10.0)
    """Extra time per step, so that a test or a demo can interrupt a run mid-way."""
    features: int = Field(default=16, ge=1, le=4096)
    """Input width of the linear model."""
    batch_size: int = Field(default=32, ge=1, le=4096)
    """Examples per step."""
    lr: float = Field(default=0.05, gt=0.0)
    """SGD learning rate."""
    seed: int = 0
    """Seeds the true weights and every batch."""


def _checkpoints(run: Run) -> list[Path]:
    if not run.checkpoints_dir.is_dir():
        return []
    return sorted(run.checkpoints_dir.glob("step-*.pt"), key=lambda p: int(p.stem.split("-")[1]))


def _truncate_metrics(run: Run, last_step: int) -> None:
    """Drop metric lines past the checkpoint we resume from: those steps run again."""
    path = run.dir / "metrics.jsonl"
    rows = [r for r in read_jsonl(path) if int(r.get("step", 0)) <= last_step]
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in rows))


def smoke_job(run: Run, config: SmokeConfig) -> dict[str, Any]:
    import torch

    torch.manual_seed(config.seed)
    true_w = torch.randn(config.features, 1, generator=torch.Generator().manual_seed(config.seed))
    model = torch.nn.Linear(config.features, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr)
    start = 0
    existing = _checkpoints(run)
    if existing:
        state = torch.load(existing[-1], weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start = int(state["step"])
        _truncate_metrics(run, start)
        run.log(f"resumed from checkpoint at step {start}", step=start)
    run.set_environment(device="cpu", precision="fp32")
    run.log("smoke training started", steps=config.steps, pid=os.getpid())

    def save(step: int) -> None:
        run.checkpoints_dir.mkdir(parents=True, exist_ok=True)
        path = run.checkpoints_dir / f"step-{step}.pt"
        tmp = path.with_suffix(".tmp")
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step}, tmp)
        os.replace(tmp, path)
        for old in _checkpoints(run)[:-2]:
            old.unlink(missing_ok=True)
        run.log("checkpoint saved", step=step, event="checkpoint")

    loss_value = float("nan")
    for step in range(start + 1, config.steps + 1):
        run.check_cancelled()
        if preempt.stop_requested():
            save(step - 1)
            raise RunPreemptedError(f"preempted at step {step - 1}: checkpointed, to be resumed")
        gen = torch.Generator().manual_seed(config.seed * 1_000_003 + step)
        x = torch.randn(config.batch_size, config.features, generator=gen)
        y = x @ true_w + 0.01 * torch.randn(config.batch_size, 1, generator=gen)
        loss = torch.nn.functional.mse_loss(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        loss_value = float(loss.item())
        run.log_metrics(step, loss=loss_value, pid=os.getpid())
        run.heartbeat(progress=step / config.steps, every_s=0.5)
        if step % config.checkpoint_every == 0 or step == config.steps:
            save(step)
        if config.step_sleep_s:
            time.sleep(config.step_sleep_s)
    weights = run.artifacts_dir / "weights.json"
    atomic_write_text(weights, json.dumps({"weight": model.weight.detach().tolist()[0]}))
    run.add_artifact(weights, kind="model")
    run.set_summary(final_loss=loss_value, steps=config.steps)
    return {"final_loss": loss_value}
