"""Training an LVM through the Trainer core loop: the `LVMTask` and the `lvm_train` run kind.

The loop (tldrlab.train.train) brings resume from checkpoints, mixed precision, cancellation, progress and
metrics; this module only says what a batch is (context vectors, mask, target vector), what the loss is and
how validation is scored. After training, the best evaluation's weights are saved as `model/` in the run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from tldrlab.device import seed_everything
from tldrlab.errors import ConfigError
from tldrlab.lvm.losses import combined_loss, parse_loss
from tldrlab.lvm.models import LVM_MODELS, LVMConfig, build_lvm, count_parameters, save_lvm
from tldrlab.lvm.sequences import SplitArrays, load_sequences
from tldrlab.runs.run import Run
from tldrlab.train.config import TrainConfig

MODEL_DIR = "model"


def default_train_config() -> TrainConfig:
    return TrainConfig.model_validate(
        {
            "max_steps": 1500,
            "batch_size": 256,
            "lr": 1e-3,
            "weight_decay": 0.01,
            "warmup_steps": 50,
            "eval_every": 250,
            "checkpoint_every": 250,
            "log_every": 25,
        }
    )


class LVMTrainJobConfig(BaseModel):
    """Everything one `tldrlab lvm train` run needs."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    sequences: str
    """The sequences NPZ written by `tldrlab lvm sequences`."""
    model: str = "gru"
    """Backbone from LVM_MODELS: lstm, gru, transformer, mamba."""
    model_settings: dict[str, Any] = Field(default_factory=dict)
    """LVMConfig fields (hidden, layers, dropout, skip, ...); dim and context come from the sequences."""
    loss: str = "cosine+infonce"
    """mse, cosine, infonce or a `+` combination (see tldrlab.lvm.losses)."""
    temperature: float = Field(0.05, gt=0)
    """InfoNCE temperature."""
    group: int = Field(1, ge=1)
    """Consecutive windows of one article per dataset item (a batch holds batch_size items). With 8, the
    in-batch InfoNCE negatives include the article's neighbouring concepts, the hard negatives retrieval
    meets; 1 draws independent windows."""
    max_val_examples: int = Field(4000, ge=1)
    """Cap on validation examples scored at each evaluation."""
    train: TrainConfig = Field(default_factory=default_train_config)
    """The loop settings."""


class LVMTask:
    """Next-concept prediction as a TrainTask: batches of (contexts, mask, target)."""

    def __init__(
        self, train: SplitArrays, val: SplitArrays, loss: str, temperature: float, group: int = 1
    ) -> None:
        self.train = train
        self.val = val
        self.group = group
        self.loss_fn = combined_loss(loss, temperature)

    def train_dataset(self) -> torch.utils.data.Dataset[Any]:
        return GroupedWindows(self.train, self.group)

    def collate(self, items: list[Any]) -> dict[str, torch.Tensor]:
        contexts, mask, targets = zip(*items, strict=True)
        return {"contexts": torch.cat(contexts), "mask": torch.cat(mask), "targets": torch.cat(targets)}

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
        pred = model(batch["contexts"], batch["mask"])
        return self.loss_fn(pred, batch["targets"]), len(pred)

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """eval_loss (the training loss on fixed chunks of 256), cosine and MSE on the validation split."""
        device = next(model.parameters()).device
        preds = predict(model, self.val.contexts, self.val.mask, device=device)
        targets = torch.from_numpy(self.val.targets)
        losses, sizes = [], []
        for start in range(0, len(preds), 256):
            p, t = preds[start : start + 256], targets[start : start + 256]
            if len(p) < 2:  # InfoNCE needs other targets in the chunk
                continue
            losses.append(float(self.loss_fn(p, t)))
            sizes.append(len(p))
        cosine = torch.nn.functional.cosine_similarity(preds, targets, dim=-1)
        return {
            "eval_loss": float(np.average(losses, weights=sizes)) if losses else float("nan"),
            "val_cosine": float(cosine.mean()),
            "val_mse": float(((preds - targets) ** 2).mean()),
        }


