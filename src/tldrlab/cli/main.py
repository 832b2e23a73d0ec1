"""Entry point of the `tldrlab` command.

Each module in COMMAND_MODULES exposes `register(app: typer.Typer) -> None` and adds its commands or groups.
Command bodies import heavy libraries (torch, transformers, faiss) inside the function so that `--help` is
fast. Every TldrlabError becomes a one-line message on stderr and its exit code, never a traceback.
"""

from __future__ import annotations

import importlib
import sys

import typer
from rich.console import Console
from rich.markup import escape

from tldrlab.errors import TldrlabError

COMMAND_MODULES = [
    "tldrlab.cli.runs",  # tldrlab runs list|show|logs
    "tldrlab.cli.data",  # tldrlab data inspect
    "tldrlab.cli.digest",  # tldrlab ingest, tldrlab digest, tldrlab highlights
    "tldrlab.cli.tokenizer",  # tldrlab tokenizer train|show
    "tldrlab.cli.train",  # tldrlab train
    "tldrlab.cli.evaluate",  # tldrlab eval, generate, score
    "tldrlab.cli.models",  # tldrlab models import|list
    "tldrlab.cli.service",  # tldrlab serve, worker
    "tldrlab.cli.experiment",  # tldrlab experiment dendrites
    "tldrlab.cli.sweep",  # tldrlab sweep run|status|best|export
    "tldrlab.cli.elm",  # tldrlab elm prepare|train|generate|evaluate|optimize
    "tldrlab.cli.lvm",  # tldrlab lvm ingest|index|sequences|train|evaluate|decode
]

app = typer.Typer(
    name="tldrlab",
    help="Train, compress, evaluate and serve small summarization models; streaming cited TL;DRs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
err_console = Console(stderr=True)


@app.callback()
def _root(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logs on the console."),
) -> None:
    from tldrlab.logs import configure_console

    configure_console("DEBUG" if verbose else "INFO")


def _register_all() -> None:
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # that command group is not built yet
                continue
            raise
        module.register(app)


_register_all()


def main(argv: list[str] | None = None) -> None:
    """Run the CLI, turning tldrlab errors into a message and their exit code."""
    try:
        app(args=argv, standalone_mode=False)
    except TldrlabError as exc:
        # escaped: codes like [not_found] and messages like "field 'posts[1].text'" are not rich markup
        err_console.print(
            f"[bold red]error[/] {escape(f'[{exc.code}] {exc.message}')}", highlight=False, soft_wrap=True
        )
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)
    except SystemExit:
        raise
    except Exception as exc:  # click usage errors etc.
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        if isinstance(exc, click.exceptions.Abort):
            err_console.print("aborted")
            sys.exit(130)
        raise
