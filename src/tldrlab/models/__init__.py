"""Models: the MODELS registry (t5, gpt2, char_lstm), building, saving and loading in Hugging Face layout.

- `t5`, `gpt2`, `char_lstm`: one module per family with its typed config and build function.
- `registry`: MODELS, `build_model`, `model_task`, `count_parameters`, `parameter_count`.
- `io`: `save_model`, `load_model` (a directory or a run id).

The names below load on first use: the registry (the families' configs and parameter counts) imports no
torch, so a config is validated against it cheaply (the API's submit does that); `io` and the builders do.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tldrlab.models.io import load_model, resolve_model_dir, save_model
    from tldrlab.models.registry import (
        MODELS,
        build_model,
        count_parameters,
        model_name_of,
        model_task,
        unwrap_model,
    )

_LAZY = {
    **{name: "tldrlab.models.io" for name in ("load_model", "resolve_model_dir", "save_model")},
    **{
        name: "tldrlab.models.registry"
        for name in (
            "MODELS",
            "build_model",
            "count_parameters",
            "model_name_of",
            "model_task",
            "unwrap_model",
        )
    },
}


def __getattr__(name: str) -> Any:
    """The package's names, imported when first asked for."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "MODELS",
    "build_model",
    "count_parameters",
    "load_model",
    "model_name_of",
    "model_task",
    "resolve_model_dir",
    "save_model",
    "unwrap_model",
]
