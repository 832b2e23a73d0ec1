"""`char_lstm`: a small LSTM language model in plain PyTorch.

`forward(input_ids, labels=None)` returns an object with `.loss` and `.logits` like a transformers causal LM
(labels are shifted inside, -100 is ignored), so the training loop, `score_text` and `generate` treat every
LM alike. Saved as safetensors + config.json (never pickle). Its config (`CharLSTMConfig`) and parameter
count live in `char_lstm_config`, which imports no torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from tldrlab.models.char_lstm_config import CharLSTMConfig


@dataclass
class LMOutput:
    """What forward returns: the same fields a transformers CausalLMOutput has."""

    loss: torch.Tensor | None
    logits: torch.Tensor
    past_key_values: tuple[torch.Tensor, torch.Tensor] | None = None
    """The LSTM state (h, c) after the last position: pass it back to continue a sequence."""


class CharLSTM(nn.Module):
    """Embedding -> dropout -> LSTM -> dropout -> [projection] -> linear head."""

    tldrlab_name = "char_lstm"

    def __init__(self, config: CharLSTMConfig) -> None:
        super().__init__()
        if config.vocab_size is None:
            raise ValueError("CharLSTMConfig.vocab_size must be set before building")
        self.config = config
        self.embedding = nn.Embedding(
            config.vocab_size, config.embedding_dim, padding_idx=config.pad_token_id
        )
        self.dropout = nn.Dropout(config.dropout)
        self.lstm = nn.LSTM(
            config.embedding_dim,
            config.hidden_dim,
            num_layers=config.num_layers,
            dropout=config.dropout if config.num_layers > 1 else 0.0,
            batch_first=True,
        )
        head_in = config.hidden_dim
        self.projection: nn.Module = nn.Identity()
        if config.tie_weights and config.hidden_dim != config.embedding_dim:
            self.projection = nn.Linear(config.hidden_dim, config.embedding_dim)
            head_in = config.embedding_dim
        self.head = nn.Linear(head_in, config.vocab_size)
        if config.tie_weights:
            self.head.weight = self.embedding.weight

    @property
    def device(self) -> torch.device:
        return self.embedding.weight.device

    def forward(
        self,
        input_ids: torch.Tensor,
        labels: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        past_key_values: tuple[torch.Tensor, torch.Tensor] | None = None,
        **_: Any,
    ) -> LMOutput:
        # attention_mask is accepted for interface parity; right padding is handled through labels = -100.
        hidden, state = self.lstm(self.dropout(self.embedding(input_ids)), past_key_values)
        logits = self.head(self.projection(self.dropout(hidden)))
        loss = None
        if labels is not None:
            loss = nn.functional.cross_entropy(
                logits[:, :-1].reshape(-1, logits.size(-1)).float(),
                labels[:, 1:].reshape(-1),
                ignore_index=-100,
            )
        return LMOutput(loss=loss, logits=logits, past_key_values=state)


def build(config: CharLSTMConfig, tokenizer: Any) -> CharLSTM:
    updates: dict[str, Any] = {}
    if config.vocab_size is None:
        updates["vocab_size"] = len(tokenizer)
    if config.pad_token_id is None and tokenizer is not None:
        updates["pad_token_id"] = tokenizer.pad_token_id
    return CharLSTM(config.model_copy(update=updates))
