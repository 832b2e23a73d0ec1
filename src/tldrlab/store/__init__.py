"""Sentence stores by registry, behind the `SentenceStore` protocol (store/base.py).

- `sqlite_faiss` (default, embedded): `<home>/store/sentences.db` plus a FAISS index file beside it.
- `postgres_pgvector` (at scale): chosen when the database URL is a postgres URL.

`open_store()` picks one from the settings; every call opens a new store, to be closed by the caller.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tldrlab.config import Settings, get_settings
from tldrlab.errors import ConfigError
from tldrlab.runs.db import is_postgres_url, sqlite_path
from tldrlab.store.base import PostSentences, SearchHit, SentenceRecord, SentenceStore, ThreadInfo

StoreBuilder = Callable[[str, int, str | None], SentenceStore]
"""(location, dim, embedder name or None) -> an open store."""


def _sqlite_faiss(location: str, dim: int, embedder: str | None) -> SentenceStore:
    # lazy: that submodule needs this package initialised (a cycle at the top)
    from tldrlab.store.sqlite_faiss import SqliteFaissStore

    return SqliteFaissStore(Path(location), dim, embedder=embedder)


def _postgres_pgvector(location: str, dim: int, embedder: str | None) -> SentenceStore:
    # lazy: that submodule needs this package initialised (a cycle at the top)
    from tldrlab.store.postgres_pgvector import PostgresPgvectorStore

    return PostgresPgvectorStore(location, dim, embedder=embedder)


STORES: dict[str, StoreBuilder] = {
    "sqlite_faiss": _sqlite_faiss,
    "postgres_pgvector": _postgres_pgvector,
}
"""Store name -> builder taking a location (SQLite file path or postgres URL)."""


def store_location(settings: Settings | None = None, *, url: str | None = None) -> tuple[str, str]:
    """(store name, location) for a URL or the settings' database URL.

    A postgres URL selects postgres_pgvector in that database. Otherwise the sentence store is its own SQLite
    file: the file of an explicit `sqlite:///` URL, else `<home>/store/sentences.db`.
    """

    settings = settings or get_settings()
    target = url or settings.resolved_database_url
    if is_postgres_url(target):
        return "postgres_pgvector", target
    if url is not None:
        if not url.startswith("sqlite:///"):
            raise ConfigError(
                f"unsupported store URL {url!r}: use sqlite:///path/to/sentences.db or postgresql://..."
            )
        return "sqlite_faiss", str(sqlite_path(url))
    return "sqlite_faiss", str(settings.home / "store" / "sentences.db")


def open_store(
    settings: Settings | None = None, *, url: str | None = None, dim: int = 384, embedder: str | None = None
) -> SentenceStore:
    """Open (creating if needed) the sentence store for these settings or this URL.

    `dim` must match the store's vectors; `embedder` (optional) is recorded on first use, and a store filled
    by an embedder from another vector space is refused (ConflictError).
    """
    name, location = store_location(settings, url=url)
    return STORES[name](location, dim, embedder)


__all__ = [
    "STORES",
    "PostSentences",
    "SearchHit",
    "SentenceRecord",
    "SentenceStore",
    "ThreadInfo",
    "open_store",
    "store_location",
]
