"""A training config outside its bounds is refused naming the field (the API's 422 `errors`, the CLI's
message), before any run exists: each bound here guards a failure that would otherwise come mid-run."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from tldrlab.kinds import config_errors
from tldrlab.train.config import TrainJobConfig


@pytest.mark.parametrize(
    ("section", "field", "value"),
    [
        ("data", "val_fraction", 1.0),  # everything held out: nothing left to train on
        ("data", "val_fraction", 0.0),
        ("train", "grad_accum_steps", 0),  # an optimizer step of no micro-batches
        ("train", "min_lr_ratio", 1.5),  # the schedule would raise the rate above lr
        ("train", "keep_checkpoints", 0),
        ("train", "batch_size", 0),
        ("train", "max_grad_norm", 0.0),
        ("train", "lr", 0.0),
        # a tokenizer trained by the job: the Rust BPE trainer aborted the process sizing its tables by it
        ("tokenizer", "vocab_size", 10**11),
    ],
)
def test_out_of_range_values_are_refused_naming_their_field(section: str, field: str, value: Any) -> None:
    config: dict[str, Any] = {"data": {"path": "x"}}
    config.setdefault(section, {})[field] = value
    with pytest.raises(ValidationError) as refused:
        TrainJobConfig.model_validate(config)
    assert [e["loc"] for e in config_errors(refused.value)] == [[section, field]]


def test_values_at_the_inner_edge_of_the_bounds_are_accepted() -> None:
    job = TrainJobConfig.model_validate(
        {
            "data": {"path": "x", "val_fraction": 0.99},
            "train": {"grad_accum_steps": 1, "min_lr_ratio": 1.0, "keep_checkpoints": 1, "batch_size": 1},
        }
    )
    assert job.data.val_fraction == 0.99 and job.train.min_lr_ratio == 1.0
