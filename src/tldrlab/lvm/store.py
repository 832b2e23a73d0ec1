"""The concept store: every concept with provenance and vector, in SQLite (default) or PostgreSQL + pgvector.

A concept is a sentence or a semantic chunk of an article. Each row keeps where it came from (data set source,
article id, position in the article, exact character span), the text, an optional domain label, the embedder
that produced its vector and the vector itself (float32 BLOB in SQLite, `vector` column with pgvector).

Re-ingesting an article replaces its concepts in one transaction, so a failed ingest never leaves an article
half-written and never loses what was stored before it.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ConfigDict, Field

from tldrlab.config import Settings, get_settings
from tldrlab.configmodel import ConfigModel
from tldrlab.embed import vector_space
from tldrlab.errors import DimensionMismatchError, InvalidInputError, NotFoundError
from tldrlab.lvm.tmd import TMD
from tldrlab.report import Column, Report, Table
from tldrlab.runs.db import SQLITE_HEADER, Database, connect, is_postgres_url, migrate, sqlite_path

COMPONENT = "lvm"

SQLITE_MIGRATIONS: list[list[str]] = [
    [
        """CREATE TABLE IF NOT EXISTS lvm_articles (
            source TEXT NOT NULL,
            article_id TEXT NOT NULL,
            title TEXT,
            url TEXT,
            domain TEXT,
            chunking TEXT NOT NULL,
            n_concepts INTEGER NOT NULL,
            ingested_at DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (source, article_id)
        )""",
        """CREATE TABLE IF NOT EXISTS lvm_concepts (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            source TEXT NOT NULL,
            article_id TEXT NOT NULL,
            position INTEGER NOT NULL,
            start_char INTEGER NOT NULL,
            end_char INTEGER NOT NULL,
            text TEXT NOT NULL,
            domain TEXT,
            embedder TEXT NOT NULL,
            dim INTEGER NOT NULL,
            vector BLOB NOT NULL,
            UNIQUE (source, article_id, position)
        )""",
    ],
    [  # TMD codes (tldrlab.lvm.tmd): NULL until a concept is labelled
        "ALTER TABLE lvm_concepts ADD COLUMN tmd_domain TEXT",
        "ALTER TABLE lvm_concepts ADD COLUMN tmd_task TEXT",
        "ALTER TABLE lvm_concepts ADD COLUMN tmd_modifier TEXT",
    ],
]

POSTGRES_MIGRATIONS: list[list[str]] = [
    [
        "CREATE EXTENSION IF NOT EXISTS vector",
        SQLITE_MIGRATIONS[0][0],
        """CREATE TABLE IF NOT EXISTS lvm_concepts (
            id BIGSERIAL PRIMARY KEY,
            source TEXT NOT NULL,
            article_id TEXT NOT NULL,
            position INTEGER NOT NULL,
            start_char INTEGER NOT NULL,
            end_char INTEGER NOT NULL,
            text TEXT NOT NULL,
            domain TEXT,
            embedder TEXT NOT NULL,
            dim INTEGER NOT NULL,
            vector vector NOT NULL,
            UNIQUE (source, article_id, position)
        )""",
    ],
    SQLITE_MIGRATIONS[1],
]


class StatsQuery(ConfigModel):
    """What `ConceptStore.stats` describes: `GET /lvm/stats` (query parameters) and `tldrlab lvm stats`."""

    model_config = ConfigDict(allow_inf_nan=False, extra="forbid")

    source: str | None = Field(None, max_length=100)
    """Only concepts of this source (default: all)."""
    samples: int = Field(5, ge=0, le=100)
    """Random concepts to show."""


class StoreStatsOptions(StatsQuery):
    """`tldrlab lvm stats`: the query, on the store it names."""

    db: str | None = None
    """Concept store URL (default: <home>/lvm/concepts.db; PostgreSQL when the database URL is one)."""


@dataclass(frozen=True)
class ConceptIn:
    """A concept about to be stored (its vector travels separately, as a row of a matrix)."""

    position: int
    """Index of the concept within its article (0-based, in reading order)."""
    start: int
    """Character offset of the concept in the article text."""
    end: int
    text: str


@dataclass(frozen=True)
class StoredConcept:
    id: int
    source: str
    article_id: str
    position: int
    start: int
    end: int
    text: str
    domain: str | None
    tmd: TMD | None = None
    """Domain / task / modifier labels (tldrlab.lvm.tmd), None until labelled."""


@dataclass(frozen=True)
class ArticleInfo:
    source: str
    article_id: str
    title: str | None
    url: str | None
    domain: str | None
    chunking: str
    n_concepts: int


@dataclass
class ConceptTable:
    """Concepts loaded for indexing or sequences, ordered by (source, article, position)."""

    ids: np.ndarray
    """int64 concept ids (store primary keys)."""
    article_keys: list[str]
    """`source/article_id` of each row."""
    positions: np.ndarray
    """int64 position of each row within its article."""
    vectors: np.ndarray
    """float32 (n, dim), unit-normalised."""
    embedder: str
    tmd: list[TMD | None] | None = None
    """Each row's TMD labels (None for a row not labelled); None when loaded without them."""

    def __len__(self) -> int:
        return len(self.ids)


