"""`tldrlab train`: train a t5 / gpt2 / char_lstm model as a run (resumable with --resume RUN_ID).

    tldrlab train --model char_lstm --data ../shared/data/tinyshakespeare/input.txt \\
        --tokenizer-method char --max-steps 2000
    tldrlab train --config job.yaml --max-steps 500       # flags override the file
    tldrlab train --resume train-20260101-120000-abc123   # continue a killed / cancelled run

Ctrl-C writes a checkpoint and ends the run as cancelled; `--resume` continues it to the same losses.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

console = Console()


def _read_config_file(path: Path) -> dict[str, Any]:
    from tldrlab.errors import ConfigError, NotFoundError

    if not path.is_file():
        raise NotFoundError(f"config file not found: {path}")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except (ValueError, Exception) as exc:  # yaml.YAMLError is not a ValueError
        raise ConfigError(f"{path}: cannot parse the config: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the config must be a mapping of settings")
    return data


def _merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _set(tree: dict[str, Any], dotted: str, value: Any) -> None:
    if value is None:
        return
    *parents, leaf = dotted.split(".")
    for part in parents:
        tree = tree.setdefault(part, {})
    tree[leaf] = value


def train_command(
    model: str | None = typer.Option(None, help="Model family: t5, gpt2 or char_lstm."),
    data: Path | None = typer.Option(None, help="Training data: a file or data-set directory."),
    format: str | None = typer.Option(None, "--format", help="Data format (detected when omitted)."),
    train_split: str | None = typer.Option(None, "--train-split", help="Split to train on (e.g. train)."),
    val_split: str | None = typer.Option(None, "--val-split", help="Split to validate on (e.g. dev)."),
    limit: int | None = typer.Option(None, help="Read at most this many training records."),
    tokenizer: Path | None = typer.Option(None, help="A trained tokenizer directory (else one is trained)."),
    tokenizer_method: str | None = typer.Option(
        None, "--tokenizer-method", help="bpe, sentencepiece or char."
    ),
    vocab_size: int | None = typer.Option(None, "--vocab-size", help="Vocabulary of the trained tokenizer."),
    model_size: str | None = typer.Option(None, "--model-size", help="Named size: tiny, mini, small, base."),
    model_config: str | None = typer.Option(
        None, "--model-config", help="Model settings as JSON, e.g. '{\"d_model\": 128}'."
    ),
    max_steps: int | None = typer.Option(None, "--max-steps"),
    max_minutes: float | None = typer.Option(
        None, "--max-minutes", help="Time budget: stop (final eval + model) after this many minutes."
    ),
    batch_size: int | None = typer.Option(None, "--batch-size"),
    grad_accum_steps: int | None = typer.Option(None, "--grad-accum-steps"),
    lr: float | None = typer.Option(None, "--lr"),
    warmup_steps: int | None = typer.Option(None, "--warmup-steps"),
    lr_schedule: str | None = typer.Option(None, "--lr-schedule", help="cosine, linear or constant."),
    precision: str | None = typer.Option(None, help="auto, fp32, fp16 (CUDA) or bf16."),
    device: str | None = typer.Option(None, help="auto, cpu or cuda."),
    eval_every: int | None = typer.Option(None, "--eval-every"),
    checkpoint_every: int | None = typer.Option(None, "--checkpoint-every"),
    early_stopping_patience: int | None = typer.Option(None, "--early-stopping-patience"),
    best_metric: str | None = typer.Option(None, "--best-metric", help="e.g. eval_loss or eval_rouge1."),
    best_mode: str | None = typer.Option(None, "--best-mode", help="min or max."),
    block_size: int | None = typer.Option(None, "--block-size", help="LM: tokens per block."),
    generate_every: int | None = typer.Option(
        None, "--generate-every", help="Seq2seq: ROUGE on generated summaries every Nth eval."
    ),
    bertscore: bool | None = typer.Option(None, "--bertscore/--no-bertscore", help="Seq2seq: add BERTScore."),
    seed: int | None = typer.Option(None),
    config: Path | None = typer.Option(
        None, "--config", help="A YAML or JSON TrainJobConfig; flags override."
    ),
    resume: str | None = typer.Option(None, "--resume", help="Continue this run from its last checkpoint."),
    wandb: str | None = typer.Option(None, "--wandb", help="offline (default), online or disabled."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Train a model as a run: progress bar, checkpoints, eval, PNG curves, model saved to <run>/model.

    Example: tldrlab train --model char_lstm --data input.txt --tokenizer-method char --max-steps 500
    """
    from tldrlab.errors import ConfigError, ConflictError, InvalidInputError
    from tldrlab.models import model_task
    from tldrlab.runs import create_run, execute_run, open_registry
    from tldrlab.runs.registry import RunStatus
    from tldrlab.train.jobs import parse_job_config, run_training

    overrides: dict[str, Any] = {}
    _set(overrides, "model", model)
    _set(overrides, "data.path", str(data.resolve()) if data else None)
    for key, value in {
        "data.format": format,
        "data.train_split": train_split,
        "data.val_split": val_split,
        "data.limit": limit,
        "data.block_size": block_size,
        "data.generate_every": generate_every,
        "data.bertscore": bertscore,
        "tokenizer.path": str(tokenizer.resolve()) if tokenizer else None,
        "tokenizer.method": tokenizer_method,
        "tokenizer.vocab_size": vocab_size,
        "train.max_steps": max_steps,
        "train.max_minutes": max_minutes,
        "train.batch_size": batch_size,
        "train.grad_accum_steps": grad_accum_steps,
        "train.lr": lr,
        "train.warmup_steps": warmup_steps,
        "train.lr_schedule": lr_schedule,
        "train.precision": precision,
        "train.device": device,
        "train.eval_every": eval_every,
        "train.checkpoint_every": checkpoint_every,
        "train.early_stopping_patience": early_stopping_patience,
        "train.best_metric": best_metric,
        "train.best_mode": best_mode,
        "train.seed": seed,
        "train.progress": False if quiet else None,
        "wandb": wandb,
    }.items():
        _set(overrides, key, value)
    if model_size:
        overrides.setdefault("model_settings", {})["size"] = model_size
    if model_config:
        try:
            extra = json.loads(model_config)
        except ValueError as exc:
            raise ConfigError(f"--model-config is not valid JSON: {exc}") from exc
        if not isinstance(extra, dict):
            raise ConfigError("--model-config must be a JSON object")
        overrides["model_settings"] = {**overrides.get("model_settings", {}), **extra}

    import os

    from tldrlab.train.jobs import run_training_follower

    registry = open_registry()
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and int(os.environ.get("RANK", "0")) != 0:
        # A follower process under torchrun / accelerate launch: rank 0 owns the run; train without one.
        follower_config = (
            registry.find(resume).config
            if resume
            else _merge(_read_config_file(config) if config else {}, overrides)
        )
        run_training_follower(parse_job_config(follower_config))
        return
    if resume:
        record = registry.find(resume)
        if record.kind != "train":
            raise InvalidInputError(f"run {record.id} is a {record.kind} run, not a training run")
        if record.status in (RunStatus.COMPLETED,):
            raise ConflictError(f"run {record.id} already completed; nothing to resume")
        # Only progress / output settings may change on resume; the rest must stay what the run started with.
        allowed = {"train": {"progress": overrides.get("train", {}).get("progress")}} if quiet else {}
        job = parse_job_config(_merge(record.config, allowed))
        run_id = record.id
    else:
        raw = _read_config_file(config) if config else {}
        raw = _merge(raw, overrides)
        if "data" not in raw:
            raise ConfigError("--data PATH is required (or a --config file with a data section)")
        job = parse_job_config(raw)
        if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not job.tokenizer.path:
            raise ConfigError(
                "distributed training needs --tokenizer DIR (train one first: tldrlab tokenizer train)"
            )
        if not Path(job.data.path).exists():
            raise InvalidInputError(f"data not found: {job.data.path}")
        model_task(job.model)  # unknown model names fail before a run is created
        # Record the splits found in the data, so `tldrlab eval RUN` evaluates on the same validation split.
        from tldrlab.train.tasks import detect_splits

        job.data.train_split, job.data.val_split = detect_splits(job.data)
        run_id = create_run("train", job, seed=job.train.seed, registry=registry).id

    import signal

    from tldrlab.runs import preempt

    # SIGTERM (kill, timeout, a scheduler) checkpoints and ends the run as preempted: --resume continues it.
    signal.signal(signal.SIGTERM, lambda signum, frame: preempt.request_stop())
    console.print(f"run [bold]{run_id}[/]: training {job.model} on {job.data.path}")
    with execute_run(run_id, registry=registry) as run:
        result = run_training(run, job)
    metrics = ", ".join(f"{k}={v:.4g}" for k, v in result.metrics.items())
    console.print(f"done: {result.steps} steps, {metrics}")
    console.print(f"model: {run.dir / 'model'}   curves: {run.dir / 'plots'}")


def register(app: typer.Typer) -> None:
    app.command("train")(train_command)
