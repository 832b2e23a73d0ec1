"""A pretrained causal LM's decoder layers as an LVM backbone: vector-native, no token embeddings.

The LVM's input projection lifts each concept vector into the LM's hidden size, the LM's first K decoder
layers (all of them by default) read the context as if it were a sequence of token embeddings, and the LVM's
output projection maps the last position's final-norm state back to a concept vector. The token embeddings
and the vocabulary head are dropped: the model never sees or produces a token.

`adaptation` says what trains besides the two projections (and the LVM's skip weights):
- `frozen`: nothing of the LM; the layers are fixed feature extractors;
- `lora`: low-rank adapters (peft) on every attention and MLP projection of the kept layers;
- `full`: every weight of the kept layers and the final norm.

Only Llama-style decoders are supported (a `layers` list, a final `norm` and rotary position embeddings):
SmolLM2, Llama, Mistral, Qwen2. Left-padded contexts get position ids that start at their first real concept,
and an attention mask that lets each real concept see only the real concepts before it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from tldrlab.errors import ConfigError
from tldrlab.models.causal_lm import load_causal_lm as load
from tldrlab.models.resolve import resolve_model_ref

if TYPE_CHECKING:
    from tldrlab.lvm.config import LVMConfig

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
"""The Llama-style projections LoRA adapts."""


def load_causal_lm(reference: str) -> Any:
    """The causal LM a model reference names (the bundled `smollm2`, a GGUF file, a model directory, an
    installed model or a run; see tldrlab.models.resolve), in float32."""

    return load(resolve_model_ref(reference))


class PretrainedBackbone(nn.Module):
    """The first K decoder layers + final norm of a causal LM, reading (batch, N, hidden) + mask."""

    def __init__(self, config: LVMConfig) -> None:
        super().__init__()
        lm = load_causal_lm(config.pretrained)
        decoder = lm.get_decoder()
        if not all(hasattr(decoder, name) for name in ("layers", "norm", "rotary_emb")):
            raise ConfigError(
                f"{config.pretrained!r} is a {type(lm).__name__}: the pretrained LVM needs a Llama-style "
                "decoder (layers, final norm, rotary positions)"
            )
        available = len(decoder.layers)
        keep = config.pretrained_layers or available
        if keep > available:
            raise ConfigError(f"pretrained_layers={keep}, but {config.pretrained!r} has {available} layers")
        self.layers = nn.ModuleList(list(decoder.layers)[:keep])
        self.norm = decoder.norm
        self.rotary = decoder.rotary_emb
        self.hidden_size = int(lm.config.hidden_size)
        embeddings = lm.get_input_embeddings().weight
        self.embedding_rms = float(embeddings.detach().pow(2).mean().sqrt())
        """How large the LM's token embeddings are: the input projection starts at that scale."""
        self.source_layers = available
        del lm, decoder  # the embeddings, the other layers and the vocabulary head are not kept

        for param in self.parameters():
            param.requires_grad = config.adaptation == "full"
        if config.adaptation == "lora":
            from peft import LoraConfig, inject_adapter_in_model

            lora = LoraConfig(
                r=config.lora_rank,
                lora_alpha=config.lora_alpha,
                lora_dropout=0.0,
                target_modules=list(LORA_TARGETS),
            )
            inject_adapter_in_model(lora, self.layers)
            for name, param in self.named_parameters():
                param.requires_grad = "lora_" in name

    def scale_input_projection(self, projection: nn.Linear) -> None:
        """Rescale a fresh projection of unit vectors to the RMS of the LM's token embeddings."""
        with torch.no_grad():
            probe = torch.nn.functional.normalize(torch.randn(256, projection.in_features), dim=-1)
            rms = float(projection(probe).pow(2).mean().sqrt())
            projection.weight.mul_(self.embedding_rms / max(rms, 1e-12))
            projection.bias.mul_(self.embedding_rms / max(rms, 1e-12))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        length = x.shape[1]
        positions = (mask.long().cumsum(1) - 1).clamp_min(0)  # left padding: the first real concept is 0
        causal = torch.ones(length, length, dtype=torch.bool, device=x.device).tril()
        # each query sees the real keys up to itself; padded queries see themselves (no empty softmax row)
        itself = torch.eye(length, dtype=torch.bool, device=x.device)[None]
        allowed = (causal[None] & mask[:, None, :]) | itself
        bias = torch.zeros(allowed.shape, dtype=x.dtype, device=x.device)
        bias = bias.masked_fill(~allowed, torch.finfo(x.dtype).min)[:, None]
        rotary = self.rotary(x, positions)
        for layer in self.layers:
            x = layer(x, attention_mask=bias, position_embeddings=rotary, position_ids=positions)
        return self.norm(x)  # type: ignore[no-any-return]