def _same_space(a: str, b: str) -> bool:
    """Two embedder names give interchangeable vectors (e.g. minilm and minilm-onnx)."""

    return vector_space(a) == vector_space(b)


def default_store_url(settings: Settings | None = None) -> str:
    """PostgreSQL when the project's database URL is postgres, else `sqlite:///<home>/lvm/concepts.db`."""
    settings = settings or get_settings()
    if settings.database_url and is_postgres_url(settings.database_url):
        return settings.database_url
    return f"sqlite:///{settings.home / 'lvm' / 'concepts.db'}"


def redacted_url(url: str) -> str:
    """A database URL with its password hidden, for what is written to disk or shown (an API answer)."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        user = creds.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}" if ":" in creds else url
    return url


class ConceptStore:
    """Concepts with provenance and vectors behind one small API, whatever the backend."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.db: Database = connect(url)
        self.is_postgres = self.db.is_postgres
        migrate(self.db, COMPONENT, POSTGRES_MIGRATIONS if self.is_postgres else SQLITE_MIGRATIONS)
        if self.is_postgres:
            from pgvector.psycopg import register_vector

            # pgvector adapts numpy arrays to `vector` and back on this connection.
            self.db.on_connect(register_vector)  # and on a connection opened again after a lost one

    # -- writing --------------------------------------------------------------------------------
    def replace_article(
        self,
        *,
        source: str,
        article_id: str,
        concepts: list[ConceptIn],
        vectors: np.ndarray,
        embedder: str,
        chunking: str,
        title: str | None = None,
        url: str | None = None,
        domain: str | None = None,
        tmd: list[TMD] | None = None,
    ) -> int:
        """Atomically replace an article's concepts (with their TMD labels, if given); returns how many were
        stored."""
        if tmd is not None and len(tmd) != len(concepts):
            raise InvalidInputError(f"expected {len(concepts)} TMD labels for article {article_id!r}")
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or len(vectors) != len(concepts):
            raise InvalidInputError(
                f"expected {len(concepts)} vectors for article {article_id!r}, got shape {vectors.shape}"
            )
        dim = int(vectors.shape[1])
        existing = self.db.query_one(
            "SELECT dim, embedder FROM lvm_concepts WHERE source = ? LIMIT 1", (source,)
        )
        if existing and (int(existing["dim"]) != dim or not _same_space(existing["embedder"], embedder)):
            # Only the article being replaced may differ (it is deleted below); anything else is a mix-up.
            others = self.db.query_one(
                "SELECT COUNT(*) AS n FROM lvm_concepts WHERE source = ? AND article_id <> ?",
                (source, article_id),
            )
            if others and int(others["n"]) > 0:
                raise DimensionMismatchError(
                    f"source {source!r} holds {existing['dim']}-d vectors from {existing['embedder']!r}; "
                    f"got {dim}-d from {embedder!r}. Use another --source or the same embedder."
                )
        rows = [
            (
                source,
                article_id,
                c.position,
                c.start,
                c.end,
                c.text,
                domain,
                embedder,
                dim,
                vectors[i] if self.is_postgres else vectors[i].tobytes(),
                *((tmd[i].domain, tmd[i].task, tmd[i].modifier) if tmd is not None else (None, None, None)),
            )
            for i, c in enumerate(concepts)
        ]
        with self.db.transaction():
            self.db.execute(
                "DELETE FROM lvm_concepts WHERE source = ? AND article_id = ?", (source, article_id)
            )
            self.db.execute(
                "DELETE FROM lvm_articles WHERE source = ? AND article_id = ?", (source, article_id)
            )
            if rows:
                self.db.executemany(
                    "INSERT INTO lvm_concepts (source, article_id, position, start_char, end_char, text, "
                    "domain, embedder, dim, vector, tmd_domain, tmd_task, tmd_modifier) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    rows,
                )
            self.db.execute(
                "INSERT INTO lvm_articles (source, article_id, title, url, domain, chunking, n_concepts, "
                "ingested_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (source, article_id, title, url, domain, chunking, len(rows), time.time()),
            )
        return len(rows)

    def set_tmd(self, ids: list[int], labels: list[TMD]) -> int:
        """Label stored concepts (by id) with TMD codes, in one transaction; returns how many were updated."""
        if len(ids) != len(labels):
            raise InvalidInputError(f"{len(ids)} concept ids but {len(labels)} TMD labels")
        with self.db.transaction():
            self.db.executemany(
                "UPDATE lvm_concepts SET tmd_domain = ?, tmd_task = ?, tmd_modifier = ? WHERE id = ?",
                [(t.domain, t.task, t.modifier, int(i)) for i, t in zip(ids, labels, strict=True)],
            )
        return len(ids)

    # -- reading --------------------------------------------------------------------------------
    def count(self, source: str | None = None) -> int:
        sql = "SELECT COUNT(*) AS n FROM lvm_concepts"
        params: tuple[Any, ...] = ()
        if source is not None:
            sql, params = sql + " WHERE source = ?", (source,)
        row = self.db.query_one(sql, params)
        return int(row["n"]) if row else 0

    def sources(self) -> dict[str, int]:
        """source -> number of concepts."""
        rows = self.db.query("SELECT source, COUNT(*) AS n FROM lvm_concepts GROUP BY source ORDER BY source")
        return {str(r["source"]): int(r["n"]) for r in rows}

    def stats(self, source: str | None = None, samples: int = 5) -> dict[str, Any]:
        """What the store holds: per source (articles, concepts, labelled concepts, embedder, dimension), the
        TMD distribution of each facet, and `samples` random concepts with provenance and labels."""
        where, params = ("WHERE source = ?", (source,)) if source is not None else ("", ())
        rows = self.db.query(
            "SELECT source, embedder, dim, COUNT(*) AS concepts, COUNT(tmd_domain) AS labelled "
            f"FROM lvm_concepts {where} GROUP BY source, embedder, dim ORDER BY source",
            params,
        )
        articles = {
            str(r["source"]): int(r["n"])
            for r in self.db.query(
                f"SELECT source, COUNT(*) AS n FROM lvm_articles {where} GROUP BY source", params
            )
        }
        sources = [
            {
                "source": str(r["source"]),
                "articles": articles.get(str(r["source"]), 0),
                "concepts": int(r["concepts"]),
                "tmd_labelled": int(r["labelled"]),
                "embedder": str(r["embedder"]),
                "dim": int(r["dim"]),
            }
            for r in rows
        ]
        distribution: dict[str, dict[str, int]] = {}
        for facet in ("domain", "task", "modifier"):
            counts = self.db.query(
                f"SELECT tmd_{facet} AS label, COUNT(*) AS n FROM lvm_concepts {where} "
                f"{'AND' if where else 'WHERE'} tmd_{facet} IS NOT NULL GROUP BY tmd_{facet} ORDER BY n DESC",
                params,
            )
            distribution[facet] = {str(r["label"]): int(r["n"]) for r in counts}
        picked = self.db.query(
            f"SELECT id FROM lvm_concepts {where} ORDER BY random() LIMIT ?", (*params, int(samples))
        )
        found = self.get([int(r["id"]) for r in picked])
        return {
            "concepts": sum(s["concepts"] for s in sources),
            "articles": sum(s["articles"] for s in sources),
            "sources": sources,
            "tmd": distribution,
            "samples": [found[i] for i in sorted(found)],
        }

    def articles(self, source: str | None = None) -> list[ArticleInfo]:
        sql = "SELECT * FROM lvm_articles"
        params: tuple[Any, ...] = ()
        if source is not None:
            sql, params = sql + " WHERE source = ?", (source,)
        rows = self.db.query(sql + " ORDER BY source, article_id", params)
        return [
            ArticleInfo(
                source=r["source"],
                article_id=r["article_id"],
                title=r["title"],
                url=r["url"],
                domain=r["domain"],
                chunking=r["chunking"],
                n_concepts=int(r["n_concepts"]),
            )
            for r in rows
        ]

    def load(self, source: str | list[str] | None = None) -> ConceptTable:
        """All concepts (of one source, of several, or all) with vectors, ordered by source, article and
        position."""
        sql = (
            "SELECT id, source, article_id, position, embedder, dim, vector, tmd_domain, tmd_task, "
            "tmd_modifier FROM lvm_concepts"
        )
        params: tuple[Any, ...] = ()
        if source is not None:
            chosen = [source] if isinstance(source, str) else list(source)
            sql += f" WHERE source IN ({', '.join('?' for _ in chosen)})"
            params = tuple(chosen)
        rows = self.db.query(sql + " ORDER BY source, article_id, position", params)
        if not rows:
            where = f" for source {source!r}" if source else ""
            raise NotFoundError(
                f"no concepts stored{where} in {redacted_url(self.url)}: run `tldrlab lvm ingest` first"
            )

        spaces = {(vector_space(r["embedder"]), int(r["dim"])) for r in rows}
        if len(spaces) > 1:
            raise InvalidInputError(
                f"the store mixes vector spaces {sorted(spaces)}: choose one with --source "
                f"(sources: {', '.join(self.sources())})"
            )
        embedder, dim = str(rows[0]["embedder"]), int(rows[0]["dim"])
        vectors = np.empty((len(rows), dim), dtype=np.float32)
        for i, r in enumerate(rows):
            vectors[i] = self._vector(r["vector"])
        return ConceptTable(
            ids=np.array([int(r["id"]) for r in rows], dtype=np.int64),
            article_keys=[f"{r['source']}/{r['article_id']}" for r in rows],
            positions=np.array([int(r["position"]) for r in rows], dtype=np.int64),
            vectors=vectors,
            embedder=str(embedder),
            tmd=[_tmd(r) for r in rows],
        )

    def get(self, ids: list[int]) -> dict[int, StoredConcept]:
        """Concepts by id (ids not found are absent from the answer)."""
        found: dict[int, StoredConcept] = {}
        for start in range(0, len(ids), 500):
            chunk = [int(i) for i in ids[start : start + 500]]
            marks = ", ".join("?" for _ in chunk)
            rows = self.db.query(
                "SELECT id, source, article_id, position, start_char, end_char, text, domain, tmd_domain, "
                f"tmd_task, tmd_modifier FROM lvm_concepts WHERE id IN ({marks})",
                chunk,
            )
            for r in rows:
                found[int(r["id"])] = StoredConcept(
                    id=int(r["id"]),
                    source=r["source"],
                    article_id=r["article_id"],
                    position=int(r["position"]),
                    start=int(r["start_char"]),
                    end=int(r["end_char"]),
                    text=r["text"],
                    domain=r["domain"],
                    tmd=_tmd(r),
                )
        return found

    def article_concepts(self, source: str, article_id: str) -> tuple[list[StoredConcept], np.ndarray]:
        """One article's concepts in order, with their vectors."""
        rows = self.db.query(
            "SELECT id, source, article_id, position, start_char, end_char, text, domain, vector, "
            "tmd_domain, tmd_task, tmd_modifier FROM lvm_concepts WHERE source = ? AND article_id = ? "
            "ORDER BY position",
            (source, article_id),
        )
        if not rows:
            raise NotFoundError(f"no concepts for article {article_id!r} of source {source!r}")
        concepts = [
            StoredConcept(
                id=int(r["id"]),
                source=r["source"],
                article_id=r["article_id"],
                position=int(r["position"]),
                start=int(r["start_char"]),
                end=int(r["end_char"]),
                text=r["text"],
                domain=r["domain"],
                tmd=_tmd(r),
            )
            for r in rows
        ]
        return concepts, np.stack([self._vector(r["vector"]) for r in rows])

    def _vector(self, value: Any) -> np.ndarray:
        if self.is_postgres:
            # pgvector gives a Vector (newer releases) or a numpy array (older ones)
            array = value.to_numpy() if hasattr(value, "to_numpy") else value
            return np.asarray(array, dtype=np.float32)
        return np.frombuffer(value, dtype=np.float32)

    def close(self) -> None:
        self.db.close()


