"""`tldrlab models import | list | promote | aliases`: the home's model store (pretrained causal LMs converted
once) and the aliases that name trained runs' models (`production`)."""

from __future__ import annotations

from typing import Any

import typer

from tldrlab.cli.options import AS_JSON, config_command
from tldrlab.cli.tables import emit
from tldrlab.logs import progress_bars_shown
from tldrlab.runs.aliases import PromoteOptions, alias_history, aliases_table, current_aliases, promote

models_app = typer.Typer(
    help="Pretrained models: import GGUF files once, list what is installed.", no_args_is_help=True
)


def import_command(options: Any, as_json: bool) -> None:
    """Convert a model once into <home>/models/NAME (safetensors + config + tokenizer with chat template).

    Example: tldrlab models import ~/Downloads/SmolLM2-135M-Instruct.Q4_1.gguf --name smol
    """
    # lazy: loads torch (kept off `tldrlab --help`)
    from tldrlab.models.store import import_model, import_report

    settings = options.model_dump(exclude={"source"})
    manifest = import_model(options.source, **settings, progress=progress_bars_shown())
    emit(manifest, lambda: import_report(manifest), as_json=as_json)


@models_app.command("list")
def list_command(as_json: bool = AS_JSON) -> None:
    """List installed models and the bundled one.

    Example: tldrlab models list --json
    """
    # lazy: loads torch (kept off `tldrlab --help`)
    from tldrlab.models.store import list_models, models_table

    rows = list_models()
    empty = "no models: install one with `tldrlab models import FILE.gguf`"
    emit(rows, lambda: models_table(rows), as_json=as_json, lines=True, empty=empty)


def promote_command(options: PromoteOptions, as_json: bool) -> None:
    """Point an alias at a run's model; the alias then works wherever a model is named.

    Example: tldrlab models promote train-20260101 --alias production --note "best ROUGE-L"
    """
    entry = promote(options.run, options.alias, note=options.note)
    emit(entry.public(), entry.report, as_json=as_json)


@models_app.command("aliases")
def aliases_command(
    history: bool = typer.Option(False, "--history", help="Every promotion, not only where aliases stand."),
    as_json: bool = AS_JSON,
) -> None:
    """List model aliases (and with --history every promotion, newest first).

    Example: tldrlab models aliases --history
    """
    entries = alias_history() if history else list(current_aliases().values())
    empty = "no aliases: promote a run with `tldrlab models promote RUN --alias production`"
    rows = [entry.public() for entry in entries]
    emit(rows, lambda: aliases_table(entries), as_json=as_json, lines=True, empty=empty)


def register(app: typer.Typer) -> None:
    config_command(
        models_app,
        "import",
        "tldrlab.models.store:ImportOptions",
        import_command,
        as_json=True,
        arguments=("source",),
    )
    config_command(models_app, "promote", PromoteOptions, promote_command, as_json=True, arguments=("run",))
    app.add_typer(models_app, name="models")
