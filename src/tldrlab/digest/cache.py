"""Summary cache: one row per (thread, summarizer + parameters), valid while the thread's content hash holds.

Stored in the project database (SQLite under the home by default, PostgreSQL when configured) so every API
worker shares it. A row whose content hash differs from the thread's current one is outdated: it is never
served, and it is replaced on the next put.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

from tldrlab.config import get_settings
from tldrlab.runs.db import Database, connect, migrate

SCHEMA = [
    [
        "CREATE TABLE IF NOT EXISTS digest_cache (thread_id TEXT NOT NULL, cache_key TEXT NOT NULL, "
        "content_hash TEXT NOT NULL, summarizer TEXT NOT NULL, digest_json TEXT NOT NULL, "
        "created_at DOUBLE PRECISION NOT NULL, PRIMARY KEY (thread_id, cache_key))",
    ]
]


def cache_key(summarizer: str, params: dict[str, Any]) -> str:
    """Stable key for a summarizer and everything that changes its output."""
    blob = json.dumps({"summarizer": summarizer, "params": params}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:32]


class SummaryCache:
    def __init__(self, url: str) -> None:
        self.db: Database = connect(url)
        migrate(self.db, "digest_cache", SCHEMA)

    def get(self, thread_id: str, key: str, content_hash: str) -> dict[str, Any] | None:
        """The cached digest, or None when missing or outdated (the thread changed since)."""
        row = self.db.query_one(
            "SELECT content_hash, digest_json FROM digest_cache WHERE thread_id = ? AND cache_key = ?",
            (thread_id, key),
        )
        if row is None or row["content_hash"] != content_hash:
            return None
        return dict(json.loads(row["digest_json"]))

    def put(
        self, thread_id: str, key: str, content_hash: str, summarizer: str, digest: dict[str, Any]
    ) -> None:
        with self.db.transaction():
            self.db.execute(
                "DELETE FROM digest_cache WHERE thread_id = ? AND cache_key = ?", (thread_id, key)
            )
            self.db.execute(
                "INSERT INTO digest_cache (thread_id, cache_key, content_hash, summarizer, digest_json, "
                "created_at) VALUES (?, ?, ?, ?, ?, ?)",
                (thread_id, key, content_hash, summarizer, json.dumps(digest), time.time()),
            )

    def drop_outdated(self, thread_id: str, content_hash: str) -> int:
        """Delete the thread's rows made from older content; returns how many went."""
        return self.db.execute(
            "DELETE FROM digest_cache WHERE thread_id = ? AND content_hash <> ?", (thread_id, content_hash)
        )

    def drop_thread(self, thread_id: str) -> int:
        """Delete every row of the thread (it was deleted); returns how many went."""
        return self.db.execute("DELETE FROM digest_cache WHERE thread_id = ?", (thread_id,))

    def close(self) -> None:
        self.db.close()


def open_cache(settings: Any = None) -> SummaryCache:

    settings = settings or get_settings()
    settings.ensure_home()
    return SummaryCache(settings.resolved_database_url)
