"""A config field naming a reader format (any, or one holding forum threads), checked when the config is given
(the CLI and `POST /runs` alike) against the reader registry itself, not once its run has started.

The names are `tldrlab.data.readers.READERS`'s keys, read at each check, help text and JSON schema: a
format registered there is accepted and listed here with nothing else to update. Importing the readers costs
about 12 ms, which every config module already pays (`train.config` finds a data set's splits with them).
The field stays a `str`, not a Literal built from the registry: a Literal must be spelled out for mypy, and
that would be the copied list again; an unknown name gets the one "unknown format ...; choose one of ..."
message instead.
"""

from __future__ import annotations

from typing import Annotated

from tldrlab.choices import OneOf
from tldrlab.data.readers import READERS

ReaderFormat = Annotated[str | None, OneOf("format", READERS)]
"""A config field naming a reader format (None: detected from the path)."""


def thread_formats() -> list[str]:
    """The reader formats holding forum threads (what ingest and digest read), in the registry's order."""
    return [name for name, spec in READERS.items() if spec.kind == "threads"]


ThreadFormat = Annotated[str | None, OneOf("format", thread_formats)]
"""A config field naming a reader format of forum threads (None: detected from the path)."""
