"""The concept index: FAISS inner-product search over unit vectors, saved beside its vectors and concept ids.

Small collections get an exact `IndexFlatIP`; above `ivf_threshold` vectors an `IndexIVFFlat` with k-means
centroids trained on the vectors themselves (`nprobe` lists searched per query). FAISS stores row positions;
`ids[position]` maps a hit back to its concept in the store.

Directory layout: `index.faiss` (faiss.write_index), `vectors.npz` (vectors, ids), `index.json` (kind, dim,
count, embedder, nlist, nprobe, source).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tldrlab.errors import DimensionMismatchError, InvalidInputError, NotFoundError
from tldrlab.lvm.npz import FLOAT, INTEGER, read_npz, spec
from tldrlab.runs.atomic import atomic_write_json

INDEX_FILE = "index.faiss"
VECTORS_FILE = "vectors.npz"
META_FILE = "index.json"


@dataclass
class ConceptIndex:
    index: Any
    """The FAISS index (positions 0..n-1)."""
    vectors: np.ndarray
    """float32 (n, dim) in position order."""
    ids: np.ndarray
    """int64 concept id of each position."""
    meta: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.meta["kind"])

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def __len__(self) -> int:
        return len(self.ids)

    def search(
        self, queries: np.ndarray, k: int = 5, exclude: list[set[int]] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k concept ids and inner-product scores per query (queries are unit-normalised first).

        `exclude[i]` lists concept ids that query i may not return (e.g. its own context); the search asks
        FAISS for `k + len(exclude[i])` candidates so that k remain after filtering. Missing hits are -1.
        """
        queries = _unit(np.atleast_2d(np.asarray(queries, dtype=np.float32)))
        if queries.shape[1] != self.dim:
            raise DimensionMismatchError(f"query vectors are {queries.shape[1]}-d; the index is {self.dim}-d")
        extra = max((len(e) for e in exclude), default=0) if exclude else 0
        fetch = min(len(self), k + extra)
        scores, positions = self.index.search(queries, fetch)
        out_ids = np.full((len(queries), k), -1, dtype=np.int64)
        out_scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        for row in range(len(queries)):
            banned = exclude[row] if exclude else set()
            kept = 0
            for score, position in zip(scores[row], positions[row], strict=True):
                if position < 0:
                    continue
                concept = int(self.ids[position])
                if concept in banned:
                    continue
                out_ids[row, kept], out_scores[row, kept] = concept, score
                kept += 1
                if kept == k:
                    break
        return out_scores, out_ids

    def save(self, directory: Path | str) -> Path:
        import faiss

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        faiss.write_index(self.index, str(directory / INDEX_FILE))
        np.savez(directory / VECTORS_FILE, vectors=self.vectors, ids=self.ids)
        atomic_write_json(directory / META_FILE, self.meta)
        return directory


def _unit(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.ascontiguousarray(vectors / np.maximum(norms, 1e-12), dtype=np.float32)


def default_nlist(count: int) -> int:
    """About 4·sqrt(n) lists, but at least 39 training points per centroid (FAISS's own guideline)."""
    return max(1, min(int(4 * math.sqrt(count)), count // 39))


def build_index(
    vectors: np.ndarray,
    ids: np.ndarray,
    *,
    ivf_threshold: int = 50_000,
    nlist: int | None = None,
    nprobe: int = 16,
    seed: int = 0,
    extra_meta: dict[str, Any] | None = None,
) -> ConceptIndex:
    """Exact IndexFlatIP below `ivf_threshold` vectors, IVF-Flat (trained centroids) at or above it."""
    import faiss

    vectors = _unit(np.asarray(vectors, dtype=np.float32))
    ids = np.asarray(ids, dtype=np.int64)
    if vectors.ndim != 2 or len(vectors) == 0:
        raise InvalidInputError("cannot build an index from no vectors")
    if len(ids) != len(vectors):
        raise InvalidInputError(f"{len(vectors)} vectors but {len(ids)} ids")
    dim = vectors.shape[1]
    meta: dict[str, Any] = {"dim": int(dim), "count": len(vectors), **(extra_meta or {})}
    if len(vectors) < ivf_threshold:
        index: Any = faiss.IndexFlatIP(dim)
        meta.update(kind="flat_ip")
    else:
        nlist = nlist or default_nlist(len(vectors))
        if nlist > len(vectors):
            raise InvalidInputError(f"nlist {nlist} exceeds the {len(vectors)} vectors")
        quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = seed  # reproducible k-means
        index.train(vectors)
        index.nprobe = min(nprobe, nlist)
        meta.update(kind="ivf_flat_ip", nlist=int(nlist), nprobe=int(index.nprobe))
    index.add(vectors)
    return ConceptIndex(index=index, vectors=vectors, ids=ids, meta=meta)


INDEX_KINDS = ("flat_ip", "ivf_flat_ip")
"""The `kind`s `build_index` writes into index.json."""

INDEX_VECTORS_LAYOUT = {"vectors": spec("n d", FLOAT), "ids": spec("n", INTEGER)}
"""The arrays of an index's vectors.npz: n concept vectors of d dimensions and their concept ids."""

MISSING_INDEX = ": run `tldrlab lvm index` first"


def load_index(directory: Path | str) -> ConceptIndex:
    """The concept index `build_index` saved in `directory`; NotFoundError when there is none, and an
    InvalidInputError naming the file and what is wrong when a file of it is not what `save` writes (a
    directory of something else, a damaged index.json, vectors.npz or index.faiss, files that disagree)."""
    import faiss

    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise InvalidInputError(f"{directory} is a file, not a concept index directory (`tldrlab lvm index`)")
    if not (directory / META_FILE).exists():
        raise NotFoundError(f"no concept index in {directory}{MISSING_INDEX}")
    try:
        meta = json.loads((directory / META_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # a directory named index.json, bytes that are not UTF-8 JSON
        message = f"{directory / META_FILE} is not a concept index's {META_FILE}: {exc}"
        raise InvalidInputError(message) from exc
    if not isinstance(meta, dict) or meta.get("kind") not in INDEX_KINDS:
        kind = meta.get("kind") if isinstance(meta, dict) else None
        raise InvalidInputError(
            f"{directory / META_FILE} names no concept index tldrlab writes (kind {kind!r}; "
            f"expected {' or '.join(INDEX_KINDS)})"
        )
    what = "concept index vectors"
    arrays = read_npz(directory / VECTORS_FILE, INDEX_VECTORS_LAYOUT, what=what, missing_hint=MISSING_INDEX)
    vectors, ids = arrays["vectors"], arrays["ids"]
    path = directory / INDEX_FILE
    if not path.is_file():
        raise InvalidInputError(f"{directory} is not a whole concept index: {INDEX_FILE} is missing")
    try:
        index: Any = faiss.read_index(str(path))
    except RuntimeError as exc:  # FAISS's message ends with what it could not read
        reason = str(exc).rsplit(": ", 1)[-1]
        raise InvalidInputError(f"{path} is not a FAISS index: {reason}") from exc
    if index.ntotal != len(ids) or index.d != vectors.shape[1]:
        raise InvalidInputError(
            f"{path} does not match {VECTORS_FILE} beside it: {index.ntotal} vectors of {index.d} "
            f"dimensions, against {len(ids)} of {vectors.shape[1]}"
        )
    if meta["kind"] == "ivf_flat_ip":
        index.nprobe = int(meta.get("nprobe", 16))
    return ConceptIndex(index=index, vectors=vectors, ids=ids, meta=meta)
