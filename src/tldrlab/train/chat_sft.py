"""`ChatSFTTask`: supervised fine-tuning of a causal chat LM on document -> summary pairs.

Every SummaryRecord becomes one chat exchange (`models.chat`): the user turn asks for a summary of the
document (cut to `data.max_source_len` tokens), the assistant turn is the reference summary (cut to
`data.max_target_len` tokens, ending with the end-of-turn token). Rows are right-padded; the loss covers the
answer tokens only (the prompt and the padding are -100). Examples are tokenized when first drawn, so a run
that sees a fraction of a large data set does not pay for tokenizing all of it.

Evaluation: the token-weighted loss of the validation answers, and at every `data.generate_every`-th
evaluation ROUGE (and BERTScore when `data.bertscore`) of greedy summaries of the first
`data.generate_examples` validation documents; those predictions are kept in `last_samples`.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from tldrlab.data.records import SummaryRecord
from tldrlab.errors import InvalidInputError
from tldrlab.evaluate.config import GenerateOptions, generated_metric_names
from tldrlab.evaluate.generate import generate
from tldrlab.evaluate.metrics import bertscore, rouge_scores
from tldrlab.models.chat import chat_pair_ids, collate_chat_pairs, context_limit, instruction_of
from tldrlab.train.config import DataConfig

EVAL_BATCH = 8
"""Validation examples per forward pass."""


class _LazyPairs(torch.utils.data.Dataset[Any]):
    """Records tokenized into (prompt ids, answer ids) on first access, then cached."""

    def __init__(self, records: list[SummaryRecord], encode: Any) -> None:
        self.records = records
        self.encode = encode
        self.cache: dict[int, tuple[list[int], list[int]]] = {}

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> tuple[list[int], list[int]]:
        if index not in self.cache:
            self.cache[index] = self.encode(self.records[index])
        return self.cache[index]


class ChatSFTTask:
    """Document -> summary as a chat exchange for a causal LM; loss on the answer only."""

    def __init__(
        self,
        train_records: list[SummaryRecord],
        val_records: list[SummaryRecord],
        tokenizer: Any,
        data: DataConfig,
        instruction: str,
        context: int | None = None,
    ) -> None:
        self.tokenizer = tokenizer
        self.context = context
        """The model's positions (`context_limit`): an example is cut to fit them (None: no limit)."""
        self.data = data
        self.instruction = instruction
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        usable = [r for r in train_records if r.summaries and r.document.strip()]
        if not usable:
            raise InvalidInputError(f"{data.path}: no training records with a document and a summary")
        self.train_pairs = _LazyPairs(usable, self.encode)
        self.val_records = [r for r in val_records if r.summaries and r.document.strip()][
            : data.max_val_examples
        ]
        if not self.val_records:
            raise InvalidInputError(f"{data.path}: no validation records with a summary")
        self.val_pairs = [self.encode(r) for r in self.val_records]
        self.evaluations = 0
        """Evaluations so far (the loop restores it on resume): every `generate_every`-th one generates."""
        self.occasional_metrics = (
            generated_metric_names(bertscore=data.bertscore, empty_predictions=False)
            if data.generate_every > 1
            else frozenset()
        )
        """Metrics only the generating evaluations have: a best_metric among them is not missing from the
        others."""
        self.last_samples: list[dict[str, str]] = []
        """Generated validation summaries of the latest generating evaluation (for tables / inspection)."""

    def encode(self, record: SummaryRecord) -> tuple[list[int], list[int]]:
        return chat_pair_ids(
            self.tokenizer,
            record.document,
            record.summary,
            self.instruction,
            max_source_tokens=self.data.max_source_len,
            max_target_tokens=self.data.max_target_len,
            # a GPT-2-style model of 256 positions failed with an IndexError in its forward otherwise
            max_total_tokens=self.context,
        )

    def train_dataset(self) -> torch.utils.data.Dataset[Any]:
        return self.train_pairs

    def collate(self, items: list[tuple[list[int], list[int]]]) -> dict[str, torch.Tensor]:
        return collate_chat_pairs(items, self.pad_id)

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
        out = model(**batch)
        # Throughput counts the prompt too: the model runs (and back-propagates) through every token.
        return out.loss, int(batch["attention_mask"].sum())

    def eval_loss(self, model: nn.Module) -> float:
        device = next(model.parameters()).device
        total, tokens = 0.0, 0
        for start in range(0, len(self.val_pairs), EVAL_BATCH):
            batch = {
                k: v.to(device) for k, v in self.collate(self.val_pairs[start : start + EVAL_BATCH]).items()
            }
            n = int((batch["labels"] != -100).sum())
            total += float(model(**batch).loss) * n
            tokens += n
        return total / max(tokens, 1)

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        self.evaluations += 1
        loss = self.eval_loss(model)
        metrics = {"eval_loss": loss, "eval_perplexity": math.exp(min(loss, 50.0))}
        every = self.data.generate_every
        if every and self.evaluations % every == 0:
            metrics.update(self.generation_metrics(model))
        return metrics

    def generation_metrics(self, model: nn.Module) -> dict[str, float]:
        """ROUGE (and BERTScore when enabled) of greedy summaries of the first validation documents."""

        records = self.val_records[: self.data.generate_examples]
        options = GenerateOptions(
            temperature=0.0,
            max_new_tokens=self.data.max_target_len,
            max_input_tokens=self.data.max_source_len,
        )
        preds = [outs[0] for outs in generate(model, self.tokenizer, [r.document for r in records], options)]
        refs = [r.summary for r in records]
        self.last_samples = [
            {"id": r.id, "document": r.document[:500], "reference": ref, "prediction": pred}
            for r, ref, pred in zip(records, refs, preds, strict=True)
        ]
        metrics = {f"eval_{k}": v for k, v in rouge_scores(preds, refs).items()}
        if self.data.bertscore:
            # its keys already say bertscore_: eval_bertscore_f1, not eval_bertscore_bertscore_f1
            metrics.update({f"eval_{k}": v for k, v in bertscore(preds, refs).items()})
        return metrics


def build_chat_task(
    train_records: list[SummaryRecord],
    val_records: list[SummaryRecord],
    tokenizer: Any,
    data: DataConfig,
    model: Any,
) -> ChatSFTTask:
    """The task for a `chat` model family, asking with the instruction the model was built with (kept in its
    config, where `generate` reads it too)."""
    return ChatSFTTask(
        train_records, val_records, tokenizer, data, instruction_of(model), context_limit(model)
    )
