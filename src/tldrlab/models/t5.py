"""`t5`: a transformers T5ForConditionalGeneration summarizer from a named size, explicit dimensions, or a
pretrained directory."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field

from tldrlab.configmodel import ConfigModel
from tldrlab.models.pretrained import load_pretrained, resolve_dims
from tldrlab.runs.paths import ModelRef

T5_SIZES: dict[str, dict[str, int]] = {
    # name: d_model, d_ff, encoder layers, decoder layers, heads, d_kv (per-head width)
    "tiny": {
        "d_model": 64,
        "d_ff": 256,
        "num_layers": 2,
        "num_decoder_layers": 2,
        "num_heads": 4,
        "d_kv": 16,
    },
    "mini": {
        "d_model": 128,
        "d_ff": 512,
        "num_layers": 4,
        "num_decoder_layers": 4,
        "num_heads": 4,
        "d_kv": 32,
    },
    "small": {
        "d_model": 256,
        "d_ff": 1024,
        "num_layers": 4,
        "num_decoder_layers": 4,
        "num_heads": 4,
        "d_kv": 64,
    },
    # the dimensions of Google's t5-small (60M parameters with its 32k vocabulary)
    "base": {
        "d_model": 512,
        "d_ff": 2048,
        "num_layers": 6,
        "num_decoder_layers": 6,
        "num_heads": 8,
        "d_kv": 64,
    },
}


class T5ModelConfig(ConfigModel):
    """A T5 encoder-decoder. Explicit dimensions override the named size.

    transformers 5 always ties T5's input embedding and output head, so there is no untied option.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    size: Literal["tiny", "mini", "small", "base"] = "tiny"
    """Named size whose dimensions are used unless set explicitly below."""

    d_model: int | None = Field(default=None, gt=0)
    """Hidden width."""

    d_ff: int | None = Field(default=None, gt=0)
    """Feed-forward inner width."""

    num_layers: int | None = Field(default=None, gt=0)
    """Encoder layers."""

    num_decoder_layers: int | None = Field(default=None, gt=0)
    """Decoder layers."""

    num_heads: int | None = Field(default=None, gt=0)
    """Attention heads."""

    d_kv: int | None = Field(default=None, gt=0)
    """Width of each attention head's keys / values."""

    dropout: float = Field(default=0.1, ge=0.0, lt=1.0)
    """Dropout rate everywhere."""

    feed_forward_proj: Literal["relu", "gated-gelu"] = "relu"
    """Feed-forward activation (T5 v1.0 relu or v1.1 gated-gelu)."""

    from_pretrained: Annotated[str | None, ModelRef()] = None
    """Load weights from this transformers directory instead of building from scratch (offline)."""

    def dims(self) -> dict[str, int]:
        return resolve_dims(T5_SIZES, self)


RELATIVE_ATTENTION_BUCKETS = 32
"""transformers' T5 default: the first layer of the encoder and of the decoder each hold a buckets x heads
position bias."""


def parameter_count(config: T5ModelConfig, vocab_size: int) -> int | None:
    """Parameters of the model `config` builds over a `vocab_size` tokenizer, from its dimensions alone (None
    for a pretrained one: its size is the checkpoint's). Embedding and output head are one tied matrix."""
    if config.from_pretrained:
        return None
    dims = config.dims()
    d_model, heads = dims["d_model"], dims["num_heads"]
    attention = 4 * d_model * heads * dims["d_kv"]  # q, k, v, o; T5 uses no biases
    feed_forward = (3 if config.feed_forward_proj == "gated-gelu" else 2) * d_model * dims["d_ff"]
    encoder_layer = attention + feed_forward + 2 * d_model  # + 2 layer norms (weights only)
    decoder_layer = 2 * attention + feed_forward + 3 * d_model  # self- and cross-attention
    position_biases = 2 * RELATIVE_ATTENTION_BUCKETS * heads
    return (
        vocab_size * d_model
        + dims["num_layers"] * encoder_layer
        + dims["num_decoder_layers"] * decoder_layer
        + 2 * d_model  # final layer norms
        + position_biases
    )


def build(config: T5ModelConfig, tokenizer: Any) -> Any:
    from transformers import T5Config, T5ForConditionalGeneration

    if config.from_pretrained:
        return load_pretrained(T5ForConditionalGeneration, config.from_pretrained, tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    settings: dict[str, Any] = dict(
        vocab_size=len(tokenizer),
        dropout_rate=config.dropout,
        feed_forward_proj=config.feed_forward_proj,
        pad_token_id=pad_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
        # transformers 5 needs it explicitly: the decoder starts from the pad token, as in T5.
        decoder_start_token_id=pad_id,
        **config.dims(),
    )
    return T5ForConditionalGeneration(T5Config(**settings))
