"""Synthetic concept data for LVM tests: unit vectors rotating on a circle, one circle per article.

Concept t of an article is cos(phase + t·step)·e1 + sin(phase + t·step)·e2 in a random 2-D plane of R^dim, so
the next concept is a fixed rotation of the last one: learnable from the context, and copy-last is off by
exactly the rotation angle.
"""

from __future__ import annotations

import numpy as np

from tldrlab.lvm.store import ConceptIn, ConceptTable, open_concept_store


def rotating_table(
    n_articles: int = 12, length: int = 30, dim: int = 16, step: float = 0.6, seed: int = 0
) -> ConceptTable:
    rng = np.random.default_rng(seed)
    basis, _ = np.linalg.qr(rng.normal(size=(dim, 2)))
    ids, keys, positions, vectors = [], [], [], []
    next_id = 1
    for a in range(n_articles):
        phase = rng.uniform(0, 2 * np.pi)
        for t in range(length):
            angle = phase + t * step
            vectors.append(basis @ np.array([np.cos(angle), np.sin(angle)]))
            ids.append(next_id)
            keys.append(f"synthetic/article-{a:03d}")
            positions.append(t)
            next_id += 1
    return ConceptTable(
        ids=np.array(ids, dtype=np.int64),
        article_keys=keys,
        positions=np.array(positions, dtype=np.int64),
        vectors=np.array(vectors, dtype=np.float32),
        embedder="synthetic",
    )


def store_table(table: ConceptTable, url: str | None = None) -> None:
    """Write `table`'s articles into the concept store at `url` (None: the home's), as `lvm ingest` would."""
    store = open_concept_store(url)
    try:
        for key in sorted(set(table.article_keys)):
            rows = [i for i, k in enumerate(table.article_keys) if k == key]
            store.replace_article(
                source="synthetic",
                article_id=key.split("/", 1)[1],
                concepts=[ConceptIn(p, 3 * p, 3 * p + 2, f"{key} {p}.") for p in range(len(rows))],
                vectors=table.vectors[rows],
                embedder="test",
                chunking="sentence",
            )
    finally:
        store.close()
