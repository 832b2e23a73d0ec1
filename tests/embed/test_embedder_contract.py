"""The embedder contract: every entry of EMBEDDERS embeds texts as unit float32 vectors of its `dim`,
deterministically, a text alone about as in a batch, and similar texts closer than unrelated ones."""

from __future__ import annotations

import numpy as np
import pytest

from tldrlab.embed import EMBEDDERS, get_embedder

TEXTS = [
    "Serve lagers cold, around four degrees.",
    "Lager is best served cold.",
    "The compiler reports a syntax error on line three.",
]


@pytest.mark.parametrize("name", list(EMBEDDERS))
def test_embedder_vectors(name: str) -> None:
    embedder = get_embedder(name)
    vectors = embedder.encode(TEXTS)
    assert embedder.name == name and embedder.dim > 0
    assert vectors.shape == (len(TEXTS), embedder.dim) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    np.testing.assert_array_equal(embedder.encode(TEXTS), vectors)  # deterministic
    # dynamic int8 quantisation scales activations per batch: alone vs padded batch measured 0.988 (int8)
    assert float(embedder.encode(TEXTS[:1])[0] @ vectors[0]) > 0.98
    assert float(vectors[0] @ vectors[1]) > float(vectors[0] @ vectors[2])
