"""LVM concept services: chunking, ingest (a queued run), next-concept prediction, concept-store statistics.

    POST /lvm/chunk      text -> concepts (sentences or semantic chunks) with exact spans, optionally TMD
    POST /lvm/ingest     articles (inline; kept as JSON lines under the first data root) -> a queued
                         `lvm_ingest` run (202, the run's state)
    POST /lvm/predict    sentences -> the next concept: its vector, the nearest stored concepts with
                         provenance, and optionally one sentence smoothed from them by the local LM
    GET  /lvm/stats      what the concept store holds: counts, dimensions, samples, the TMD distribution

The concept store, the index (`<home>/lvm/index`), the embedder, trained LVMs and the smoothing LM are opened
once per app, on first use. The routes only read the concept store (an ingest run writes it), so it is opened
once it is there and never created by a request: until then stats are empty and predict is 404 `not_found`.
The readiness check `lvm` asks the concept store to answer.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field, field_validator

from tldrlab.configmodel import ConfigModel
from tldrlab.errors import InvalidInputError, NotFoundError
from tldrlab.lvm.chunking import ChunkingConfig, chunk_article
from tldrlab.lvm.generate import Smoother, generate_next, window_from_texts
from tldrlab.lvm.index import load_index
from tldrlab.lvm.ingest import IngestConfig, load_embedder
from tldrlab.lvm.store import (
    ConceptStore,
    StatsQuery,
    check_concept_store,
    default_store_url,
    empty_stats,
    open_concept_store,
    public_stats,
)
from tldrlab.lvm.tmd import TMDClassifier
from tldrlab.runs.atomic import atomic_write_text
from tldrlab.runs.paths import ModelRef
from tldrlab.service.confine import resolve_input, resolve_model
from tldrlab.service.routes.health import register_check
from tldrlab.service.routes.runs import RunInfo, run_info
from tldrlab.service.state import readiness_problem, settings_of, submit_run

router = APIRouter(tags=["lvm"])


@dataclass
class LVMResources:
    """What the LVM routes share in one app (opened lazily, each under the lock)."""

    store: ConceptStore | None = None
    """Opened by `_stored_concepts` once an ingest made it."""
    lock: threading.Lock = field(default_factory=threading.Lock)
    embedders: dict[str, Any] = field(default_factory=dict)
    index: Any | None = None
    models: dict[str, Any] = field(default_factory=dict)
    smoothers: dict[str, Any] = field(default_factory=dict)


_open_lock = threading.Lock()


def resources(request: Request) -> LVMResources:
    state = request.app.state
    with _open_lock:
        found: LVMResources | None = getattr(state, "lvm", None)
        if found is None:
            found = LVMResources()
            state.lvm = found
        return found


def _stored_concepts(res: LVMResources, request: Request) -> ConceptStore:
    """The server's concept store, opened once it is there. Opening it with `open_concept_store` created it:
    a GET /lvm/stats on a fresh server wrote `<home>/lvm/concepts.db`. NotFoundError (404 `not_found`) until
    an ingest run stored concepts; checked again on each request until then, as a worker may make it."""
    with res.lock:
        if res.store is None:
            url = check_concept_store(
                None, option="the server's concept store", settings=settings_of(request)
            )
            res.store = open_concept_store(url)
        return res.store


def _embedder(res: LVMResources, name: str | None) -> Any:

    key = name or ""
    with res.lock:
        if key not in res.embedders:
            res.embedders[key] = load_embedder(name)
        return res.embedders[key]


def _index(res: LVMResources, request: Request) -> Any:

    with res.lock:
        if res.index is None:
            directory = settings_of(request).home / "lvm" / "index"
            res.index = load_index(directory)  # NotFoundError (404) until `tldrlab lvm index` ran
        return res.index


def _model(res: LVMResources, request: Request, reference: str) -> Any:
    # lazy: loads torch (this module stays light without it)
    from tldrlab.lvm.models import find_lvm, find_lvm_run, load_lvm

    settings = settings_of(request)
    with res.lock:
        if reference not in res.models:
            simple = "/" not in reference and "\\" not in reference and not reference.startswith((".", "~"))
            # a run id (only: find_lvm would also try it as a path relative to the server's working
            # directory, outside the data roots), or a path inside what API requests may read
            if simple:
                directory = find_lvm_run(reference)
            else:
                directory = find_lvm(str(resolve_input(reference, "model", settings)))
            res.models[reference] = load_lvm(directory)
        return res.models[reference]


def _smoother(res: LVMResources, request: Request, reference: str) -> Any:

    with res.lock:
        if reference not in res.smoothers:
            res.smoothers[reference] = Smoother(resolve_model(reference, "lm", settings_of(request)))
        return res.smoothers[reference]


def store_readiness(request: Request) -> str | None:
    """Readiness: the concept store answers (a SQLite store not created yet is fine: ingest creates it)."""
    settings = settings_of(request)
    url = default_store_url(settings)
    if url.startswith("sqlite:///") and not Path(url[len("sqlite:///") :]).exists():
        return None
    try:
        _stored_concepts(resources(request), request).count()
    except NotFoundError:
        return None  # an empty database: not made by an ingest yet either
    except Exception as exc:
        return readiness_problem(exc)
    return None


register_check("lvm", store_readiness)


# -- chunk ---------------------------------------------------------------------------------------------------
class ChunkRequest(ConfigModel):
    """Split a text into concepts the way `lvm ingest` does."""

    model_config = ConfigDict(allow_inf_nan=False, extra="forbid")

    text: str = Field(min_length=1, max_length=200_000)
    """The text (an article, a paragraph)."""
    chunking: Literal["sentence", "semantic"] = "sentence"
    """One concept per sentence, or adjacent similar sentences merged (needs the embedder)."""
    max_chars: int = Field(600, ge=20, le=10_000)
    """Semantic chunks stay at most this long."""
    threshold: float = Field(0.55, ge=-1.0, le=1.0)
    """Semantic chunking: cosine to the chunk needed to merge."""
    tmd: bool = False
    """Also label each concept with its TMD code (domain/task/modifier)."""


class ConceptOut(BaseModel):
    position: int
    start: int
    """Character offset in the text (`text[start:end]` is the concept)."""
    end: int
    text: str
    tmd: str | None = None
    """`domain/task/modifier`, when asked for."""


class ChunkResponse(BaseModel):
    chunking: str
    count: int
    concepts: list[ConceptOut]


@router.post("/lvm/chunk", response_model=ChunkResponse)
def chunk(request: Request, body: ChunkRequest) -> dict[str, Any]:

    res = resources(request)
    needs_embedder = body.chunking == "semantic" or body.tmd
    embedder = _embedder(res, settings_of(request).embedder) if needs_embedder else None
    config = ChunkingConfig(method=body.chunking, max_chars=body.max_chars, threshold=body.threshold)
    chunks = chunk_article(body.text, config, embedder.encode if embedder is not None else None)
    codes: list[str | None] = [None] * len(chunks)
    if body.tmd and chunks and embedder is not None:
        texts = [c.text for c in chunks]
        codes = [label.code for label in TMDClassifier(embedder).classify(embedder.encode(texts), texts)]
    concepts = [
        {"position": i, "start": c.start, "end": c.end, "text": c.text, "tmd": codes[i]}
        for i, c in enumerate(chunks)
    ]
    return {"chunking": body.chunking, "count": len(concepts), "concepts": concepts}


# -- ingest --------------------------------------------------------------------------------------------------
class ArticleIn(ConfigModel):
    model_config = ConfigDict(allow_inf_nan=False, extra="forbid")

    id: str = Field(min_length=1, max_length=512)
    """The article's id within its source (re-sending an id replaces that article's concepts)."""
    text: str = Field(min_length=1, max_length=2_000_000)
    """The article's plain text."""
    title: str | None = Field(None, max_length=1000)
    """Its title (stored as provenance)."""
    url: str | None = Field(None, max_length=2000)
    """Where it came from."""


