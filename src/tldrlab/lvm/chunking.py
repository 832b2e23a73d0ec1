"""Splitting an article into concepts: sentences, or semantic chunks of adjacent similar sentences.

Every concept keeps its exact character span in the article (`text == article[start:end]`), so a predicted
concept can always be traced back to the words it came from.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from tldrlab.choices import unknown_choice
from tldrlab.data.sentences import split_sentences
from tldrlab.errors import ConfigError


@dataclass(frozen=True)
class Chunk:
    start: int
    end: int
    text: str


@dataclass(frozen=True)
class ChunkingConfig:
    method: str = "sentence"
    """`sentence` (one concept per sentence) or `semantic` (merge adjacent similar sentences)."""
    max_chars: int = 600
    """Semantic chunks never grow past this many characters (a single longer sentence stays whole)."""
    threshold: float = 0.55
    """Semantic chunking merges the next sentence while its cosine to the chunk's mean vector is >= this."""
    min_chars: int = 1
    """Sentences shorter than this (after stripping) are dropped, e.g. stray headings of one character."""


EncodeFn = Callable[[list[str]], np.ndarray]


def sentence_chunks(text: str, config: ChunkingConfig) -> list[Chunk]:
    return [Chunk(s.start, s.end, s.text) for s in split_sentences(text) if len(s.text) >= config.min_chars]


def semantic_chunks(text: str, config: ChunkingConfig, encode: EncodeFn) -> list[Chunk]:
    """Greedy left-to-right merge: a sentence joins the current chunk while it stays similar and short enough.

    Similarity is measured against the running mean of the chunk's sentence vectors (not only the last
    sentence), so a chunk cannot drift one small step at a time away from where it started.
    """
    sentences = sentence_chunks(text, config)
    if len(sentences) <= 1:
        return sentences
    vectors = encode([s.text for s in sentences])
    chunks: list[Chunk] = []
    first = sentences[0]
    start, end, total = first.start, first.end, vectors[0].astype(np.float64).copy()
    count = 1
    for sentence, vector in zip(sentences[1:], vectors[1:], strict=True):
        centroid = total / max(np.linalg.norm(total), 1e-12)
        similar = float(centroid @ vector) >= config.threshold
        fits = sentence.end - start <= config.max_chars
        if similar and fits:
            end, total, count = sentence.end, total + vector, count + 1
            continue
        chunks.append(Chunk(start, end, text[start:end]))
        start, end, total, count = sentence.start, sentence.end, vector.astype(np.float64).copy(), 1
    chunks.append(Chunk(start, end, text[start:end]))
    return chunks


CHUNKERS: dict[str, str] = {
    "sentence": "one concept per sentence (tldrlab.data.split_sentences)",
    "semantic": "adjacent sentences merged while similar to the chunk, bounded by max_chars",
}


def chunk_article(text: str, config: ChunkingConfig, encode: EncodeFn | None = None) -> list[Chunk]:
    """The article's concepts in reading order."""
    if config.method == "sentence":
        return sentence_chunks(text, config)
    if config.method == "semantic":
        if encode is None:
            raise ConfigError("semantic chunking needs an embedder")
        return semantic_chunks(text, config, encode)
    raise ConfigError(unknown_choice("chunking", config.method, CHUNKERS))
