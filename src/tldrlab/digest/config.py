"""Typed configs of the digest side's run kinds (no numpy, no torch here: the API validates with them)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tldrlab.runs.paths import InputPath, OutputPath, ServerOnly


class ThreadIngestConfig(BaseModel):
    """Kind `ingest`: forum threads into the sentence store (only changed posts are re-embedded)."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    path: Annotated[str, InputPath()]
    """A thread file or directory (Stack Exchange dump, Discourse JSON, native JSON)."""
    format: str | None = None
    """Input format; None detects it."""
    embedder: Annotated[str | None, ServerOnly()] = None
    """Embedder name or model path; None: the `embedder` setting (minilm-onnx)."""
    batch_size: int = Field(default=64, ge=1)
    """Sentences per embedding batch."""
    skip_invalid: bool = False
    """Skip malformed records instead of failing."""
    progress: bool = True
    """Show a progress bar on the console."""


class HighlightScorerTrainConfig(BaseModel):
    """Kind `highlight_scorer_train`: a learned highlight scorer from labelled train splits (one listwise
    linear model per mode; `digest/scorer_training.py`). Give at least one data set."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    name: str = Field(default="learned_v2", min_length=1, max_length=64, pattern=r"^[a-z0-9_]+$")
    """Name written into the scorer file (the name it will be selected by once shipped)."""
    version: int = Field(default=2, ge=1)
    """Version number written into the scorer file."""
    scitldr_train: Annotated[str | None, InputPath()] = None
    """SciTLDR train JSON lines (`source`, `source_labels`, `title`): trains the `document` mode."""
    scitldr_limit: int | None = Field(default=600, ge=1)
    """Use the first N usable papers (None: all)."""
    forum_dump: Annotated[str | None, InputPath()] = None
    """A Stack Exchange dump (`Posts.xml`): its train-side threads train `forum` and `forum_votes`."""
    forum_limit: int | None = Field(default=None, ge=1)
    """Use the first N usable train-side threads (None: all)."""
    qmsum_train: Annotated[str | None, InputPath()] = None
    """QMSum train JSON lines: trains the `query` mode."""
    qmsum_limit: int | None = Field(default=None, ge=1)
    """Use at most N meetings (None: all); each brings a few queries and hundreds of turns."""
    qmsum_every: int = Field(default=27, ge=1)
    """Use every N-th meeting (the file's domains come in blocks, so a stride keeps them mixed)."""
    embedder: Annotated[str, ServerOnly()] = "minilm"
    """Embedder for the sentence vectors (the one highlights are ranked with in use)."""
    vector_cache_dir: Annotated[str | None, OutputPath()] = None
    """Keep sentence vectors here between runs (embedding is the slow part on a CPU)."""
    use_vectors: bool = True
    """Also try (by cross-validation) a learned direction in the sentence-embedding space."""
    feature_groups: list[Literal["sentence_cues", "query_context"]] = ["sentence_cues", "query_context"]
    """Feature groups beyond `v1` that cross-validation may add per mode (`features.FEATURE_GROUPS`:
    `sentence_cues` = contribution / advice / thanks cues and position inside a post, `query_context` =
    query-term overlap and wider neighbour windows); [] trains on the `v1` features only."""
    folds: int = Field(default=3, ge=2, le=10)
    """Cross-validation folds over train cases for choosing the L2 penalty."""
    out: Annotated[str | None, OutputPath()] = None
    """Also write the scorer file here (it is always written to `<run>/artifacts/highlight_scorer.json`)."""

    @model_validator(mode="after")
    def _needs_data(self) -> HighlightScorerTrainConfig:
        if not (self.scitldr_train or self.forum_dump or self.qmsum_train):
            raise ValueError("give at least one of scitldr_train, forum_dump, qmsum_train")
        return self
