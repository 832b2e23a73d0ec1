"""Models: the MODELS registry (t5, gpt2, char_lstm), building, saving and loading in Hugging Face layout.

- `t5`, `gpt2`, `char_lstm`: one module per family with its typed config and build function.
- `registry`: MODELS, `build_model`, `model_task`, `count_parameters`.
- `io`: `save_model`, `load_model` (a directory or a run id).
"""

from tldrlab.models.io import load_model, resolve_model_dir, save_model
from tldrlab.models.registry import (
    MODELS,
    build_model,
    count_parameters,
    model_name_of,
    model_task,
    unwrap_model,
)

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
