"""`tldrlab lvm ingest`: articles -> concepts -> vectors -> the concept store, as a run with stage timings.

Stages (each timed into `pipeline_metrics.json`): read the articles, chunk them (sentence splitting, plus the
sentence vectors semantic chunking needs), embed the concepts in batches, write them to the store. Articles
are written one transaction each, so an interrupted ingest keeps every article finished before it stopped.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ConfigDict

from tldrlab.choices import unknown_choice
from tldrlab.configmodel import ConfigModel
from tldrlab.data.splits import held_out_files
from tldrlab.embed import check_embedder_name, get_embedder, vector_space
from tldrlab.embed.base import Embedder
from tldrlab.errors import InvalidInputError, NotFoundError, refused_at
from tldrlab.logs import progress_bar
from tldrlab.lvm.chunking import CHUNKERS, ChunkingConfig, chunk_article
from tldrlab.lvm.config import IngestConfig
from tldrlab.lvm.store import (
    ConceptIn,
    ConceptStore,
    check_concept_store,
    open_concept_store,
    redacted_url,
)
from tldrlab.lvm.tmd import TMDClassifier
from tldrlab.report import Report
from tldrlab.runs.atomic import atomic_write_json
from tldrlab.runs.run import Run


@dataclass
class Article:
    id: str
    text: str
    title: str | None = None
    url: str | None = None


@dataclass
class StageTimer:
    """Accumulates wall time per named stage."""

    seconds: dict[str, float] = field(default_factory=dict)

    def add(self, stage: str, started: float) -> None:
        self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - started


def read_articles(
    path: str | Path, format: str | None = None, limit: int | None = None
) -> tuple[list[Article], str]:
    """Articles from any record format of tldrlab.data.readers (the document is the article text).

    Also returns the data set source the reader names (e.g. `wikipedia`), else the file name.
    """
    # lazy: loads bs4, lxml (this module stays light without them)
    from tldrlab.data.readers import read_records

    path = Path(path)
    if not path.exists():
        raise NotFoundError(f"no such file: {path}")
    refuse_held_out_files(path)
    records = read_records(path, format, limit=limit)
    articles = []
    places: dict[str, str] = {}
    for number, record in enumerate(records, 1):
        if not record.document.strip():
            continue
        prov = record.provenance or {}
        refuse_shared_id(path, str(record.id), _place(prov, number), places)
        title = prov.get("title")
        url = prov.get("url")
        articles.append(
            Article(
                id=str(record.id),
                text=record.document,
                title=str(title) if title is not None else None,
                url=str(url) if url is not None else None,
            )
        )
    if not articles:
        raise InvalidInputError(f"{path} holds no article with text")
    source = next((r.source for r in records if r.source), "") or path.name.split(".")[0]
    return articles, source


def _place(provenance: dict[str, Any], number: int) -> str:
    """Where a record was read: its file's name and line or row, else its number in the read."""
    file, where = provenance.get("file"), provenance.get("record")
    if file and where:
        return f"{Path(str(file)).name} {where}"
    return f"{Path(str(file)).name} record {number}" if file else f"record {number}"


def refuse_shared_id(path: Path, article_id: str, place: str, places: dict[str, str]) -> None:
    """InvalidInputError when `article_id` was read before (`places`: id -> where it was read), naming both
    places: an article is stored under (source, id), so a later article of the same id replaced the earlier
    one in the store silently (a directory of files numbered by line without an `id` field: every file's
    first article was '1'). Ids are not made up to keep both: the store, `lvm sequences` and evaluations name
    articles by the ids the data gives."""
    first = places.get(article_id)
    if first is None:
        places[article_id] = place
        return
    raise InvalidInputError(
        f"{path}: article id {article_id!r} is given twice ({first}; {place}): the second would replace the "
        "first in the store; give every article its own id (an `id` field: records without one are numbered "
        "by line in each file), or ingest each file under its own --source"
    )


