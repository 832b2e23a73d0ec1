"""`tldrlab tokenizer train | show`: train a tokenizer as a run, inspect a trained one."""

from __future__ import annotations

from pathlib import Path

import typer

from tldrlab.cli.options import AS_JSON
from tldrlab.cli.runkinds import RunCommand, add
from tldrlab.cli.tables import emit
from tldrlab.config import expand_user
from tldrlab.models.resolve import installed_model_dir
from tldrlab.runs.aliases import alias_target
from tldrlab.tokenizers.config import resolve_tokenizer_dir
from tldrlab.tokenizers.load import load_tokenizer, read_tokenizer_manifest, tokenize_text, tokenizer_report

tokenizer_app = typer.Typer(
    help="Train and inspect tokenizers (bpe, sentencepiece, char).", no_args_is_help=True
)


def tokenizer_dir(target: str) -> Path:
    """The tokenizer `target` names: a path, else a model installed in the home's model store (by name, as
    `tldrlab models list` shows it: the tokenizer saved with it), else a model alias (`tldrlab models
    promote`: its run's tokenizer), else a run id or unique prefix. In the order model references are
    resolved: a path wins, an installed model's name and an alias before a run id prefix."""
    if not expand_user(target).exists():
        installed = installed_model_dir(target)
        if installed is not None:
            return resolve_tokenizer_dir(installed)
        # an alias works wherever a model is named; here it said "no tokenizer directory or run named"
        promoted = alias_target(target)
        if promoted is not None:
            return resolve_tokenizer_dir(promoted.run_id)
    return resolve_tokenizer_dir(target)


@tokenizer_app.command("show")
def show_command(
    target: str = typer.Argument(
        ...,
        help="A tokenizer directory, model directory, installed model name (tldrlab models list), model "
        "alias (tldrlab models aliases) or run id.",
        metavar="TARGET",
    ),
    text: str | None = typer.Option(None, help="Also show how this text is tokenized."),
    as_json: bool = AS_JSON,
) -> None:
    """Show a trained tokenizer's manifest and stats (and optionally tokenize a text).

    Examples: tldrlab tokenizer show tokenizer-20260101 --text "To be, or not to be"
              tldrlab tokenizer show my-smol   (the tokenizer of an installed model)
    """
    directory = tokenizer_dir(target)
    manifest, tokenizer = read_tokenizer_manifest(directory), load_tokenizer(directory)
    tokens = tokenize_text(tokenizer, text) if text is not None else None
    size = {} if manifest else {"actual_vocab_size": len(tokenizer)}  # what the text says without a manifest
    data = {"dir": str(directory), **manifest, **size, **({"tokenized": tokens} if tokens else {})}
    emit(data, lambda: tokenizer_report(directory, manifest, tokenizer, tokens), as_json=as_json)


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
