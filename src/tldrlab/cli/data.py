"""`tldrlab data inspect | formats | register | list`: look at data files before training or ingesting them,
and register data sets so runs name them by id."""

from __future__ import annotations

from pathlib import Path

import typer

from tldrlab.cli.options import parse_pairs
from tldrlab.cli.tables import emit
from tldrlab.runs.datasets import datasets_table, open_datasets, register_dataset

data_app = typer.Typer(
    help="Inspect data files and list the supported formats.\n\n"
    "Example: tldrlab data inspect ../shared/data/scitldr",
    no_args_is_help=True,
)


@data_app.command("inspect")
def inspect(
    path: Path = typer.Argument(..., help="A data file or a data-set directory."),
    format: str | None = typer.Option(None, "--format", "-f", help="Format name (detected when omitted)."),
    split: str | None = typer.Option(None, help="For a directory: train, dev (= validation = val) or test."),
    skip_invalid: bool = typer.Option(
        False, "--skip-invalid", help="Leave malformed records out (and report how many) instead of stopping."
    ),
    mapping: list[str] | None = typer.Option(
        None, "--map", help="pairs field mapping, repeatable: --map document=text --map summary=headline."
    ),
    option: list[str] | None = typer.Option(
        None, "--option", "-o", help="Reader option KEY=VALUE, repeatable (see `tldrlab data formats`)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the statistics as JSON."),
) -> None:
    """Detect the format of PATH and print counts and length statistics.

    Records: documents, summaries, words per document / summary (mean, median, p95, max).
    Threads: threads, posts, posts per thread, answers, comments, accepted answers.

    Examples:
      tldrlab data inspect ../shared/data/stackexchange_beer
      tldrlab data inspect ../shared/data/debian_descriptions --split validation --json
      tldrlab data inspect my.csv --format pairs --map document=text --map summary=headline --skip-invalid
    """
    # lazy: loads bs4, lxml, numpy (kept off `tldrlab --help`)
    from tldrlab.data.inspect import inspect_path, stats_report

    stats = inspect_path(
        path,
        format,
        split=split,
        skip_invalid=skip_invalid,
        mapping=parse_pairs(mapping, "--map"),
        options=parse_pairs(option, "--option"),
    )
    emit(stats, lambda: stats_report(stats), as_json=as_json)


@data_app.command("formats")
def formats(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List the supported formats, what they hold and their options.

    Example: tldrlab data formats
    """
    # lazy: loads bs4, lxml (kept off `tldrlab --help`)
    from tldrlab.data.readers import READERS, formats_table

    rows = {
        name: {"kind": s.kind, "description": s.description, "options": dict(s.options)}
        for name, s in READERS.items()
    }
    emit(rows, formats_table, as_json=as_json)


@data_app.command("register")
def register_command(
    path: Path = typer.Argument(..., help="A data file or a data-set directory (registered where it is)."),
    name: str | None = typer.Option(
        None, "--name", help="A name for it (default: the file or directory name)."
    ),
    format: str | None = typer.Option(None, "--format", "-f", help="Format name (detected when omitted)."),
    source_url: str | None = typer.Option(None, "--source-url", help="Where it came from (provenance)."),
    license: str | None = typer.Option(None, "--license", help="Its licence (provenance)."),
    note: str | None = typer.Option(None, "--note", help="Anything else worth keeping with it."),
    as_json: bool = typer.Option(False, "--json", help="Print the record as JSON."),
) -> None:
    """Register a data set once: format, sha256 of every file and of the whole, records, provenance.

    Runs then name it as `dataset:<id>` (CLI and API) and record its id in their manifest and in W&B; the
    same bytes registered again give the same id.

    Example: tldrlab data register ../shared/data/scitldr --license "Apache-2.0"
    """
    record, new = register_dataset(
        path, name=name, format=format, source_url=source_url, license=license, note=note
    )
    emit({**record.public(), "new": new}, lambda: record.report(new=new), as_json=as_json)


@data_app.command("list")
def list_command(as_json: bool = typer.Option(False, "--json", help="Print JSON lines.")) -> None:
    """List registered and uploaded data sets.

    Example: tldrlab data list --json
    """
    records = open_datasets().list(limit=1000)
    rows = [{**record.public(), "path": record.path} for record in records]
    emit(rows, lambda: datasets_table(records), as_json=as_json, lines=True, empty=NO_DATASETS)


NO_DATASETS = "no data sets: tldrlab data register PATH"


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")
