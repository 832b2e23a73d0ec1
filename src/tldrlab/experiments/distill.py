"""Knowledge distillation for causal LMs from cached top-k teacher logits.

    cache = TeacherCache.build(teacher, dataset, indices, top_k=32, temperature=2.0)  # one teacher pass
    loss, parts = distillation_loss(student_logits, cache_values, cache_indices, targets, alpha=0.5, T=2.0)

Only the answer tokens are distilled (the tokens the fine-tuning loss covers). The teacher runs once over the
training examples the student will see within its step budget (`examples_seen`), and its `top_k` logits at
each answer position are kept in memory (and written to the run as safetensors): a teacher forward costs the
same whether it runs online or ahead of time when each example is seen once, and ahead of time the student's
steps cost no more than plain fine-tuning and the teacher is freed before the student trains. With several
epochs the cache saves one teacher forward per repeat.

The distillation term is the KL divergence from the teacher's temperature-softened distribution, restricted to
its top-k tokens and renormalised there, to the student's (softened over the whole vocabulary), times T^2 so
its gradients keep their size across temperatures:

    p = softmax(z_teacher[top-k] / T)            q = softmax(z_student / T)   (over the vocabulary)
    KD = T^2 * sum_k p_k (log p_k - log q[top-k index k])
    loss = alpha * KD + (1 - alpha) * CE(z_student, reference token)

Its gradient with respect to the student's logits is T * (q - p) (p zero outside the top-k): hand-checked in
the tests.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from tldrlab.errors import InvalidInputError
from tldrlab.runs.weights import save_safetensors
from tldrlab.train.loop import epoch_batches

HALF = (torch.float16, torch.bfloat16)


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_values: torch.Tensor,
    teacher_indices: torch.Tensor,
    targets: torch.Tensor,
    *,
    alpha: float,
    temperature: float,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Mixed loss over N answer tokens: student logits (N, V), teacher top-k logits and their vocabulary
    indices (N, k), reference tokens (N,). Returns the loss and its parts (kd, ce) as floats."""
    if student_logits.shape[0] != teacher_values.shape[0] or teacher_values.shape != teacher_indices.shape:
        raise InvalidInputError(
            f"{student_logits.shape[0]} student positions but teacher logits of shape "
            f"{tuple(teacher_values.shape)}"
        )
    # half precision (autocast) is computed in float32; float32 and float64 stay as they are
    logits = student_logits.float() if student_logits.dtype in HALF else student_logits
    teacher = teacher_values.to(logits.dtype)
    ce = F.cross_entropy(logits, targets)
    t = float(temperature)
    log_q = F.log_softmax(logits / t, dim=-1).gather(-1, teacher_indices.long())
    log_p = F.log_softmax(teacher / t, dim=-1)
    kd = (log_p.exp() * (log_p - log_q)).sum(-1).mean() * t * t
    loss = alpha * kd + (1.0 - alpha) * ce
    return loss, {"kd": float(kd.detach()), "ce": float(ce.detach())}


def answer_positions(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mask over positions whose logits predict an answer token, those tokens): the shift a causal LM
    applies to its labels, row-major order."""
    mask = torch.zeros_like(labels, dtype=torch.bool)
    mask[:, :-1] = labels[:, 1:] != -100
    return mask, labels[:, 1:][labels[:, 1:] != -100]


def answer_logits(model: Any, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits at the answer positions (N, V), the answer tokens (N,)): the decoder runs on the whole
    sequence, the output head only where the loss needs it (a large-vocabulary head over every prompt token
    would cost as much as several layers)."""
    mask, targets = answer_positions(batch["labels"])
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else None
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if decoder is None or head is None:
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        return logits[mask], targets
    hidden = decoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    return head(hidden[mask]), targets


@dataclass
class TeacherCache:
    """Top-k teacher logits at the answer positions of training examples, by dataset index."""

    values: dict[int, torch.Tensor]
    indices: dict[int, torch.Tensor]
    top_k: int
    seconds: float
    """Wall time of the teacher's passes."""

    @classmethod
    @torch.no_grad()
    def build(
        cls,
        teacher: Any,
        dataset: Any,
        examples: list[int],
        collate: Any,
        *,
        top_k: int,
        batch_size: int = 8,
        progress: Any = None,
    ) -> TeacherCache:
        """Run `teacher` over `examples` (dataset indices) and keep each answer position's top-k logits."""
        started = time.perf_counter()
        was_training = teacher.training
        teacher.eval()
        values: dict[int, torch.Tensor] = {}
        indices: dict[int, torch.Tensor] = {}
        try:
            for start in range(0, len(examples), batch_size):
                chunk = examples[start : start + batch_size]
                batch = collate([dataset[i] for i in chunk])
                mask, _ = answer_positions(batch["labels"])
                logits, _ = answer_logits(teacher, batch)
                k = min(top_k, logits.shape[-1])
                top = torch.topk(logits.float(), k, dim=-1)
                counts = mask.sum(1).tolist()
                offset = 0
                for index, count in zip(chunk, counts, strict=True):
                    values[index] = top.values[offset : offset + count].clone()
                    indices[index] = top.indices[offset : offset + count].to(torch.int32).clone()
                    offset += count
                if progress is not None:
                    progress(len(chunk))
        finally:
            teacher.train(was_training)
        return cls(values, indices, top_k, time.perf_counter() - started)

    def lookup(self, examples: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """The cached (values, indices) of `examples`, concatenated in order (row-major, like the mask)."""
        missing = [i for i in examples if i not in self.values]
        if missing:
            raise InvalidInputError(f"no teacher logits cached for training examples {missing[:5]}")
        return (
            torch.cat([self.values[i] for i in examples]),
            torch.cat([self.indices[i] for i in examples]),
        )

    def save(self, path: Path) -> None:
        """All cached logits as one safetensors file (values, indices, example ids and offsets)."""
        order = sorted(self.values)
        lengths = torch.tensor([len(self.values[i]) for i in order], dtype=torch.int64)
        save_safetensors(
            {
                "examples": torch.tensor(order, dtype=torch.int64),
                "lengths": lengths,
                "values": torch.cat([self.values[i] for i in order]) if order else torch.zeros(0),
                "indices": torch.cat([self.indices[i] for i in order]) if order else torch.zeros(0),
            },
            path,
            metadata={"top_k": str(self.top_k), "seconds": f"{self.seconds:.3f}"},
        )


def examples_seen(n_items: int, batch_size: int, steps: int, seed: int) -> list[int]:
    """Dataset indices the training loop draws in its first `steps` steps (its seeded epoch order)."""

    seen: list[int] = []
    epoch = 0
    remaining = steps
    while remaining > 0:
        batches = epoch_batches(n_items, batch_size, seed=seed, epoch=epoch)
        if not batches:
            raise InvalidInputError(f"{n_items} training examples: too few for batch_size {batch_size}")
        for batch in batches[:remaining]:
            seen.extend(batch)
        remaining -= len(batches)
        epoch += 1
    return sorted(set(seen))
