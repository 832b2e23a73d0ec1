"""Training sequences: N context concepts -> the next concept, always inside one article.

Every position t >= `min_context` of an article becomes one example: the context is the (up to) N concepts
before t and the target is concept t. Contexts shorter than N (the start of every article, and whole articles
shorter than N+1) are left-padded with zero vectors and a False mask, so short articles still count; raise
`min_context` to N to keep only full windows. No window ever crosses an article boundary.

Articles, not examples, are split into train / val / test with a seeded shuffle, so no article contributes
to two splits. With a `cross_source`, every article of that source (another corpus) forms a fourth split,
`cross`, and only the other sources' articles are shuffled into train / val / test: a model trained on one
corpus is then also scored on a corpus it never saw. The NPZ stores the concept vectors once plus index
arrays (a few MB instead of N copies):

    vectors (M, d) float32, concept_ids (M,), concept_article (M,), articles (A,) str, article_split (A,)
    context_index (n, N) row of `vectors` or -1, mask (n, N) bool, target_index (n,), sequence_article (n,),
    split (n,) 0 train / 1 val / 2 test / 3 cross, meta (JSON string),
    concept_tmd (M, 30) uint8 one-hot TMD labels (only when every concept is labelled)
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tldrlab.choices import unknown_choice
from tldrlab.errors import InvalidConfigError, InvalidInputError, NotFoundError, refused_at
from tldrlab.lvm.config import (
    LVMEvaluateConfig,
    LVMGenerateConfig,
    LVMIndexConfig,
    LVMTrainJobConfig,
    SequencesConfig,
    default_sequences,
)
from tldrlab.lvm.index import INDEX_FILE, META_FILE, VECTORS_FILE
from tldrlab.lvm.npz import BOOL, FLOAT, INTEGER, STRING, read_npz, spec
from tldrlab.lvm.store import (
    ConceptStore,
    ConceptTable,
    check_concept_store,
    default_store_url,
    no_concepts,
    open_stored_concepts,
)
from tldrlab.lvm.tmd import tmd_features
from tldrlab.report import Report
from tldrlab.runs.db import sqlite_path
from tldrlab.runs.registry import a_kind_run, open_registry
from tldrlab.runs.run import MANIFEST, Run, read_manifest

SPLITS = {"train": 0, "val": 1, "test": 2, "cross": 3}
"""Split codes. `cross`: the articles of another corpus (`cross_source`), never trained or tuned on."""


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
    context_tmd: np.ndarray | None = None
    """float32 (n, N, TMD_DIM) one-hot TMD labels of the context concepts (zero where padded); None when the
    concepts were not labelled."""

    def __len__(self) -> int:
        return len(self.targets)

    def sample(self, limit: int, seed: int) -> SplitArrays:
        """At most `limit` examples drawn without replacement (seeded), kept in their original order."""
        if len(self) <= limit:
            return self
        rows = np.sort(np.random.default_rng(seed).choice(len(self), size=limit, replace=False))
        return SplitArrays(
            contexts=self.contexts[rows],
            mask=self.mask[rows],
            targets=self.targets[rows],
            target_ids=self.target_ids[rows],
            context_ids=self.context_ids[rows],
            article=self.article[rows],
            context_tmd=self.context_tmd[rows] if self.context_tmd is not None else None,
        )


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
    concept_tmd: np.ndarray | None = None
    """uint8 (M, TMD_DIM) one-hot TMD labels of each concept (tldrlab.lvm.tmd) when all are labelled."""

    @property
    def context(self) -> int:
        return int(self.context_index.shape[1])

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def split_arrays(self, name: str) -> SplitArrays:
        if name not in SPLITS:
            raise InvalidInputError(unknown_choice("split", name, SPLITS))
        rows = np.flatnonzero(self.split == SPLITS[name])
        index = self.context_index[rows]
        padded = np.concatenate([self.vectors, np.zeros((1, self.dim), dtype=np.float32)])
        contexts = padded[np.where(index < 0, len(self.vectors), index)]
        targets = self.vectors[self.target_index[rows]]
        ids_padded = np.concatenate([self.concept_ids, np.array([-1], dtype=np.int64)])
        context_tmd = None
        if self.concept_tmd is not None:
            tmd_padded = np.concatenate(
                [self.concept_tmd, np.zeros((1, self.concept_tmd.shape[1]), np.uint8)]
            )
            context_tmd = tmd_padded[np.where(index < 0, len(self.vectors), index)].astype(np.float32)
        return SplitArrays(
            contexts=contexts.astype(np.float32),
            mask=self.mask[rows],
            targets=targets.astype(np.float32),
            target_ids=self.concept_ids[self.target_index[rows]],
            context_ids=ids_padded[np.where(index < 0, len(self.vectors), index)],
            article=self.sequence_article[rows],
            context_tmd=context_tmd,
        )

    def split_names(self) -> list[str]:
        """The splits that hold at least one sequence, in SPLITS order."""
        return [name for name, code in SPLITS.items() if (self.split == code).any()]

    def split_articles(self, name: str) -> list[str]:
        """The keys (`<source>/<article>`) of the articles of a split."""
        return [str(key) for key in self.articles[self.article_split == SPLITS[name]]]

    def candidate_rows(self, name: str) -> np.ndarray:
        """Rows of `vectors` belonging to the articles of a split (the retrieval candidates)."""
        articles = np.flatnonzero(self.article_split == SPLITS[name])
        return np.flatnonzero(np.isin(self.concept_article, articles))

    def save(self, path: Path | str) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npz")
        arrays: dict[str, np.ndarray] = {
            "vectors": self.vectors,
            "concept_ids": self.concept_ids,
            "concept_article": self.concept_article,
            "articles": self.articles,
            "article_split": self.article_split,
            "context_index": self.context_index,
            "mask": self.mask,
            "target_index": self.target_index,
            "sequence_article": self.sequence_article,
            "split": self.split,
            "meta": np.array(json.dumps(self.meta)),
        }
        if self.concept_tmd is not None:
            arrays["concept_tmd"] = self.concept_tmd
        np.savez_compressed(tmp, **arrays)  # type: ignore[arg-type]
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
    cross_source: str | None = None,
    meta: dict[str, Any] | None = None,
) -> SequenceSet:
    """Article-bounded (context -> next) examples with an article-level train/val/test split.

    `cross_source`: the articles of this source (keys `<source>/<article>`) become the `cross` split and
    the rest are split train / val / test (`test_fraction` may then be 0: the cross corpus is the test).
    """
    if context < 1:
        raise InvalidInputError(f"context must be >= 1, got {context}")
    if not 1 <= min_context <= context:
        raise InvalidInputError(
            f"min_context must be between 1 and the context ({context}), got {min_context}"
        )
    min_test = 0.0 if cross_source else 1e-12
    if val_fraction < 0 or test_fraction < min_test or val_fraction + test_fraction >= 1:
        raise InvalidInputError(
            "need 0 <= val_fraction, 0 < test_fraction (0 allowed with a cross source) and their sum below 1"
        )
    keys = table.article_keys
    articles = sorted(set(keys))
    article_of = {key: i for i, key in enumerate(articles)}
    concept_article = np.array([article_of[k] for k in keys], dtype=np.int64)
    article_split = np.zeros(len(articles), dtype=np.int8)
    is_cross = np.array([bool(cross_source) and a.startswith(f"{cross_source}/") for a in articles])
    if cross_source and not is_cross.any():
        raise InvalidInputError(f"no article of the cross source {cross_source!r} among the concepts")
    article_split[is_cross] = SPLITS["cross"]
    own = np.flatnonzero(~is_cross)  # the training corpus: split train / val / test as without a cross source
    needed = 1 + (test_fraction > 0) + (val_fraction > 0)
    if len(own) < max(needed, 1 if cross_source else 3):
        raise InvalidInputError(
            f"need at least {needed} articles besides the cross source to split train/val/test by article; "
            f"there are {len(own)}"
            if cross_source
            else f"need at least 3 articles to split train/val/test by article; the store has {len(own)}"
        )

    rng = np.random.default_rng(seed)
    order = own[rng.permutation(len(own))]
    n_test = max(1, round(test_fraction * len(own))) if test_fraction > 0 else 0
    n_val = max(1, round(val_fraction * len(own))) if val_fraction > 0 else 0
    if n_test + n_val >= len(own):
        raise InvalidInputError(f"{len(own)} articles are too few for the requested val/test fractions")
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
    labelled = table.tmd is not None and all(label is not None for label in table.tmd)
    return SequenceSet(
        concept_tmd=tmd_features(list(table.tmd or [])).astype(np.uint8) if labelled else None,
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
            "cross_source": cross_source,
            "embedder": table.embedder,
            "articles": {name: int((article_split == code).sum()) for name, code in SPLITS.items()},
            "sequences": {
                name: int((article_split[sequence_article] == c).sum()) for name, c in SPLITS.items()
            },
            **(meta or {}),
        },
    )


def title_pattern(title: str) -> re.Pattern[str]:
    """A case- and space-insensitive pattern of a title; `<unk>` (a word WikiText left out) matches any
    word."""
    words = title.casefold().split()
    parts = [r"\S+" if w == "<unk>" else re.escape(w) for w in words]
    return re.compile(r"\s+".join(parts))


def shared_titles(titles: list[str], other_titles: list[str]) -> list[tuple[str, str]]:
    """Pairs (title, other title) naming the same article, up to case, spacing and `<unk>` words."""
    plain = {" ".join(t.casefold().split()): t for t in titles}
    pairs = []
    for other in other_titles:
        pattern = title_pattern(other)
        if "<unk>" not in other.casefold():
            found = plain.get(" ".join(other.casefold().split()))
            if found is not None:
                pairs.append((found, other))
            continue
        pairs.extend((title, other) for key, title in plain.items() if pattern.fullmatch(key))
    return pairs


def near_duplicates(vectors: np.ndarray, others: np.ndarray, threshold: float = 0.95) -> int:
    """How many rows of `vectors` have a row of `others` with cosine >= threshold (both unit-normalised)."""
    if len(vectors) == 0 or len(others) == 0:
        return 0
    found = 0
    for start in range(0, len(vectors), 2048):
        block = vectors[start : start + 2048] @ others.T
        found += int((block.max(1) >= threshold).sum())
    return found


SEQUENCES_LAYOUT = {
    "vectors": spec("M d", FLOAT),
    "concept_ids": spec("M", INTEGER),
    "concept_article": spec("M", INTEGER),
    "articles": spec("A", STRING),
    "article_split": spec("A", INTEGER),
    "context_index": spec("n N", INTEGER),
    "mask": spec("n N", BOOL),
    "target_index": spec("n", INTEGER),
    "sequence_article": spec("n", INTEGER),
    "split": spec("n", INTEGER),
    "meta": spec("", STRING),
    "concept_tmd": spec("M t", ("iub", "integer"), required=False),
}
"""The arrays of a sequences NPZ (the module docstring): M concepts of d dimensions in A articles, n sequences
of N context positions."""

MISSING_SEQUENCES = ": run `tldrlab lvm sequences` first"


def read_sequences_arrays(path: Path | str, read: Iterable[str] | None = None) -> dict[str, np.ndarray]:
    """The arrays `read` (default: all) of the sequences NPZ `path` (`tldrlab.lvm.npz.read_npz`: a file that
    is not one, or holds arrays of another layout, is refused naming the file and what is wrong)."""
    return read_npz(path, SEQUENCES_LAYOUT, what="sequences", missing_hint=MISSING_SEQUENCES, read=read)


def _refuse_out_of_range(path: Path, fields: dict[str, np.ndarray]) -> None:
    """A row index pointing past its table would be an IndexError (or a wrong row) deep in a run."""
    concepts, articles = len(fields["vectors"]), len(fields["articles"])
    bounds = {
        "context_index": (-1, concepts),
        "target_index": (0, concepts),
        "concept_article": (0, articles),
        "sequence_article": (0, articles),
        "split": (0, len(SPLITS)),
        "article_split": (0, len(SPLITS)),
    }
    for name, (low, end) in bounds.items():
        values = fields[name]
        if values.size and (values.min() < low or values.max() >= end):
            raise InvalidInputError(
                f"{path} is not a valid sequences file: {name} holds values outside {low}..{end - 1}"
            )


def load_sequences(path: Path | str) -> SequenceSet:
    path = Path(path)
    fields = read_sequences_arrays(path)
    _refuse_out_of_range(path, fields)
    try:
        meta = json.loads(str(fields.pop("meta")))
    except ValueError as exc:
        message = f"{path} is not a valid sequences file: its meta is not JSON ({exc})"
        raise InvalidInputError(message) from exc
    if not isinstance(meta, dict):
        raise InvalidInputError(f"{path} is not a valid sequences file: its meta is not a JSON object")
    return SequenceSet(meta=meta, **fields)


def splits_with_sequences(path: Path | str) -> list[str]:
    """The splits of the sequences file `path` that hold at least one sequence, in SPLITS order, reading
    only its split codes (not the vectors; every array's layout is checked from its header): what a command
    checks before its run exists."""
    codes = read_sequences_arrays(path, read=("split",))["split"]
    return [name for name, code in SPLITS.items() if (codes == code).any()]


def missing_split(split: str, path: Path | str, has: list[str]) -> InvalidInputError:
    """The one-line refusal of a measurement on a split the sequences `path` lack (`has`: the splits they
    have), naming the `--split` values that would measure. Sequences built with `--val 0` have no `val`, the
    split measured when none is named; one corpus's have no `cross`."""
    named = " or ".join(f"--split {name}" for name in has if name != "train")
    message = (
        f"the {split} split of {path} has no sequences (splits with sequences: {', '.join(has) or 'none'})"
    )
    if split == "val":  # a test split is only reported, never chosen by: rebuilding is the way to measure
        message += "; rebuild them with validation articles to measure (`tldrlab lvm sequences --val 0.1`)"
        message += f", or name a split they have to report it: {named}" if named else ""
    elif named:
        message += f"; name a split they have: {named}"
    return InvalidInputError(message)


TRAINED_ARTICLES = "trained_articles.json"
"""Beside a trained LVM (its run directory, and the model directory the run saves): the keys of the articles
it trained on (`train`) and of those its checkpoint was picked on (`val`), and the sequences file they were
read from. `lvm sequences` writes its file again in place, splitting the articles anew (another seed, other
articles): an evaluation on the file read as it is now scored the model on articles it trained on."""


def trained_articles(sequences: SequenceSet, path: Path | str) -> dict[str, Any]:
    """What TRAINED_ARTICLES holds for a training on `sequences` (read from `path`)."""
    return {
        "sequences": str(path),
        "train": sequences.split_articles("train"),
        "val": sequences.split_articles("val"),
    }


def read_trained_articles(path: Path) -> dict[str, Any] | None:
    """The TRAINED_ARTICLES file `path` (None when there is none)."""
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise InvalidInputError(f"{path} is not a trained LVM's {TRAINED_ARTICLES}: {exc}") from exc
    if not isinstance(record, dict) or not all(isinstance(record.get(k), list) for k in ("train", "val")):
        raise InvalidInputError(f"{path} is not a trained LVM's {TRAINED_ARTICLES}: no train and val lists")
    return record


def seen_articles_refusal(name: str, record: dict[str, Any], path: Path | str, split: str) -> str | None:
    """Why the model `name` (trained as `record`, a TRAINED_ARTICLES) cannot be scored on `split` of the
    sequences `path`, or None when it can: the split holds articles it trained on, or, for a test split,
    articles its checkpoint was picked on (scored on validation, the model's own validation articles are what
    is meant). Reads only the articles and their splits."""
    fields = read_sequences_arrays(path, read=("articles", "article_split"))
    scored = [str(key) for key in fields["articles"][fields["article_split"] == SPLITS[split]]]
    seen = {"trained on": set(record["train"])}
    if split != "val":
        seen["picked its checkpoint on"] = set(record["val"])
    found = [(how, [key for key in scored if key in keys]) for how, keys in seen.items()]
    found = [(how, keys) for how, keys in found if keys]
    if not found:
        return None
    said = " and ".join(f"{how} {len(keys)}" for how, keys in found)
    example = found[0][1][0]
    return (
        f"{name} {said} of the {len(scored)} {split} articles of {path} (such as {example}): the sequences "
        f"were built again since it trained (other articles or another split); evaluate it on the sequences "
        f"it trained with ({record.get('sequences')}, as they were), or train it again on these"
    )


NEAR_DUPLICATE_COSINE = 0.95
"""A cross-corpus concept this close to a training-corpus concept is counted as a near duplicate."""


def require_sources(store: ConceptStore, names: Iterable[str | None]) -> dict[str, int]:
    """The store's sources (concepts per source); NotFoundError if it holds none or lacks one of `names`."""
    known = store.sources()
    if not known:
        raise no_concepts(store.url)
    for name in names:
        if name is not None and name not in known:
            raise NotFoundError(
                f"no concepts of source {name!r} in the store (sources: {', '.join(known)}); "
                "ingest it first with `tldrlab lvm ingest`"
            )
    return known


def refuse_out_over_inputs(config: SequencesConfig) -> None:
    """The sequences are not written over a file of a concept index (`index.faiss`, `vectors.npz` or
    `index.json` in a directory holding an index), nor over the SQLite store they are read from (or its
    journal): `lvm sequences --out <home>/lvm/index/vectors.npz` replaced the index's vectors, exit 0, and
    every later search failed. InvalidInputError at `out` before anything is read or written."""
    out = Path(config.out).resolve()
    index_files = (INDEX_FILE, VECTORS_FILE, META_FILE)
    if out.name in index_files and any((out.parent / name).is_file() for name in index_files):
        raise InvalidInputError.at(
            "out",
            f"{config.out} is a file of the concept index in {out.parent}: write the sequences somewhere "
            "else (it was left as it was)",
        )
    if _is_store_file(out, config.store_url):
        raise InvalidInputError.at(
            "out",
            f"{config.out} is the concept store it reads: write the sequences somewhere else (it was "
            "left as it was)",
        )


def _sqlite_store(store_url: str | None) -> Path | None:
    """The file of the SQLite concept store `store_url` names (None: the default one); None: PostgreSQL."""
    url = store_url or default_store_url()
    return sqlite_path(url) if url.startswith("sqlite:///") else None


def _is_store_file(path: Path, store_url: str | None) -> bool:
    """Whether `path` (resolved) is the SQLite concept store's file or one of its journals."""
    store = _sqlite_store(store_url)
    if store is None:
        return False
    store = store.resolve()
    journals = {store.name + end for end in ("", "-wal", "-shm", "-journal")}
    return path.parent == store.parent and path.name in journals


def refuse_index_out_over_inputs(config: LVMIndexConfig) -> None:
    """The index is not written over the SQLite store it is built from: `lvm index --db sqlite:///d/x.db
    --out d/x.db` (a store outside the home, which the home's guard does not cover) failed its run with a
    FileExistsError traceback, `--out d/x.db-wal` made a directory where SQLite keeps the store's journal,
    and a store named like a file of the index (`d/vectors.npz`) was replaced by the index's vectors, exit
    0. An `--out` that is any other file was the same traceback. InvalidInputError at `out` before a run
    exists."""
    if config.out is None:  # the home's index directory: the home's own guard keeps its files apart
        return
    out = Path(config.out).resolve()
    if _is_store_file(out, config.store_url):
        raise InvalidInputError.at(
            "out",
            f"{config.out} is the concept store it reads: give a directory for the index (the store was "
            "left as it was)",
        )
    store = _sqlite_store(config.store_url)
    if (
        store is not None
        and store.resolve().parent == out
        and store.name in (INDEX_FILE, VECTORS_FILE, META_FILE)
    ):
        raise InvalidInputError.at(
            "out",
            f"{store}, the concept store it reads, would be replaced by the index's {store.name}: give "
            "another directory for the index (the store was left as it was)",
        )
    if out.exists() and not out.is_dir():
        raise InvalidInputError.at("out", f"{config.out} is a file: give a directory for the index")


def check_store(config: SequencesConfig | LVMIndexConfig) -> None:
    """The check of `lvm_sequences` and `lvm_index` before a run is created (command line and API alike): the
    store holds the concepts they read. Run out of order (before any ingest, or naming a source not ingested)
    each left a failed run behind. A SQLite store that is not there, or is no concept store (the run
    registry), is refused without opening it (`check_concept_store`): opening created an empty
    `lvm/concepts.db` (and its directory) as a side effect of the refusal, or added the concept tables to
    the database named. The sequences' `out` is none of the files of an index or the store
    (`refuse_out_over_inputs`), the index's `out` no file of the store (`refuse_index_out_over_inputs`)."""
    if isinstance(config, SequencesConfig):
        refuse_out_over_inputs(config)
    else:
        refuse_index_out_over_inputs(config)
    store = open_stored_concepts(config.store_url)
    try:
        require_sources(store, ())  # a store holding nothing: no field of the config to point at
        for field in ("source", "test_source"):
            with refused_at(field):
                require_sources(store, (getattr(config, field, None),))
    finally:
        store.close()


LVM_TRAIN = "lvm_train"
"""The kind of the runs that train LVMs (sweep trials of the `lvm` program too)."""


def named_run(ref: str) -> tuple[str, str | None] | None:
    """(id, kind) of the run an LVM reference names: a run directory (what the API makes of `run:<id>`), its
    `model/` or its `checkpoints/best` (the run directory's manifest says the kind), else a run id or unique
    prefix in the registry; None when it names no run (a model directory of its own, a mistyped id: loading
    it says which). Torch-free: the API asks at submit what the run asks again when it loads the model."""
    path = Path(ref)
    if path.exists():
        run_dirs = [path]
        if path.name == "model":
            run_dirs.append(path.parent)
        if path.parts[-2:] == ("checkpoints", "best"):
            run_dirs.append(path.parent.parent)
        for run_dir in run_dirs:
            if (run_dir / MANIFEST).is_file():
                return run_dir.name, read_manifest(run_dir).get("kind")
        return None
    try:
        record = open_registry().find(ref)
    except NotFoundError:  # an ambiguous prefix too: loading it says so
        return None
    return record.id, record.kind


def lvm_train_refusal(run_id: str, kind: str | None) -> str:
    """Why run `run_id`, of another `kind` than lvm_train, is no trained LVM (what refuses the field naming
    it)."""
    return f"run {run_id} is {a_kind_run(kind)}, not an {LVM_TRAIN} run: give the id of an {LVM_TRAIN} run"


def lvm_run_fields(config: LVMEvaluateConfig | LVMGenerateConfig) -> list[tuple[tuple[str, ...], str]]:
    """(field, run reference) of each trained LVM the config names: `runs.<i>` of lvm_evaluate, `run` of
    lvm_generate."""
    if isinstance(config, LVMEvaluateConfig):
        return [(("runs", str(i)), ref) for i, ref in enumerate(config.runs)]
    return [(("run",), config.run)]


def check_lvm_runs(config: LVMEvaluateConfig | LVMGenerateConfig) -> None:
    """Every run the config names whose kind is known now (it exists, whatever its status) is an lvm_train
    run: another kind's (a smoke run's) was accepted over the API and failed in the run with "KeyError:
    'sequences'". A queued or running lvm_train run is taken: its model comes when it completes (the run
    checks it then)."""
    refused = [
        (field, lvm_train_refusal(*named))
        for field, ref in lvm_run_fields(config)
        if (named := named_run(ref)) is not None and named[1] != LVM_TRAIN
    ]
    if refused:
        raise InvalidConfigError.at_fields(refused)


def check_lvm_inputs(config: LVMEvaluateConfig | LVMGenerateConfig) -> None:
    """The check of `lvm_evaluate` and `lvm_generate` before a run is created (command line and API alike):
    the runs named are lvm_train runs (`check_lvm_runs`), the sequences read are there
    (`check_default_sequences`), and the store `lvm_generate` decodes into is a concept store, or none yet
    (`check_concept_store`: `lvm generate --measure --db` naming the run registry added the concept tables
    to it; over the API an ingest queued before may make the store, a command line's `check_models` wants
    it there)."""
    check_lvm_runs(config)
    check_default_sequences(config)
    if isinstance(config, LVMGenerateConfig):
        check_concept_store(config.store_url, missing_ok=True)


def check_default_sequences(config: LVMEvaluateConfig | LVMGenerateConfig) -> None:
    """Part of the check of `lvm_evaluate` and `lvm_generate` before a run is created (`check_lvm_inputs`):
    with no `sequences` and no run to take them from, the home's <home>/lvm/sequences.npz is read, which must
    be there (`lvm_evaluate {}` before any `tldrlab lvm sequences` was accepted, then failed); sequences
    known now must hold the split to measure (the default `val` of sequences built with `--val 0` was
    accepted over the API, then failed in the run). A run's own sequences, and that it has saved its model,
    are the command line's `check_models` (over the API the run may still be training); that it is an
    lvm_train run is `check_lvm_runs`."""
    runs = config.runs if isinstance(config, LVMEvaluateConfig) else [config.run]
    if config.sequences is not None:
        path = Path(config.sequences)
    elif not runs:
        path = default_sequences()
    else:
        return
    # the home's sequences, read when the config names none, are no field's
    with refused_at("sequences") if config.sequences is not None else nullcontext():
        if not path.exists():  # a directory is refused by the read below, naming it
            raise NotFoundError(
                f"no sequences file {path}: run `tldrlab lvm sequences` first, give sequences, or name "
                "trained runs"
            )
        has = splits_with_sequences(path)
    if config.split not in has:
        raise missing_split(config.split, path, has).placed("split")


def check_sequences_file(config: LVMTrainJobConfig) -> None:
    """The check of `lvm_train` before a run is created (command line and API alike): its sequences file is
    there (a training started before `tldrlab lvm sequences` failed once it loaded them, and stayed behind as
    a failed run) and is a sequences NPZ (an empty or truncated file, or another kind of NPZ, was queued to
    fail in the run)."""
    if config.sequences:
        with refused_at("sequences"):
            splits_with_sequences(config.sequences)


def sequences_from_store(config: SequencesConfig, run: Run | None = None) -> SequenceSet:
    """Load the concepts, check a cross corpus really is unseen, build, save and return the sequences.

    With `test_source`, an article of the test source whose title names a training article (up to case,
    spacing and WikiText's `<unk>` words) is refused: the test would not be on unseen text. Concepts of the
    test source that nearly repeat a training concept (cosine >= NEAR_DUPLICATE_COSINE) are counted in the
    meta (headings such as "History" are expected there; whole articles are not).
    """
    cross = config.test_source
    if cross is not None and cross == config.source:
        raise InvalidInputError(f"the test source {cross!r} is also the training source: choose another one")
    store = open_stored_concepts(config.store_url)
    try:
        known = require_sources(store, (config.source, cross))
        if cross is None:
            table = store.load(config.source)
            overlap: list[tuple[str, str]] = []
        else:
            own = [config.source] if config.source else [name for name in known if name != cross]
            if not own:
                raise InvalidInputError(f"the store holds no source besides the test source {cross!r}")
            table = store.load([*own, cross])
            titles = [a.title or a.article_id for name in own for a in store.articles(name)]
            overlap = shared_titles(titles, [a.title or a.article_id for a in store.articles(cross)])
    finally:
        store.close()
    if overlap:
        shown = "; ".join(f"{a!r} ~ {b!r}" for a, b in overlap[:5])
        raise InvalidInputError(
            f"{len(overlap)} article(s) of the test source {cross!r} share a title with training articles "
            f"({shown}): the cross-corpus test would not be unseen; remove them from one of the sources"
        )
    built = build_sequences(
        table,
        context=config.context,
        seed=config.seed,
        val_fraction=config.val_fraction,
        test_fraction=config.test_fraction,
        min_context=config.min_context,
        cross_source=cross,
        meta={"source": config.source, "test_source": cross},
    )
    if cross is not None:
        crossing = built.article_split[built.concept_article] == SPLITS["cross"]
        built.meta["cross_near_duplicates"] = {
            "cosine": NEAR_DUPLICATE_COSINE,
            "concepts": near_duplicates(built.vectors[crossing], built.vectors[~crossing]),
            "of": int(crossing.sum()),
        }
    built.save(config.out)
    if run is not None:
        run.set_summary(**{f"{k}_sequences": v for k, v in built.meta["sequences"].items()})
    return built


def lvm_sequences_job(run: Run, config: SequencesConfig) -> dict[str, Any]:
    """Run kind `lvm_sequences`: the split counts (and the cross split's near duplicates, if any)."""
    built = sequences_from_store(config, run)
    return {
        "articles": built.meta["articles"],
        "sequences": built.meta["sequences"],
        "cross_near_duplicates": built.meta.get("cross_near_duplicates"),
        "out": config.out,
    }


def sequences_report(run_id: str, built: dict[str, Any]) -> Report:
    line = f"run {run_id}: sequences {built['sequences']} from articles {built['articles']}"
    if duplicates := built.get("cross_near_duplicates"):
        line += (
            f"; {duplicates['concepts']} of {duplicates['of']} test-source concepts nearly repeat a "
            f"training-corpus concept (cosine >= {duplicates['cosine']})"
        )
    return Report([line])
