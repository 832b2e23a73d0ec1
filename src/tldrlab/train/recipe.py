"""The recipe contract and its one driver: how every "train a model inside a run" is written.

    result = run_recipe(run, TRAIN, job)                         # the `train` kind
    result = run_recipe(run, TRAIN, job, extra_hooks=[pruning])  # a sweep trial: the same, plus pruning

A recipe is a typed config class plus two functions:

- `setup(run, config) -> RecipeSetup`: the model, the task, the tokenizer, hooks, the loop's TrainConfig and
  what to track (W&B project / name / group / tags / config); `run` is None on a follower rank of a
  distributed launch, which trains without run files;
- `export(run, config, setup, result) -> RecipeExport`: save the trained model (the driver has already put
  the best evaluation's weights back into `result.model`) in the recipe's format and say what to summarise.

`run_recipe` owns everything around them, once for all recipes: seeding (before `setup`), the tracker (one
W&B rule: `tldrlab.track.wandb_tracker.wandb_mode`; files in the run directory), the loop (with the recipe's
hooks, the caller's `extra_hooks` and eval-prediction tables), restoring the best checkpoint, artifacts with
sha256, the model's W&B artifact and the run summary. Recipes may repeat themselves (each reads like a short
script of what it trains); the library below them (this driver, the loop, checkpoints, tracking) may not.

To add a recipe: a config class in the area's `config.py`, a module with `setup` and `export` and a
`Recipe(name, seed, setup, export)` value, and a run kind whose execute function calls `run_recipe`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from pydantic import BaseModel
from torch import nn

from tldrlab.device import seed_everything
from tldrlab.models.io import remove_abandoned_writes
from tldrlab.report import Report, metrics_line
from tldrlab.runs.run import Run
from tldrlab.track.wandb_tracker import WandbTracker, wandb_mode
from tldrlab.train.checkpoint import MODEL, verify_checkpoint
from tldrlab.train.config import TrainConfig
from tldrlab.train.loop import TrainHooks, TrainResult, TrainTask, chain_hooks, train

ConfigT = TypeVar("ConfigT", bound=BaseModel)


@dataclass
class Tracking:
    """What the run tells Weights & Biases."""

    mode: str | None = None
    """The config's explicit mode (offline, online, disabled); None: the environment, then the settings."""
    project: str = "tldrlab"
    name: str | None = None
    """W&B run name; None: the run id."""
    group: str | None = None
    """W&B group (a sweep's study, an experiment's run)."""
    tags: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    """The config shown in W&B (usually the run's config)."""


@dataclass
class RecipeSetup:
    """What `setup` built: everything the loop needs, and what to track."""

    model: nn.Module
    task: TrainTask
    loop: TrainConfig
    tokenizer: Any = None
    hooks: list[TrainHooks] = field(default_factory=list)
    tracking: Tracking = field(default_factory=Tracking)
    environment: dict[str, Any] = field(default_factory=dict)
    """Facts recorded in the manifest before training (parameter counts, model name, task, ...)."""
    restore_best: bool = True
    """Put the best evaluation's weights back before `export` (False: export the final weights)."""
    resume: bool = True
    """Continue from the run's newest good checkpoint when there is one."""
    guard: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext
    """A context the whole loop runs in (e.g. PerforatedAI's traps)."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Anything `setup` wants to hand to `export`."""


@dataclass
class RecipeExport:
    """What `export` saved and what the run's summary should say."""

    model_dir: Path | None = None
    """The saved model (recorded as a `model` artifact and logged to W&B)."""
    summary: dict[str, Any] = field(default_factory=dict)
    artifacts: list[tuple[Path, str]] = field(default_factory=list)
    """Other files or directories to record, with their artifact kind."""
    result: dict[str, Any] = field(default_factory=dict)
    """What the recipe returns to its caller beyond the summary (e.g. an experiment arm's results row)."""


@dataclass(frozen=True)
class Recipe(Generic[ConfigT]):
    """A training recipe: its name, its seed, `setup` and `export` (see the module docstring)."""

    name: str
    seed: Callable[[ConfigT], int]
    setup: Callable[[Run | None, ConfigT], RecipeSetup]
    export: Callable[[Run, ConfigT, RecipeSetup, TrainResult], RecipeExport]


@dataclass
class RecipeResult:
    """What `run_recipe` returns."""

    train: TrainResult
    setup: RecipeSetup
    export: RecipeExport
    model_step: int | None


class EvalTables(TrainHooks):
    """Sends a task's newest generated eval predictions (`task.last_samples`) to W&B as a table."""

    def __init__(self, task: Any, tracker: WandbTracker) -> None:
        self.task = task
        self.tracker = tracker
        self.tabled = 0

    def on_eval(self, state: Any, metrics: dict[str, float]) -> None:
        samples = getattr(self.task, "last_samples", None)
        evaluations = getattr(self.task, "evaluations", 0)
        if samples and evaluations != self.tabled:
            self.tabled = evaluations
            self.tracker.log_table("eval_predictions", samples, step=state.step)


