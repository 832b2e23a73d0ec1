"""Entry point of the `tldrlab` command.

Commands for run kinds are generated from their config classes (`runkinds.RUN_COMMANDS`); each module in
COMMAND_MODULES adds hand-written commands or groups with `register(app: typer.Typer) -> None`. The options
every command shares are declared once in `options`. Command bodies import heavy libraries (torch,
transformers, faiss) inside the function so that `--help` is fast. Every TldrlabError and usage error becomes
a one-line message on stderr and its exit code, never a traceback.
"""

from __future__ import annotations

import errno
import importlib
import sys
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

from tldrlab.cli import options
from tldrlab.errors import TldrlabError
from tldrlab.threads import configure_threads

COMMAND_MODULES = [
    "tldrlab.cli.train",  # tldrlab train
    "tldrlab.cli.runs",  # tldrlab runs list|show|logs
    "tldrlab.cli.data",  # tldrlab data inspect
    "tldrlab.cli.digest",  # tldrlab ingest, tldrlab digest, tldrlab highlights
    "tldrlab.cli.tokenizer",  # tldrlab tokenizer train|show
    "tldrlab.cli.evaluate",  # tldrlab eval, generate, score
    "tldrlab.cli.models",  # tldrlab models import|list
    "tldrlab.cli.service",  # tldrlab serve, worker
    "tldrlab.cli.experiment",  # tldrlab experiment dendrites
    "tldrlab.cli.sweep",  # tldrlab sweep run|status|best|export
    "tldrlab.cli.elm",  # tldrlab elm prepare|train|generate|evaluate|optimize
    "tldrlab.cli.lvm",  # tldrlab lvm ingest|index|sequences|train|evaluate|generate|stats|tmd
]

app = typer.Typer(
    name="tldrlab",
    help="Train, compress, evaluate and serve small summarization models; streaming cited TL;DRs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,
)
err_console = Console(stderr=True)


def _root(values: dict[str, Any]) -> None:
    home, quiet, verbose, threads = (values[o.param] for o in options.EVERY_COMMAND)
    if threads is not None and threads < 1:
        raise typer.BadParameter(f"must be at least 1, got {threads}", param_hint="--threads")
    # before any command imports torch: OpenMP and MKL read their thread counts once, when they load
    configure_threads(threads)
    options.configure_console(
        "DEBUG" if verbose else "WARNING" if quiet else None, verbose=verbose, command=True
    )
    options.show_progress_bars(True)  # each command line starts with bars; its `--quiet` turns them off
    options.apply_common(home, quiet, verbose)


app.callback()(options.signature_callback(options.shared_params(options.EVERY_COMMAND), _root))


for name in COMMAND_MODULES:
    importlib.import_module(name).register(app)
options.name_every_usage_error(app)


def _usage_error(exc: typer.TyperException) -> None:
    """A usage error as every other error reads, one line (`error [usage] Missing argument 'RUN_ID'.`), and
    one line of where help is: click printed the usage line, the hint, a blank line, then `Error: ...`."""
    format_message = getattr(exc, "format_message", None)  # "Invalid value for '--dtype': ..."
    message = " ".join(str(format_message() if callable(format_message) else exc.message).split())
    # click's UsageError and its kinds carry `ctx`; its other errors (a file it cannot open) are not usage
    code = "usage" if hasattr(exc, "ctx") else "invalid_input"
    err_console.print(f"[bold red]error[/] {escape(f'[{code}] {message}')}", highlight=False, soft_wrap=True)
    ctx = getattr(exc, "ctx", None)  # the command it arose in (options.name_every_usage_error)
    if ctx is not None and ctx.command.get_help_option(ctx) is not None:
        hint = f"Try '{ctx.command_path} {ctx.help_option_names[0]}' for help."
        err_console.print(hint, markup=False, highlight=False, soft_wrap=True)


def main(argv: list[str] | None = None) -> None:
    """Run the CLI, turning tldrlab errors and usage errors into a message and their exit code."""
    try:
        code = app(args=argv, standalone_mode=False)
    except TldrlabError as exc:
        # escaped: codes like [not_found] and messages like "field 'posts[1].text'" are not rich markup
        err_console.print(
            f"[bold red]error[/] {escape(f'[{exc.code}] {exc.message}')}", highlight=False, soft_wrap=True
        )
        sys.exit(exc.exit_code)
    except OSError as exc:
        # a path the system refuses (a name over 255 bytes, no permission, a read-only disk): what and where,
        # in one line, never a traceback; an OSError not about a file is a bug and keeps its traceback
        if exc.filename is None:
            raise
        name = str(exc.filename)
        shown = name if len(name) <= 120 else f"{name[:80]}... ({len(name)} characters)"
        code, exit_code = ("invalid_input", 2) if exc.errno == errno.ENAMETOOLONG else ("os_error", 1)
        err_console.print(
            f"[bold red]error[/] {escape(f'[{code}] {exc.strerror}: {shown}')}",
            highlight=False,
            soft_wrap=True,
        )
        sys.exit(exit_code)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)
    except typer.Abort:
        err_console.print("aborted")
        sys.exit(130)
    except typer.TyperException as exc:  # usage errors of typer's bundled click: no such option, bad value
        # typer shows pydantic's message for a value it converts: a choice's reads "Value error, 'x' is not
        # one of ...", the prefix that tldrlab's own validation messages go without (errors.error_message)
        exc.message = exc.message.removeprefix("Value error, ")
        show = getattr(exc, "show", None)
        if type(exc).__name__ == "NoArgsIsHelpError" and callable(show):  # `tldrlab runs`: the group's help
            show()
        else:
            _usage_error(exc)
        sys.exit(getattr(exc, "exit_code", 2))
    if isinstance(code, int) and code:  # typer answers Ctrl-C (130) and ctx.exit(n) with an exit code
        sys.exit(code)
