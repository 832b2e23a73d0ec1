"""Compress a pretrained causal LM (Llama, Qwen2, Mistral, SmolLM2): fewer layers, fewer MLP neurons and
attention heads, initialised from the pretrained weights; exported as a plain Hugging Face directory.

    scores = importance_scores(model, calibration_batches(tokenizer, records), method="activation")
    small, plan = compress_causal_lm(model, LMCompressionSpec(ratio=0.5), scores)
    export_compressed(small, tokenizer, plan, "out/smollm2-50")      # AutoModelForCausalLM loads it

What is kept:
- depth: `num_layers` evenly spaced layers, the first and the last always kept (the first reads the raw
  embeddings, the last feeds the final norm and the head);
- MLP width: per kept layer, the `intermediate_size` neurons with the largest importance (rows of
  gate_proj / up_proj, columns of down_proj);
- attention: per kept layer, whole key/value groups first (grouped-query attention: a KV head and the query
  heads that read it), the `num_key_value_heads` groups with the largest summed importance, then inside each
  kept group the `heads_per_group` query heads with the largest importance (head_dim unchanged, so every
  kept head is copied whole and keeps reading its own KV head);
- the residual width (hidden_size), the embeddings, the norms and the head stay as they are.

Importance comes from calibration data (chat-formatted training pairs), not from the weights alone:
- `activation` (default): mean |activation| of a neuron (the input of down_proj) times the norm of its
  down_proj column; for a head, the mean L2 norm of its attention output (the input of o_proj) times the
  Frobenius norm of its o_proj slice. This is how much the unit writes into the residual stream.
- `taylor`: first-order Taylor estimate of the loss change when the unit is removed, |sum a * dL/da| over
  each example's tokens (answer-only loss), summed over examples.
- `weight`: weight norms only (‖gate row‖·‖up row‖·‖down column‖, ‖o slice‖), for comparison.

`LMCompressionSpec.ratio` picks the shape: the closest parameter count to ratio x the original (1 % buckets),
then the most layers (depth is cut only when the widths alone cannot reach the ratio), then MLP width and
heads cut by similar fractions. Explicit sizes are fixed and the ratio chooses the rest: `num_layers` with a
ratio cuts depth to that and lets the ratio set the widths. Width first because it loses less: on
SmolLM2-135M-Instruct, before any fine-tuning, half the parameters cut by width alone (30 layers) gave an
answer loss of 9.5 on Debian pairs, 24 layers + widths 10.6, depth and width cut evenly (18 layers) 14.6,
depth alone (11 layers) 15.1; the uncut model 4.1 (docs/dendrites.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tldrlab.errors import ConfigError, InvalidInputError
from tldrlab.experiments.config import LMCompressionSpec
from tldrlab.models.chat import DEFAULT_INSTRUCTION, chat_pair_ids
from tldrlab.models.layers import decoder_layers, evenly_spaced
from tldrlab.runs.atomic import atomic_write_json
from tldrlab.runs.weights import save_pretrained

PLAN_FILE = "compression.json"
"""What an exported compressed model records about how it was cut."""

WIDTH_STEPS = 32
"""MLP widths searched: multiples of intermediate_size / WIDTH_STEPS."""


# -- shapes and parameter counts ----------------------------------------------------------------------------
@dataclass(frozen=True)
class LMShape:
    """The sizes compression changes."""

    num_layers: int
    intermediate_size: int
    num_key_value_heads: int
    heads_per_group: int

    @property
    def num_heads(self) -> int:
        return self.num_key_value_heads * self.heads_per_group


def _head_dim(config: Any) -> int:
    value = getattr(config, "head_dim", None)
    return int(value) if value else int(config.hidden_size // config.num_attention_heads)


def check_supported(config: Any) -> None:
    """A Llama-style decoder config (grouped-query attention, gated MLP) or a ConfigError saying why not."""
    needed = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "vocab_size")
    missing = [k for k in needed if getattr(config, k, None) is None]
    if missing:
        raise ConfigError(
            f"{type(config).__name__} lacks {', '.join(missing)}: compression works on Llama-style causal LMs"
        )
    kv = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    if config.num_attention_heads % kv:
        raise ConfigError(f"{config.num_attention_heads} heads are not a multiple of {kv} key/value heads")


def original_shape(config: Any) -> LMShape:
    check_supported(config)
    kv = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    return LMShape(config.num_hidden_layers, config.intermediate_size, kv, config.num_attention_heads // kv)


def parameter_count(config: Any, shape: LMShape | None = None) -> int:
    """Parameters of a Llama-style causal LM of `config` (reshaped to `shape`), from the sizes alone (tied
    embeddings counted once; tested equal to the real count)."""
    shape = shape or original_shape(config)
    d, hd, vocab = config.hidden_size, _head_dim(config), config.vocab_size
    q, kv = shape.num_heads * hd, shape.num_key_value_heads * hd
    attention = d * q + 2 * d * kv + q * d
    if getattr(config, "attention_bias", False):
        attention += q + 2 * kv + d
    mlp = 3 * d * shape.intermediate_size
    if getattr(config, "mlp_bias", False):
        mlp += 2 * shape.intermediate_size + d
    layer = attention + mlp + 2 * d
    embeddings = vocab * d * (1 if getattr(config, "tie_word_embeddings", False) else 2)
    return int(embeddings + shape.num_layers * layer + d)


def _candidates(base: LMShape) -> list[LMShape]:
    widths = sorted(
        {max(8, round(base.intermediate_size * k / WIDTH_STEPS)) for k in range(1, WIDTH_STEPS + 1)}
    )
    return [
        LMShape(n, width, kv, g)
        for n in range(1, base.num_layers + 1)
        for width in widths
        for kv in range(1, base.num_key_value_heads + 1)
        for g in range(1, base.heads_per_group + 1)
    ]


def choose_shape(config: Any, spec: LMCompressionSpec) -> LMShape:
    """The compressed shape: explicit sizes as given; with a ratio, the rest chosen (module docstring)."""
    base = original_shape(config)
    explicit = {
        "num_layers": spec.num_layers,
        "intermediate_size": spec.intermediate_size,
        "num_key_value_heads": spec.num_key_value_heads,
        "heads_per_group": spec.heads_per_group,
    }
    for key, value in explicit.items():
        limit = getattr(base, key)
        if value is not None and value > limit:
            raise ConfigError(f"{key}={value} is larger than the model's {limit}: compression only shrinks")
    given = {k: v for k, v in explicit.items() if v is not None}
    if spec.ratio is None:
        if not given:
            raise ConfigError(
                "give a ratio or at least one explicit size (num_layers, intermediate_size, ...)"
            )
        return LMShape(**{**base.__dict__, **given})
    total = parameter_count(config, base)
    target = spec.ratio * total
    best: tuple[tuple[float, float, float], LMShape] | None = None
    for cand in _candidates(base):
        if any(getattr(cand, k) != v for k, v in given.items()):
            continue
        count = parameter_count(config, cand)
        kept = (
            cand.num_layers / base.num_layers,
            cand.intermediate_size / base.intermediate_size,
            cand.num_heads / (base.num_heads),
        )
        # closest to the target (1 % buckets), then the most layers (width is cut first), then MLP width and
        # heads cut by similar fractions
        spread = abs(kept[1] - kept[2])
        rank = (float(round(abs(count - target) / target * 100)), -float(cand.num_layers), spread)
        if best is None or rank < best[0]:
            best = (rank, cand)
    if best is None:
        raise ConfigError("no shape fits the explicit sizes")
    return best[1]


# -- calibration and importance -----------------------------------------------------------------------------
def calibration_batches(
    tokenizer: Any,
    records: list[Any],
    *,
    instruction: str = DEFAULT_INSTRUCTION,
    max_source_tokens: int = 128,
    max_target_tokens: int = 32,
) -> list[dict[str, torch.Tensor]]:
    """One unpadded batch per record: the chat prompt + answer ids, labels on the answer only."""
    batches = []
    for record in records:
        prompt, answer = chat_pair_ids(
            tokenizer,
            record.document,
            record.summary,
            instruction,
            max_source_tokens=max_source_tokens,
            max_target_tokens=max_target_tokens,
        )
        ids = torch.tensor([[*prompt, *answer]])
        labels = torch.tensor([[-100] * len(prompt) + answer])
        batches.append({"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels})
    if not batches:
        raise InvalidInputError("no calibration records (records with a document and a summary are needed)")
    return batches


@dataclass
class Importance:
    """Per layer of the original model: a score per MLP neuron and per query head (higher = keep)."""

    method: str
    mlp: list[torch.Tensor] = field(default_factory=list)
    heads: list[torch.Tensor] = field(default_factory=list)


def _parts(layer: Any) -> tuple[Any, Any]:
    attention, mlp = getattr(layer, "self_attn", None), getattr(layer, "mlp", None)
    names = ("q_proj", "k_proj", "v_proj", "o_proj")
    if attention is None or not all(hasattr(attention, n) for n in names):
        raise ConfigError("compression needs self_attn.{q,k,v,o}_proj in every layer (Llama-style attention)")
    if mlp is None or not all(hasattr(mlp, n) for n in ("gate_proj", "up_proj", "down_proj")):
        raise ConfigError("compression needs mlp.{gate,up,down}_proj in every layer (a gated MLP)")
    return attention, mlp


def _weight_importance(model: Any, n_heads: int, head_dim: int) -> Importance:
    found = Importance("weight")
    for layer in decoder_layers(model, "compression"):
        attention, mlp = _parts(layer)
        found.mlp.append(
            mlp.down_proj.weight.norm(dim=0)
            * mlp.gate_proj.weight.norm(dim=1)
            * mlp.up_proj.weight.norm(dim=1)
        )
        o = attention.o_proj.weight
        found.heads.append(o.reshape(o.shape[0], n_heads, head_dim).norm(dim=(0, 2)))
    return found


def importance_scores(
    model: Any, batches: list[dict[str, torch.Tensor]], method: str = "activation"
) -> Importance:
    """Importance of every MLP neuron and query head of `model` on the calibration `batches` (module doc)."""
    config = model.config
    n_heads, head_dim = config.num_attention_heads, _head_dim(config)
    if method == "weight":
        return _weight_importance(model, n_heads, head_dim)
    if method not in ("activation", "taylor"):
        raise ConfigError(f"unknown importance method {method!r}: activation, taylor or weight")
    layers = decoder_layers(model, "compression")
    mlp_sums = [torch.zeros(layer.mlp.down_proj.in_features, dtype=torch.float64) for layer in layers]
    head_sums = [torch.zeros(n_heads, dtype=torch.float64) for _ in layers]
    tokens = 0
    handles = []

    def watch(store: list[torch.Tensor], index: int, per_head: bool) -> Any:
        def pre_hook(module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
            x = args[0]
            if method == "activation":
                with torch.no_grad():
                    flat = x.detach().reshape(-1, x.shape[-1]).double()
                    if per_head:
                        store[index] += flat.reshape(flat.shape[0], n_heads, head_dim).norm(dim=-1).sum(0)
                    else:
                        store[index] += flat.abs().sum(0)
            elif x.requires_grad:

                def grad_hook(grad: torch.Tensor) -> None:
                    product = (x.detach() * grad).double().reshape(x.shape[0], -1, x.shape[-1]).sum(1)
                    if per_head:
                        product = product.reshape(x.shape[0], n_heads, head_dim).sum(-1)
                    store[index] += product.abs().sum(0)

                x.register_hook(grad_hook)

        return pre_hook

    for i, layer in enumerate(layers):
        attention, mlp = _parts(layer)
        handles.append(mlp.down_proj.register_forward_pre_hook(watch(mlp_sums, i, per_head=False)))
        handles.append(attention.o_proj.register_forward_pre_hook(watch(head_sums, i, per_head=True)))
    was_training = model.training
    model.eval()
    try:
        for batch in batches:
            if method == "activation":
                with torch.no_grad():
                    model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
            else:
                with torch.enable_grad():
                    out = model(**batch)
                    out.loss.backward()
                model.zero_grad(set_to_none=True)
            tokens += int(batch["input_ids"].numel())
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    found = Importance(method)
    for i, layer in enumerate(layers):
        attention, mlp = _parts(layer)
        neurons, heads = mlp_sums[i].float(), head_sums[i].float()
        if method == "activation":
            neurons = neurons / max(tokens, 1) * mlp.down_proj.weight.detach().norm(dim=0)
            o = attention.o_proj.weight.detach()
            heads = heads / max(tokens, 1) * o.reshape(o.shape[0], n_heads, head_dim).norm(dim=(0, 2))
        found.mlp.append(neurons)
        found.heads.append(heads)
    return found


# -- weight transfer ----------------------------------------------------------------------------------------
def _top(scores: torch.Tensor, keep: int) -> list[int]:
    """Indices of the `keep` largest scores, in their original order (ties: the lower index)."""
    if keep >= scores.numel():
        return list(range(scores.numel()))
    order = sorted(range(scores.numel()), key=lambda i: (-float(scores[i]), i))[:keep]
    return sorted(order)


def kept_heads(scores: torch.Tensor, shape: LMShape, base: LMShape) -> tuple[list[int], list[int]]:
    """(kept key/value groups, kept query heads grouped by kept group) for one layer's head scores."""
    group = base.heads_per_group
    per_group = scores.reshape(base.num_key_value_heads, group)
    groups = _top(per_group.sum(1), shape.num_key_value_heads)
    heads = [g * group + h for g in groups for h in _top(per_group[g], shape.heads_per_group)]
    return groups, heads


