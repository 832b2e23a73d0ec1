"""Typed configs of the digest side's run kinds (no numpy, no torch here: the API validates with them)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from tldrlab.runs.paths import InputPath, ServerOnly


class ThreadIngestConfig(BaseModel):
    """Kind `ingest`: forum threads into the sentence store (only changed posts are re-embedded)."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    path: Annotated[str, InputPath()]
    """A thread file or directory (Stack Exchange dump, Discourse JSON, native JSON)."""
    format: str | None = None
    """Input format; None detects it."""
    embedder: Annotated[str | None, ServerOnly()] = None
    """Embedder name or model path; None: the `embedder` setting (minilm)."""
    batch_size: int = Field(default=64, ge=1)
    """Sentences per embedding batch."""
    skip_invalid: bool = False
    """Skip malformed records instead of failing."""
    progress: bool = True
    """Show a progress bar on the console."""
