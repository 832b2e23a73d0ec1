"""`launch(kind, config, resume=...)`: the generated commands' way into `tldrlab.launch.launch_run`.

`tldrlab.launch` owns the launch path shared with the API (validation, the kind's prepare step such as split
recording, the resume policy, SIGTERM -> checkpoint and preempt, distributed followers); this module adds the
checks only a command line wants before a run exists (the data is on this machine, the model name is known),
so a typo does not leave a failed run behind.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from tldrlab.errors import ConfigError, InvalidInputError
from tldrlab.launch import is_follower, launch_run


def _check_train(config: Any) -> None:
    from tldrlab.models import model_task
    from tldrlab.models.registry import parse_model_config

    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not config.tokenizer.path:
        raise ConfigError(
            "distributed training needs --tokenizer DIR (train one first: tldrlab tokenizer train)"
        )
    if not Path(config.data.path).exists():
        raise InvalidInputError(f"data not found: {config.data.path}")
    model_task(config.model)  # unknown model names fail before a run is created
    parse_model_config(config.model, config.model_settings)  # and so do bad model settings


def _check_elm_train(config: Any) -> None:
    if not Path(config.data).is_dir():
        raise InvalidInputError(
            f"data directory not found: {config.data} (write one with `tldrlab elm prepare`)"
        )


CHECKS = {"train": _check_train, "elm_train": _check_elm_train}
"""Kind -> checks run before a run is created, so mistakes do not leave failed runs behind."""


def launch(kind: str, config: BaseModel | None, *, resume: str | None = None) -> tuple[str, Any]:
    """Run `config` as a new run of `kind`, or continue run `resume`; returns (run id, the kind's result)."""
    if not resume and config is not None and not is_follower() and (check := CHECKS.get(kind)):
        check(config)
    launched = launch_run(kind, None if resume else config, resume=resume)
    return launched.record.id, launched.result
