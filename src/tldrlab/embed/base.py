"""The embedder interface: texts in, unit-normalised float32 vectors out."""

from __future__ import annotations

from typing import Protocol

import numpy as np


class Embedder(Protocol):
    name: str
    """Registry name or model path; stored with the vectors so mixed embedders are detected."""

    dim: int

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """Shape (len(texts), dim), float32, each row of unit L2 norm."""
