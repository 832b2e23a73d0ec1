"""Commands for run kinds, generated from each kind's config class (see `options` for how).

Adding a run kind's command is one `RunCommand` entry below: its path, kind, config class, a one-line help
and an example; `aliases` keep short names users know (`--data` for `--data.path`), `arguments` make fields
positional, `extra` adds options that are not fields, `report` prints the result. `register(app, group)`
adds a group's commands; every one takes `--config FILE`, the config's fields as options and the shared
options of `options.RUN_KIND_OPTIONS`, builds the config as defaults < file < flags and calls `launch`.
"""

from __future__ import annotations

import functools
import importlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import typer
import yaml
from pydantic import BaseModel
from rich.console import Console

from tldrlab.cli.launch import launch
from tldrlab.cli.options import (
    CONTEXT_SETTINGS,
    EVERY_COMMAND,
    RUN_KIND_OPTIONS,
    Flag,
    apply_common,
    config_flags,
    deep_merge,
    find_field,
    flag_overrides,
    flag_params,
    lazy_command,
    read_config_file,
    set_path,
    shared_params,
    signature_callback,
    validate,
)
from tldrlab.errors import ConfigError

console = Console()


@dataclass(frozen=True)
class RunCommand:
    """A command that starts (or resumes) a run of `kind` from a config of class `config`."""

    path: str
    """Command path: `train`, `experiment dendrites`."""
    kind: str
    config: str
    """The config class as `module:Class` (imported only when the command's options are needed)."""
    help: str
    example: str
    aliases: Mapping[str, str | tuple[str, ...]] = field(default_factory=dict)
    arguments: tuple[str, ...] = ()
    extra: tuple[Flag, ...] = ()
    paths: tuple[str, ...] = ()
    """Config paths holding file paths: made absolute when they exist, so the run finds them anywhere."""
    resumable: bool = False
    report: Callable[[str, Any], None] | None = None
    """Prints the result (else the run id and the result as JSON)."""

    @property
    def group(self) -> str:
        return self.path.rpartition(" ")[0]

    @property
    def name(self) -> str:
        return self.path.rpartition(" ")[2]

    def config_class(self) -> type[BaseModel]:
        module, _, name = self.config.partition(":")
        model: type[BaseModel] = getattr(importlib.import_module(module), name)
        return model


# -- reports ------------------------------------------------------------------------------------------------
def _metrics_line(metrics: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items())


def report_training(run_id: str, result: Any) -> None:
    console.print(
        f"run [bold]{run_id}[/]: {result.get('steps')} steps, {_metrics_line(result.get('metrics', {}))}"
    )
    if model_dir := result.get("model_dir"):
        console.print(f"model: {model_dir}   curves: {Path(model_dir).parent / 'plots'}", highlight=False)


def report_experiment(run_id: str, result: Any) -> None:
    typer.echo(result["table_markdown"])
    typer.echo(result["note"])
    for name, path in result["files"].items():
        typer.echo(f"{name}: {path}")


def parse_budget(budget: str) -> dict[str, Any]:
    """'300' -> 300 steps; '30m' / '30min' -> 30 minutes; '2h' -> 120 minutes."""
    text = budget.strip().lower()
    try:
        if text.endswith(("min", "m")):
            return {"budget_minutes": float(text.removesuffix("min").removesuffix("m"))}
        if text.endswith("h"):
            return {"budget_minutes": float(text[:-1]) * 60}
        return {"budget_steps": int(text.removesuffix("steps").removesuffix("step"))}
    except ValueError:
        raise ConfigError(f"--budget {budget!r}: give steps (300) or minutes (30m)") from None


