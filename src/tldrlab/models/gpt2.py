"""`gpt2`: a transformers GPT2LMHeadModel causal LM from a named size, explicit dimensions, or a pretrained
directory."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, model_validator

from tldrlab.configmodel import ConfigModel
from tldrlab.models.pretrained import load_pretrained, resolve_dims
from tldrlab.runs.paths import ModelRef

GPT2_SIZES: dict[str, dict[str, int]] = {
    # name: width, layers, heads, context length
    "tiny": {"n_embd": 64, "n_layer": 2, "n_head": 4, "n_positions": 256},
    "mini": {"n_embd": 128, "n_layer": 4, "n_head": 4, "n_positions": 512},
    "small": {"n_embd": 256, "n_layer": 6, "n_head": 8, "n_positions": 1024},
    # the dimensions of OpenAI's gpt2 (124M parameters with its 50k vocabulary)
    "base": {"n_embd": 768, "n_layer": 12, "n_head": 12, "n_positions": 1024},
}


class GPT2ModelConfig(ConfigModel):
    """A GPT-2 decoder-only LM. Explicit dimensions override the named size."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    size: Literal["tiny", "mini", "small", "base"] = "tiny"
    """Named size whose dimensions are used unless set explicitly below."""

    n_embd: int | None = Field(default=None, gt=0)
    """Hidden width (must divide by n_head)."""

    n_layer: int | None = Field(default=None, gt=0)
    """Transformer blocks."""

    n_head: int | None = Field(default=None, gt=0)
    """Attention heads."""

    n_positions: int | None = Field(default=None, gt=0)
    """Longest sequence the position embedding covers."""

    dropout: float = Field(default=0.1, ge=0.0, lt=1.0)
    """Dropout for residuals, embeddings and attention."""

    tie_word_embeddings: bool = True
    """Share input embedding and output head."""

    from_pretrained: Annotated[str | None, ModelRef()] = None
    """Load weights from this transformers directory instead of building from scratch (offline)."""

    def dims(self) -> dict[str, int]:
        return resolve_dims(GPT2_SIZES, self)

    @model_validator(mode="after")
    def _heads_divide_the_width(self) -> GPT2ModelConfig:
        dims = self.dims()
        if not self.from_pretrained and dims["n_embd"] % dims["n_head"]:
            raise ValueError(f"n_embd ({dims['n_embd']}) must be divisible by n_head ({dims['n_head']})")
        return self


def parameter_count(config: GPT2ModelConfig, vocab_size: int) -> int | None:
    """Parameters of the model `config` builds over a `vocab_size` tokenizer, from its dimensions alone (None
    for a pretrained one: its size is the checkpoint's)."""
    if config.from_pretrained:
        return None
    dims = config.dims()
    width = dims["n_embd"]
    block = 12 * width * width + 13 * width  # attention (qkv + out) and MLP (4x) weights and biases, 2 norms
    head = 0 if config.tie_word_embeddings else vocab_size * width
    return (vocab_size + dims["n_positions"]) * width + dims["n_layer"] * block + 2 * width + head


def build(config: GPT2ModelConfig, tokenizer: Any) -> Any:
    from transformers import GPT2Config, GPT2LMHeadModel

    if config.from_pretrained:
        return load_pretrained(GPT2LMHeadModel, config.from_pretrained, tokenizer)
    dims = config.dims()  # heads dividing the width: the config's own validation
    settings: dict[str, Any] = dict(
        vocab_size=len(tokenizer),
        resid_pdrop=config.dropout,
        embd_pdrop=config.dropout,
        attn_pdrop=config.dropout,
        tie_word_embeddings=config.tie_word_embeddings,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **dims,
    )
    return GPT2LMHeadModel(GPT2Config(**settings))
