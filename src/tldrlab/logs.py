"""Logging: readable lines on the console (rich), JSON lines in files.

`configure_console()` is called once by the CLI. `json_file_handler(path)` gives a handler that writes one
JSON object per record, used by runs for their `log.jsonl`. Extra structured fields go through
`extra={"fields": {...}}`; secrets never belong there.

The console is quiet by default: the progress bars and the command's result, plus tldrlab warnings and
errors (the `log_level` setting, WARNING). Third-party chatter is kept off it: transformers' warnings and
"Loading weights" bars, Hugging Face hub bars, W&B banners, Python warnings (they go to the run's log.jsonl
instead), and the duplicate of every line that appeared once absl (imported by rouge_score) configured the
root logger. `--verbose` shows all of it, with tldrlab's own DEBUG lines.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TextIO, TypeVar

from rich.console import Console
from rich.logging import RichHandler

from tldrlab.config import get_settings
from tldrlab.errors import refused_write


class JsonLinesFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message and any `fields` passed via `extra`."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": round(record.created, 6),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def raised_by_a_signal_handler(error: BaseException | None) -> bool:
    """Whether `error` was raised by the Python handler now installed for some signal: how RQ's worker stops
    (its SIGTERM handler raises StopRequested in the main thread, wherever that thread is). Python runs a
    handler between any two bytecodes, so one that lands while a line is being written raises inside the
    logging handler's `emit`, whose `except Exception` took it for a logging error."""
    if error is None:
        return False
    handler_codes = set()
    for signum in signal.valid_signals():
        try:
            installed = signal.getsignal(signum)
        except (OSError, ValueError):
            continue
        code = getattr(getattr(installed, "__func__", installed), "__code__", None)
        if code is not None:
            handler_codes.add(code)
    frame = error.__traceback__
    while frame is not None:
        if frame.tb_frame.f_code in handler_codes:
            return True
        frame = frame.tb_next
    return False


class _SignalsPassThrough(logging.Handler):
    """A handler that lets a signal handler's exception through: logging's `handleError` printed it as a
    "--- Logging error ---" traceback and carried on, so the stop it stood for was lost (a worker stopped
    while writing its "Redis is unreachable" line printed that traceback and kept waiting for Redis)."""

    def handleError(self, record: logging.LogRecord) -> None:
        if raised_by_a_signal_handler(sys.exc_info()[1]):
            raise  # the exception emit() is handling: it belongs to the caller
        super().handleError(record)


class _ConsoleHandler(_SignalsPassThrough, RichHandler):
    pass


def console_handler(console: Console | None = None) -> RichHandler:
    """tldrlab's console handler: readable lines on `console` (default: stderr, so `--json` output on stdout
    stays machine-readable)."""
    return _ConsoleHandler(
        console=console or Console(stderr=True), show_path=False, rich_tracebacks=False, markup=False
    )


class _LogFileHandler(_SignalsPassThrough, logging.FileHandler):
    def handleError(self, record: logging.LogRecord) -> None:
        # A full disk (a file-size limit, a read-only file system) is the run's error to report (one line,
        # `disk_full`); logging's own report of each line it could not write was a "--- Logging error ---"
        # traceback on stderr per line.
        if refused_write(sys.exc_info()[1] or Exception()) is not None:
            return
        super().handleError(record)

    def close(self) -> None:
        # closing flushes what the system refused again, and its error replaced the run's own
        try:
            super().close()
        except OSError as exc:
            if refused_write(exc) is None:
                raise


def json_file_handler(path: Path, level: int = logging.DEBUG) -> logging.Handler:
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = _LogFileHandler(path, encoding="utf-8")
    handler.setLevel(level)
    handler.setFormatter(JsonLinesFormatter())
    return handler


QUIET_ENV: dict[str, str] = {
    "TRANSFORMERS_VERBOSITY": "error",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "WANDB_SILENT": "true",
    "TQDM_DISABLE": "1",  # libraries' own bars (GGUF de-quantizing); tldrlab's bars pass disable=
}
"""Read by transformers, huggingface_hub and wandb when they load; set (unless the user set them) when the
console is quiet, which is before any command imports those libraries."""

T = TypeVar("T")

_progress_bars = {"shown": True}
_console = {"verbose": False}


def show_progress_bars(shown: bool) -> None:
    """Turn tldrlab's own progress bars on or off for this process (`--quiet`: off); each bar reads
    `progress_bars_shown()`, since not every run kind's config has a `progress` field for `--quiet` to set
    (an evaluation, an LVM ingest) and a run may start runs of its own (a training's final evaluation)."""
    _progress_bars["shown"] = shown


def progress_bars_shown() -> bool:
    return _progress_bars["shown"]


PROGRESS_LINE_EVERY_S = 30.0
"""Off a terminal (a log file, a pipe, CI), a bar is written as one line at most this often, and once more
when it ends. Redrawn there as on a terminal, every frame of a bar piled up on one line of the file (a
training to a log file: ten frames a second, one line of megabytes)."""


