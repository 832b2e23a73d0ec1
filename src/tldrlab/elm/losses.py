"""The ELM training objective: LM cross-entropy + text drift + in-batch contrastive (see docs/elm.md).

With `s_i` the projected summary representation of example i (the drift head applied to the mean of the
LM's last hidden states over the target tokens) and `d_i` its document embedding:

    lm          = mean over target tokens of -log p(token | prefix, previous tokens)
    drift       = mean_i relu(target_similarity - cos(s_i, d_i))
    contrastive = 1/2 [CE(S D^T / tau, I) + CE(D S^T / tau, I)]   rows of S, D L2-normalised; 0 when B < 2
    total       = lm_weight * lm + drift_weight * drift + contrastive_weight * contrastive
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tldrlab.elm.config import LossConfig


def _full(x: torch.Tensor) -> torch.Tensor:
    """Half-precision inputs (bf16 / fp16 autocast) are computed in fp32; fp32 / fp64 stay as they are."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy where labels != -100; logits (B, L, V) predict labels shifted by one."""
    shift_logits = _full(logits[:, :-1, :].reshape(-1, logits.size(-1)))
    shift_labels = labels[:, 1:].reshape(-1)
    return F.cross_entropy(shift_logits, shift_labels, ignore_index=-100)


def text_drift_loss(summary: torch.Tensor, document: torch.Tensor, target_similarity: float) -> torch.Tensor:
    """mean_i relu(target - cos(summary_i, document_i)); zero, with zero gradient, above the target."""
    cos = F.cosine_similarity(_full(summary), _full(document).to(_full(summary).dtype), dim=-1)
    return F.relu(target_similarity - cos).mean()


def contrastive_loss(summary: torch.Tensor, document: torch.Tensor, temperature: float) -> torch.Tensor:
    """Symmetric in-batch InfoNCE: each summary must pick its own document among the batch's, and back."""
    if summary.size(0) < 2:  # no negatives: nothing to contrast
        return summary.sum() * 0.0
    s = F.normalize(_full(summary), dim=-1)
    d = F.normalize(_full(document).to(s.dtype), dim=-1)
    logits = s @ d.t() / temperature
    target = torch.arange(s.size(0), device=s.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))


def total_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    summary: torch.Tensor,
    document: torch.Tensor,
    config: LossConfig,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The weighted sum and each part's value (for logging)."""
    parts = {"lm": lm_loss(logits, labels)}
    if config.use_text_drift_loss and config.text_drift_weight > 0:
        parts["drift"] = text_drift_loss(summary, document, config.text_drift_target_similarity)
    if config.use_contrastive_loss and config.contrastive_weight > 0:
        parts["contrastive"] = contrastive_loss(summary, document, config.contrastive_temperature)
    weights = {
        "lm": config.lm_weight,
        "drift": config.text_drift_weight,
        "contrastive": config.contrastive_weight,
    }
    total = sum(
        (weights[name] * value for name, value in parts.items()), start=torch.zeros((), device=logits.device)
    )
    return total, {name: float(value.detach()) for name, value in parts.items()}