def _tmd(row: Any) -> TMD | None:
    if row["tmd_domain"] is None:
        return None
    return TMD(str(row["tmd_domain"]), str(row["tmd_task"]), str(row["tmd_modifier"]))


def no_concepts(url: str) -> NotFoundError:
    """The refusal of a read of a store that holds no concepts (or is not there yet)."""
    return NotFoundError(f"no concepts stored in {redacted_url(url)}: run `tldrlab lvm ingest` first")


def check_concept_store(
    url: str | None, *, missing_ok: bool = False, option: str = "--db", settings: Settings | None = None
) -> str:
    """The concept store URL `url` resolves to (None: `default_store_url`), once it is known to name a concept
    store, found without opening it: opening a SQLite store creates its file and adds the concept tables to
    whatever database is there. `lvm stats --db` with a typo left an empty database behind, and `--db
    <home>/tldrlab.db` added the concept tables to the run registry. A SQLite file that is not there, or
    holds no tables, is refused as holding no concepts (NotFoundError) unless `missing_ok` (an ingest makes
    the store; a run submitted over the API may find it made by one queued before it); a file that is not a
    SQLite database, or one of other tables (the run registry, another program's), is refused naming
    `option` (InvalidInputError), left as it was. A PostgreSQL store is the project's own database, where
    the concept tables sit beside the registry's by design: not checked."""
    url = url or default_store_url(settings)
    if not url.startswith("sqlite:///"):
        return url
    path = sqlite_path(url)
    if not path.exists():
        if missing_ok:
            return url
        raise no_concepts(url)
    tables = _sqlite_tables(path)
    if tables is None:
        what = "a directory" if path.is_dir() else "not a SQLite database"
        raise InvalidInputError(f"{option}: {path} is {what}, not a concept store (it was left as it was)")
    if tables and "lvm_concepts" not in tables:
        settings = settings or get_settings()
        registry = settings.resolved_database_url
        if registry.startswith("sqlite:///") and sqlite_path(registry).resolve() == path.resolve():
            what = "the tldrlab run registry"
        else:
            more = ", ..." if len(tables) > 3 else ""
            what = f"a database of other tables ({', '.join(sorted(tables)[:3])}{more})"
        raise InvalidInputError(
            f"{option}: {path} is {what}, not a concept store: name the store `tldrlab lvm ingest` wrote "
            f"(default {default_store_url(settings)}; it was left as it was)"
        )
    if not tables and not missing_ok:
        raise no_concepts(url)
    return url