class IngestRequest(ConfigModel):
    """Articles to split, embed and store: a queued `lvm_ingest` run."""

    model_config = ConfigDict(allow_inf_nan=False, extra="forbid")

    articles: list[ArticleIn] = Field(min_length=1, max_length=10_000)
    """The articles, inline."""
    source: str = Field("api", min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.-]+$")
    """Data set source label stored with every concept."""
    domain: str | None = Field(None, max_length=100)
    """Optional domain label stored with every concept."""
    chunking: Literal["sentence", "semantic"] = "sentence"
    """One concept per sentence, or semantic chunks."""

    @field_validator("articles")
    @classmethod
    def unique_ids(cls, articles: list[ArticleIn]) -> list[ArticleIn]:
        ids = [a.id for a in articles]
        if len(set(ids)) != len(ids):
            raise ValueError("article ids must be unique within a request")
        return articles


@router.post("/lvm/ingest", status_code=202, response_model=RunInfo)
def ingest(request: Request, body: IngestRequest) -> dict[str, Any]:
    """Queue an `lvm_ingest` run of the articles (a worker embeds and stores them; poll GET /runs/{id})."""

    settings = settings_of(request)
    uploads = settings.resolved_data_roots[0] / "lvm-uploads"  # where API-submitted runs may read
    uploads.mkdir(parents=True, exist_ok=True)
    path = uploads / f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}.jsonl"
    lines = [json.dumps(a.model_dump(exclude_none=True), ensure_ascii=False) for a in body.articles]
    atomic_write_text(path, "\n".join(lines) + "\n")
    config = IngestConfig.model_validate(
        {
            # relative to the data root, as API runs must name what they read; the server's embedder
            "path": str(path.relative_to(settings.resolved_data_roots[0])),
            "format": "wikipedia",
            "chunking": body.chunking,
            "source": body.source,
            "domain": body.domain,
        }
    )
    return run_info(submit_run(request, "lvm_ingest", config.model_dump()))


