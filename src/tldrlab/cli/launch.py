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

from tldrlab.errors import ConfigError, InvalidInputError, NotFoundError
from tldrlab.launch import is_follower, launch_run


def _check_train(config: Any) -> None:
    # lazy: loads torch (kept off `tldrlab --help`)
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


def _check_tokenizer(config: Any) -> None:
    # lazy: loads tokenizers (kept off `tldrlab --help`)
    from tldrlab.tokenizers.train import get_method

    smallest = get_method(config.method).min_vocab_size(config)
    if config.vocab_size < smallest:
        raise ConfigError(
            f"vocab size {config.vocab_size} is too small for {config.method}: it needs {smallest}+"
        )
    if missing := [path for path in config.corpus if not Path(path).exists()]:
        raise NotFoundError(f"corpus file not found: {missing[0]}")


def _check_exists(*fields: str) -> Any:
    def check(config: Any) -> None:
        for name in fields:
            if (path := getattr(config, name)) and not Path(path).exists():
                raise NotFoundError(f"{name} not found (no such file or directory): {path}")

    return check


def _check_model(config: Any) -> None:
    # lazy: loads torch (kept off `tldrlab --help`)
    from tldrlab.models.resolve import resolve_model_ref

    resolve_model_ref(config.model_run)  # a model that is not there fails before a run is created


def _check_lvm_train(config: Any) -> None:
    # lazy: loads numpy, torch (kept off `tldrlab --help`)
    from tldrlab.lvm.losses import parse_loss
    from tldrlab.lvm.models import LVM_MODELS

    if config.model not in LVM_MODELS:
        raise ConfigError(f"unknown LVM {config.model!r}; choose one of {', '.join(LVM_MODELS)}")
    parse_loss(config.loss)


CHECKS = {
    "train": _check_train,
    "elm_train": _check_elm_train,
    "tokenizer": _check_tokenizer,
    "ingest": _check_exists("path"),
    "lvm_ingest": _check_exists("path"),
    "lvm_train": _check_lvm_train,
    "elm_prepare": _check_exists("data"),
    "elm_evaluate": _check_exists("predictions", "references"),
    "evaluate": _check_exists("data"),
    "generate": _check_model,
    "score": _check_model,
}
"""Kind -> checks run before a run is created, so mistakes do not leave failed runs behind."""


def check(kind: str, config: Any) -> None:
    """The kind's command-line checks (CHECKS), before anything else happens."""
    if not is_follower() and (checks := CHECKS.get(kind)):
        checks(config)


def launch(kind: str, config: BaseModel | dict[str, Any], *, resume: str | None = None) -> tuple[str, Any]:
    """Run `config` as a new run of `kind`, or continue run `resume` with `config` holding the changes it
    may make (its kind's resume fields); returns (run id, the kind's result)."""
    if not resume:
        check(kind, config)
    launched = launch_run(kind, config, resume=resume)
    return launched.record.id, launched.result
