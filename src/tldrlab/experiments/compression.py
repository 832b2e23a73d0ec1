"""Compress a T5 summarizer: fewer layers, narrower widths, initialised from the baseline's weights.

    spec = CompressionSpec(compression_ratio=0.5)            # or explicit enc_num_layers, d_model, ...
    small = compress_t5(baseline, spec)                      # a new T5ForConditionalGeneration

How the weights are carried over (init="baseline"):
- layers: evenly spaced layer selection, always keeping the first and last block of each stack (the first
  one owns T5's relative position bias; the last one feeds the final layer norm);
- d_model: one global set of residual-stream dimensions, the ones with the largest norm in the shared
  embedding, applied everywhere the residual stream appears (embeddings, layer norms, attention in/out,
  feed-forward in/out) so the kept dimensions keep meaning the same thing in every layer;
- heads and d_ff: per layer, the heads / feed-forward neurons whose weights have the largest norm
  (d_kv stays the baseline's, so every kept head is copied whole).
This is plain slicing (no projection): cheap, exact where shapes agree, and measured against random
initialisation in docs/dendrites.md. init="random" builds the same shape with fresh weights.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from tldrlab.errors import ConfigError
from tldrlab.experiments.config import CompressionSpec
from tldrlab.models.layers import evenly_spaced


def count_parameters(model: torch.nn.Module) -> int:
    """Parameters counted once even when tied (T5 shares its embedding with the decoder and lm head)."""
    return sum(p.numel() for p in {p.data_ptr(): p for p in model.parameters()}.values())


def t5_parameter_count(config: Any) -> int:
    """Parameter count of a T5 config, computed from its shape (no weights allocated; tested to match)."""
    d, inner, d_ff, vocab = config.d_model, config.num_heads * config.d_kv, config.d_ff, config.vocab_size
    gated = 3 if config.is_gated_act else 2
    attention = 4 * d * inner
    feed_forward = gated * d * d_ff
    bias = config.relative_attention_num_buckets * config.num_heads
    encoder = config.num_layers * (attention + feed_forward + 2 * d) + bias + d
    decoder = config.num_decoder_layers * (2 * attention + feed_forward + 3 * d) + bias + d
    embeddings = vocab * d * (1 if config.tie_word_embeddings else 2)
    return int(embeddings + encoder + decoder)


def _ratio_candidates(base: Any) -> list[dict[str, int]]:
    """Shapes searched for a compression ratio: layer fractions x width fractions (heads keep d_kv)."""
    candidates = []
    for width in (1.0, 0.875, 0.75, 0.625, 0.5, 0.375, 0.25):
        heads = max(1, round(base.num_heads * width))
        d_model = max(heads, round(base.d_model * width / heads) * heads)
        d_ff = max(1, round(base.d_ff * width))
        for enc in range(1, base.num_layers + 1):
            for dec in range(1, base.num_decoder_layers + 1):
                candidates.append(
                    {"num_layers": enc, "num_decoder_layers": dec, "d_model": d_model, "d_ff": d_ff,
                     "num_heads": heads}
                )  # fmt: skip
    return candidates


def compressed_config(base: Any, spec: CompressionSpec) -> Any:
    """The T5Config of the compressed model (validated)."""
    if spec.dec_d_model is not None and spec.d_model is not None and spec.dec_d_model != spec.d_model:
        raise ConfigError(
            f"dec_d_model={spec.dec_d_model} differs from d_model={spec.d_model}: T5's cross-attention reads "
            "encoder states of width d_model, so both stacks must have the same width"
        )
    given = {
        "num_layers": spec.enc_num_layers,
        "num_decoder_layers": spec.dec_num_layers,
        "d_model": spec.d_model or spec.dec_d_model,
        "d_ff": spec.d_ff,
        "num_heads": spec.num_heads,
    }
    explicit = {k: v for k, v in given.items() if v is not None}
    if not explicit and spec.compression_ratio is None:
        raise ConfigError(
            "give a compression_ratio or at least one explicit size (enc_num_layers, d_model, ...)"
        )
    limits = {
        "num_layers": base.num_layers,
        "num_decoder_layers": base.num_decoder_layers,
        "d_model": base.d_model,
        "d_ff": base.d_ff,
        "num_heads": base.num_heads,
    }
    for key, value in explicit.items():
        if value > limits[key]:
            raise ConfigError(
                f"{key}={value} is larger than the baseline's {limits[key]}: compression only shrinks"
            )
    shape = dict(limits)
    if spec.compression_ratio is not None:
        target = spec.compression_ratio * t5_parameter_count(base)
        best: tuple[tuple[float, int, float], dict[str, int]] | None = None
        for cand in _ratio_candidates(base):
            cand.update(explicit)  # explicit sizes are fixed; the ratio chooses the rest
            count = t5_parameter_count(_with(base, cand))
            # closest to the target within 2% buckets; then the wider model (width carries more of the
            # baseline), then encoder and decoder cut by similar fractions
            balance = abs(
                cand["num_layers"] / base.num_layers - cand["num_decoder_layers"] / base.num_decoder_layers
            )
            rank = (float(round(abs(count - target) / target * 50)), -cand["d_model"], balance)
            if best is None or rank < best[0]:
                best = (rank, cand)
        assert best is not None
        shape = best[1]
    else:
        shape.update(explicit)
    if shape["num_heads"] > base.num_heads:
        raise ConfigError(f"num_heads={shape['num_heads']} exceeds the baseline's {base.num_heads}")
    return _with(base, shape)


def _with(base: Any, shape: dict[str, int]) -> Any:
    # evenly_spaced always keeps block 0, which owns T5's relative position bias
    from transformers import T5Config

    values = base.to_dict()
    values.update(shape)
    return T5Config.from_dict(values)


# -- weight transfer -------------------------------------------------------------------------------------


def _top(scores: torch.Tensor, keep: int) -> torch.Tensor:
    """Indices of the `keep` largest scores, in their original order (stable, deterministic)."""
    if keep >= scores.numel():
        return torch.arange(scores.numel())
    return torch.sort(torch.topk(scores, keep, sorted=False).indices).values


def _head_rows(heads: torch.Tensor, d_kv: int) -> torch.Tensor:
    return (heads[:, None] * d_kv + torch.arange(d_kv)[None, :]).reshape(-1)


def _copy_attention(src: Any, dst: Any, hidden: torch.Tensor, d_kv: int, keep_heads: int) -> torch.Tensor:
    """Copy a T5Attention's kept heads and hidden dims; return the head indices used."""
    n_heads = src.n_heads
    per_head = src.o.weight.detach().reshape(src.o.weight.shape[0], n_heads, d_kv).norm(dim=(0, 2))
    heads = _top(per_head, keep_heads)
    rows = _head_rows(heads, d_kv)
    for name in ("q", "k", "v"):
        getattr(dst, name).weight.copy_(getattr(src, name).weight[rows][:, hidden])
    dst.o.weight.copy_(src.o.weight[hidden][:, rows])
    if getattr(src, "has_relative_attention_bias", False) and getattr(
        dst, "has_relative_attention_bias", False
    ):
        dst.relative_attention_bias.weight.copy_(src.relative_attention_bias.weight[:, heads])
    return heads