class GroupedWindows(torch.utils.data.Dataset[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]):
    """Item i = up to `group` consecutive windows of one article (windows are stored in article order)."""

    def __init__(self, split: SplitArrays, group: int) -> None:
        self.contexts = torch.from_numpy(split.contexts)
        self.mask = torch.from_numpy(split.mask)
        self.targets = torch.from_numpy(split.targets)
        starts = np.flatnonzero(np.r_[True, split.article[1:] != split.article[:-1]])
        ends = np.r_[starts[1:], len(split.article)]
        self.groups = [
            (begin, min(begin + group, end))
            for s, end in zip(starts, ends, strict=True)
            for begin in range(s, end, group)
        ]

    def __len__(self) -> int:
        return len(self.groups)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        begin, end = self.groups[i]
        return self.contexts[begin:end], self.mask[begin:end], self.targets[begin:end]


@torch.no_grad()
def predict(
    model: nn.Module,
    contexts: np.ndarray,
    mask: np.ndarray,
    *,
    device: torch.device | str = "cpu",
    batch_size: int = 1024,
) -> torch.Tensor:
    """Predictions (float32, on the CPU) for many contexts, in eval mode, batch by batch."""
    was_training = model.training
    model.eval()
    outputs = []
    for start in range(0, len(contexts), batch_size):
        x = torch.from_numpy(contexts[start : start + batch_size]).to(device)
        m = torch.from_numpy(mask[start : start + batch_size]).to(device)
        outputs.append(model(x, m).float().cpu())
    model.train(was_training)
    return torch.cat(outputs) if outputs else torch.zeros((0, contexts.shape[-1]))


def _cap(split: SplitArrays, limit: int, seed: int) -> SplitArrays:
    if len(split) <= limit:
        return split
    rows = np.sort(np.random.default_rng(seed).choice(len(split), size=limit, replace=False))
    return SplitArrays(
        contexts=split.contexts[rows],
        mask=split.mask[rows],
        targets=split.targets[rows],
        target_ids=split.target_ids[rows],
        context_ids=split.context_ids[rows],
        article=split.article[rows],
    )


def train_lvm(config: LVMTrainJobConfig, run: Run, *, resume: bool = True) -> dict[str, Any]:
    """Train (or resume) one LVM into `run`; returns the run summary."""
    from safetensors.torch import load_model

    from tldrlab.train import train

    if config.model not in LVM_MODELS:
        raise ConfigError(f"unknown LVM {config.model!r}; choose one of {', '.join(LVM_MODELS)}")
    parse_loss(config.loss)
    seed_everything(config.train.seed)
    sequences = load_sequences(config.sequences)
    train_split = sequences.split_arrays("train")
    val_split = _cap(sequences.split_arrays("val"), config.max_val_examples, config.train.seed)
    if len(val_split) == 0:
        val_split = _cap(train_split, min(config.max_val_examples, 512), config.train.seed)
    settings = {**config.model_settings, "dim": sequences.dim, "context": sequences.context}
    try:
        model = build_lvm(config.model, LVMConfig(**settings))
    except ValueError as exc:  # pydantic validation of model_settings
        raise ConfigError(f"invalid LVM settings: {exc}") from exc
    run.log(
        "training LVM",
        model=config.model,
        parameters=count_parameters(model),
        train_examples=len(train_split),
        val_examples=len(val_split),
    )
    task = LVMTask(train_split, val_split, config.loss, config.temperature, config.group)
    result = train(model, task, config.train, run, resume=resume)
    trained = result.model
    if result.best_checkpoint is not None:
        # keep the weights of the best validation, not those of the last step
        load_model(trained, str(Path(result.best_checkpoint) / "model.safetensors"))
    model_dir = save_lvm(trained, run.dir / MODEL_DIR)  # type: ignore[arg-type]
    run.add_artifact(model_dir, kind="model")
    summary = {
        "parameters": count_parameters(trained),
        "best_step": result.best_step,
        "val_cosine": task.evaluate(trained)["val_cosine"],
    }
    run.set_summary(**summary)
    return summary


def lvm_train_job(run: Run) -> dict[str, Any]:
    """Run kind `lvm_train`: the config is an LVMTrainJobConfig; resumes if checkpoints exist."""
    return train_lvm(LVMTrainJobConfig(**run.config), run, resume=True)
