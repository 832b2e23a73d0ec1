"""Training tasks: what the loop trains on, for each kind of model.

- `Seq2SeqTask`: SummaryRecords -> ("summarize: " + document, summary) token pairs, each ending with eos;
  evaluation = token-weighted validation loss, and every Nth evaluation ROUGE (+ BERTScore) of greedy
  summaries of a few validation documents.
- `CausalLMTask`: one long token stream cut into contiguous blocks of `block_size` tokens (no padding);
  evaluation = loss and perplexity on validation blocks.
- `ChatSFTTask` (`train.chat_sft`): document -> summary as a chat exchange with a pretrained causal LM,
  loss on the answer only (the `chat` task of the causal_lm family).

`build_task(job_config, tokenizer, model)` reads the data (its own train / validation splits when it has them,
else a seeded record split for seq2seq and the last `val_fraction` of the tokens for LMs — the same held-out
part `tldrlab eval` uses) and returns the task for the model's kind.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from tldrlab.data import splits
from tldrlab.data.readers import read_records
from tldrlab.data.records import SummaryRecord
from tldrlab.errors import InvalidInputError
from tldrlab.evaluate.config import GenerateOptions, generated_metric_names
from tldrlab.evaluate.generate import generate
from tldrlab.evaluate.metrics import bertscore, empty_count, rouge_scores
from tldrlab.tokenizers.plain import plain
from tldrlab.train.chat_sft import build_chat_task
from tldrlab.train.config import DataConfig, TrainJobConfig

EVAL_BATCH = 16
"""Examples (or blocks) per forward pass during evaluation."""


class ListDataset(torch.utils.data.Dataset[Any]):
    def __init__(self, items: list[Any]) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Any:
        return self.items[index]


def _device_of(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


# -- seq2seq ------------------------------------------------------------------------------------------------
class Seq2SeqTask:
    """Document -> summary pairs for an encoder-decoder (T5)."""

    def __init__(
        self,
        train_records: list[SummaryRecord],
        val_records: list[SummaryRecord],
        tokenizer: Any,
        data: DataConfig,
    ) -> None:
        self.tokenizer = tokenizer
        self.data = data
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.train_pairs = self._encode(train_records)
        self.val_records = [r for r in val_records if r.summaries][: data.max_val_examples]
        self.val_pairs = self._encode(self.val_records)
        if not self.train_pairs:
            raise InvalidInputError(f"{data.path}: no training records with a summary")
        if not self.val_pairs:
            raise InvalidInputError(f"{data.path}: no validation records with a summary")
        self.evaluations = 0
        """Evaluations so far (the loop restores it on resume): every `generate_every`-th one generates."""
        self.occasional_metrics = (
            generated_metric_names(bertscore=data.bertscore) if data.generate_every > 1 else frozenset()
        )
        """Metrics only the generating evaluations have: a best_metric among them is not missing from the
        others."""
        self.last_samples: list[dict[str, str]] = []
        """Generated validation summaries of the latest generating evaluation (for tables / inspection)."""

    def _encode(self, records: list[SummaryRecord]) -> list[tuple[list[int], list[int]]]:
        records = [r for r in records if r.summaries and r.document.strip()]
        if not records:
            return []
        eos = self.tokenizer.eos_token_id
        documents = [self.data.prefix + r.document for r in records]
        # user text: a "</s>" in a document is text, not an end of the source the model learns to stop at
        sources = plain(self.tokenizer, documents, add_special_tokens=False)["input_ids"]
        targets = plain(self.tokenizer, [r.summary for r in records], add_special_tokens=False)["input_ids"]
        limit_src, limit_tgt = self.data.max_source_len - 1, self.data.max_target_len - 1
        return [([*s[:limit_src], eos], [*t[:limit_tgt], eos]) for s, t in zip(sources, targets, strict=True)]

    def train_dataset(self) -> torch.utils.data.Dataset[Any]:
        return ListDataset(self.train_pairs)

    def collate(self, items: list[tuple[list[int], list[int]]]) -> dict[str, torch.Tensor]:
        src_len = max(len(s) for s, _ in items)
        tgt_len = max(len(t) for _, t in items)
        input_ids = torch.full((len(items), src_len), self.pad_id, dtype=torch.long)
        attention = torch.zeros((len(items), src_len), dtype=torch.long)
        labels = torch.full((len(items), tgt_len), -100, dtype=torch.long)
        for row, (src, tgt) in enumerate(items):
            input_ids[row, : len(src)] = torch.tensor(src)
            attention[row, : len(src)] = 1
            labels[row, : len(tgt)] = torch.tensor(tgt)
        return {"input_ids": input_ids, "attention_mask": attention, "labels": labels}

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
        out = model(**batch)
        return out.loss, int((batch["labels"] != -100).sum())

    def eval_loss(self, model: nn.Module) -> float:
        device = _device_of(model)
        total, tokens = 0.0, 0
        for start in range(0, len(self.val_pairs), EVAL_BATCH):
            batch = self.collate(self.val_pairs[start : start + EVAL_BATCH])
            batch = {k: v.to(device) for k, v in batch.items()}
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
        sources = [self.data.prefix + r.document for r in records]
        options = GenerateOptions(
            temperature=0.0,
            max_new_tokens=self.data.max_target_len,
            max_input_tokens=self.data.max_source_len,
        )
        preds = [outs[0] for outs in generate(model, self.tokenizer, sources, options)]
        refs = [r.summary for r in records]
        self.last_samples = [
            {"id": r.id, "document": r.document[:500], "reference": ref, "prediction": pred}
            for r, ref, pred in zip(records, refs, preds, strict=True)
        ]
        metrics = {f"eval_{k}": v for k, v in rouge_scores(preds, refs).items()}
        # an untrained model often generates nothing at all: counted, so zeros are not taken for a score
        metrics["eval_empty_predictions"] = float(empty_count(preds))
        if self.data.bertscore:
            # its keys already say bertscore_: eval_bertscore_f1, not eval_bertscore_bertscore_f1
            metrics.update({f"eval_{k}": v for k, v in bertscore(preds, refs).items()})
        return metrics


# -- causal LM ----------------------------------------------------------------------------------------------
class CausalLMTask:
    """Contiguous token blocks for a causal LM (GPT-2, char-LSTM); labels are the inputs (models shift)."""

    def __init__(
        self, train_ids: list[int], val_ids: list[int], tokenizer: Any, data: DataConfig, block_size: int
    ) -> None:
        self.tokenizer = tokenizer
        self.data = data
        self.block_size = block_size
        self.train_blocks = [
            train_ids[i : i + block_size] for i in range(0, len(train_ids) - block_size + 1, block_size)
        ]
        val_blocks = [val_ids[i : i + block_size] for i in range(0, len(val_ids), block_size)]
        self.val_blocks = [b for b in val_blocks if len(b) >= 2][: data.max_val_examples]
        if not self.train_blocks:
            raise InvalidInputError(
                f"{data.path}: {len(train_ids)} training tokens are fewer than one block of {block_size}"
            )
        if not self.val_blocks:
            raise InvalidInputError(f"{data.path}: no validation text (needs at least 2 tokens)")

    def train_dataset(self) -> torch.utils.data.Dataset[Any]:
        return ListDataset(self.train_blocks)

    def collate(self, items: list[list[int]]) -> dict[str, torch.Tensor]:
        width = max(len(b) for b in items)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        input_ids = torch.full((len(items), width), pad, dtype=torch.long)
        labels = torch.full((len(items), width), -100, dtype=torch.long)
        for row, block in enumerate(items):
            input_ids[row, : len(block)] = torch.tensor(block)
            labels[row, : len(block)] = torch.tensor(block)
        return {"input_ids": input_ids, "labels": labels}

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
        out = model(input_ids=batch["input_ids"], labels=batch["labels"])
        return out.loss, int((batch["labels"][:, 1:] != -100).sum())

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        device = _device_of(model)
        total, tokens = 0.0, 0
        for start in range(0, len(self.val_blocks), EVAL_BATCH):
            batch = self.collate(self.val_blocks[start : start + EVAL_BATCH])
            n = int((batch["labels"][:, 1:] != -100).sum())
            out = model(input_ids=batch["input_ids"].to(device), labels=batch["labels"].to(device))
            total += float(out.loss) * n
            tokens += n
        loss = total / max(tokens, 1)
        return {"eval_loss": loss, "eval_perplexity": math.exp(min(loss, 50.0))}


# -- building a task from a job config ----------------------------------------------------------------------
def detect_splits(data: DataConfig) -> tuple[str | None, str | None]:
    """(train split, validation split): the configured ones, else those a data-set directory's file names
    give (`tldrlab.data.splits`, shared with evaluation)."""
    return splits.detect_splits(data.path, data.train_split, data.val_split)


def read_split_records(data: DataConfig, split: str | None, *, limit: int | None) -> list[SummaryRecord]:
    return read_records(data.path, data.format, split=split, limit=limit)


def build_task(job: TrainJobConfig, tokenizer: Any, model: nn.Module, task_kind: str) -> Any:
    """The Seq2SeqTask or CausalLMTask for this job's data, tokenized with `tokenizer`."""
    data = job.data
    train_split, val_split = detect_splits(data)
    train_records = read_split_records(data, train_split, limit=data.limit)
    if not train_records:
        raise InvalidInputError(f"{data.path}: no records to train on")
    if task_kind in ("seq2seq", "chat"):
        if val_split:
            val_records = read_split_records(data, val_split, limit=data.max_val_examples)
        else:
            val_records, train_records = splits.seeded_holdout(
                train_records, data.val_fraction, job.train.seed
            )
            if not train_records:  # all held out: "no training records with a summary" of one that has one
                raise InvalidInputError(
                    f"{data.path}: {len(val_records)} record(s), too few to hold out a validation share "
                    f"(val_fraction {data.val_fraction:g}, at least one record) and train on the rest: give "
                    "more records, or a validation split (a dev file beside a train file, or --val-split)"
                )
        if task_kind == "chat":
            return build_chat_task(train_records, val_records, tokenizer, data, model)
        return Seq2SeqTask(train_records, val_records, tokenizer, data)

    block_size = data.block_size
    limit = getattr(getattr(model, "config", None), "n_positions", None)
    if isinstance(limit, int):
        block_size = min(block_size, limit)
    # an "<|endoftext|>" inside a document is text: as the eos token the LM would learn to stop there
    text = "\n".join(r.document for r in train_records)
    ids = plain(tokenizer, text, add_special_tokens=False)["input_ids"]
    if val_split:
        val_records = read_split_records(data, val_split, limit=None)
        val_text = "\n".join(r.document for r in val_records)
        val_ids = plain(tokenizer, val_text, add_special_tokens=False)["input_ids"]
    else:
        # The last fraction of the tokens: what `tldrlab eval` evaluates for a run on unsplit text.
        ids, val_ids = splits.lm_tail(ids, data.val_fraction)
    return CausalLMTask(list(ids), list(val_ids), tokenizer, data, block_size)
