"""`launch(kind, config, resume=...)`: start or resume a run of a kind in this process, as the CLI does.

Owns what a command-line run needs beyond the kind's function: the resume policy (same kind, not completed,
the recorded config), SIGTERM -> checkpoint and preempt, the checks that should fail before a run exists,
and followers of a distributed launch (ranks other than 0 train without a run).
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from tldrlab.errors import ConfigError, ConflictError, InvalidInputError
from tldrlab.jobs import resolve_kind
from tldrlab.runs import RunRegistry, create_run, execute_run, open_registry, preempt
from tldrlab.runs.registry import RunStatus


def _is_follower() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and int(os.environ.get("RANK", "0")) != 0


def _check_train(config: Any) -> None:
    from tldrlab.models import model_task
    from tldrlab.models.registry import parse_model_config
    from tldrlab.train.tasks import detect_splits

    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not config.tokenizer.path:
        raise ConfigError(
            "distributed training needs --tokenizer DIR (train one first: tldrlab tokenizer train)"
        )
    if not Path(config.data.path).exists():
        raise InvalidInputError(f"data not found: {config.data.path}")
    model_task(config.model)  # unknown model names fail before a run is created
    parse_model_config(config.model, config.model_settings)  # and so do bad model settings
    # Record the splits found in the data, so `tldrlab eval RUN` evaluates on the same validation split.
    config.data.train_split, config.data.val_split = detect_splits(config.data)


def _check_elm_train(config: Any) -> None:
    if not Path(config.data).is_dir():
        raise InvalidInputError(
            f"data directory not found: {config.data} (write one with `tldrlab elm prepare`)"
        )


CHECKS = {"train": _check_train, "elm_train": _check_elm_train}
"""Kind -> checks run before a run is created, so mistakes do not leave failed runs behind."""


def _seed(config: BaseModel) -> int | None:
    seed = getattr(config, "seed", None)
    if seed is None and isinstance(getattr(config, "train", None), BaseModel):
        seed = getattr(config.train, "seed", None)  # type: ignore[attr-defined]
    return seed if isinstance(seed, int) else None


def _resumable(registry: RunRegistry, kind: str, resume: str) -> str:
    record = registry.find(resume)
    if record.kind != kind:
        raise InvalidInputError(f"run {record.id} is a {record.kind} run, not a {kind} run")
    if record.status == RunStatus.COMPLETED:
        raise ConflictError(f"run {record.id} already completed; nothing to resume")
    return record.id


def launch(kind: str, config: BaseModel | None, *, resume: str | None = None) -> tuple[str, Any]:
    """Run `config` as a new run of `kind`, or continue run `resume`; returns (run id, the kind's result)."""
    if kind == "experiment":  # the experiment creates its own run and one child run per arm and seed
        from tldrlab.experiments.dendrite_experiment import run_dendrite_experiment

        results = run_dendrite_experiment(config)  # type: ignore[arg-type]
        return results["run_id"], results
    if kind == "train" and _is_follower():
        from tldrlab.train.jobs import parse_job_config, run_training_follower

        registry = open_registry()
        job = parse_job_config(registry.find(resume).config if resume else config)  # type: ignore[arg-type]
        trained = run_training_follower(job)
        return "", {"steps": trained.steps, "metrics": trained.metrics}
    registry = open_registry()
    if resume:
        run_id = _resumable(registry, kind, resume)
    else:
        assert config is not None
        if check := CHECKS.get(kind):
            check(config)
        run_id = create_run(kind, config, seed=_seed(config), registry=registry).id
    function = resolve_kind(kind)
    # SIGTERM (kill, timeout, a scheduler) checkpoints and ends the run as preempted: --resume continues it.
    signal.signal(signal.SIGTERM, lambda signum, frame: preempt.request_stop())
    with execute_run(run_id, registry=registry) as run:
        result = function(run)
    return run_id, result
