"""The names of the record formats `tldrlab.data.readers` reads, known without importing the readers, so that
a config's `format` is checked cheaply when it is given (the CLI and `POST /runs` alike), not once its run
has started."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator

READER_FORMATS = (
    "pairs", "scitldr", "debian", "qmsum", "wikipedia", "wikitext", "text", "stackexchange", "discourse",
    "native",
)  # fmt: skip
"""Every format of `tldrlab.data.readers.READERS`, in its order (a test keeps the two equal)."""


def known_format(name: str | None) -> str | None:
    """`name` if it is a reader format or None (detected from the path); ValueError listing them else."""
    if name is not None and name not in READER_FORMATS:
        raise ValueError(f"unknown format {name!r}; supported: {', '.join(READER_FORMATS)}")
    return name


ReaderFormat = Annotated[str | None, AfterValidator(known_format)]
"""A config field naming a reader format (None: detected from the path)."""
