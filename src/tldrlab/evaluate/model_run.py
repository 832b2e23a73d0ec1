"""Which training run a model reference is the model of, and the data an evaluation of it reads when it is
given none: one rule for the evaluation itself (`run_eval.eval_config_for`, the command line's check) and for
the API's submit (`service.confine`), so a split the run's data lacks is refused the same everywhere.

    model_run("train-2026...")      # by id, unique prefix, alias or a path to <run>/model: (out_dir, record)
    training_data(record)           # {"path": ..., "format": ..., "val_split": ...} or None
    check_model_run(config)         # kinds evaluate / generate / score: `model_run` is no run that saves none

No torch here: the API runs this at submit.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tldrlab.config import Settings
from tldrlab.errors import InvalidConfigError, NotFoundError
from tldrlab.evaluate.config import EvaluateConfig, GenerateConfig, ScoreConfig
from tldrlab.models.resolve import MODEL_SUBDIR, ResolvedModel, resolve_model_ref, run_kind_refusal
from tldrlab.runs import open_registry
from tldrlab.runs.registry import RunRecord


@dataclass(frozen=True)
class ModelRun:
    """A model reference resolved, with the run whose model it is."""

    resolved: ResolvedModel
    out_dir: Path | None
    """Where an evaluation writes its files next to the model: the run directory of a run's model, a model
    directory itself; None for a GGUF file, the bundled model and installed models."""
    record: RunRecord | None
    """The registered run whose `model/` this is; None for any other model."""


def model_run(target: str | Path, settings: Settings | None = None) -> ModelRun:
    """`target` resolved (`models.resolve.resolve_model_ref`: a run id or prefix, an alias, a path, ...) and
    the run it is the model of. NotFoundError / InvalidInputError as the resolver raises them."""
    resolved = resolve_model_ref(target, settings)
    model_dir = resolved.path
    out_dir: Path | None = model_dir.parent if model_dir.name == MODEL_SUBDIR else model_dir
    if resolved.kind == "gguf" or resolved.source in ("bundled", "installed"):
        out_dir = None
    record: RunRecord | None = None
    if out_dir is not None and (out_dir / "manifest.json").is_file():
        try:
            found = open_registry(settings).get(out_dir.name)
        except NotFoundError:
            found = None
        if found is not None and Path(found.run_dir).resolve() == out_dir.resolve():
            record = found
    return ModelRun(resolved, out_dir, record)


def training_data(record: RunRecord | None) -> dict[str, Any] | None:
    """The `data` section of a training run's config (path, format, splits, prefix, ...) when it names a
    data path; None for no run, or a run whose config has no such section (an evaluation then needs data)."""
    config = record.config if record is not None and isinstance(record.config, dict) else {}
    data = config.get("data")
    if not isinstance(data, dict) or not isinstance(data.get("path"), str) or not data["path"]:
        return None
    return data


def check_model_run(config: EvaluateConfig | GenerateConfig | ScoreConfig) -> None:
    """Kinds `evaluate`, `generate` and `score`, before a run is created (command line and API alike) and
    again as the run starts (the run named may have been replaced meanwhile): a `model_run` that is the id
    of a run of a kind that saves no model (`models.resolve.run_kind_refusal`) is refused, naming the field.
    Over the API such a run was queued and failed with "has no saved model"; `POST /runs/{id}/generate`
    refuses it alike (422 at `model_run`). A run of a training kind is taken whatever its status: a queued
    one's model comes when it completes."""
    if (refusal := run_kind_refusal(config.model_run)) is not None:
        raise InvalidConfigError.at("model_run", refusal)