class _FramesAsLines:
    """The stream a bar writes to off a terminal: each frame tqdm draws (`\\r`, the bar, padding) becomes a
    line of its own; blank frames (a bar clearing itself) and a frame equal to the one before are left out."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.last = ""
        self.encoding = getattr(stream, "encoding", None) or "utf-8"

    def write(self, text: str) -> int:
        for frame in text.split("\r"):
            line = frame.strip()
            if line and line != self.last:
                self.stream.write(line + "\n")
                self.last = line
        return len(text)

    def flush(self) -> None:
        self.stream.flush()


def progress_bar(iterable: Iterable[T] | None = None, *, shown: bool = True, **options: Any) -> Any:
    """A tldrlab progress bar on stderr (tqdm; `options` are tqdm's: total, desc, unit, leave, ...).

    It is drawn when `shown` (a config's `progress`) and `progress_bars_shown()` (`--quiet` turns that off);
    `disable=` is always passed, since the quiet console's TQDM_DISABLE is meant for libraries' bars. Off a
    terminal it writes lines (`PROGRESS_LINE_EVERY_S`), and its last state stays even where a terminal's bar
    would clear itself (`leave=False`): a log file keeps how far the work got."""
    from tqdm.auto import tqdm

    stream: Any = sys.stderr
    if not stream.isatty():
        options |= {"mininterval": PROGRESS_LINE_EVERY_S, "maxinterval": PROGRESS_LINE_EVERY_S, "leave": True}
        stream = _FramesAsLines(stream)
    return tqdm(iterable, file=stream, disable=not (shown and progress_bars_shown()), **options)


def show_progress_bars_in_service() -> None:
    """In a service process (`serve`, `worker`): bars only when its stderr is a terminal. Its output is
    usually a log file or a journal, where a bar (an ingest run's, the bundled model's first-use conversion)
    is redraw noise; the phases still reach the log as lines and the runs' records. `--quiet` stays off."""
    show_progress_bars(progress_bars_shown() and sys.stderr.isatty())


REPORTED_BY_CALLER = "reported_by_caller"
"""A log record with this attribute set says what the calling command reports itself (a run's error): the
CLI's console leaves it out so the message is not printed twice; files and workers' consoles keep it."""


class _SkipReportedByCaller(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(record, REPORTED_BY_CALLER, False)


WARNINGS_LOGGER = "py.warnings"
"""Python warnings are routed here (logging.captureWarnings): a run's log.jsonl keeps them."""


def configure_console(level: str | None = None, *, verbose: bool = False, command: bool = False) -> None:
    """Readable console logs on stderr, quiet unless `verbose` (see the module docstring); safe to call again.

    `level` is the console level for tldrlab's own lines (default: the `log_level` setting). `command`: the
    caller prints run errors itself (the CLI), so the console leaves out their log lines.
    """
    if level is None:
        level = "DEBUG" if verbose else get_settings().log_level
    _console["verbose"] = verbose
    root = logging.getLogger("tldrlab")
    root.setLevel(logging.DEBUG)
    handler = next((h for h in root.handlers if isinstance(h, RichHandler)), None)
    if handler is None:
        handler = console_handler()
        root.addHandler(handler)
    if command and not any(isinstance(f, _SkipReportedByCaller) for f in handler.filters):
        handler.addFilter(_SkipReportedByCaller())
    handler.setLevel(level.upper())
    # absl (through rouge_score) calls logging.basicConfig() when the root logger has no handler, and every
    # tldrlab line then also reaches stderr through it: give the root logger a handler of its own first.
    python_root = logging.getLogger()
    if not python_root.handlers:
        python_root.addHandler(logging.NullHandler())
    logging.captureWarnings(True)
    warnings_logger = logging.getLogger(WARNINGS_LOGGER)
    warnings_logger.propagate = False
    console_warnings = [h for h in warnings_logger.handlers if isinstance(h, RichHandler)]
    if verbose and not console_warnings:
        warnings_logger.addHandler(handler)
    elif not verbose:
        for extra in console_warnings:
            warnings_logger.removeHandler(extra)
        if not warnings_logger.handlers:
            warnings_logger.addHandler(logging.NullHandler())
    if not verbose:
        for name, value in QUIET_ENV.items():
            os.environ.setdefault(name, value)
        _quiet_loaded_libraries()


def quiet_optuna() -> None:
    """Optuna's INFO lines (every study it creates or loads, every trial) off the console unless verbose:
    tldrlab prints its own lines of a study. Optuna reads no environment variable for it and sets its level
    when it loads, so the console's configuration reaches it only when loaded already (`--quiet` of a command
    run in a process that used it before), and code opening a study calls this first (`sweep.mapping`)."""
    if _console["verbose"]:
        return
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)


def _quiet_loaded_libraries() -> None:
    """The same settings for libraries an embedding program loaded before the CLI ran."""
    if "optuna" in sys.modules:
        quiet_optuna()
    if "transformers" in sys.modules:
        from transformers.utils import logging as transformers_logging

        transformers_logging.set_verbosity_error()
        transformers_logging.disable_progress_bar()
    if "huggingface_hub" in sys.modules:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(name if name.startswith("tldrlab") else f"tldrlab.{name}")