# -- predict -------------------------------------------------------------------------------------------------
class PredictRequest(ConfigModel):
    """The next concept after a list of sentences."""

    model_config = ConfigDict(allow_inf_nan=False, extra="forbid", protected_namespaces=())

    sentences: list[str] = Field(min_length=1, max_length=64)
    """The context, oldest first (the model reads its last `context` sentences)."""
    model: Annotated[str, ModelRef()] = Field(min_length=1, max_length=500)
    """The trained LVM: an `lvm_train` run id, or its model directory relative to a data root."""
    k: int = Field(5, ge=1, le=50)
    """How many nearest stored concepts to return."""
    smooth: bool = False
    """Also fuse the nearest concepts into one sentence with the local LM (seconds on a CPU)."""
    lm: Annotated[str, ModelRef()] = Field("smollm2", min_length=1, max_length=500)
    """The smoothing LM: a model name (bundled `smollm2`, installed, a run) or a path in a data root."""

    @field_validator("sentences")
    @classmethod
    def non_empty(cls, sentences: list[str]) -> list[str]:
        if any(not s.strip() for s in sentences) or any(len(s) > 5000 for s in sentences):
            raise ValueError("every sentence must be non-empty and at most 5000 characters")
        return sentences


class NearestConcept(BaseModel):
    id: int
    score: float
    """Cosine similarity to the predicted vector."""
    text: str
    source: str
    article_id: str
    position: int


class PredictResponse(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    model: str
    vector: list[float]
    """The predicted concept vector (the embedder's space)."""
    nearest: list[NearestConcept]
    smoothed: str | None
    seconds: dict[str, float]
    """Wall time of embed, predict, decode (and smooth)."""


@router.post("/lvm/predict", response_model=PredictResponse)
def predict(request: Request, body: PredictRequest) -> dict[str, Any]:

    res = resources(request)
    model = _model(res, request, body.model)
    index = _index(res, request)
    started = time.perf_counter()
    window = window_from_texts(
        body.sentences, _embedder(res, index.meta.get("embedder")), labels=model.config.tmd_inputs
    )
    embed_seconds = time.perf_counter() - started
    if window.vectors.shape[1] != index.dim:
        raise InvalidInputError(
            f"the embedder gives {window.vectors.shape[1]}-d vectors; the index is {index.dim}-d"
        )
    smoother = _smoother(res, request, body.lm) if body.smooth else None
    store = _stored_concepts(res, request)
    step = generate_next(model, window, index, store, k=body.k, smoother=smoother)
    return {
        "model": body.model,
        "vector": [round(float(x), 6) for x in step.vector],
        "nearest": [asdict(c) for c in step.nearest],
        "smoothed": step.smoothed,
        "seconds": {"embed": embed_seconds, **step.seconds},
    }


# -- stats ---------------------------------------------------------------------------------------------------
@router.get("/lvm/stats")
def stats(request: Request, query: Annotated[StatsQuery, Query()]) -> dict[str, Any]:
    """Concepts and articles per source, embedder and dimension, the TMD distribution, random samples.

    Before anything was ingested the answer is the empty one a store without the asked source gives (200, zero
    counts), not a 404: stats describe a collection, which is there and empty, as GET /runs lists no runs."""
    res = resources(request)
    try:
        store = _stored_concepts(res, request)
    except NotFoundError:
        return empty_stats()
    return public_stats(store.stats(query.source, samples=query.samples))
