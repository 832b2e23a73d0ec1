"""`char_lstm`'s typed config and its parameter count, without torch (the registry validates configs with it
cheaply; the model itself is in `char_lstm`)."""

from __future__ import annotations

from pydantic import ConfigDict, Field

from tldrlab.configmodel import ConfigModel


class CharLSTMConfig(ConfigModel):
    """An LSTM LM over any tokenizer's ids (usually the char tokenizer)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    vocab_size: int | None = Field(default=None, gt=0)
    """Vocabulary size; None takes it from the tokenizer."""

    embedding_dim: int = Field(default=128, gt=0)
    """Width of the token embedding."""

    hidden_dim: int = Field(default=256, gt=0)
    """Width of each LSTM layer's state."""

    num_layers: int = Field(default=2, gt=0)
    """Stacked LSTM layers."""

    dropout: float = Field(default=0.1, ge=0.0, lt=1.0)
    """Dropout on embeddings, between LSTM layers and before the head."""

    tie_weights: bool = False
    """Share the embedding matrix with the output head (a projection maps hidden_dim to embedding_dim
    when they differ)."""

    pad_token_id: int | None = None
    """Padding id (its embedding stays zero); None takes it from the tokenizer."""


def parameter_count(config: CharLSTMConfig, vocab_size: int) -> int:
    """Parameters of the model `config` builds over a `vocab_size` tokenizer (its own `vocab_size` wins),
    counted from the shapes alone: embedding, LSTM layers (two bias vectors each, as torch's), the projection
    a tied head needs when the widths differ, and the head (whose weight a tied head shares)."""
    vocab = config.vocab_size or vocab_size
    embedding, hidden = config.embedding_dim, config.hidden_dim
    lstm = sum(
        4 * hidden * ((embedding if layer == 0 else hidden) + hidden + 2)
        for layer in range(config.num_layers)
    )
    projection = hidden * embedding + embedding if config.tie_weights and hidden != embedding else 0
    head_in = embedding if projection else hidden
    head = vocab + (0 if config.tie_weights else head_in * vocab)
    return vocab * embedding + lstm + projection + head
