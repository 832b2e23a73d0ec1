"""`tldrlab experiment dendrites`: baseline vs compressed vs compressed + PerforatedAI dendrites."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from tldrlab.errors import ConfigError

experiment_app = typer.Typer(help="Experiments composed from the training pieces.", no_args_is_help=True)


def parse_budget(budget: str) -> tuple[int | None, float | None]:
    """'300' -> 300 steps; '30m' / '30min' -> 30 minutes; '2h' -> 120 minutes."""
    text = budget.strip().lower()
    try:
        if text.endswith(("min", "m")):
            return None, float(text.removesuffix("min").removesuffix("m"))
        if text.endswith("h"):
            return None, float(text[:-1]) * 60
        return int(text.removesuffix("steps").removesuffix("step")), None
    except ValueError:
        raise ConfigError(f"--budget {budget!r}: give steps (300) or minutes (30m)") from None


def _csv(value: str, what: str) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    if not items:
        raise ConfigError(f"{what} is empty")
    return items


@experiment_app.command("dendrites")
def dendrites(
    data: Path = typer.Option(..., help="Summarization records (file or data-set directory)."),
    format: str | None = typer.Option(None, "--format", help="Reader format (detected when omitted)."),
    eval_data: Path | None = typer.Option(None, help="Separate validation records (default: held out)."),
    arms: str = typer.Option("baseline,compressed,compressed_pai", help="Comma-separated arms."),
    budget: str = typer.Option("300", help="Per arm: optimizer steps (300) or minutes (30m)."),
    seeds: str = typer.Option("1", help="Comma-separated seeds; several give mean ± std."),
    compression_ratio: float | None = typer.Option(0.5, help="Fraction of the baseline's parameters kept."),
    enc_num_layers: int | None = typer.Option(None, help="Encoder layers of the compressed model."),
    dec_num_layers: int | None = typer.Option(None, help="Decoder layers of the compressed model."),
    d_model: int | None = typer.Option(None, help="Width of the compressed model."),
    d_ff: int | None = typer.Option(None, help="Feed-forward width of the compressed model."),
    num_heads: int | None = typer.Option(None, help="Attention heads of the compressed model."),
    init: str = typer.Option("baseline", help="Compressed init: baseline (sliced weights) or random."),
    model_size: str = typer.Option("tiny", help="Baseline T5 size: tiny, mini, small, base."),
    max_dendrites: int = typer.Option(2, help="Dendrite sets PerforatedAI may add."),
    train_limit: int | None = typer.Option(4000, help="Most training records."),
    eval_size: int = typer.Option(64, help="Validation records (loss, PAI tracker)."),
    test_size: int = typer.Option(32, help="Records summarised for ROUGE / BERTScore / latency."),
    batch_size: int = typer.Option(16, help="Training batch size."),
    lr: float = typer.Option(1e-3, help="Peak learning rate."),
    eval_every: int = typer.Option(25, help="Steps between evaluations (PAI tracker epochs)."),
    max_source_tokens: int = typer.Option(256, help="Document truncation in tokens."),
    vocab_size: int = typer.Option(2000, help="Tokenizer vocabulary size."),
    jobs: int = typer.Option(1, help="Seeds trained at once, each in its own process."),
    no_bertscore: bool = typer.Option(False, "--no-bertscore", help="Skip BERTScore."),
    config_file: Path | None = typer.Option(None, "--config", help="YAML/JSON ExperimentConfig (flags win)."),
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON."),
) -> None:
    """Train the arms on the same data, tokenizer, seeds and step budget; write the results table and plot.

    Example: tldrlab experiment dendrites --data ../shared/data/debian_descriptions --budget 300 --seeds 1,2
    """
    from pydantic import ValidationError

    from tldrlab.experiments.compression import CompressionSpec
    from tldrlab.experiments.dendrite_experiment import ExperimentConfig, run_dendrite_experiment

    steps, minutes = parse_budget(budget)
    base: dict[str, object] = {}
    if config_file is not None:
        import yaml

        if not config_file.exists():
            raise ConfigError(f"config file not found: {config_file}")
        base = yaml.safe_load(config_file.read_text()) or {}
    try:
        seed_list = [int(s) for s in _csv(seeds, "--seeds")]
    except ValueError:
        raise ConfigError(f"--seeds {seeds!r}: give integers such as 1,2,3") from None
    dendrite_settings = dict(base.pop("dendrites", {}) or {})  # type: ignore[call-overload]
    dendrite_settings["max_dendrites"] = max_dendrites
    try:
        compression = CompressionSpec(
            compression_ratio=None if any((enc_num_layers, dec_num_layers, d_model)) else compression_ratio,
            enc_num_layers=enc_num_layers, dec_num_layers=dec_num_layers, d_model=d_model, d_ff=d_ff,
            num_heads=num_heads, init=init,  # type: ignore[arg-type]
        )  # fmt: skip
        config = ExperimentConfig(
            **{
                **base,
                "data": str(data),
                "format": format,
                "eval_data": str(eval_data) if eval_data else None,
                "arms": _csv(arms, "--arms"),
                "seeds": seed_list,
                "budget_steps": steps or int(base.get("budget_steps", 10**6)),  # type: ignore[call-overload]
                "budget_minutes": minutes,
                "compression": compression,
                "dendrites": dendrite_settings,
                "model_size": model_size,
                "train_limit": train_limit,
                "eval_size": eval_size,
                "test_size": test_size,
                "batch_size": batch_size,
                "lr": lr,
                "eval_every": eval_every,
                "max_source_tokens": max_source_tokens,
                "vocab_size": vocab_size,
                "bertscore": not no_bertscore,
                "jobs": jobs,
            }
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"invalid experiment setting {where}: {first['msg']}") from None
    results = run_dendrite_experiment(config)
    if as_json:
        typer.echo(json.dumps(results, indent=2, default=str))
        return
    typer.echo(results["table_markdown"])
    typer.echo(results["note"])
    for name, path in results["files"].items():
        typer.echo(f"{name}: {path}")


def register(app: typer.Typer) -> None:
    app.add_typer(experiment_app, name="experiment")
