"""`tldrlab models import | list`: the home's model store (pretrained causal LMs converted once)."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

models_app = typer.Typer(
    help="Pretrained models: import GGUF files once, list what is installed.", no_args_is_help=True
)
console = Console()


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
    from tldrlab.errors import InvalidInputError
    from tldrlab.models.store import import_model

    if dtype not in ("float32", "bfloat16"):
        raise InvalidInputError(f"--dtype must be float32 or bfloat16, not {dtype!r}")
    path = Path(source).expanduser()
    ref = str(path.resolve()) if path.exists() else source
    manifest = import_model(ref, name=name, dtype=dtype, force=force)  # type: ignore[arg-type]
    if as_json:
        typer.echo(json.dumps(manifest, default=str))
        return
    console.print(
        f"installed [bold]{manifest['name']}[/]: {manifest['parameters']:,} parameters, {manifest['dtype']}, "
        f"chat template {'yes' if manifest['chat_template'] else 'no'}, in {manifest['seconds']:.1f} s -> "
        f"{manifest['path']}",
        highlight=False,
    )


@models_app.command("list")
def list_command(as_json: bool = typer.Option(False, "--json", help="Print JSON lines.")) -> None:
    """List installed models and the bundled one.

    Example: tldrlab models list --json
    """
    from tldrlab.models.store import list_models

    rows = list_models()
    if as_json:
        for row in rows:
            typer.echo(json.dumps(row, default=str))
        return
    table = Table("name", "kind", "parameters", "dtype", "chat template", "size", "path")
    for row in rows:
        kind = row["kind"] + (" (shadowed)" if row.get("shadowed") else "")
        params = f"{row['parameters']:,}" if row.get("parameters") else "-"
        table.add_row(
            row["name"],
            kind,
            params,
            str(row.get("dtype") or "-"),
            {True: "yes", False: "no"}.get(row.get("chat_template"), "-"),  # type: ignore[arg-type]
            f"{row['bytes'] / 1e6:.0f} MB",
            row["path"],
        )
    console.print(table)
    if not rows:
        console.print("no models: install one with `tldrlab models import FILE.gguf`")


def register(app: typer.Typer) -> None:
    app.add_typer(models_app, name="models")
