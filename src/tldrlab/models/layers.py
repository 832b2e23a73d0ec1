"""Choosing and finding a model's layers: shared by layer dropping (`causal_lm.num_layers`) and the
compression experiments (T5 and causal LMs)."""

from __future__ import annotations

from typing import Any

from tldrlab.errors import ConfigError


def evenly_spaced(total: int, keep: int) -> list[int]:
    """`keep` indices out of range(total), spread evenly, first and last always included."""
    if keep > total:
        raise ConfigError(f"cannot keep {keep} layers of a model that has {total}")
    if keep == 1:
        return [0]
    return sorted({round(i * (total - 1) / (keep - 1)) for i in range(keep)})


def decoder_layers(model: Any, purpose: str) -> Any:
    """A Llama-style causal LM's `model.layers` (a ConfigError naming `purpose` for other models)."""
    layers = getattr(getattr(model, "model", None), "layers", None)
    if layers is None:
        raise ConfigError(f"{type(model).__name__} has no model.layers: {purpose} works on Llama-style LMs")
    return layers
