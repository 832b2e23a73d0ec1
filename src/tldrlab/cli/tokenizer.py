"""`tldrlab tokenizer train | show`: train a tokenizer as a run, inspect a trained one."""

from __future__ import annotations

import typer
from rich.console import Console

from tldrlab.cli.runkinds import RunCommand, add
from tldrlab.cli.tables import emit
from tldrlab.tokenizers.load import (
    load_tokenizer,
    manifest_report,
    read_tokenizer_manifest,
    resolve_tokenizer_dir,
)

tokenizer_app = typer.Typer(
    help="Train and inspect tokenizers (bpe, sentencepiece, char).", no_args_is_help=True
)
console = Console()


@tokenizer_app.command("show")
def show_command(
    target: str = typer.Argument(..., help="A tokenizer directory, model directory or run id."),
    text: str | None = typer.Option(None, help="Also show how this text is tokenized."),
    as_json: bool = typer.Option(False, "--json", help="Print the manifest as JSON."),
) -> None:
    """Show a trained tokenizer's manifest and stats (and optionally tokenize a text).

    Example: tldrlab tokenizer show tokenizer-20260101 --text "To be, or not to be"
    """

    directory = resolve_tokenizer_dir(target)
    manifest = read_tokenizer_manifest(directory)
    tokenizer = load_tokenizer(directory)
    if manifest or as_json:
        data = {"dir": str(directory), **manifest}
        emit(data, lambda: manifest_report(manifest, title=str(directory)), as_json=as_json)
    else:
        console.print(f"{directory}: {len(tokenizer)} tokens (no tldrlab manifest)")
    if text is not None:
        ids = tokenizer.encode(text, add_special_tokens=False)
        tokens = [tokenizer.decode([i]) for i in ids]
        console.print(f"{len(ids)} tokens: " + " | ".join(repr(t) for t in tokens), highlight=False)
        console.print(f"ids: {ids}", highlight=False)


def register(app: typer.Typer) -> None:
    add(
        tokenizer_app,
        RunCommand(
            "tokenizer train",
            "tokenizer",
            "tldrlab tokenizer train --method bpe --vocab-size 8000 data/input.txt",
            aliases={"out_dir": "--out"},
            arguments=("corpus",),
        ),
    )
    app.add_typer(tokenizer_app, name="tokenizer")
