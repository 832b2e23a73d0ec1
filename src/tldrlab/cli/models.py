"""`tldrlab models import | list | promote | aliases`: the home's model store (pretrained causal LMs converted
once) and the aliases that name trained runs' models (`production`)."""

from __future__ import annotations

import typer

from tldrlab.cli.tables import emit
from tldrlab.runs.aliases import alias_history, aliases_table, current_aliases, promote

models_app = typer.Typer(
    help="Pretrained models: import GGUF files once, list what is installed.", no_args_is_help=True
)


@models_app.command("import")
def import_command(
    source: str = typer.Argument(..., help="A .gguf file, a transformers model directory, or `smollm2`."),
    name: str | None = typer.Option(None, "--name", help="Store name (default: from the file name)."),
    dtype: str = typer.Option("float32", "--dtype", help="float32 or bfloat16 weights."),
    force: bool = typer.Option(False, "--force", help="Replace an installed model of the same name."),
    as_json: bool = typer.Option(False, "--json", help="Print the manifest as JSON."),
) -> None:
    """Convert a model once into <home>/models/NAME (safetensors + config + tokenizer with chat template).

    Example: tldrlab models import ~/Downloads/SmolLM2-135M-Instruct.Q4_1.gguf --name smol
    """
    # lazy: loads torch (kept off `tldrlab --help`)
    from tldrlab.models.store import import_model, import_report

    manifest = import_model(source, name=name, dtype=dtype, force=force)  # type: ignore[arg-type]
    emit(manifest, lambda: import_report(manifest), as_json=as_json)


@models_app.command("list")
def list_command(as_json: bool = typer.Option(False, "--json", help="Print JSON lines.")) -> None:
    """List installed models and the bundled one.

    Example: tldrlab models list --json
    """
    # lazy: loads torch (kept off `tldrlab --help`)
    from tldrlab.models.store import list_models, models_table

    rows = list_models()
    empty = "no models: install one with `tldrlab models import FILE.gguf`"
    emit(rows, lambda: models_table(rows), as_json=as_json, lines=True, empty=empty)


@models_app.command("promote")
def promote_command(
    run: str = typer.Argument(..., help="Run id (or unique prefix) of a run that saved a model."),
    alias: str = typer.Option(..., "--alias", help="The alias to point at the run's model (production)."),
    note: str | None = typer.Option(None, "--note", help="Why (kept in the alias history)."),
    as_json: bool = typer.Option(False, "--json", help="Print the promotion as JSON."),
) -> None:
    """Point an alias at a run's model; the alias then works wherever a model is named.

    Example: tldrlab models promote train-20260101 --alias production --note "best ROUGE-L"
    """
    entry = promote(run, alias, note=note)
    emit(entry.public(), entry.report, as_json=as_json)


@models_app.command("aliases")
def aliases_command(
    history: bool = typer.Option(False, "--history", help="Every promotion, not only where aliases stand."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON lines."),
) -> None:
    """List model aliases (and with --history every promotion, newest first).

    Example: tldrlab models aliases --history
    """
    entries = alias_history() if history else list(current_aliases().values())
    empty = "no aliases: promote a run with `tldrlab models promote RUN --alias production`"
    rows = [entry.public() for entry in entries]
    emit(rows, lambda: aliases_table(entries), as_json=as_json, lines=True, empty=empty)


def register(app: typer.Typer) -> None:
    app.add_typer(models_app, name="models")