def _sqlite_tables(path: Path) -> set[str] | None:
    """The tables of the SQLite database file at `path`, read without writing it (an empty file: none); None
    for a directory or a file that is not a SQLite database."""
    if not path.is_file():
        return None
    with path.open("rb") as handle:
        header = handle.read(len(SQLITE_HEADER))
    if not header:
        return set()  # SQLite takes an empty file for an empty database
    if header != SQLITE_HEADER:
        return None
    # read-only: nothing of the file is written, whatever it holds
    reader = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True, timeout=30)
    try:
        rows = reader.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    except sqlite3.DatabaseError:
        return None
    finally:
        reader.close()
    return {str(name) for (name,) in rows}


def open_stored_concepts(url: str | None = None, option: str = "--db") -> ConceptStore:
    """The concept store at `url` for a command that reads (or labels) what is stored: refused as
    `check_concept_store` refuses, never created."""
    return open_concept_store(check_concept_store(url, option=option))


def open_concept_store(url: str | None = None, settings: Settings | None = None) -> ConceptStore:
    """The concept store at `url` (default: see `default_store_url`), created when it is not there: for a
    command that only reads it, `open_stored_concepts`."""
    url = url or default_store_url(settings)
    if url.startswith("sqlite:///"):
        Path(url[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
    return ConceptStore(url)


def public_stats(found: dict[str, Any]) -> dict[str, Any]:
    """`ConceptStore.stats` as JSON (GET /lvm/stats, `tldrlab lvm stats --json`): each sample a plain row
    whose TMD label is its code."""
    samples = [{**asdict(c), "tmd": c.tmd.code if c.tmd else None} for c in found["samples"]]
    return {**found, "samples": samples}


def empty_stats() -> dict[str, Any]:
    """`public_stats` of a store that holds no concepts (GET /lvm/stats before any ingest made the store)."""
    return {
        "concepts": 0,
        "articles": 0,
        "sources": [],
        "tmd": {facet: {} for facet in ("domain", "task", "modifier")},
        "samples": [],
    }


def stats_report(found: dict[str, Any]) -> Report:
    """`ConceptStore.stats` as it reads: a row per source, each TMD facet's distribution, the samples."""
    headers = ("source", "articles", "concepts", "TMD labelled", "embedder", "dim")
    keys = ("source", "articles", "concepts", "tmd_labelled", "embedder", "dim")
    rows = [[str(row[k]) for k in keys] for row in found["sources"]]
    report = Report([Table([Column(h, key=h == "source") for h in headers], rows, title="concept store")])
    for facet, counts in found["tmd"].items():
        total = sum(counts.values()) or 1
        shown = ", ".join(f"{label} {n} ({100 * n / total:.0f} %)" for label, n in counts.items())
        report.blocks.append(f"TMD {facet}: {shown or 'no labels yet (tldrlab lvm tmd)'}")
    for c in found["samples"]:
        code = c.tmd.code if c.tmd else "-"
        report.blocks.append(f"{c.source}/{c.article_id}#{c.position} [{code}] {c.text[:160]}")
    return report