RUN_COMMANDS: tuple[RunCommand, ...] = (
    RunCommand(
        "train",
        "train",
        "tldrlab.train.config:TrainJobConfig",
        "Train a t5 / gpt2 / char_lstm model, or fine-tune a pretrained causal_lm, as a run: progress, "
        "checkpoints, eval, PNG curves, <run>/model.",
        "tldrlab train --model char_lstm --data input.txt --tokenizer.method char --train.max-steps 500",
        aliases={
            "data.path": "--data",
            "data.format": "--format",
            "data.train_split": "--train-split",
            "data.val_split": "--val-split",
            "data.limit": "--limit",
            "data.block_size": "--block-size",
            "data.generate_every": "--generate-every",
            "data.bertscore": "--bertscore/--no-bertscore",
            "tokenizer.path": "--tokenizer",
            "tokenizer.method": "--tokenizer-method",
            "tokenizer.vocab_size": "--vocab-size",
            "model_settings": "--model-config",
            "train.max_steps": "--max-steps",
            "train.max_minutes": "--max-minutes",
            "train.batch_size": "--batch-size",
            "train.grad_accum_steps": "--grad-accum-steps",
            "train.lr": "--lr",
            "train.warmup_steps": "--warmup-steps",
            "train.lr_schedule": "--lr-schedule",
            "train.precision": "--precision",
            "train.eval_every": "--eval-every",
            "train.checkpoint_every": "--checkpoint-every",
            "train.early_stopping_patience": "--early-stopping-patience",
            "train.best_metric": "--best-metric",
            "train.best_mode": "--best-mode",
        },
        extra=(
            Flag("model_settings.size", ("--model-size",), str, "Named model size: tiny, mini, small, base."),
        ),
        paths=("data.path", "tokenizer.path"),
        resumable=True,
        report=report_training,
    ),
    RunCommand(
        "experiment dendrites",
        "experiment",
        "tldrlab.experiments.dendrite_experiment:ExperimentConfig",
        "Baseline vs compressed vs compressed + PerforatedAI dendrites: same data, tokenizer, seeds, budget.",
        "tldrlab experiment dendrites --data ../shared/data/debian_descriptions --budget 300 --seeds 1,2",
        aliases={
            "compression.compression_ratio": "--compression-ratio",
            "dendrites.max_dendrites": "--max-dendrites",
        },
        extra=(
            Flag(
                "",
                ("--budget",),
                str,
                "Per arm: optimizer steps (300) or minutes (30m); sets budget_steps or budget_minutes.",
                convert=parse_budget,
            ),
        ),
        paths=("data", "eval_data"),
        report=report_experiment,
    ),
    RunCommand(
        "elm train",
        "elm_train",
        "tldrlab.elm.train:ElmTrainConfig",
        "Train the ELM adapter (and the LM unless frozen) as a run; the best model goes to <run>/model.",
        "tldrlab elm train --data data/elm --epochs 2 --drift-weight 0.03",
        aliases={
            "model.lm": "--lm",
            "model.lm_size": "--lm-size",
            "model.freeze_lm": "--freeze-lm/--train-lm",
            "model.hidden_dim": "--hidden-dim",
            "model.num_prefix_tokens": "--prefix-tokens",
            "model.dropout": "--dropout",
            "model.residual_scale": "--residual-scale",
            "loss.use_contrastive_loss": "--use-contrastive/--no-contrastive",
            "loss.contrastive_weight": "--contrastive-weight",
            "loss.use_text_drift_loss": "--use-drift-loss/--no-drift-loss",
            "loss.text_drift_weight": "--drift-weight",
            "loss.text_drift_target_similarity": "--drift-target-similarity",
            "train.lr": ("--lr", "--learning-rate"),
            "train.batch_size": "--batch-size",
            "train.grad_accum_steps": "--grad-accum-steps",
            "train.max_minutes": "--max-minutes",
            "train.early_stopping_patience": "--early-stopping-patience",
            "model.gradient_checkpointing": "--gradient-checkpointing/--no-gradient-checkpointing",
            "init_adapter": "--resume-from",
        },
        extra=(
            Flag(
                "train.precision", ("--use-bf16", "--bf16"), bool, "bf16 autocast.", convert=lambda on: "bf16"
            ),
        ),
        paths=("data", "tokenizer", "init_adapter"),
        resumable=True,
        report=report_training,
    ),
    RunCommand(
        "train-highlight-scorer",
        "highlight_scorer_train",
        "tldrlab.digest.config:HighlightScorerTrainConfig",
        "Train a learned highlight scorer (a listwise linear model per mode) on labelled train splits as a "
        "run; the scorer file goes to <run>/artifacts/highlight_scorer.json (docs/digest.md).",
        "tldrlab train-highlight-scorer --scitldr-train ../shared/data/scitldr/scitldr_a.train.jsonl "
        "--name learned_v2",
        paths=("scitldr_train", "forum_dump", "qmsum_train", "vector_cache_dir", "out"),
    ),
)


# -- the generated command ----------------------------------------------------------------------------------
def _resolve_paths(tree: dict[str, Any], paths: tuple[str, ...]) -> None:
    for dotted in paths:
        *parents, leaf = dotted.split(".")
        node: Any = tree
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if (
            isinstance(node, dict)
            and isinstance(node.get(leaf), str)
            and Path(node[leaf]).expanduser().exists()
        ):
            node[leaf] = str(Path(node[leaf]).expanduser().resolve())


def command_flags(spec: RunCommand, model: type[BaseModel]) -> list[Flag]:
    """The config's flags, the spec's extra flags, and the shared names (`--seed`) on the fields they set."""
    aliases: dict[str, tuple[str, ...]] = {
        path: (names,) if isinstance(names, str) else tuple(names) for path, names in spec.aliases.items()
    }
    for option in RUN_KIND_OPTIONS:
        if option.fields and (path := find_field(model, option.fields)):
            aliases[path] = (*aliases.get(path, ()), *option.names)
    return [*config_flags(model, aliases=aliases, arguments=spec.arguments), *spec.extra]


def build_callback(spec: RunCommand) -> Any:
    """The command's function (options from the config class) for typer."""
    model = spec.config_class()
    flags = command_flags(spec, model)
    shared = tuple(
        option
        for option in (*RUN_KIND_OPTIONS, *EVERY_COMMAND)
        if not option.fields and (option.param != "resume" or spec.resumable)
    )

    def body(values: dict[str, Any]) -> None:
        apply_common(
            values.get("home"),
            values.get("quiet", False),
            values.get("verbose", False),
            values.get("threads"),
        )
        overrides = flag_overrides(flags, values, model)
        config_file: Path | None = values.get("config_file")
        if values.get("resume"):
            if config_file or overrides:
                raise ConfigError(
                    "--resume continues a run with its recorded config: leave out other settings"
                )
            run_id, result = launch(spec.kind, None, resume=values["resume"])
        else:
            if values.get("quiet") and (progress := find_field(model, ("progress",))):
                set_path(overrides, progress, False)
            raw = deep_merge(read_config_file(config_file) if config_file else {}, overrides)
            _resolve_paths(raw, spec.paths)
            config = validate(model, raw, what=spec.kind)
            if values.get("print_config"):
                typer.echo(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False), nl=False)
                return
            run_id, result = launch(spec.kind, config)
        if values.get("as_json") or spec.report is None:
            typer.echo(json.dumps({"run_id": run_id, "result": result}, indent=2, default=str))
        else:
            spec.report(run_id, result)

    return signature_callback([*flag_params(flags), *shared_params(shared)], body)


def _placeholder() -> None:
    """Replaced by the generated callback when the command's options are built."""


def register(app: typer.Typer, group: str = "") -> None:
    """Add the run-kind commands of `group` ("" for top-level commands) to `app`."""
    for spec in RUN_COMMANDS:
        if spec.group != group:
            continue
        app.command(
            spec.name,
            cls=lazy_command(functools.partial(build_callback, spec)),
            help=f"{spec.help}\n\nExample: {spec.example}",
            context_settings=CONTEXT_SETTINGS,
        )(_placeholder)
