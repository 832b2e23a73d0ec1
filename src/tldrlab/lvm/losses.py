"""Losses for next-concept prediction (registry `LVM_LOSSES`), combinable as `cosine+infonce`.

- `mse`: mean squared error to the target vector (per dimension).
- `cosine`: 1 - cosine similarity; ignores the prediction's norm, which decoding ignores too.
- `infonce`: in-batch contrastive loss: the prediction must be closer (cosine / temperature) to its own target
  than to the other targets of the batch. This is what retrieval top-1 rewards, and it keeps predictions from
  collapsing towards the average concept, which `mse` and `cosine` alone tend to do.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from tldrlab.errors import ConfigError

LossFn = Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]


def mse_loss(pred: torch.Tensor, target: torch.Tensor, temperature: float) -> torch.Tensor:
    return F.mse_loss(pred.float(), target.float())


def cosine_loss(pred: torch.Tensor, target: torch.Tensor, temperature: float) -> torch.Tensor:
    return (1.0 - F.cosine_similarity(pred.float(), target.float(), dim=-1)).mean()


def infonce_loss(pred: torch.Tensor, target: torch.Tensor, temperature: float) -> torch.Tensor:
    logits = F.normalize(pred.float(), dim=-1) @ F.normalize(target.float(), dim=-1).T / temperature
    labels = torch.arange(len(pred), device=pred.device)
    return F.cross_entropy(logits, labels)


LVM_LOSSES: dict[str, LossFn] = {"mse": mse_loss, "cosine": cosine_loss, "infonce": infonce_loss}


def parse_loss(spec: str) -> list[str]:
    """`cosine+infonce` -> ["cosine", "infonce"], refusing unknown names."""
    names = [part.strip() for part in spec.split("+") if part.strip()]
    unknown = [n for n in names if n not in LVM_LOSSES]
    if not names or unknown:
        raise ConfigError(f"unknown loss {spec!r}; use one or more of {', '.join(LVM_LOSSES)} joined by '+'")
    return names


def combined_loss(
    spec: str, temperature: float = 0.05
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    names = parse_loss(spec)

    def loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        total = LVM_LOSSES[names[0]](pred, target, temperature)
        for name in names[1:]:
            total = total + LVM_LOSSES[name](pred, target, temperature)
        return total

    return loss
