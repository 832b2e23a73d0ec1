"""Training sequences: N context concepts -> the next concept, always inside one article.

Every position t >= `min_context` of an article becomes one example: the context is the (up to) N concepts
before t and the target is concept t. Contexts shorter than N (the start of every article, and whole articles
shorter than N+1) are left-padded with zero vectors and a False mask, so short articles still count; raise
`min_context` to N to keep only full windows. No window ever crosses an article boundary.

Articles, not examples, are split into train / val / test with a seeded shuffle, so no article contributes
to two splits. The NPZ stores the concept vectors once plus index arrays (a few MB instead of N copies):

    vectors (M, d) float32, concept_ids (M,), concept_article (M,), articles (A,) str, article_split (A,)
    context_index (n, N) row of `vectors` or -1, mask (n, N) bool, target_index (n,), sequence_article (n,),
    split (n,) 0 train / 1 val / 2 test, meta (JSON string)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tldrlab.errors import InvalidInputError, NotFoundError
from tldrlab.lvm.store import ConceptTable

SPLITS = {"train": 0, "val": 1, "test": 2}


@dataclass
class SplitArrays:
    """One split materialised for training or evaluation."""

    contexts: np.ndarray
    """float32 (n, N, d); padded positions are zero."""
    mask: np.ndarray
    """bool (n, N): True where the context position holds a real concept."""
    targets: np.ndarray
    """float32 (n, d)."""
    target_ids: np.ndarray
    """int64 (n,) concept ids of the targets."""
    context_ids: np.ndarray
    """int64 (n, N) concept ids of the context (-1 where padded)."""
    article: np.ndarray
    """int64 (n,) article index of each example."""

    def __len__(self) -> int:
        return len(self.targets)


@dataclass
class SequenceSet:
    vectors: np.ndarray
    concept_ids: np.ndarray
    concept_article: np.ndarray
    articles: np.ndarray
    article_split: np.ndarray
    context_index: np.ndarray
    mask: np.ndarray
    target_index: np.ndarray
    sequence_article: np.ndarray
    split: np.ndarray
    meta: dict[str, Any]

    @property
    def context(self) -> int:
        return int(self.context_index.shape[1])

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def split_arrays(self, name: str) -> SplitArrays:
        if name not in SPLITS:
            raise InvalidInputError(f"unknown split {name!r}; choose one of {', '.join(SPLITS)}")
        rows = np.flatnonzero(self.split == SPLITS[name])
        index = self.context_index[rows]
        padded = np.concatenate([self.vectors, np.zeros((1, self.dim), dtype=np.float32)])
        contexts = padded[np.where(index < 0, len(self.vectors), index)]
        targets = self.vectors[self.target_index[rows]]
        ids_padded = np.concatenate([self.concept_ids, np.array([-1], dtype=np.int64)])
        return SplitArrays(
            contexts=contexts.astype(np.float32),
            mask=self.mask[rows],
            targets=targets.astype(np.float32),
            target_ids=self.concept_ids[self.target_index[rows]],
            context_ids=ids_padded[np.where(index < 0, len(self.vectors), index)],
            article=self.sequence_article[rows],
        )

    def candidate_rows(self, name: str) -> np.ndarray:
        """Rows of `vectors` belonging to the articles of a split (the retrieval candidates)."""
        articles = np.flatnonzero(self.article_split == SPLITS[name])
        return np.flatnonzero(np.isin(self.concept_article, articles))

    def save(self, path: Path | str) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez_compressed(
            tmp,
            vectors=self.vectors,
            concept_ids=self.concept_ids,
            concept_article=self.concept_article,
            articles=self.articles,
            article_split=self.article_split,
            context_index=self.context_index,
            mask=self.mask,
            target_index=self.target_index,
            sequence_article=self.sequence_article,
            split=self.split,
            meta=np.array(json.dumps(self.meta)),
        )
        tmp.replace(path)  # readers never see half a file
        return path


def build_sequences(
    table: ConceptTable,
    *,
    context: int = 5,
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    min_context: int = 1,
    meta: dict[str, Any] | None = None,
) -> SequenceSet:
    """Article-bounded (context -> next) examples with an article-level train/val/test split."""
    if context < 1:
        raise InvalidInputError(f"context must be >= 1, got {context}")
    if not 1 <= min_context <= context:
        raise InvalidInputError(
            f"min_context must be between 1 and the context ({context}), got {min_context}"
        )
    if val_fraction < 0 or test_fraction <= 0 or val_fraction + test_fraction >= 1:
        raise InvalidInputError("need 0 <= val_fraction, 0 < test_fraction and their sum below 1")
    keys = table.article_keys
    articles = sorted(set(keys))
    if len(articles) < 3:
        raise InvalidInputError(
            f"need at least 3 articles to split train/val/test by article; the store has {len(articles)}"
        )
    article_of = {key: i for i, key in enumerate(articles)}
    concept_article = np.array([article_of[k] for k in keys], dtype=np.int64)

    rng = np.random.default_rng(seed)
    order = rng.permutation(len(articles))
    n_test = max(1, round(test_fraction * len(articles)))
    n_val = max(1, round(val_fraction * len(articles))) if val_fraction > 0 else 0
    if n_test + n_val >= len(articles):
        raise InvalidInputError(f"{len(articles)} articles are too few for the requested val/test fractions")
    article_split = np.zeros(len(articles), dtype=np.int8)
    article_split[order[:n_test]] = SPLITS["test"]
    article_split[order[n_test : n_test + n_val]] = SPLITS["val"]

    context_rows: list[np.ndarray] = []
    targets: list[int] = []
    seq_article: list[int] = []
    # rows of one article are contiguous and in position order (the store loads them that way)
    boundaries = np.flatnonzero(np.diff(concept_article)) + 1
    for rows in np.split(np.arange(len(keys)), boundaries):
        if len(rows) and np.any(np.diff(table.positions[rows]) <= 0):
            raise InvalidInputError("concepts of an article are not in position order")
        for t in range(min_context, len(rows)):
            window = rows[max(0, t - context) : t]
            padded = np.full(context, -1, dtype=np.int64)
            padded[context - len(window) :] = window
            context_rows.append(padded)
            targets.append(int(rows[t]))
            seq_article.append(int(concept_article[rows[t]]))
    if not targets:
        raise InvalidInputError(f"no article has more than {min_context} concepts: no sequences to build")
    context_index = np.stack(context_rows)
    sequence_article = np.array(seq_article, dtype=np.int64)
    return SequenceSet(
        vectors=table.vectors.astype(np.float32),
        concept_ids=table.ids.astype(np.int64),
        concept_article=concept_article,
        articles=np.array(articles),
        article_split=article_split,
        context_index=context_index,
        mask=context_index >= 0,
        target_index=np.array(targets, dtype=np.int64),
        sequence_article=sequence_article,
        split=article_split[sequence_article],
        meta={
            "context": context,
            "seed": seed,
            "min_context": min_context,
            "val_fraction": val_fraction,
            "test_fraction": test_fraction,
            "embedder": table.embedder,
            "articles": {name: int((article_split == code).sum()) for name, code in SPLITS.items()},
            "sequences": {
                name: int((article_split[sequence_article] == c).sum()) for name, c in SPLITS.items()
            },
            **(meta or {}),
        },
    )


def load_sequences(path: Path | str) -> SequenceSet:
    path = Path(path)
    if not path.exists():
        raise NotFoundError(f"no sequences file {path}: run `tldrlab lvm sequences` first")
    try:
        with np.load(path, allow_pickle=False) as data:
            fields = {name: data[name] for name in data.files}
    except (OSError, ValueError) as exc:
        raise InvalidInputError(f"{path} is not a tldrlab sequences NPZ: {exc}") from exc
    missing = {"vectors", "context_index", "mask", "target_index", "split", "meta"} - set(fields)
    if missing:
        raise InvalidInputError(f"{path} lacks {', '.join(sorted(missing))}: not a tldrlab sequences file")
    meta = json.loads(str(fields.pop("meta")))
    return SequenceSet(meta=meta, **fields)
