"""`tldrlab tokenizer train | show`: train a tokenizer as a run, inspect a trained one."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

tokenizer_app = typer.Typer(
    help="Train and inspect tokenizers (bpe, sentencepiece, char).", no_args_is_help=True
)
console = Console()


@tokenizer_app.command("train")
def train_command(
    corpus: list[Path] = typer.Argument(
        ..., help="Corpus files: plain text or any format `tldrlab data` reads."
    ),
    method: str = typer.Option("bpe", help="bpe (byte-level), sentencepiece or char."),
    vocab_size: int = typer.Option(8000, "--vocab-size", help="Vocabulary size incl. 4 special tokens."),
    out: Path | None = typer.Option(None, help="Output directory (default: <run_dir>/tokenizer)."),
    holdout: float = typer.Option(0.05, help="Fraction of lines kept aside for the stats."),
    seed: int = typer.Option(0, help="Seed of the holdout split."),
    min_frequency: int = typer.Option(2, "--min-frequency", help="bpe/char: minimum count to keep."),
    model_type: str = typer.Option("unigram", "--model-type", help="sentencepiece: unigram or bpe."),
    normalization: str = typer.Option("identity", help="sentencepiece: identity, nmt_nfkc or nfkc."),
) -> None:
    """Train a tokenizer (a run of kind `tokenizer`) and print its holdout stats.

    Example: tldrlab tokenizer train --method bpe --vocab-size 8000 data/input.txt
    """
    from pydantic import ValidationError

    from tldrlab.errors import ConfigError, NotFoundError
    from tldrlab.launch import launch_run
    from tldrlab.tokenizers.config import TokenizerConfig
    from tldrlab.tokenizers.train import get_method

    # Check what can be checked before a run is created, so mistakes do not leave failed runs behind.
    options: dict[str, object] = {"min_frequency": min_frequency, "holdout": holdout, "seed": seed}
    if method == "sentencepiece":
        options.update(model_type=model_type, normalization=normalization)
    try:
        config = TokenizerConfig(method=method, vocab_size=vocab_size, **options)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"invalid tokenizer options: {problems}") from exc
    spec = get_method(method)
    smallest = spec.min_vocab_size(config)
    if vocab_size < smallest:
        raise ConfigError(f"vocab size {vocab_size} is too small for {method}: it needs at least {smallest}")
    for path in corpus:
        if not path.exists():
            raise NotFoundError(f"corpus file not found: {path}")
    run_config = {
        "method": method,
        "vocab_size": vocab_size,
        "corpus": [str(p.resolve()) for p in corpus],
        **options,
        **({"out_dir": str(out.resolve())} if out else {}),
    }
    with console.status(f"training {method} tokenizer (vocab {vocab_size}) ...", spinner="dots"):
        launched = launch_run("tokenizer", run_config)
    out_dir = out or Path(launched.record.run_dir) / "tokenizer"
    _print_manifest(launched.result or {}, title=f"run {launched.record.id}: {out_dir}")


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
    from tldrlab.tokenizers.load import load_tokenizer, read_tokenizer_manifest, resolve_tokenizer_dir

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
    app.add_typer(tokenizer_app, name="tokenizer")
