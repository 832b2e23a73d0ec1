"""`tldrlab runs list | show | logs`: the run registry from the terminal."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console

from tldrlab.cli.tables import Column, print_listing

runs_app = typer.Typer(help="List and inspect runs.", no_args_is_help=True)
console = Console()


def _ago(ts: float | None) -> str:
    import time

    if not ts:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts))


@runs_app.command("list")
def list_runs(
    kind: str | None = typer.Option(None, help="Only runs of this kind (train, tokenizer, ingest, ...)."),
    status: str | None = typer.Option(
        None, help="Only runs in this status (queued, running, completed, ...)."
    ),
    limit: int = typer.Option(20, help="How many runs, newest first."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON lines instead of a table."),
) -> None:
    """List runs, newest first.

    Example: tldrlab runs list --kind train --status completed
    """
    from tldrlab.runs import open_registry

    records = open_registry().list(kind=kind, status=status, limit=limit)
    if as_json:
        for record in records:
            typer.echo(json.dumps(record.to_dict(), default=str))
        return
    columns = [
        Column("id", key=True),
        Column("kind", optional=True),  # the id starts with it: the first to go in a narrow terminal
        Column("status"),
        Column("created"),
        Column("progress", justify="right", optional=True),
        Column("message", wrap=True),
    ]
    rows = [
        [
            r.id,
            r.kind,
            r.status.value,
            _ago(r.created_at),
            f"{r.progress:.0%}" if r.progress is not None else "-",
            (r.message or "")[:200],
        ]
        for r in records
    ]
    print_listing(console, columns, rows)


@runs_app.command("show")
def show_run(run_id: str = typer.Argument(..., help="Run id or a unique prefix of it.")) -> None:
    """Show a run's registry row and manifest as JSON.

    Example: tldrlab runs show train-20260101
    """
    from tldrlab.runs import open_registry
    from tldrlab.runs.run import read_manifest

    record = open_registry().find(run_id)
    typer.echo(
        json.dumps(
            {"run": record.to_dict(), "manifest": read_manifest(record.run_dir)}, indent=2, default=str
        )
    )


@runs_app.command("logs")
def show_logs(
    run_id: str = typer.Argument(..., help="Run id or a unique prefix of it."),
    tail: int = typer.Option(50, help="Show the last N lines (0 for all)."),
    raw: bool = typer.Option(False, "--raw", "--json", help="Print the JSON lines as stored."),
) -> None:
    """Print a run's structured log.

    Example: tldrlab runs logs train-20260101 --tail 20
    """
    from tldrlab.runs import open_registry
    from tldrlab.runs.atomic import read_jsonl

    record = open_registry().find(run_id)
    rows = read_jsonl(Path(record.run_dir) / "log.jsonl")
    for row in rows[-tail:] if tail else rows:
        if raw:
            typer.echo(json.dumps(row))
        else:
            typer.echo(f"{row.get('time', '')} {row.get('level', ''):7} {row.get('message', '')}")


def register(app: typer.Typer) -> None:
    app.add_typer(runs_app, name="runs")
