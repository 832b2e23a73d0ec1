"""docs/cli.md and docs/config.md are generated from the commands and config classes: stale files fail."""

from __future__ import annotations

from pathlib import Path

from tldrlab.cli.docs import GENERATED, cli_markdown, config_markdown

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_checked_in_generated_docs_are_current() -> None:
    for name, render in GENERATED.items():
        current = (DOCS / name).read_text(encoding="utf-8")
        assert current == render(), f"docs/{name} is stale: run `python -m tldrlab.cli.docs docs` (make docs)"


def test_generated_docs_cover_every_command_and_field() -> None:
    cli = cli_markdown()
    for command in ("`tldrlab train`", "`tldrlab experiment dendrites`", "`tldrlab runs list`"):
        assert command in cli
    assert "| `--train.lr`, `--lr` | float | Peak learning rate" in cli and "[default: 0.0003; > 0]" in cli
    config = config_markdown()
    assert "| `compression.compression_ratio` | float \\| None | `0.5` | > 0.0, <= 1.0 |" in config
    # ELM's own loop default, not TrainConfig's
    assert "| `train.batch_size` | int | `8` | >= 1, <= 65536 |" in config


def test_arguments_carry_the_names_their_help_shows() -> None:
    # arguments of commands generated from typed classes showed their internal parameter names in
    # docs/cli.md (`CFG__PATH`, `CFG__TARGET`, ...), where `--help` shows PATH and TARGET
    cli = cli_markdown()
    assert "CFG__" not in cli
    ingest = cli[cli.index("## `tldrlab ingest`") :]
    assert "| `PATH` | str | A thread file or directory" in ingest.split("## ", 2)[1]
    assert "| `RUN_ID` | str | Run id or a unique prefix of it. |" in cli  # plain typer arguments as before


def test_the_dendrite_modules_help_fits_each_commands_default() -> None:
    # `--dendrites.module-names` said "default: T5's feed-forward blocks" for `experiment lm` too, whose
    # default is the Llama-style MLP blocks
    cli = cli_markdown()
    rows = [line for line in cli.splitlines() if line.startswith("| `--dendrites.module-names`")]
    lm_rows = [row for row in rows if "LlamaMLP" in row]
    assert lm_rows and len(lm_rows) < len(rows), rows
    for row in rows:
        assert "Llama-style MLP blocks of `experiment lm`" in row and "default: T5" not in row, row
