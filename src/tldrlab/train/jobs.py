"""The `train` recipe and run kind: train a model (t5, gpt2, char_lstm, ...) from a `TrainJobConfig`.

1. tokenizer: the configured directory, or one trained on the training split into <run_dir>/tokenizer
   (reused when the run resumes); a pretrained model (causal_lm, a t5 / gpt2 `from_pretrained`) brings
   its own;
2. model: `tldrlab.models.build_model(name, model_settings, tokenizer)` (the driver has seeded);
3. task: `build_task` (Seq2SeqTask / CausalLMTask) from the data;
4. the loop via `run_recipe`, resuming from the run's newest good checkpoint when there is one;
5. export: the best weights saved with `tldrlab.models.save_model` to <run_dir>/model (plain transformers
   loads t5 and gpt2 from there).

A sweep trial is this recipe plus pruning hooks (`run_recipe(run, TRAIN, job, extra_hooks=[...])`).
"""

from __future__ import annotations

import functools
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from tldrlab.budget import ReadDimension, within_budget_as_read
from tldrlab.data.splits import training_files
from tldrlab.device import resolve_device, resolve_precision
from tldrlab.errors import ConfigError, validation_problems
from tldrlab.evaluate.launchers import evaluate_after_training
from tldrlab.models import build_model, model_task, save_model
from tldrlab.models.causal_lm import lora_modules
from tldrlab.models.registry import get_spec, parse_model_config
from tldrlab.runs.run import Run
from tldrlab.tokenizers import load_tokenizer, tokenizer_once
from tldrlab.train.config import TrainJobConfig
from tldrlab.train.loop import TrainResult
from tldrlab.train.recipe import Recipe, RecipeExport, RecipeSetup, Tracking, run_recipe, run_recipe_follower
from tldrlab.train.same_data import check_same_data, train_data_files
from tldrlab.train.tasks import build_task

MODEL_SUBDIR = "model"
TOKENIZER_SUBDIR = "tokenizer"


def parse_job_config(raw: dict[str, Any] | TrainJobConfig) -> TrainJobConfig:
    """Validate a job config, turning pydantic's errors into one readable ConfigError."""
    if isinstance(raw, TrainJobConfig):
        return raw
    try:
        return TrainJobConfig.model_validate(raw)
    except ValidationError as exc:
        problems = validation_problems(exc)
        raise ConfigError(f"invalid train config: {problems}") from exc


def prepare_tokenizer(job: TrainJobConfig, run: Run | None) -> Any:
    """The job's tokenizer: loaded from `tokenizer.path`, the pretrained model's own, or trained (once) into
    <run_dir>/tokenizer."""
    if job.tokenizer.path:
        return load_tokenizer(job.tokenizer.path)
    spec = get_spec(job.model)
    if spec.tokenizer is not None and not job.trains_tokenizer():
        return spec.tokenizer(parse_model_config(job.model, job.model_settings))
    if run is None:
        raise ConfigError(
            "distributed training needs --tokenizer DIR (train one first: tldrlab tokenizer train)"
        )

    def starting() -> None:
        run.log(f"training a {job.tokenizer.method} tokenizer (vocab {job.tokenizer.vocab_size})")
        run.set_phase("training the tokenizer", progress=0.0)

    return own_tokenizer(job, run.dir / TOKENIZER_SUBDIR, on_train=starting)


def own_tokenizer(job: TrainJobConfig, out_dir: Path, on_train: Callable[[], object] | None = None) -> Any:
    """The tokenizer the job trains for itself on its training files, in `out_dir` (trained there once)."""
    return tokenizer_once(
        out_dir,
        job.tokenizer.method,
        lambda: training_files(job.data.path, job.data.format, job.data.train_split, job.data.val_split),
        job.tokenizer.vocab_size,
        seed=job.train.seed,
        on_train=on_train,
        given_as="--tokenizer DIR (tokenizer.path)",
    )


def check_budget_as_read(job: TrainJobConfig, tokenizer: Any) -> None:
    """The model the job builds over `tokenizer` fits the parameter budget, counted as TrainJobConfig's
    validation counts it, but with the tokenizer's own size where the validation counted
    `tokenizer.vocab_size` (which a `tokenizer.path` does not use): a tokenizer directory of 250,000 tokens
    built an embedding many times the one counted, past the limit. InvalidConfigError naming the field and
    the tokenizer. (A tokenizer the job trains has at most `vocab_size` tokens; a pretrained model is not
    bounded.)"""
    tokens = len(tokenizer)
    whose = f"the tokenizer {job.tokenizer.path}" if job.tokenizer.path else "the tokenizer the run trained"
    source = f"vocab_size comes from {whose}, which has {tokens:,} tokens"
    read = ReadDimension(("tokenizer", "vocab_size"), job.tokenizer.vocab_size, tokens, source)
    within_budget_as_read(job.parameter_count(tokens), [read])


