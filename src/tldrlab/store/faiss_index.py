"""The FAISS side of the `sqlite_faiss` store: an id-mapped inner-product index, exact or approximate.

Small stores use exact search (`IndexIDMap2` over `IndexFlatIP`). Above `approximate_above` vectors the index
becomes an inverted file (`IndexIVFFlat`, inner product), which still supports adding and removing ids in
place; it is retrained from SQLite when the store has grown well past what it was trained on. A query vector
that equals a stored vector always lands in that vector's own list, so exact matches are still found.

The index is a cache of SQLite: `save` writes it with a sidecar JSON naming the store generation it reflects,
and `load` refuses a file whose generation, dimension or size do not match, so the store rebuilds it.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class FaissIndexConfig:
    """How the sqlite_faiss store indexes vectors."""

    approximate_above: int = 200_000
    """Use an approximate IVF index once the store holds more vectors than this; exact search below. Exact
    search over 100k vectors took ~26 ms p50 per query here (docs/stores.md), and per-thread highlight queries
    never use FAISS, so exactness is kept well past that."""
    nprobe: int = 32
    """IVF lists visited per query (recall vs speed; there are sqrt(n) lists)."""
    retrain_growth: float = 4.0
    """Retrain the IVF index when the store grows to this multiple of the size it was trained on."""
    train_points_per_list: int = 64
    """Training sample size per IVF list (k-means cost grows with it)."""
    save_every_s: float = 30.0
    """After writes, save the index file at most this often (always on close/flush); SQLite is the truth."""
    seed: int = 0
    """k-means seed, so rebuilding from the same data gives the same index."""
    search_threads: int = 1
    """OpenMP threads for one query. One is fastest for a single vector: on this shared 2-core machine a
    10k flat search took ~80 ms p50 with 2 threads (OpenMP barriers under load) and ~0.3 ms with 1."""


class SentenceIndex:
    """Id-mapped unit-vector index (inner product = cosine) that switches from exact to IVF by size."""

    def __init__(self, dim: int, config: FaissIndexConfig) -> None:
        self.dim = dim
        self.config = config
        self.kind = "flat"
        self.trained_on = 0
        self.index: Any = self._flat()

    def _flat(self) -> Any:
        import faiss

        return faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    def build(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Replace the index with one over exactly these vectors (exact or IVF depending on their number)."""
        import faiss

        n = len(ids)
        if n <= self.config.approximate_above:
            self.kind, self.trained_on, self.index = "flat", 0, self._flat()
        else:
            nlist = max(1, int(math.sqrt(n)))
            quantizer = faiss.IndexFlatIP(self.dim)
            index = faiss.IndexIVFFlat(quantizer, self.dim, nlist, faiss.METRIC_INNER_PRODUCT)
            sample = min(n, nlist * self.config.train_points_per_list)
            rng = np.random.default_rng(self.config.seed)
            rows = np.sort(rng.choice(n, size=sample, replace=False)) if sample < n else np.arange(n)
            index.cp.seed = self.config.seed
            index.train(np.ascontiguousarray(vectors[rows]))
            index.nprobe = min(self.config.nprobe, nlist)
            self.kind, self.trained_on, self.index = "ivf", n, index
        if n:
            self.add(ids, vectors)

    def needs_rebuild(self) -> bool:
        """True when the index type no longer suits the number of vectors it holds."""
        n = self.ntotal
        if self.kind == "flat":
            return n > self.config.approximate_above
        return n > self.trained_on * self.config.retrain_growth or n <= self.config.approximate_above // 2

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids):
            self.index.add_with_ids(
                np.ascontiguousarray(vectors, dtype=np.float32), np.asarray(ids, np.int64)
            )

    def remove(self, ids: list[int]) -> None:
        if ids:
            self.index.remove_ids(np.asarray(ids, dtype=np.int64))

    def search(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Scores and ids of the k nearest (ids of -1, meaning no result, are dropped)."""
        import faiss

        if self.ntotal == 0:
            return np.zeros(0, np.float32), np.zeros(0, np.int64)
        # omp_set_num_threads changes only the calling thread's OpenMP setting, so concurrent callers and
        # index builds elsewhere in the process keep theirs.
        previous = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(self.config.search_threads)
        try:
            query = np.ascontiguousarray(query, dtype=np.float32)
            scores, ids = self.index.search(query, min(k, self.ntotal))
        finally:
            faiss.omp_set_num_threads(previous)
        keep = ids[0] >= 0
        return scores[0][keep], ids[0][keep]

    def save(self, path: Path, generation: int) -> None:
        """Write the index and its sidecar atomically (sidecar last: a file without one is never trusted)."""
        import faiss

        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
        faiss.write_index(self.index, str(tmp))
        os.replace(tmp, path)
        meta = {
            "generation": generation,
            "dim": self.dim,
            "count": self.ntotal,
            "kind": self.kind,
            "trained_on": self.trained_on,
            "config": asdict(self.config),
        }
        sidecar = _sidecar(path)
        tmp_meta = sidecar.with_name(sidecar.name + f".{os.getpid()}.tmp")
        tmp_meta.write_text(json.dumps(meta))
        os.replace(tmp_meta, sidecar)

    def load(self, path: Path, generation: int, count: int) -> bool:
        """Load a saved index if it reflects exactly this store generation; False means rebuild it."""
        import faiss

        sidecar = _sidecar(path)
        if not path.exists() or not sidecar.exists():
            return False
        try:
            meta = json.loads(sidecar.read_text())
            if (meta.get("generation"), meta.get("dim"), meta.get("count")) != (generation, self.dim, count):
                return False
            index = faiss.read_index(str(path))
        except (ValueError, OSError, RuntimeError):  # corrupt or truncated file: FAISS raises RuntimeError
            return False
        if int(index.ntotal) != count or int(index.d) != self.dim:
            return False
        self.index, self.kind, self.trained_on = index, str(meta.get("kind", "flat")), int(meta["trained_on"])
        if self.kind == "ivf":
            index.nprobe = self.config.nprobe  # type: ignore[attr-defined]
        return True


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".json")
