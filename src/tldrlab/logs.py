"""Logging: readable lines on the console (rich), JSON lines in files.

`configure_console()` is called once by the CLI. `json_file_handler(path)` gives a handler that writes one
JSON object per record, used by runs for their `log.jsonl`. Extra structured fields go through
`extra={"fields": {...}}`; secrets never belong there.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from rich.console import Console
from rich.logging import RichHandler


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


def json_file_handler(path: Path, level: int = logging.DEBUG) -> logging.Handler:
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setLevel(level)
    handler.setFormatter(JsonLinesFormatter())
    return handler


def configure_console(level: str = "INFO") -> None:
    """Readable console logs on stderr; safe to call more than once."""
    root = logging.getLogger("tldrlab")
    root.setLevel(logging.DEBUG)
    if not any(isinstance(h, RichHandler) for h in root.handlers):
        # stderr, so `--json` output on stdout stays machine-readable.
        handler = RichHandler(
            console=Console(stderr=True), show_path=False, rich_tracebacks=False, markup=False
        )
        handler.setLevel(level.upper())
        root.addHandler(handler)


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(name if name.startswith("tldrlab") else f"tldrlab.{name}")
