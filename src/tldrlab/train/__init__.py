"""Training: one loop (`train`), resumable checkpoints, LR schedules, data tasks and the `train` run kind."""

from tldrlab.train.config import DataConfig, TokenizerConfig, TrainConfig, TrainJobConfig
from tldrlab.train.loop import EvalDecision, TrainHooks, TrainResult, TrainState, TrainTask, train

__all__ = [
    "DataConfig",
    "EvalDecision",
    "TokenizerConfig",
    "TrainConfig",
    "TrainHooks",
    "TrainJobConfig",
    "TrainResult",
    "TrainState",
    "TrainTask",
    "train",
]
