"""Training: one loop (`train`), resumable checkpoints, LR schedules, data tasks and the `train` recipe.

The configs (`tldrlab.train.config`) import no torch; the loop's names load on first use, so validating a
training config (the API does it at submit) stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from tldrlab.train.config import DataConfig, TokenizerChoice, TrainConfig, TrainJobConfig

if TYPE_CHECKING:
    from tldrlab.train.loop import EvalDecision, TrainHooks, TrainResult, TrainState, TrainTask, train

_LAZY = {name: "tldrlab.train.loop" for name in ("EvalDecision", "TrainHooks", "TrainResult", "TrainState")}
_LAZY.update(TrainTask="tldrlab.train.loop", train="tldrlab.train.loop")


def __getattr__(name: str) -> Any:
    """The loop's names, imported (with torch) when first asked for."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "DataConfig",
    "EvalDecision",
    "TokenizerChoice",
    "TrainConfig",
    "TrainHooks",
    "TrainJobConfig",
    "TrainResult",
    "TrainState",
    "TrainTask",
    "train",
]
