"""A tiny LVM sequences file, as `tldrlab lvm sequences` writes it, for tests that submit or refuse one
(importable as `sequencesutil`)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from tldrlab.lvm.sequences import SequenceSet


def sequences_arrays(**changes: Any) -> dict[str, np.ndarray]:
    """The arrays of a tiny sequences NPZ (four 4-d concepts in two articles, one train and one val sequence
    of context 1), with `changes` (an array None: left out)."""
    arrays = {
        "vectors": np.eye(4, dtype=np.float32),
        "concept_ids": np.arange(4),
        "concept_article": np.array([0, 0, 1, 1]),
        "articles": np.array(["demo/a", "demo/b"]),
        "article_split": np.array([0, 1], dtype=np.int8),
        "context_index": np.array([[0], [2]]),
        "mask": np.array([[True], [True]]),
        "target_index": np.array([1, 3]),
        "sequence_article": np.array([0, 1]),
        "split": np.array([0, 1], dtype=np.int8),
        "meta": np.array(json.dumps({"context": 1})),
    }
    arrays.update(changes)
    return {name: array for name, array in arrays.items() if array is not None}


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """`arrays` as the bytes of an (uncompressed) NPZ."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # type: ignore[arg-type]
    return buffer.getvalue()


def write_tiny_sequences(path: Path) -> Path:
    """The tiny sequences of `sequences_arrays`, written by `SequenceSet.save` (a train and a val split)."""
    arrays = sequences_arrays()
    meta = json.loads(str(arrays.pop("meta")))
    path.parent.mkdir(parents=True, exist_ok=True)
    return SequenceSet(meta=meta, **arrays).save(path)