def refuse_held_out_files(path: Path) -> None:
    """A directory holding a test or validation file is refused: ingest stored every file's articles as one
    source, and `lvm sequences` split them into train / val / test by a seeded shuffle of articles, so most
    of the test file's articles were trained on. A single file is ingested as named (a held-out corpus is
    one: `--source` it and score it as `lvm sequences --test-source`)."""
    if held := held_out_files(path):
        names = ", ".join(p.name for p in held)
        raise InvalidInputError(
            f"{path}: holds held-out split files ({names}), whose articles `lvm sequences` would split into "
            "train / val / test with the rest, training on them: ingest the training file(s) alone, and a "
            "held-out file under its own --source, scored as `lvm sequences --test-source SOURCE`"
        )


def check_ingest(config: IngestConfig) -> None:
    """Kind `lvm_ingest`'s check before a run is created (command line and API alike): the articles' path
    holds no held-out split files (`refuse_held_out_files`, which the run's own read applies too), and the
    embedder is one that can be built (`--embedder nosuch` was refused by the run, left behind failed), and
    `--db` names a concept store or none yet (`check_concept_store`: naming the run registry added the
    concept tables to it)."""
    check_embedder_name(config.embedder)
    with refused_at("path"):
        refuse_held_out_files(Path(config.path))
    check_concept_store(config.store_url, missing_ok=True)


def check_articles(config: IngestConfig) -> None:
    """Kind `lvm_ingest`'s command-line check before its run is created: the articles read (an id given
    twice, no article with text are refused before a run exists, not as a failed one). The command reads
    them once more in the run, a small cost beside embedding them; the API's worker meets these in the run,
    before anything is stored."""
    read_articles(config.path, config.format, config.limit)


def load_embedder(name: str | None = None) -> Embedder:

    return get_embedder(name)


def ingest_articles(config: IngestConfig, run: Run | None = None) -> dict[str, Any]:
    """Chunk, embed and store the articles; returns (and writes to the run) the pipeline metrics."""
    if config.chunking not in CHUNKERS:
        raise InvalidInputError(unknown_choice("chunking", config.chunking, CHUNKERS))
    timer = StageTimer()
    started_all = time.perf_counter()

    started = time.perf_counter()
    articles, read_source = read_articles(config.path, config.format, config.limit)
    timer.add("read", started)

    started = time.perf_counter()
    embedder = load_embedder(config.embedder)
    timer.add("load_embedder", started)

    started = time.perf_counter()
    classifier = TMDClassifier(embedder)
    timer.add("tmd", started)

    source = config.source or read_source
    chunking = ChunkingConfig(method=config.chunking, max_chars=config.max_chars, threshold=config.threshold)
    store = open_concept_store(config.store_url)

    def encode_sentences(texts: list[str]) -> np.ndarray:
        begun = time.perf_counter()
        vectors = embedder.encode(texts, batch_size=config.batch_size)
        timer.add("sentence_embed", begun)
        return vectors

    total_concepts = 0
    total_chars = 0
    try:
        for i, article in enumerate(progress_bar(articles, desc="ingest", unit="article")):
            if run is not None:
                run.check_cancelled()
                run.heartbeat(progress=i / len(articles))
            started = time.perf_counter()
            chunks = chunk_article(article.text, chunking, encode_sentences)
            timer.add("chunk", started)
            started = time.perf_counter()
            vectors = embedder.encode([c.text for c in chunks], batch_size=config.batch_size)
            timer.add("embed", started)
            started = time.perf_counter()
            labels = classifier.classify(vectors, [c.text for c in chunks]) if chunks else []
            timer.add("tmd", started)
            started = time.perf_counter()
            total_concepts += store.replace_article(
                source=source,
                article_id=article.id,
                concepts=[ConceptIn(p, c.start, c.end, c.text) for p, c in enumerate(chunks)],
                vectors=vectors,
                embedder=embedder.name,
                chunking=chunking.method,
                title=article.title,
                url=article.url,
                domain=config.domain,
                tmd=labels,
            )
            timer.add("store", started)
            total_chars += len(article.text)
        stored = store.count(source)
    finally:
        store.close()

    if chunking.method == "semantic":
        # chunk time above includes the sentence embeddings it waited for; report them apart
        timer.seconds["chunk"] = max(0.0, timer.seconds["chunk"] - timer.seconds.get("sentence_embed", 0.0))
    wall = time.perf_counter() - started_all
    metrics: dict[str, Any] = {
        "source": source,
        "store_url": redacted_url(store.url),
        "embedder": embedder.name,
        "dim": embedder.dim,
        "chunking": chunking.method,
        "articles": len(articles),
        "concepts": total_concepts,
        "concepts_in_source": stored,
        "chars": total_chars,
        "stage_seconds": {k: round(v, 4) for k, v in timer.seconds.items()},
        "wall_seconds": round(wall, 4),
        "ms_per_article": round(1000 * wall / max(1, len(articles)), 2),
        "concepts_per_second": round(total_concepts / max(wall, 1e-9), 2),
        "mean_concept_chars": round(total_chars / max(1, total_concepts), 1),
    }
    if run is not None:
        path = run.dir / "pipeline_metrics.json"
        atomic_write_json(path, metrics)
        run.add_artifact(path, kind="metrics")
        run.set_summary(articles=len(articles), concepts=total_concepts, wall_seconds=metrics["wall_seconds"])
    return metrics