def restore_best(result: TrainResult) -> int:
    """Load the best evaluation's weights (sha256-checked) into `result.model`; returns their step."""
    from safetensors.torch import load_model

    if result.best_checkpoint is None:
        return result.steps
    index = verify_checkpoint(result.best_checkpoint)
    device = str(next(result.model.parameters()).device)
    load_model(result.model, str(result.best_checkpoint / MODEL), device=device)
    return int(index["step"])


def start_tracker(run: Run, tracking: Tracking) -> WandbTracker:
    return WandbTracker.start(
        run,
        mode=wandb_mode(tracking.mode),
        config=tracking.config,
        project=tracking.project,
        name=tracking.name,
        group=tracking.group,
        tags=tracking.tags,
    )


def run_recipe(
    run: Run,
    recipe: Recipe[ConfigT],
    config: ConfigT,
    *,
    resume: bool | None = None,
    extra_hooks: Iterable[TrainHooks] = (),
    clean_exits: tuple[type[BaseException], ...] = (),
    wandb_group: str | None = None,
    wandb_config: dict[str, Any] | None = None,
) -> RecipeResult:
    """Seed, set up, track, train, restore the best weights, export, record artifacts and the summary.

    `resume` overrides the setup's choice; `extra_hooks` run after the recipe's own (a sweep's pruning);
    exceptions in `clean_exits` (e.g. a pruned trial) end the W&B run as successful; `wandb_group` and
    `wandb_config` add a caller's grouping (a sweep's study) to what the recipe tracks.
    """
    seed_everything(recipe.seed(config))
    setup = recipe.setup(run, config)
    # a run resumed after its process was killed while exporting: its half-written model (its lock now
    # free) goes now, not only at the next export; after setup, so a resume refused there (its data
    # changed) leaves the run directory as it was
    remove_abandoned_writes(run.dir)
    if setup.environment:
        run.set_environment(**setup.environment)
    if wandb_group is not None:
        setup.tracking.group = wandb_group
    setup.tracking.config = {**setup.tracking.config, **(wandb_config or {})}
    tracker = start_tracker(run, setup.tracking)
    if tracker.wandb_run is not None and tracker.wandb_run.group:
        run.set_environment(wandb_group=tracker.wandb_run.group)
    exit_code = 1
    try:
        hooks = chain_hooks([*setup.hooks, *extra_hooks, EvalTables(setup.task, tracker)])
        with setup.guard():
            result = train(
                setup.model,
                setup.task,
                setup.loop,
                run,
                hooks=hooks,
                resume=setup.resume if resume is None else resume,
                tracker=tracker,
            )
        run.set_phase("exporting the model")
        step = restore_best(result) if setup.restore_best else result.steps
        result.model.eval()
        exported = recipe.export(run, config, setup, result)
        for path, kind in exported.artifacts:
            run.add_artifact(path, kind=kind)
        if exported.model_dir is not None:
            run.add_artifact(exported.model_dir, kind="model")
            tracker.log_model(exported.model_dir)
        tracker.summary({k: v for k, v in exported.summary.items() if isinstance(v, int | float)})
        run.set_summary(model_step=step, **exported.summary)
        exit_code = 0
    except clean_exits:
        exit_code = 0
        raise
    finally:
        tracker.finish(exit_code=exit_code)
    return RecipeResult(train=result, setup=setup, export=exported, model_step=step)


def run_recipe_follower(recipe: Recipe[ConfigT], config: ConfigT) -> TrainResult:
    """A non-main rank of a distributed launch: the same seed, setup and loop, without run files."""
    seed_everything(recipe.seed(config))
    setup = recipe.setup(None, config)
    return train(
        setup.model, setup.task, setup.loop, None, hooks=chain_hooks(setup.hooks), resume=setup.resume
    )


def training_report(run_id: str, result: dict[str, Any]) -> Report:
    """How a training run's result reads (train, elm_train, lvm_train): steps, final metrics and where its
    model and curves are."""
    report = Report(
        [f"run {run_id}: {result.get('steps')} steps, {metrics_line(result.get('metrics', {}))}"],
        list(result.get("warnings", [])),
    )
    if model_dir := result.get("model_dir"):
        # the metrics above are the last step's; a model restored from an earlier best evaluation says so,
        # or `tldrlab eval RUN` seemed to contradict them
        step = result.get("model_step")
        which = (
            f" (step {step}'s weights, the best evaluation)"
            if step not in (None, result.get("steps"))
            else ""
        )
        report.blocks.append(f"model{which}: {model_dir}   curves: {Path(model_dir).parent / 'plots'}")
    return report