def _copy_feed_forward(src: Any, dst: Any, hidden: torch.Tensor, keep: int) -> None:
    """Copy a T5DenseActDense / T5DenseGatedActDense, keeping the strongest `keep` neurons."""
    wo = src.wo.weight.detach()
    in_names = ["wi"] if hasattr(src, "wi") else ["wi_0", "wi_1"]
    score = wo.norm(dim=0)
    for name in in_names:
        score = score * getattr(src, name).weight.detach().norm(dim=1)
    neurons = _top(score, keep)
    for name in in_names:
        getattr(dst, name).weight.copy_(getattr(src, name).weight[neurons][:, hidden])
    dst.wo.weight.copy_(wo[hidden][:, neurons])


def _copy_stack(src: Any, dst: Any, layers: list[int], hidden: torch.Tensor, config: Any) -> None:
    for dst_index, src_index in enumerate(layers):
        src_block, dst_block = src.block[src_index], dst.block[dst_index]
        for src_layer, dst_layer in zip(src_block.layer, dst_block.layer, strict=True):
            dst_layer.layer_norm.weight.copy_(src_layer.layer_norm.weight[hidden])
            attention = getattr(src_layer, "SelfAttention", None) or getattr(
                src_layer, "EncDecAttention", None
            )
            if attention is not None:
                dst_attention = getattr(dst_layer, "SelfAttention", None) or dst_layer.EncDecAttention
                _copy_attention(attention, dst_attention, hidden, config.d_kv, config.num_heads)
            else:
                _copy_feed_forward(src_layer.DenseReluDense, dst_layer.DenseReluDense, hidden, config.d_ff)
    dst.final_layer_norm.weight.copy_(src.final_layer_norm.weight[hidden])


def compression_plan(base_config: Any, config: Any) -> dict[str, Any]:
    """Which baseline layers the compressed model keeps (recorded in run metadata)."""
    return {
        "encoder_layers": evenly_spaced(base_config.num_layers, config.num_layers),
        "decoder_layers": evenly_spaced(base_config.num_decoder_layers, config.num_decoder_layers),
        "d_model": [base_config.d_model, config.d_model],
        "d_ff": [base_config.d_ff, config.d_ff],
        "num_heads": [base_config.num_heads, config.num_heads],
    }


@torch.no_grad()
def compress_t5(baseline: Any, spec: CompressionSpec, *, seed: int = 0) -> Any:
    """A new, smaller T5ForConditionalGeneration shaped by `spec`, initialised per `spec.init`."""
    from transformers import T5ForConditionalGeneration

    base_config = baseline.config
    config = compressed_config(base_config, spec)
    torch.manual_seed(seed)
    model = T5ForConditionalGeneration(config)
    if spec.init == "random":
        return model
    plan = compression_plan(base_config, config)
    hidden = _top(baseline.shared.weight.detach().norm(dim=0), config.d_model)
    model.shared.weight.copy_(baseline.shared.weight[:, hidden])
    if not config.tie_word_embeddings:
        model.lm_head.weight.copy_(baseline.lm_head.weight[:, hidden])
    _copy_stack(baseline.encoder, model.encoder, plan["encoder_layers"], hidden, config)
    _copy_stack(baseline.decoder, model.decoder, plan["decoder_layers"], hidden, config)
    model.generation_config = baseline.generation_config
    return model


def describe(baseline: Any, compressed: Any) -> dict[str, Any]:
    """Sizes and kept fraction, for logs and results."""
    base_params, small_params = count_parameters(baseline), count_parameters(compressed)
    return {
        **compression_plan(baseline.config, compressed.config),
        "baseline_parameters": base_params,
        "compressed_parameters": small_params,
        "kept_fraction": small_params / base_params if base_params else math.nan,
    }
