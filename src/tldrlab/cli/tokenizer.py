"""`tldrlab tokenizer train | show`: train a tokenizer as a run, inspect a trained one."""

from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.table import Table

from tldrlab.cli.runkinds import RunCommand, add
from tldrlab.tokenizers.load import load_tokenizer, read_tokenizer_manifest, resolve_tokenizer_dir

tokenizer_app = typer.Typer(
    help="Train and inspect tokenizers (bpe, sentencepiece, char).", no_args_is_help=True
)
console = Console()


def _print_manifest(manifest: dict[str, object], title: str) -> None:
    table = Table("field", "value", title=title)
    table.add_row("method", str(manifest.get("method")))
    table.add_row("vocab size", f"{manifest.get('actual_vocab_size')} (asked {manifest.get('vocab_size')})")
    stats = manifest.get("stats") or {}
    if isinstance(stats, dict):
        for key, value in stats.items():
            table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    corpus = manifest.get("corpus") or []
    if isinstance(corpus, list):
        for entry in corpus:
            table.add_row(
                "corpus", f"{entry['path']} ({entry['lines']} lines, sha256 {str(entry['sha256'])[:12]})"
            )
    console.print(table)


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
    if as_json:
        typer.echo(json.dumps({"dir": str(directory), **manifest}, indent=2, default=str))
    else:
        if manifest:
            _print_manifest(manifest, title=str(directory))
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
            paths=("corpus",),
            outputs=("out_dir",),
            report=lambda run_id, manifest: _print_manifest(manifest, title=f"run {run_id}"),
        ),
    )
    app.add_typer(tokenizer_app, name="tokenizer")