def setup(run: Run | None, job: TrainJobConfig) -> RecipeSetup:
    task_kind = model_task(job.model)
    if run is not None:
        check_same_data(run, functools.partial(train_data_files, job))
    tokenizer = prepare_tokenizer(job, run)
    check_budget_as_read(job, tokenizer)
    model = build_model(job.model, job.model_settings, tokenizer)
    task = build_task(job, tokenizer, model, task_kind)
    n_params = sum(p.numel() for p in model.parameters())
    # the layers LoRA went on, which settings naming none leave to the model (`causal_lm.resolve_lora`)
    lora: dict[str, Any] = {"lora_target_modules": targets} if (targets := lora_modules(model)) else {}
    if run is not None:
        on = f", LoRA on {', '.join(targets)}" if targets else ""
        run.log(
            f"training {job.model} ({n_params:,} parameters{on}) on {len(task.train_dataset())} examples",  # type: ignore[arg-type]
            parameters=n_params,
            **lora,
        )
    return RecipeSetup(
        model=model,
        task=task,
        loop=job.train,
        tokenizer=tokenizer,
        tracking=Tracking(mode=job.wandb, config=job.model_dump(mode="json")),
        environment={"parameters": n_params, "model": job.model, "task": task_kind, **lora},
    )


def export(run: Run, job: TrainJobConfig, setup: RecipeSetup, result: TrainResult) -> RecipeExport:
    model_dir = run.dir / MODEL_SUBDIR
    step = result.best_step if result.best_checkpoint is not None else result.steps
    save_model(result.model, setup.tokenizer, model_dir, name=job.model, step=step)
    return RecipeExport(model_dir=model_dir)


TRAIN: Recipe[TrainJobConfig] = Recipe("train", lambda job: job.train.seed, setup, export)
"""The train recipe."""


def run_training(run: Run, job: TrainJobConfig, *, resume: bool = True) -> TrainResult:
    """Train per `job` inside `run` (see the module docstring)."""
    return run_recipe(run, TRAIN, job, resume=resume).train


def train_follower(job: TrainJobConfig) -> None:
    """A non-main rank of a distributed `train` launch: the same model and data, no run files of its own.

    The main process owns the run (and its checkpoints, broadcast to the others on resume); the tokenizer
    must be a directory every process can read, since only one process could train it.
    """
    run_recipe_follower(TRAIN, job)


def train_job(run: Run, job: TrainJobConfig) -> dict[str, Any]:
    """Run kind "train": resumes when checkpoints exist; ends with an evaluation of the saved model (an
    `evaluate` run, `job.final_eval`)."""
    trained = run_recipe(run, TRAIN, job, resume=True)
    result = trained.train
    final_eval = evaluate_after_training(
        run, job.final_eval, result.steps, progress=job.train.progress, wandb=job.wandb
    )
    return {
        "final_eval_run": final_eval,
        "steps": result.steps,
        "metrics": result.metrics,
        "best_step": result.best_step,
        "model_step": trained.model_step,
        "model_dir": str(Path(run.dir) / MODEL_SUBDIR),
        "warnings": result.warnings,
    }


def check_train(config: TrainJobConfig) -> None:
    """Kind `train`'s command-line check of this machine: the device and precision are its own, a distributed
    launch has a tokenizer every process can read, and a char tokenizer the job trains can be trained on its
    corpus. (The data and its splits, and a tokenizer the job names, are `train.config.check_train_data`,
    which the API's submit runs too; the model family, its settings and its size are the config's own
    validation.)"""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and config.trains_tokenizer():
        raise ConfigError(
            "distributed training needs --tokenizer DIR (train one first: tldrlab tokenizer train)"
        )
    # this machine's devices: --device cuda without CUDA, or --precision fp16 on the CPU, failed once the
    # run had started and stayed a failed run
    resolve_precision(config.train.precision, resolve_device(config.train.device))
    if config.trains_tokenizer() and config.tokenizer.method == "char":
        # a corpus with no character min_frequency times gives a char vocabulary of special tokens only,
        # refused once the run trained it, which stayed a failed run; counting characters is cheap, so the
        # tokenizer is trained here as the run trains it, into a directory thrown away (the API's worker
        # meets it in the run: reading the whole data is too slow for its submit)
        with tempfile.TemporaryDirectory(prefix="tldrlab-tokenizer-check-") as directory:
            own_tokenizer(config, Path(directory))