class LabelOptions(ConfigModel):
    """Which stored concepts `label_concepts` (re)labels, and with what (`tldrlab lvm tmd`)."""

    model_config = ConfigDict(allow_inf_nan=False, extra="forbid")

    source: str | None = None
    """Only concepts of this source (default: all)."""
    missing: bool = False
    """Only concepts without TMD labels yet."""
    embedder: str | None = None
    """Embedder of the label descriptions (default: the one the concepts were made with)."""
    db: str | None = None
    """Concept store URL (default: <home>/lvm/concepts.db; PostgreSQL when the database URL is one)."""


def label_concepts(
    store: ConceptStore, source: str | None = None, embedder: str | None = None, *, only_missing: bool = False
) -> dict[str, int]:
    """(Re)label stored concepts with TMD codes from their stored vectors (nothing is re-embedded).

    The label descriptions are embedded with `embedder`, else the embedder the concepts were made with.
    Returns {source: concepts labelled}.
    """
    table = store.load(source)
    classifier = TMDClassifier(load_embedder(embedder or table.embedder))
    other_space = vector_space(classifier.embedder_name) != vector_space(table.embedder)
    if classifier.embedder_name != table.embedder and other_space:
        raise InvalidInputError(
            f"the concepts are {table.embedder!r} vectors; TMD labels need that embedder's space, "
            f"not {classifier.embedder_name!r}"
        )
    rows = np.arange(len(table))
    if only_missing and table.tmd is not None:
        rows = np.array([i for i, label in enumerate(table.tmd) if label is None], dtype=np.int64)
    done: dict[str, int] = {}
    for start in range(0, len(rows), 2000):
        chunk = rows[start : start + 2000]
        ids = [int(i) for i in table.ids[chunk]]
        found = store.get(ids)
        labels = classifier.classify(table.vectors[chunk], [found[i].text for i in ids])
        store.set_tmd(ids, labels)
        for i in chunk:
            key = table.article_keys[i].split("/", 1)[0]
            done[key] = done.get(key, 0) + 1
    return done


def lvm_ingest_job(run: Run, config: IngestConfig) -> dict[str, Any]:
    """Run kind `lvm_ingest` (re-running replaces articles, no duplicates)."""
    return ingest_articles(config, run)


def ingest_report(run_id: str, m: dict[str, Any]) -> Report:
    return Report(
        [
            f"run {run_id}: {m['articles']} articles -> {m['concepts']} concepts (source {m['source']}, "
            f"{m['embedder']}, {m['dim']}-d) in {m['wall_seconds']:.1f}s; stage seconds {m['stage_seconds']}"
        ]
    )
