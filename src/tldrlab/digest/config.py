"""Typed configs of the digest side's run kinds (no numpy, no torch here: the API validates with them)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field, model_validator

from tldrlab.configmodel import ConfigModel
from tldrlab.data.formats import ThreadFormat
from tldrlab.data.readers import split_files
from tldrlab.errors import refused_at
from tldrlab.runs.paths import InputPath, OutputPath, Seed, ServerOnly


class ThreadIngestConfig(ConfigModel):
    """Kind `ingest`: forum threads into the sentence store (only changed posts are re-embedded)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    path: Annotated[str, InputPath()]
    """A thread file or directory (Stack Exchange dump, Discourse JSON, native JSON)."""
    format: ThreadFormat = None
    """Input format; None detects it."""
    embedder: Annotated[str | None, ServerOnly()] = None
    """Embedder name or model path; None: the `embedder` setting (minilm-onnx)."""
    batch_size: int = Field(default=64, ge=1)
    """Sentences per embedding batch."""
    skip_invalid: bool = False
    """Skip malformed records instead of failing."""
    progress: bool = True
    """Show a progress bar on the console."""


def check_ingest(config: ThreadIngestConfig) -> None:
    """Kind `ingest`'s check before a run is created (command line and API alike): the path holds forum
    threads, in data files none of them empty. A directory of no data files, a binary file or records (a
    summarization data set) were refused by the run's read, which stayed behind as a failed run."""
    with refused_at("path"):
        split_files(config.path, config.format, kind="threads", skip_invalid=config.skip_invalid)


class HighlightScorerTrainConfig(ConfigModel):
    """Kind `highlight_scorer_train`: a learned highlight scorer from labelled train splits (one listwise
    linear model per mode; `digest/scorer_training.py`). Give at least one data set."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

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
    feature_groups: list[Literal["sentence_cues", "query_context"]] = [  # noqa: RUF012 (pydantic copies it)
        "sentence_cues",
        "query_context",
    ]
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


class HighlightRerankerTrainConfig(ConfigModel):
    """Kind `highlight_reranker_train`: a re-ranker for query-aware highlights, fine-tuned from
    the bundled MiniLM with a LoRA adapter on QMSum train meetings (`digest/reranker_training.py`), and the
    fusion weight with the base scorer chosen on held-out train meetings. Writes a scorer file (the base
    scorer's linear models plus the re-ranker) and the adapter directory beside it."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    name: str = Field(default="learned_v3", min_length=1, max_length=64, pattern=r"^[a-z0-9_]+$")
    """Name written into the scorer file (the name it will be selected by once shipped)."""
    version: int = Field(default=3, ge=1)
    """Version number written into the scorer file; the adapter directory is `reranker_v<version>`."""
    base_scorer: Literal["learned_v1", "learned_v2"] = "learned_v2"
    """The packaged learned scorer whose top sentences are re-ranked (its linear models are copied)."""
    qmsum_train: Annotated[str, InputPath()]
    """QMSum train JSON lines: positives are the turns inside each specific query's relevant spans."""
    qmsum_every: int = Field(default=3, ge=1)
    """Use every N-th meeting (the file's domains come in blocks, so a stride keeps them mixed)."""
    qmsum_limit: int | None = Field(default=None, ge=1)
    """Use at most N meetings (None: all that the stride gives)."""
    heldout_every: int = Field(default=3, ge=2)
    """Every N-th of those meetings (the N-th, 2N-th, ...) is held out of training; the fusion weight is
    chosen on its queries. With `qmsum_every` 3 they are file meetings 6, 15, 24, ...: none of the every-9th
    meetings learned_v2's query model was fitted on, so the base scorer is held-out there too."""
    top_k: int = Field(default=24, ge=2, le=200)
    """Re-rank this many of the base scorer's best turns (hard negatives come from them too)."""
    steps: int = Field(default=300, ge=1)
    """Optimizer steps."""
    groups_per_step: int = Field(default=2, ge=1)
    """Queries per step; each brings one positive turn and `group_size - 1` negatives."""
    group_size: int = Field(default=8, ge=2, le=64)
    """Turns per query group (listwise loss: softmax over the group, the positive first)."""
    hard_share: float = Field(default=0.6, ge=0.0, le=1.0)
    """Share of a group's negatives taken from the base scorer's top turns (the rest: random turns)."""
    learning_rate: float = Field(default=5e-4, gt=0.0, le=1.0)
    """AdamW learning rate (linear warm-up over the first 10 % of steps, then linear decay)."""
    lora_r: int = Field(default=8, ge=1, le=64)
    """LoRA rank."""
    lora_alpha: int = Field(default=16, ge=1)
    """LoRA scaling numerator (the update is scaled by alpha / r)."""
    max_length: int = Field(default=128, ge=16, le=512)
    """Tokens per encoded turn with its context (and per query)."""
    context_words: int = Field(default=24, ge=0, le=200)
    """Words of the previous and next turn shown with each turn."""
    weights: list[float] = Field(default=[0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0], min_length=1)
    """Fusion weights tried on the held-out meetings (0: the base scorer's order)."""
    embedder: Annotated[str, ServerOnly()] = "minilm"
    """Embedder for the base scorer's features (the one highlights are ranked with in use)."""
    vector_cache_dir: Annotated[str | None, OutputPath()] = None
    """Keep sentence vectors here between runs (embedding is the slow part on a CPU)."""
    seed: Seed = 0
    """Seed of the sampling and of the adapter's initialisation."""
    log_every: int = Field(default=20, ge=1)
    """Log the training loss every N steps."""
    out: Annotated[str | None, OutputPath()] = None
    """Also write the scorer file and its adapter directory into this directory."""
