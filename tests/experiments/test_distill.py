"""Knowledge distillation: the loss on a hand-checkable case, its gradient, the answer-only logits and the
teacher cache, on a tiny Llama built in the test."""

from __future__ import annotations

import math

import pytest
import torch

from tinylm import CORPUS, tiny_chat_tokenizer, tiny_llama
from tldrlab.errors import InvalidInputError
from tldrlab.experiments.distill import (
    TeacherCache,
    answer_logits,
    answer_positions,
    distillation_loss,
    examples_seen,
)
from tldrlab.models.chat import chat_pair_ids, collate_chat_pairs
from tldrlab.train.loop import epoch_batches


def test_kd_loss_value_and_gradient_by_hand() -> None:
    # vocabulary of 3, a uniform student; the teacher's top-2 are tokens 0 and 1 with equal logits
    student = torch.zeros(1, 3, requires_grad=True)
    values, indices = torch.tensor([[5.0, 5.0]]), torch.tensor([[0, 1]])
    target = torch.tensor([2])
    loss, parts = distillation_loss(student, values, indices, target, alpha=1.0, temperature=1.0)
    # p = (1/2, 1/2) on tokens 0, 1; q = 1/3 each: KL = sum p log(p / q) = log(3/2)
    assert loss.item() == pytest.approx(math.log(1.5), abs=1e-6)
    assert parts["ce"] == pytest.approx(math.log(3), abs=1e-6)  # reported, weighted 0 at alpha 1
    loss.backward()
    # d KD / d z = T (q - p), p zero outside the top-k: (1/3 - 1/2, 1/3 - 1/2, 1/3)
    assert torch.allclose(student.grad, torch.tensor([[-1 / 6, -1 / 6, 1 / 3]]), atol=1e-6)


def test_kd_temperature_and_mixing() -> None:
    student = torch.tensor([[1.0, 0.0, -1.0]], requires_grad=True)
    values, indices = torch.tensor([[2.0, 0.0]]), torch.tensor([[1, 0]])
    target = torch.tensor([0])
    t, alpha = 2.0, 0.25
    loss, _ = distillation_loss(student, values, indices, target, alpha=alpha, temperature=t)
    p = torch.softmax(values / t, -1)[0]
    q = torch.softmax(student.detach() / t, -1)[0]
    kd = float((p * (p.log() - q[indices[0]].log())).sum()) * t * t
    ce = -math.log(float(torch.softmax(student.detach(), -1)[0, 0]))
    assert loss.item() == pytest.approx(alpha * kd + (1 - alpha) * ce, abs=1e-6)
    loss.backward()
    p_full = torch.zeros(3)
    p_full[indices[0]] = p
    expected = alpha * t * (q - p_full) + (1 - alpha) * (
        torch.softmax(student.detach(), -1)[0] - torch.eye(3)[0]
    )
    assert torch.allclose(student.grad[0], expected, atol=1e-6)
    # gradcheck of the whole mixed loss in double precision
    z = torch.randn(4, 7, dtype=torch.float64, requires_grad=True)
    tv, ti = torch.randn(4, 3, dtype=torch.float64), torch.randint(0, 7, (4, 3))
    tt = torch.randint(0, 7, (4,))
    assert torch.autograd.gradcheck(
        lambda x: distillation_loss(x, tv, ti, tt, alpha=0.3, temperature=1.7)[0], (z,)
    )
    with pytest.raises(InvalidInputError):
        distillation_loss(
            torch.zeros(2, 3),
            torch.zeros(1, 2),
            torch.zeros(1, 2, dtype=torch.long),
            torch.zeros(2, dtype=torch.long),
            alpha=0.5,
            temperature=1.0,
        )


@pytest.fixture(scope="module")
def tiny():
    tokenizer = tiny_chat_tokenizer()
    return tokenizer, tiny_llama(tokenizer)


def _batch(tokenizer, n: int = 3) -> dict[str, torch.Tensor]:
    pairs = [chat_pair_ids(tokenizer, CORPUS[i], CORPUS[i + 4]) for i in range(n)]
    return collate_chat_pairs(pairs, tokenizer.pad_token_id)


def test_answer_logits_give_the_models_own_loss(tiny) -> None:
    tokenizer, model = tiny
    batch = _batch(tokenizer)
    logits, targets = answer_logits(model, batch)
    mask, _ = answer_positions(batch["labels"])
    assert logits.shape == (int(mask.sum()), len(tokenizer)) and targets.numel() == logits.shape[0]
    own = model(**batch).loss
    assert torch.nn.functional.cross_entropy(logits, targets).item() == pytest.approx(own.item(), rel=1e-5)
    full = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    assert torch.allclose(logits, full[mask], atol=1e-5)


def test_teacher_cache_covers_what_the_student_draws(tiny, tmp_path) -> None:
    from safetensors.torch import load_file

    tokenizer, model = tiny
    pairs = [chat_pair_ids(tokenizer, CORPUS[i % 10], CORPUS[(i + 3) % 10]) for i in range(10)]
    seen = examples_seen(len(pairs), 4, steps=3, seed=5)
    drawn = {i for epoch in range(2) for b in epoch_batches(10, 4, seed=5, epoch=epoch) for i in b}
    first_three = [b for e in range(2) for b in epoch_batches(10, 4, seed=5, epoch=e)][:3]
    assert set(seen) == {i for b in first_three for i in b} and set(seen) <= drawn

    def collate(items):
        return collate_chat_pairs(items, tokenizer.pad_token_id)

    cache = TeacherCache.build(model, pairs, seen, collate, top_k=5, batch_size=3)
    values, indices = cache.lookup([seen[1], seen[0]])
    one = collate([pairs[seen[1]], pairs[seen[0]]])
    logits, _ = answer_logits(model, one)
    top = torch.topk(logits, 5, dim=-1)
    assert torch.allclose(values, top.values, atol=1e-5) and torch.equal(indices.long(), top.indices)
    cache.save(tmp_path / "teacher.safetensors")
    saved = load_file(str(tmp_path / "teacher.safetensors"))
    assert saved["values"].shape[1] == 5 and int(saved["lengths"].sum()) == saved["values"].shape[0]
    with pytest.raises(InvalidInputError, match="no teacher logits"):
        cache.lookup([i for i in range(10) if i not in seen][:1])
