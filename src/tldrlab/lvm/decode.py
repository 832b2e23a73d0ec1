"""Turning predicted concept vectors back into text.

`nearest_concepts`: search the concept index and return the stored texts of the nearest concepts (exact
text with provenance, no generation). `vec2text_decode`: an optional hook for the `vec2text` package, which
inverts embeddings into new text; it needs that package and a corrector model trained for the same embedder,
neither of which ships with tldrlab (none can be downloaded offline), so it fails with DependencyMissingError.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tldrlab.errors import ConflictError, DependencyMissingError
from tldrlab.lvm.index import ConceptIndex
from tldrlab.lvm.store import ConceptStore


@dataclass(frozen=True)
class DecodedConcept:
    id: int
    score: float
    """Cosine similarity between the prediction and the concept."""
    text: str
    source: str
    article_id: str
    position: int


def nearest_concepts(
    vectors: np.ndarray,
    index: ConceptIndex,
    store: ConceptStore,
    *,
    k: int = 5,
    exclude: list[set[int]] | None = None,
) -> list[list[DecodedConcept]]:
    """For each vector, its k nearest stored concepts (best first) with text and provenance. ConflictError
    when none of a vector's k nearest in the index is in the store any more (the store was ingested again
    since the index was built): its decoding printed "-" and the API answered no concepts, as if the index
    held nothing near."""
    scores, ids = index.search(vectors, k=k, exclude=exclude)
    found = store.get(sorted({int(i) for i in ids.ravel() if i >= 0}))
    if any(not any(int(i) in found for i in row) for row in ids if (row >= 0).any()):
        raise ConflictError(
            f"none of the {k} concepts nearest to the prediction in the index is in the concept store any "
            "more: the index is older than the store (ingested again since): run `tldrlab lvm index`"
        )
    decoded = []
    for row_scores, row_ids in zip(scores, ids, strict=True):
        row = []
        for score, concept_id in zip(row_scores, row_ids, strict=True):
            concept = found.get(int(concept_id))
            if concept is None:  # the index is older than the store: skip concepts deleted since
                continue
            row.append(
                DecodedConcept(
                    id=concept.id,
                    score=float(score),
                    text=concept.text,
                    source=concept.source,
                    article_id=concept.article_id,
                    position=concept.position,
                )
            )
        decoded.append(row)
    return decoded


def vec2text_decode(vectors: np.ndarray, corrector: str | None = None, steps: int = 20) -> list[str]:
    """Invert vectors into text with vec2text (optional; needs the package and a matching corrector)."""
    try:
        import vec2text
    except ModuleNotFoundError as exc:
        raise DependencyMissingError(
            "vec2text decoding needs the `vec2text` package and a corrector model trained for this "
            "embedder (neither is installed); use nearest-concept decoding (the default) instead"
        ) from exc
    if corrector is None:
        raise DependencyMissingError(
            "vec2text needs a corrector model for this embedder: pass its local path with --corrector"
        )
    import torch

    model = vec2text.load_pretrained_corrector(corrector)
    texts = vec2text.invert_embeddings(
        embeddings=torch.from_numpy(np.asarray(vectors, dtype=np.float32)), corrector=model, num_steps=steps
    )
    return [str(t) for t in texts]
