"""`train_job(run)`: one whole training run from a `TrainJobConfig` (run kind "train").

The CLI (`tldrlab train`) and the service's workers both end up here:

1. tokenizer: the configured directory, or one trained on the training split into <run_dir>/tokenizer
   (reused when the run resumes);
2. model: `tldrlab.models.build_model(name, model_settings, tokenizer)`, seeded;
3. task: `build_task` (Seq2SeqTask / CausalLMTask) from the data;
4. `train(...)`, resuming from the run's newest good checkpoint when there is one;
5. the best weights saved with `tldrlab.models.save_model` to <run_dir>/model (plain transformers loads t5
   and gpt2 from there), plots, and Weights & Biases (config, metrics, eval predictions, model artifact).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from torch import nn

from tldrlab.config import get_settings
from tldrlab.device import seed_everything
from tldrlab.errors import ConfigError
from tldrlab.runs.run import Run
from tldrlab.tokenizers.job import tokenizer_job
from tldrlab.train.config import TrainJobConfig
from tldrlab.train.loop import EvalDecision, TrainHooks, TrainResult, TrainState, train

MODEL_SUBDIR = "model"
TOKENIZER_SUBDIR = "tokenizer"

__all__ = ["parse_job_config", "run_training", "tokenizer_job", "train_job"]


def parse_job_config(raw: dict[str, Any] | TrainJobConfig) -> TrainJobConfig:
    """Validate a job config, turning pydantic's errors into one readable ConfigError."""
    if isinstance(raw, TrainJobConfig):
        return raw
    try:
        return TrainJobConfig.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"invalid training config: {problems}") from exc


def prepare_tokenizer(job: TrainJobConfig, run: Run | None, run_dir: Path | None) -> Any:
    """The job's tokenizer: loaded from `tokenizer.path`, the pretrained family's own, or trained (once) into
    <run_dir>/tokenizer."""
    from tldrlab.models.registry import get_spec, parse_model_config
    from tldrlab.tokenizers import load_tokenizer, train_tokenizer
    from tldrlab.train.tasks import training_files

    if job.tokenizer.path:
        return load_tokenizer(job.tokenizer.path)
    spec = get_spec(job.model)
    if spec.tokenizer is not None:
        return spec.tokenizer(parse_model_config(job.model, job.model_settings))
    if run_dir is None:
        raise ConfigError("no tokenizer given and no run directory to train one into")
    out = run_dir / TOKENIZER_SUBDIR
    if not (out / "tokenizer.json").is_file():
        files = training_files(job.data)
        if run is not None:
            run.log(f"training a {job.tokenizer.method} tokenizer (vocab {job.tokenizer.vocab_size})")
            run.set_phase("training the tokenizer", progress=0.0)
        manifest = train_tokenizer(
            job.tokenizer.method, files, job.tokenizer.vocab_size, out, seed=job.train.seed
        )
        if run is not None:
            run.log("tokenizer trained", **manifest.get("stats", {}))
    return load_tokenizer(out)


class _JobHooks(TrainHooks):
    """Sends generated eval predictions to wandb as a table."""

    def __init__(self, task: Any, tracker: Any) -> None:
        self.task = task
        self.tracker = tracker
        self.tabled = 0

    def on_eval(self, state: TrainState, metrics: dict[str, float]) -> EvalDecision | None:
        samples = getattr(self.task, "last_samples", None)
        if self.tracker is not None and samples and self.task.evaluations != self.tabled:
            self.tabled = self.task.evaluations
            self.tracker.log_table("eval_predictions", samples, step=state.step)
        return None


def save_best_model(result: TrainResult, tokenizer: Any, model_name: str, out_dir: Path) -> int | None:
    """Save the best evaluation's weights (else the final ones) in HF format; return the step saved."""
    from safetensors.torch import load_model

    from tldrlab.models import save_model
    from tldrlab.train.checkpoint import MODEL, verify_checkpoint

    model: nn.Module = result.model
    step: int | None = result.steps
    if result.best_checkpoint is not None:
        index = verify_checkpoint(result.best_checkpoint)
        load_model(model, str(result.best_checkpoint / MODEL), device=str(next(model.parameters()).device))
        step = int(index["step"])
    model.eval()
    save_model(model, tokenizer, out_dir, name=model_name, step=step)
    return step


def run_training(run: Run, job: TrainJobConfig, *, resume: bool = True) -> TrainResult:
    """Train per `job` inside `run` (see the module docstring)."""
    from tldrlab.models import build_model, model_task
    from tldrlab.track.wandb_tracker import WANDB_MODES, WandbTracker
    from tldrlab.train.tasks import build_task

    task_kind = model_task(job.model)  # validates the model name first
    tokenizer = prepare_tokenizer(job, run, run.dir)
    seed_everything(job.train.seed)
    model = build_model(job.model, job.model_settings, tokenizer)
    task = build_task(job, tokenizer, model, task_kind)
    n_params = sum(p.numel() for p in model.parameters())
    run.log(
        f"training {job.model} ({n_params:,} parameters) on {len(task.train_dataset())} examples",  # type: ignore[arg-type]
        parameters=n_params,
    )
    run.set_environment(parameters=n_params, model=job.model, task=task_kind)
    env_mode = os.environ.get("WANDB_MODE")
    mode = job.wandb or (env_mode if env_mode in WANDB_MODES else None) or get_settings().wandb_mode
    tracker = WandbTracker.start(run, mode=mode, config=job.model_dump(mode="json"))
    ok = False
    try:
        result = train(
            model, task, job.train, run, hooks=_JobHooks(task, tracker), resume=resume, tracker=tracker
        )
        run.set_phase("exporting the model")
        model_dir = run.dir / MODEL_SUBDIR
        saved_step = save_best_model(result, tokenizer, job.model, model_dir)
        run.add_artifact(model_dir, kind="model")
        run.set_summary(model_step=saved_step)
        tracker.log_model(model_dir)
        ok = True
    finally:
        tracker.finish(exit_code=0 if ok else 1)
    return result


def run_training_follower(job: TrainJobConfig, *, resume: bool = True) -> TrainResult:
    """A non-main process of a distributed job: the same model and data, no run files of its own.

    The main process owns the run (and its checkpoints, broadcast to the others on resume); the tokenizer
    must be a directory every process can read, since only one process could train it.
    """
    from tldrlab.models import build_model, model_task
    from tldrlab.train.tasks import build_task

    if not job.tokenizer.path:
        raise ConfigError(
            "distributed training needs --tokenizer DIR (train one first: tldrlab tokenizer train)"
        )
    task_kind = model_task(job.model)
    tokenizer = prepare_tokenizer(job, None, None)
    seed_everything(job.train.seed)
    model = build_model(job.model, job.model_settings, tokenizer)
    task = build_task(job, tokenizer, model, task_kind)
    return train(model, task, job.train, None, resume=resume)


def train_follower(job: TrainJobConfig) -> None:
    """What a non-main rank of a distributed `train` launch runs."""
    run_training_follower(job)


def train_job(run: Run, job: TrainJobConfig) -> dict[str, Any]:
    """Run kind "train": resumes when checkpoints exist."""
    result = run_training(run, job)
    return {
        "steps": result.steps,
        "metrics": result.metrics,
        "best_step": result.best_step,
        "model_dir": str(run.dir / MODEL_SUBDIR),
    }
