"""The one record model for summarization data."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class SummaryRecord(BaseModel):
    """A document with one or more reference summaries (what every summarization reader yields)."""

    id: str
    """Stable id within its source (paper id, package name, meeting id + query index, line number...)."""

    document: str
    """The text to summarize."""

    summaries: list[str] = Field(default_factory=list)
    """Reference summaries, best or author-written first. May be empty for unlabelled text."""

    sentences: list[str] | None = None
    """The document pre-split into sentences when the source provides it (SciTLDR, QMSum turns)."""

    highlight_labels: list[int] | None = None
    """Per-sentence 0/1 labels aligned with `sentences`: 1 marks a sentence worth highlighting."""

    query: str | None = None
    """For query-focused data (QMSum): the question the summary answers."""

    source: str = ""
    """The data set or reader name (scitldr, debian, qmsum, pairs, wikipedia, text)."""

    provenance: dict[str, Any] = Field(default_factory=dict)
    """Where the record came from: file, line or row, and anything else needed to trace it back."""

    @property
    def summary(self) -> str:
        """The first reference summary ('' when there is none)."""
        return self.summaries[0] if self.summaries else ""
