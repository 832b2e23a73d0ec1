"""`ElmTask`: the ELM data, batches, loss and evaluation for tldrlab's training loop (`tldrlab.train.train`).

One example = (document embedding, prompt ids with a placeholder per prefix vector, target ids + eos). A batch
is right-padded; labels are -100 everywhere but the target tokens and eos. Evaluation = token-weighted LM loss
and mean drift similarity on validation, plus greedy summaries of the first `eval_samples` validation
documents scored by `summary_quality` (BERTScore P/R/F1 + composite, ROUGE, length ratio, ...).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from tldrlab.elm.evaluate import summary_quality
from tldrlab.elm.losses import LossConfig, lm_loss, total_loss
from tldrlab.elm.model import ElmModel, encode_template, generate_summaries, lm_max_positions, prompt_ids
from tldrlab.elm.prepare import ElmSplit
from tldrlab.errors import InvalidInputError
from tldrlab.tokenizers.plain import plain
from tldrlab.train.tasks import ListDataset

EVAL_BATCH = 32


@dataclass
class ElmExample:
    embedding: torch.Tensor
    """(dim,) document embedding."""
    prompt: list[int]
    """Prompt ids, placeholders where the prefix goes."""
    prefix: list[bool]
    """True at the prefix positions of `prompt`."""
    target: list[int]
    """Target ids ending with eos."""


class ElmTask:
    """TrainTask for an ElmModel (see the module docstring)."""

    def __init__(
        self,
        model: ElmModel,
        tokenizer: Any,
        train: ElmSplit,
        val: ElmSplit,
        loss_config: LossConfig,
        *,
        max_target_len: int = 48,
        eval_samples: int = 32,
        max_val_examples: int = 256,
        bertscore_model: str | None = None,
        use_bertscore: bool = True,
    ) -> None:
        self.tokenizer = tokenizer
        self.loss_config = loss_config
        self.max_target_len = max_target_len
        self.bertscore_model = bertscore_model
        self.use_bertscore = use_bertscore
        self.n_prefix = model.config.num_prefix_tokens
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.limit = lm_max_positions(model)
        self.train_examples = self._encode(train)
        self.val_split_records = [r for r in val.records if str(r["target_text"]).strip()][:max_val_examples]
        self.val_examples = self._encode(ElmSplit(self.val_split_records, val.embeddings))
        self.eval_samples = min(eval_samples, len(self.val_examples))
        if not self.train_examples:
            raise InvalidInputError("no training records with a target text")
        if not self.val_examples:
            raise InvalidInputError("no validation records with a target text")
        self.last_parts: dict[str, float] = {}
        """Each loss part of the latest training batch."""
        self.last_samples: list[dict[str, str]] = []
        """Generated validation summaries of the latest evaluation."""

    def _encode(self, split: ElmSplit) -> list[ElmExample]:
        records = [r for r in split.records if str(r["target_text"]).strip()]
        if not records:
            return []
        eos = self.tokenizer.eos_token_id
        templates: dict[str, tuple[list[int], list[bool]]] = {}
        # reference summaries are user text: an "</s>" in one is text, not where the answer ends
        targets = plain(self.tokenizer, [str(r["target_text"]) for r in records], add_special_tokens=False)[
            "input_ids"
        ]
        examples = []
        for record, target in zip(records, targets, strict=True):
            template = str(record.get("input_prompt_template") or "{text}")
            if template not in templates:
                before, after = encode_template(self.tokenizer, template)
                templates[template] = prompt_ids(before, after, self.n_prefix, self.pad_id)
            prompt, prefix = templates[template]
            keep = self.max_target_len - 1
            if self.limit is not None:
                keep = min(keep, self.limit - len(prompt) - 1)
            if keep < 1:
                raise InvalidInputError(
                    f"the prompt ({len(prompt)} tokens) leaves no room for a target in {self.limit} positions"
                )
            embedding = split.embeddings[record["embedding_index"]]
            examples.append(ElmExample(embedding, prompt, prefix, [*list(target)[:keep], eos]))
        return examples

    # -- TrainTask -------------------------------------------------------------------------------------------
    def train_dataset(self) -> torch.utils.data.Dataset[Any]:

        return ListDataset(self.train_examples)

    def collate(self, items: list[ElmExample]) -> dict[str, torch.Tensor]:
        width = max(len(e.prompt) + len(e.target) for e in items)
        n = len(items)
        input_ids = torch.full((n, width), self.pad_id, dtype=torch.long)
        attention = torch.zeros((n, width), dtype=torch.long)
        prefix_mask = torch.zeros((n, width), dtype=torch.bool)
        target_mask = torch.zeros((n, width), dtype=torch.bool)
        labels = torch.full((n, width), -100, dtype=torch.long)
        for row, e in enumerate(items):
            p, t = len(e.prompt), len(e.target)
            input_ids[row, :p] = torch.tensor(e.prompt)
            input_ids[row, p : p + t] = torch.tensor(e.target)
            attention[row, : p + t] = 1
            prefix_mask[row, :p] = torch.tensor(e.prefix)
            labels[row, p : p + t] = torch.tensor(e.target)
            target_mask[row, p : p + t] = True
        return {
            "embeddings": torch.stack([e.embedding for e in items]).float(),
            "input_ids": input_ids,
            "attention_mask": attention,
            "prefix_mask": prefix_mask,
            "target_mask": target_mask,
            "labels": labels,
        }

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
        out = model(
            batch["embeddings"],
            batch["input_ids"],
            batch["attention_mask"],
            batch["prefix_mask"],
            batch["target_mask"],
        )
        loss, parts = total_loss(
            out["logits"], batch["labels"], out["summary"], batch["embeddings"], self.loss_config
        )
        self.last_parts = parts
        return loss, int((batch["labels"] != -100).sum())

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        assert isinstance(model, ElmModel)
        device = next(model.parameters()).device
        total, tokens, similarity = 0.0, 0, 0.0
        for start in range(0, len(self.val_examples), EVAL_BATCH):
            batch = self.collate(self.val_examples[start : start + EVAL_BATCH])
            batch = {k: v.to(device) for k, v in batch.items()}
            out = model(
                batch["embeddings"],
                batch["input_ids"],
                batch["attention_mask"],
                batch["prefix_mask"],
                batch["target_mask"],
            )
            n = int((batch["labels"] != -100).sum())
            total += float(lm_loss(out["logits"], batch["labels"])) * n
            tokens += n
            similarity += float(
                F.cosine_similarity(out["summary"].float(), batch["embeddings"], dim=-1).sum()
            )
        loss = total / max(tokens, 1)
        metrics = {
            "eval_loss": loss,
            "eval_perplexity": math.exp(min(loss, 50.0)),
            "eval_drift_similarity": similarity / len(self.val_examples),
        }
        if self.eval_samples:
            metrics.update(self.generation_metrics(model))
        return metrics

    def generation_metrics(self, model: ElmModel) -> dict[str, float]:

        records = self.val_split_records[: self.eval_samples]
        embeddings = torch.stack([e.embedding for e in self.val_examples[: self.eval_samples]])
        templates = [str(r.get("input_prompt_template") or "{text}") for r in records]
        preds = generate_summaries(
            model, self.tokenizer, embeddings, templates, max_new_tokens=self.max_target_len
        )
        refs = [str(r["target_text"]) for r in records]
        self.last_samples = [
            {"reference": ref, "prediction": pred, "source_id": str(r.get("source_id", ""))}
            for r, ref, pred in zip(records, refs, preds, strict=True)
        ]
        return summary_quality(
            preds, refs, bertscore_model=self.bertscore_model, use_bertscore=self.use_bertscore
        )