def _rows(units: list[int], size: int) -> torch.Tensor:
    return (torch.tensor(units)[:, None] * size + torch.arange(size)[None, :]).reshape(-1)


def compressed_config(config: Any, shape: LMShape) -> Any:
    """The model config with the compressed sizes (head_dim pinned: heads are copied whole)."""
    new = config.__class__.from_dict(config.to_dict())
    new.num_hidden_layers = shape.num_layers
    new.intermediate_size = shape.intermediate_size
    new.num_attention_heads = shape.num_heads
    new.num_key_value_heads = shape.num_key_value_heads
    new.head_dim = _head_dim(config)
    layer_types = getattr(config, "layer_types", None)
    if isinstance(layer_types, list) and len(layer_types) == config.num_hidden_layers:
        kept = evenly_spaced(config.num_hidden_layers, shape.num_layers)
        new.layer_types = [layer_types[i] for i in kept]
    return new


@dataclass
class CompressionPlan:
    """What was kept; JSON-ready through `to_json` (written next to an exported model)."""

    method: str
    init: str
    original: LMShape
    shape: LMShape
    layers: list[int]
    heads: list[list[int]] = field(default_factory=list)
    """Per kept layer, the original query-head indices kept (grouped by kept key/value group)."""
    kv_groups: list[list[int]] = field(default_factory=list)
    neurons: list[list[int]] = field(default_factory=list)
    original_parameters: int = 0
    parameters: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "init": self.init,
            "original": self.original.__dict__,
            "shape": self.shape.__dict__,
            "layers": self.layers,
            "kv_groups": self.kv_groups,
            "heads": self.heads,
            "neurons_kept": [len(n) for n in self.neurons],
            "original_parameters": self.original_parameters,
            "parameters": self.parameters,
            "kept_fraction": self.parameters / self.original_parameters
            if self.original_parameters
            else math.nan,
        }


