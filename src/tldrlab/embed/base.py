"""The embedder interface: texts in, unit-normalised float32 vectors out."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

MAX_BATCH_TOKENS = 1024
"""The most padded tokens (rows x the longest row) one embedder batch holds.

A batch pads every text to its longest one. Sorted longest first, a call's first batch of 64 held its few
long texts (a meeting turn of 200 tokens) with 60 short ones padded to them: embedding a QMSum meeting's
140 turns took 5.4 CPU-s in batches of 64 and 1.7 within this budget (all-MiniLM-L6-v2 on one thread;
4.3 and 1.2 through ONNX Runtime), 600 beer-forum sentences 6.7 and 4.7. The vectors are the same up to
float rounding (2.7e-7), as between any two batchings."""


class Embedder(Protocol):
    name: str
    """Registry name or model path; stored with the vectors so mixed embedders are detected."""

    dim: int

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """Shape (len(texts), dim), float32, each row of unit L2 norm."""


def length_batches(
    lengths: Sequence[int], batch_size: int, max_tokens: int = MAX_BATCH_TOKENS
) -> list[list[int]]:
    """The indices of `lengths` (tokens per text), longest first, cut into batches of at most `batch_size`
    texts whose padded size stays within `max_tokens`; a text longer than that is a batch of its own."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        if current and (len(current) >= batch_size or (len(current) + 1) * lengths[current[0]] > max_tokens):
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches
