"""Losses for next-concept prediction (registry `LVM_LOSSES`), combinable and weighted: `cosine+0.3*corpus`.

- `mse`: mean squared error to the target vector (per dimension).
- `cosine`: 1 - cosine similarity; ignores the prediction's norm, which decoding ignores too.
- `infonce`: in-batch contrastive loss: the prediction must be closer (cosine / temperature) to its own target
  than to the other targets of the batch. It keeps predictions from collapsing towards the average concept,
  which `mse` and `cosine` alone tend to do.
- `corpus`: contrastive over a bank of concepts (training: every concept of the training articles) with the
  context's own concepts masked out: a softmax over exactly the candidates nearest-concept decoding chooses
  from, so it is the loss that matches retrieval top-1 with the context excluded. Needs a `LossBatch` with
  bank rows (tldrlab.lvm.training builds them).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from tldrlab.errors import ConfigError
from tldrlab.lvm.config import loss_terms


@dataclass
class LossBatch:
    """What a loss may look at besides the prediction."""

    target: torch.Tensor
    """(n, d) true next concepts."""
    temperature: float = 0.05
    """Softmax temperature of the contrastive losses."""
    bank: torch.Tensor | None = None
    """(M, d) unit-norm candidate concepts for `corpus`."""
    target_rows: torch.Tensor | None = None
    """(n,) row of each target in `bank`."""
    context_rows: torch.Tensor | None = None
    """(n, N) rows of the context concepts in `bank`, -1 for padding (masked out of the softmax)."""


LossFn = Callable[[torch.Tensor, LossBatch], torch.Tensor]


def mse_loss(pred: torch.Tensor, batch: LossBatch) -> torch.Tensor:
    return F.mse_loss(pred.float(), batch.target.float())


def cosine_loss(pred: torch.Tensor, batch: LossBatch) -> torch.Tensor:
    return (1.0 - F.cosine_similarity(pred.float(), batch.target.float(), dim=-1)).mean()


def infonce_loss(pred: torch.Tensor, batch: LossBatch) -> torch.Tensor:
    logits = F.normalize(pred.float(), dim=-1) @ F.normalize(batch.target.float(), dim=-1).T
    labels = torch.arange(len(pred), device=pred.device)
    return F.cross_entropy(logits / batch.temperature, labels)


def mask_context(scores: torch.Tensor, context_rows: torch.Tensor) -> torch.Tensor:
    """`scores` (n, M) over bank rows with each example's context rows (n, N; -1 = padding) set to -inf."""
    excluded = torch.zeros_like(scores, dtype=torch.bool).scatter_(
        1, context_rows.clamp_min(0), context_rows >= 0
    )
    return scores.masked_fill(excluded, float("-inf"))


def corpus_loss(pred: torch.Tensor, batch: LossBatch) -> torch.Tensor:
    if batch.bank is None or batch.target_rows is None or batch.context_rows is None:
        raise ConfigError("the corpus loss needs a concept bank (train it with tldrlab lvm train)")
    logits = F.normalize(pred.float(), dim=-1) @ batch.bank.T / batch.temperature
    return F.cross_entropy(mask_context(logits, batch.context_rows), batch.target_rows)


LVM_LOSSES: dict[str, LossFn] = {
    "mse": mse_loss,
    "cosine": cosine_loss,
    "infonce": infonce_loss,
    "corpus": corpus_loss,
}


def parse_loss(spec: str) -> list[tuple[float, str]]:
    """`cosine+0.3*corpus` -> [(1.0, "cosine"), (0.3, "corpus")], refusing unknown names and bad weights
    (the grammar is `tldrlab.lvm.config.loss_terms`, which validates `LVMTrainJobConfig.loss`)."""
    try:
        return loss_terms(spec)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def uses_bank(spec: str) -> bool:
    return any(name == "corpus" for _, name in parse_loss(spec))


def combined_loss(spec: str) -> LossFn:
    terms = parse_loss(spec)

    def loss(pred: torch.Tensor, batch: LossBatch) -> torch.Tensor:
        total = torch.zeros((), device=pred.device)
        for weight, name in terms:
            total = total + weight * LVM_LOSSES[name](pred, batch)
        return total

    return loss
