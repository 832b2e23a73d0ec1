"""Each ELM loss: values, gradients where they should (and should not) flow, gradcheck on small doubles."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tldrlab.elm.losses import LossConfig, contrastive_loss, lm_loss, text_drift_loss, total_loss


def test_lm_loss_is_shifted_cross_entropy_on_target_tokens_only() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 7, dtype=torch.double, requires_grad=True)
    labels = torch.tensor([[-100, -100, 3, 4, -100], [-100, 1, 2, 6, 0]])
    loss = lm_loss(logits, labels)
    # position t predicts labels[t + 1]
    expected = F.cross_entropy(
        torch.stack([logits[0, 1], logits[0, 2], logits[1, 0], logits[1, 1], logits[1, 2], logits[1, 3]]),
        torch.tensor([3, 4, 1, 2, 6, 0]),
    )
    assert torch.allclose(loss, expected)
    loss.backward()
    assert logits.grad is not None
    assert logits.grad[0, 0].abs().sum() == 0 and logits.grad[0, 3].abs().sum() == 0  # no target follows them
    assert logits.grad[1, 4].abs().sum() == 0  # the last position predicts nothing
    assert logits.grad[0, 1].abs().sum() > 0
    assert torch.autograd.gradcheck(
        lambda x: lm_loss(x, labels).double(), (logits.detach().requires_grad_(),)
    )


def test_drift_loss_hinge_zero_gradient_above_target_nonzero_below() -> None:
    document = torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.double)
    close = torch.tensor([[1.0, 0.1, 0.0]], dtype=torch.double, requires_grad=True)  # cos ~ 0.995
    far = torch.tensor([[0.2, 1.0, 0.0]], dtype=torch.double, requires_grad=True)  # cos ~ 0.196
    inactive = text_drift_loss(close, document, 0.75)
    inactive.backward()
    assert float(inactive.detach()) == 0.0 and close.grad is not None and float(close.grad.abs().sum()) == 0.0
    active = text_drift_loss(far, document, 0.75)
    cos = 0.2 / (0.2**2 + 1.0) ** 0.5
    assert abs(float(active.detach()) - (0.75 - cos)) < 1e-6
    active.backward()
    assert far.grad is not None and float(far.grad.abs().sum()) > 0
    # the gradient raises the similarity: one small step against it lowers the loss
    assert float(text_drift_loss(far.detach() - 0.1 * far.grad, document, 0.75)) < float(active.detach())
    torch.manual_seed(1)
    summary = torch.randn(4, 6, dtype=torch.double, requires_grad=True)
    docs = torch.randn(4, 6, dtype=torch.double)
    assert float(text_drift_loss(summary, docs, 0.9).detach()) > 0  # random vectors are far below 0.9
    assert torch.autograd.gradcheck(lambda s: text_drift_loss(s, docs, 0.9).double(), (summary,))


def test_contrastive_loss_prefers_matching_pairs_and_has_exact_gradients() -> None:
    torch.manual_seed(2)
    docs = F.normalize(torch.randn(5, 8, dtype=torch.double), dim=-1)
    matched = contrastive_loss(docs.clone(), docs, 0.1)
    shuffled = contrastive_loss(docs[[1, 2, 3, 4, 0]], docs, 0.1)
    assert float(matched) < float(shuffled)
    summary = torch.randn(5, 8, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(lambda s: contrastive_loss(s, docs, 0.5).double(), (summary,))
    loss = contrastive_loss(summary, docs, 0.5)
    loss.backward()
    assert summary.grad is not None and float(summary.grad.abs().sum()) > 0
    single = torch.randn(1, 8, requires_grad=True)
    alone = contrastive_loss(single, docs[:1].float(), 0.1)
    alone.backward()
    assert float(alone.detach()) == 0.0 and single.grad is not None and float(single.grad.abs().sum()) == 0.0


def test_total_loss_weights_and_switches() -> None:
    torch.manual_seed(3)
    logits = torch.randn(3, 4, 9)
    labels = torch.tensor([[-100, 2, 3, 1]] * 3)
    summary, docs = torch.randn(3, 6), torch.randn(3, 6)
    config = LossConfig(text_drift_weight=0.5, contrastive_weight=0.25, text_drift_target_similarity=0.8)
    total, parts = total_loss(logits, labels, summary, docs, config)
    expected = parts["lm"] + 0.5 * parts["drift"] + 0.25 * parts["contrastive"]
    assert abs(float(total) - expected) < 1e-5
    off = LossConfig(use_text_drift_loss=False, use_contrastive_loss=False)
    total_off, parts_off = total_loss(logits, labels, summary, docs, off)
    assert set(parts_off) == {"lm"} and abs(float(total_off) - parts["lm"]) < 1e-6