def _slice(
    name: str, tensor: torch.Tensor, q_rows: torch.Tensor, kv_rows: torch.Tensor, neurons: torch.Tensor
) -> torch.Tensor:
    """The part of an original layer tensor that the compressed layer keeps (by the tensor's role)."""
    suffix = name.split(".mlp.")[-1] if ".mlp." in name else name.split(".self_attn.")[-1]
    rules = {
        "q_proj.weight": lambda t: t[q_rows],
        "q_proj.bias": lambda t: t[q_rows],
        "k_proj.weight": lambda t: t[kv_rows],
        "k_proj.bias": lambda t: t[kv_rows],
        "v_proj.weight": lambda t: t[kv_rows],
        "v_proj.bias": lambda t: t[kv_rows],
        "o_proj.weight": lambda t: t[:, q_rows],
        "gate_proj.weight": lambda t: t[neurons],
        "gate_proj.bias": lambda t: t[neurons],
        "up_proj.weight": lambda t: t[neurons],
        "up_proj.bias": lambda t: t[neurons],
        "down_proj.weight": lambda t: t[:, neurons],
    }
    rule = rules.get(suffix) if (".mlp." in name or ".self_attn." in name) else None
    return rule(tensor) if rule is not None else tensor


@torch.no_grad()
def compress_causal_lm(
    model: Any,
    spec: LMCompressionSpec,
    importance: Importance | None = None,
    *,
    seed: int = 0,
) -> tuple[Any, CompressionPlan]:
    """A new, smaller model of the same class shaped by `spec`; weights copied per the plan (init
    'pretrained') or freshly initialised (init 'random', same shape). `importance` is required for the
    pretrained init with width cuts (None: weight norms)."""
    config = model.config
    base = original_shape(config)
    shape = choose_shape(config, spec)
    new_config = compressed_config(config, shape)
    layers = evenly_spaced(base.num_layers, shape.num_layers)
    torch.manual_seed(seed)
    small = model.__class__(new_config)
    plan = CompressionPlan(
        method=importance.method if importance is not None else "weight",
        init=spec.init,
        original=base,
        shape=shape,
        layers=layers,
        original_parameters=parameter_count(config, base),
        parameters=parameter_count(config, shape),
    )
    if spec.init == "random":
        small.generation_config = model.generation_config
        return small, plan
    if importance is None:
        importance = _weight_importance(model, config.num_attention_heads, _head_dim(config))
    head_dim = _head_dim(config)
    source = model.state_dict()
    per_layer: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
    for position, index in enumerate(layers):
        groups, heads = kept_heads(importance.heads[index], shape, base)
        neurons = _top(importance.mlp[index], shape.intermediate_size)
        plan.kv_groups.append(groups)
        plan.heads.append(heads)
        plan.neurons.append(neurons)
        per_layer[position] = (_rows(heads, head_dim), _rows(groups, head_dim), torch.tensor(neurons))
    for name, target in small.state_dict().items():
        source_name, rows = name, None
        parts = name.split(".")
        if "layers" in parts:
            at = parts.index("layers") + 1
            position = int(parts[at])
            parts[at] = str(layers[position])
            source_name, rows = ".".join(parts), per_layer[position]
        if source_name not in source:
            raise ConfigError(
                f"the compressed model's {name} has no counterpart {source_name} in the original"
            )
        value = source[source_name]
        if rows is not None:
            value = _slice(name, value, *rows)
        if value.shape != target.shape:
            raise ConfigError(f"{name}: cannot fit {tuple(value.shape)} into {tuple(target.shape)}")
        target.copy_(value)
    small.generation_config = model.generation_config
    return small, plan


def count_parameters(model: nn.Module) -> int:
    """Parameters counted once even when tied."""
    return sum(p.numel() for p in {p.data_ptr(): p for p in model.parameters()}.values())


def export_compressed(model: Any, tokenizer: Any, plan: CompressionPlan, out_dir: Path | str) -> Path:
    """A plain transformers directory (safetensors, config.json, tokenizer with its chat template) plus
    compression.json."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    restore = model.config.use_cache
    model.config.use_cache = True
    try:
        save_pretrained(model, out, safe_serialization=True)
    finally:
        model.config.use_cache = restore
    if tokenizer is not None:
        save_pretrained(tokenizer, out)
    atomic_write_json(out / PLAN_FILE, plan.to_json())
    return out
