"""The ELM adapter's search as a sweep: the search space in W&B syntax, the sweep mapping an optimisation
stores with its study, and the check an `elm_optimize` run passes before it exists. No torch here: the API's
submit runs that check (`tldrlab.kinds`: kind `elm_optimize`'s `prepare`).

    sweep_mapping("elm-summary-optimization", warmup=2)   # {"program": "tldrlab.elm", "method": "bayes", ...}
    elm_sweep_config(config)                               # the SweepConfig an ElmOptimizeConfig runs as
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tldrlab.elm.config import SEARCHED_HIDDEN_DIMS, ElmOptimizeConfig, ElmTrainConfig
from tldrlab.elm.layout import synthesis_path
from tldrlab.errors import InvalidInputError
from tldrlab.sweep.config import SweepConfig
from tldrlab.sweep.storage import check_study, study_name

OBJECTIVE = "bertscore_composite"

SEARCH_SPACE: dict[str, dict[str, Any]] = {
    "train.lr": {"distribution": "log_uniform_values", "min": 1e-5, "max": 5e-3},
    "model.hidden_dim": {"values": list(SEARCHED_HIDDEN_DIMS)},
    "model.dropout": {"distribution": "uniform", "min": 0.0, "max": 0.3},
    "model.residual_scale": {"distribution": "uniform", "min": 0.05, "max": 0.5},
    "loss.contrastive_weight": {"distribution": "uniform", "min": 0.0, "max": 0.1},
    "loss.text_drift_weight": {"distribution": "uniform", "min": 0.01, "max": 0.1},
    "loss.text_drift_target_similarity": {"distribution": "uniform", "min": 0.7, "max": 0.9},
    "train.batch_size": {"values": [4, 8, 16]},
}
"""The search space in W&B syntax. hidden_dim is scaled down from [2048, 4096, 6144] (sizes for a 2560-d
embedder feeding a 4B LM) to this CPU scale; `--hidden-dims` sets other choices. The batch sizes larger than
the training records are left out (`searched_batch_sizes`)."""

BASE_ATTR = "elm_base_config"
"""study.user_attrs key: the base ElmTrainConfig every trial overrides (workers rebuild trials from it)."""


def training_records(base: ElmTrainConfig) -> int | None:
    """How many records the trials train on: the prepared train split's, at most `limit`; None when the split
    cannot be read here (the data's own check says why)."""
    try:
        with synthesis_path(Path(base.data), "train").open(encoding="utf-8") as lines:
            count = sum(1 for line in lines if line.strip())
    except (OSError, UnicodeDecodeError):
        return None
    return count if base.limit is None else min(count, base.limit)


def searched_batch_sizes(base: ElmTrainConfig) -> list[int]:
    """The searched batch sizes that fit the training records: a trial whose batch is larger than its data
    fails, and on fewer than 16 records every trial drawing one did until "3 trials failed in a row" stopped
    the search. InvalidInputError when none fits, before a study exists."""
    searched: list[int] = SEARCH_SPACE["train.batch_size"]["values"]
    records = training_records(base)
    if records is None:
        return list(searched)
    fitting = [size for size in searched if size <= records]
    if not fitting:
        raise InvalidInputError(
            f"{base.data} has {records} training records: too few for the smallest searched batch size "
            f"{min(searched)} (prepare more records, or raise --limit)"
        )
    return fitting


def sweep_mapping(
    study_name: str,
    *,
    warmup: int = 2,
    seed: int | None = 0,
    hidden_dims: list[int] | None = None,
    batch_sizes: list[int] | None = None,
) -> dict[str, Any]:
    """The W&B sweep equivalent of the search (what the Sweeps engine parses and stores with the study)."""
    parameters = {k: dict(v) for k, v in SEARCH_SPACE.items()}
    if hidden_dims:
        parameters["model.hidden_dim"] = {"values": list(hidden_dims)}
    if batch_sizes:
        parameters["train.batch_size"] = {"values": list(batch_sizes)}
    return {
        "name": study_name,
        "program": "tldrlab.elm",
        "method": "bayes",
        "metric": {"name": OBJECTIVE, "goal": "maximize"},
        "parameters": parameters,
        # a trial reports its evaluations from iteration 1, so a warm-up of 0 prunes as one of 1 does; the
        # spec's min_iter is at least 1 (0 was refused building this sweep: a traceback, over the API a 500)
        "early_terminate": {"type": "median", "min_iter": max(1, warmup), "n_startup_trials": 2},
        "seed": seed,
    }


def elm_sweep_config(config: ElmOptimizeConfig) -> SweepConfig:
    """The sweep an optimisation is: the search space over the base config. A study resumed with another base
    config is refused as another sweep's (`sweep.storage.refuse_another_sweeps_study`): its stored base used
    to replace the given one without a word, so `elm optimize --max-steps 4` on a study begun with 2 trained
    2."""
    raw = sweep_mapping(
        config.study,
        warmup=config.warmup,
        seed=config.seed,
        hidden_dims=config.hidden_dims,
        batch_sizes=searched_batch_sizes(config.base),
    )
    return SweepConfig(
        sweep={**raw, "config": config.base.model_dump(mode="json")},
        trials=config.trials,
        workers=config.jobs,
        storage=config.storage,
        study=config.study,
        quiet=config.quiet,
    )


def sweep_config_of(raw: dict[str, Any]) -> SweepConfig:
    """An `elm_optimize` run's stored config as the sweep it runs (`sweep.storage.QUEUED_STUDY_KINDS`)."""
    return elm_sweep_config(ElmOptimizeConfig.model_validate(raw))


def optimize_study_name(config: ElmOptimizeConfig) -> str:
    """The study an `elm_optimize` run opens (kind `elm_optimize`'s `study`)."""
    return study_name(elm_sweep_config(config))


def check_optimize_study(config: ElmOptimizeConfig) -> ElmOptimizeConfig:
    """Kind `elm_optimize`'s prepare step, before its run exists (command line and API alike): a study of
    this name that another search made (other hidden sizes) is refused (409), as a sweep's is
    (`sweep.storage.check_study`), instead of a run that fails once it starts."""
    check_study(elm_sweep_config(config))
    return config
