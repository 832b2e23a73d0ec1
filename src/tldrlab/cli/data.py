"""`tldrlab data inspect | formats | register | list`: look at data files before training or ingesting them,
and register data sets so runs name them by id."""

from __future__ import annotations

from typing import Any

import typer

from tldrlab.cli.options import AS_JSON, config_command
from tldrlab.cli.tables import emit
from tldrlab.runs.datasets import RegisterOptions, datasets_table, open_datasets, register_dataset

data_app = typer.Typer(
    help="Inspect data files and list the supported formats.\n\n"
    "Example: tldrlab data inspect ../shared/data/scitldr",
    no_args_is_help=True,
)


def inspect(options: Any, as_json: bool) -> None:
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

    settings = options.model_dump(exclude={"path", "format"})
    stats = inspect_path(options.path, options.format, **settings)
    emit(stats, lambda: stats_report(stats), as_json=as_json)


@data_app.command("formats")
def formats(as_json: bool = AS_JSON) -> None:
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


def register_command(options: RegisterOptions, as_json: bool) -> None:
    """Register a data set once: format, sha256 of every file and of the whole, records, provenance.

    Runs then name it as `dataset:<id>` (CLI and API) and record its id in their manifest and in W&B; the
    same bytes registered again give the same id.

    Example: tldrlab data register ../shared/data/scitldr --license "Apache-2.0"
    """
    record, new = register_dataset(**options.model_dump())
    emit({**record.public(), "new": new}, lambda: record.report(new=new), as_json=as_json)


@data_app.command("list")
def list_command(as_json: bool = AS_JSON) -> None:
    """List registered and uploaded data sets.

    Example: tldrlab data list --json
    """
    records = open_datasets().list(limit=None)  # every one: the command has no paging to reach the rest
    rows = [{**record.public(), "path": record.path} for record in records]
    emit(rows, lambda: datasets_table(records), as_json=as_json, lines=True, empty=NO_DATASETS)


NO_DATASETS = "no data sets: tldrlab data register PATH"


def register(app: typer.Typer) -> None:
    config_command(
        data_app,
        "inspect",
        "tldrlab.data.inspect:InspectOptions",
        inspect,
        as_json=True,
        arguments=("path",),
        aliases={"format": "-f", "mapping": "--map", "options": ("--option", "-o")},
    )
    config_command(
        data_app,
        "register",
        RegisterOptions,
        register_command,
        as_json=True,
        arguments=("path",),
        aliases={"format": "-f"},
    )
    app.add_typer(data_app, name="data")
