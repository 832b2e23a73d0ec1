"""Where studies live: a SQLite file under the home by default, PostgreSQL for several machines.

    storage = open_storage(None)                     # sqlite:///<home>/sweeps.db
    storage = open_storage("postgresql://u:p@db/sweeps")   # -> postgresql+psycopg:// for SQLAlchemy

A trial's liveness is its run's: the worker system heartbeats trial runs, and a dead worker's trial run is
resumed like any run (tldrlab.sweep.runner), so the study storage keeps no heartbeats of its own.

A write to a study the system refuses (a full disk, the process's file-size limit; a PostgreSQL server's
full disk, SQLSTATE 53100) reaches the user as Optuna's StorageInternalError over SQLAlchemy's
OperationalError over the driver's (sqlite3's, psycopg's); `refused_study_writes` makes it the one-line
DiskFullError / FileTooLargeError naming the study's database (a PostgreSQL URL without its password), as
the registry's are.
"""

from __future__ import annotations

import copy
import os
import platform
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import optuna
from pydantic import ConfigDict, Field

from tldrlab.choices import unknown_choice
from tldrlab.config import expand_user, get_settings
from tldrlab.configmodel import ConfigModel
from tldrlab.errors import (
    ConfigError,
    ConflictError,
    NotFoundError,
    ServiceUnavailableError,
    TldrlabError,
    WriteRefusedError,
    error_chain,
)
from tldrlab.runs import open_registry
from tldrlab.runs.db import is_postgres_url, postgres_refusal, redact, sqlite_refusal
from tldrlab.runs.registry import RunRecord, RunStatus
from tldrlab.runs.run import SWEEP_RESUME_HINT
from tldrlab.sweep.config import SweepConfig
from tldrlab.sweep.mapping import direction
from tldrlab.sweep.spec import (
    BEST_FOLLOWS_METRIC,
    SweepSpec,
    best_follows_metric,
    parse_sweep,
    resolve_program,
)
from tldrlab.targets import load_target

WORKER_ATTR = "worker"
"""trial.user_attrs key: {host, pid} of the process running the trial."""

RUN_ATTR = "run_id"
"""trial.user_attrs key: the tldrlab run of the trial."""

SWEEP_RUN_ATTR = "sweep_run_id"
"""trial.user_attrs key: the sweep run that asked for the trial (its trial run is in that run's registry)."""

SPEC_ATTR = "sweep"
"""study.user_attrs key: the sweep file's mapping (trial runs and workers elsewhere rebuild the spec)."""

SCHEMES = ("sqlite", "postgresql", "postgres", "postgresql+psycopg")


def default_storage_url() -> str:
    """The `sweep_storage` setting, else a SQLite file under the home."""
    settings = get_settings()
    return settings.sweep_storage or f"sqlite:///{settings.ensure_home() / 'sweeps.db'}"


def resolve_storage_url(url: str | None) -> str:
    """SQLAlchemy's URL form of a storage: default SQLite, postgres:// -> postgresql+psycopg://."""
    # a refusal names where the URL came from: the setting's was refused as an option never given
    given = "--storage" if url else "sweep_storage (TLDRLAB_SWEEP_STORAGE or tldrlab.toml)"
    url = url or default_storage_url()
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme == "sqlite":
        path = url.removeprefix("sqlite:///")
        if path and path != ":memory:":
            expand_user(path).parent.mkdir(parents=True, exist_ok=True)
        return url
    if scheme in ("postgresql", "postgres"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    if scheme == "postgresql+psycopg":
        return url
    raise ConfigError(
        f"{given}: {unknown_choice('URL scheme', scheme or url, ('sqlite:///PATH', 'postgresql://...'))}"
    )


def open_storage(url: str | None) -> optuna.storages.RDBStorage:
    resolved = resolve_storage_url(url)
    engine_kwargs: dict[str, Any] = (
        {"connect_args": {"timeout": 60}} if resolved.startswith("sqlite") else {"pool_pre_ping": True}
    )
    try:
        return optuna.storages.RDBStorage(resolved, engine_kwargs=engine_kwargs)
    except Exception as exc:  # sqlalchemy / driver errors: unreachable server, bad path, ...
        if (refused := study_write_refusal(exc, resolved)) is not None:  # creating its tables
            raise refused from exc
        # the driver's first line: the rest (libpq's hint, SQLAlchemy's "Background on this error at" link)
        # made the command's one-line error three lines
        detail = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        raise ServiceUnavailableError(f"cannot open the sweep storage {redact(resolved)}: {detail}") from exc


def study_write_refusal(exc: BaseException, url: str) -> WriteRefusedError | None:
    """The refused write to the study storage `url` that `exc` is (Optuna's "An exception is raised during
    the commit" or SQLAlchemy's error over the driver's), worded as the registry's are with
    `SWEEP_RESUME_HINT`: SQLite's full disk or file-size limit (`runs.db.sqlite_refusal`, naming its file),
    PostgreSQL's full disk (`runs.db.postgres_refusal`, naming its URL without the password); None for any
    other error, and for one tldrlab worded already (a refused write of the run registry names that
    database)."""
    sqlite = url.startswith("sqlite:///")
    if not sqlite and not is_postgres_url(url):
        return None
    for current in error_chain(exc):
        if isinstance(current, TldrlabError):
            return None
        if sqlite and isinstance(current, sqlite3.Error):
            path = expand_user(url.removeprefix("sqlite:///"))
            return sqlite_refusal(current, path, "writing", SWEEP_RESUME_HINT)
        if not sqlite and (refused := postgres_refusal(current, redact(url), "writing", SWEEP_RESUME_HINT)):
            return refused
    return None


@contextmanager
def refused_study_writes(url: str) -> Iterator[None]:
    """A write to the study storage `url` that the system refused raised as its WriteRefusedError
    (`study_write_refusal`), one line naming the database instead of a traceback."""
    try:
        yield
    except Exception as exc:
        if (refused := study_write_refusal(exc, url)) is None:
            raise
        raise refused from exc


def study_names(storage: optuna.storages.BaseStorage) -> list[str]:
    return list(optuna.study.get_all_study_names(storage))


class StudyRef(ConfigModel):
    """Which study `load_study` opens (`tldrlab sweep status | best`)."""

    model_config = ConfigDict(allow_inf_nan=False, extra="forbid")

    study: str = Field(min_length=1)
    """Study name."""
    storage: str | None = None
    """Study storage: sqlite:///PATH or postgresql://... (default: SQLite file <home>/sweeps.db)."""


def load_study(name: str, storage_url: str | None) -> optuna.Study:
    """An existing study (`tldrlab sweep status | best | export`): NotFoundError when it is not there. A
    SQLite storage file that does not exist is not created (with its directories, as opening it would):
    `sweep status NAME --storage sqlite:///typo/x.db` left an empty study database at the typo."""
    given = storage_url or default_storage_url()
    path = given.removeprefix("sqlite:///") if given.startswith("sqlite:///") else ""
    if path not in ("", ":memory:") and not expand_user(path).is_file():
        raise NotFoundError(f"no study {name!r}: no sweep storage file {path} (no sweep has used it)")
    storage = open_storage(storage_url)
    names = study_names(storage)
    if name not in names:
        known = ", ".join(names) if names else "none yet"
        raise NotFoundError(
            f"no study {name!r} in {redact(resolve_storage_url(storage_url))} (studies: {known})"
        )
    return optuna.load_study(study_name=name, storage=storage)


# -- one study, one sweep ---------------------------------------------------------------------------------
SEARCH_KEYS = ("method", "metric", "parameters", "program", "command", "config", "early_terminate")
"""What a study's trials share: the search, and the base config every trial trains from. A sweep file whose
`config` was edited (`train.max_steps: 30` -> `60`) added trials of another training to the study, ranked
against the earlier ones as if they were alike. And its pruner: each trial run builds it from the sweep the
study stored, so an edited `early_terminate` was accepted and never applied."""


def search_differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """What two sweep mappings search differently: `SEARCH_KEYS` that differ, the config's by dotted key (a
    mapping recorded without a config says nothing about it)."""
    differences = [key for key in SEARCH_KEYS if key != "config" and a.get(key) != b.get(key)]
    if a.get("config") is None or b.get("config") is None:
        return differences
    return differences + [f"config.{key}" for key in _leaf_differences(_trial_base(a), _trial_base(b))]


def _trial_base(raw: dict[str, Any]) -> Any:
    """The part of a sweep mapping's base config its trials train by: what the trials set themselves
    (`best_follows_metric`) filled in and what a parameter sets left out, so that the same sweep submitted
    over the API (which stores its base with those filled in) and from a file compare alike."""
    try:
        spec = parse_sweep(raw)
    except (ConfigError, TypeError, ValueError):  # a mapping this version cannot read: compared as it is
        return raw.get("config")
    config = copy.deepcopy(spec.config)
    if spec.kind in BEST_FOLLOWS_METRIC and isinstance(config.get("train", {}), dict):
        config = best_follows_metric(config, spec)
    for name in spec.parameters:
        *parents, leaf = name.split(".")
        node: Any = config
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(leaf, None)
    return config


def _leaf_differences(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        keys = sorted(set(a) | set(b), key=str)
        return [d for k in keys for d in _leaf_differences(a.get(k), b.get(k), f"{prefix}{k}.")]
    return [] if a == b else [prefix.removesuffix(".") or "(whole)"]


def same_search(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two sweep mappings search the same way (a study's trials stay comparable between them)."""
    return not search_differences(a, b)


def _differ(differences: list[str]) -> str:
    shown = ", ".join(differences[:5]) + (", ..." if len(differences) > 5 else "")
    return f"{shown} differ{'s' if len(differences) == 1 else ''}"


def refuse_another_sweeps_study(study: optuna.Study, spec: SweepSpec) -> None:
    """ConflictError when `study` was made by another sweep (the other goal, or another search or base
    config), which the sweep `spec` may not add its trials to."""
    name, goal = study.study_name, study.direction.name.lower()
    if goal != direction(spec):
        raise ConflictError(f"study {name!r} exists with goal {goal}; use --study NEW_NAME")
    stored = study.user_attrs.get(SPEC_ATTR)
    if stored is not None and (differences := search_differences(stored, spec.raw)):
        raise ConflictError(
            f"study {name!r} was created from a different sweep ({_differ(differences)}); resume it with "
            "the same file and settings or pick another --study NAME"
        )


def check_study(config: SweepConfig) -> SweepConfig:
    """Kind `sweep`'s prepare step, before its run exists (command line and API alike): the study it would
    open, when the storage has it, was made by this sweep. A study never stops being another sweep's, so this
    is known at submit: refused there (409), it leaves no run that fails once it starts."""
    spec = parse_sweep(config.sweep, source=config.source)
    resolve_program(spec)  # what the sweep's run stores as the study's sweep
    name = config.study or spec.name
    storage = open_storage(config.storage)
    if name in study_names(storage):
        refuse_another_sweeps_study(optuna.load_study(study_name=name, storage=storage), spec)
    refuse_another_queued_sweep(name, resolve_storage_url(config.storage), spec)
    return config


QUEUED_STUDY_KINDS: dict[str, str] = {
    "sweep": "tldrlab.sweep.storage:sweep_config_of",
    "elm_optimize": "tldrlab.elm.search:sweep_config_of",
}
"""Kinds whose runs open a study when they start, each with the function giving the SweepConfig a run's stored
config opens it as (named by string: the ELM search sits above this module)."""


def sweep_config_of(raw: dict[str, Any]) -> SweepConfig:
    """A `sweep` run's stored config as its SweepConfig."""
    return SweepConfig.model_validate(raw)


def study_name(config: SweepConfig) -> str:
    """The study a `sweep` run opens when it starts: `study`, else the sweep's name (kind `sweep`'s `study`,
    recorded in the registry's `study` column)."""
    return config.study or parse_sweep(config.sweep, source=config.source).name


def _recorded_study(record: RunRecord) -> str:
    """The study a queued run's stored config opens ("" when this version cannot read the config)."""
    try:
        return study_name(load_target(QUEUED_STUDY_KINDS[record.kind])(record.config))
    except (ConfigError, KeyError, TypeError, ValueError):
        return ""


def refuse_another_queued_sweep(name: str, url: str, spec: SweepSpec) -> None:
    """ConflictError when a queued sweep (or ELM search) run will open the study `name` in the storage `url`
    with another goal or search than `spec`: a sweep creates its study only when it starts, so the storage
    knows nothing of it yet, and the second of the two to start would fail on the clash instead of being
    refused here. The queued runs of that study are found by the registry's `study` column (set when a run
    is created), so only their configs are read, not every queued sweep's; a run queued before the column
    existed has its study read from its config once and recorded."""
    registry = open_registry()
    kinds = tuple(QUEUED_STUDY_KINDS)
    queued = RunStatus.QUEUED.value
    for record in registry.list(kind=kinds, status=queued, limit=None, study_recorded=False):
        try:
            registry.update(record.id, study=_recorded_study(record))
        except NotFoundError:  # deleted meanwhile
            continue
    for record in registry.list(kind=kinds, status=queued, limit=None, study=name):
        try:
            config = load_target(QUEUED_STUDY_KINDS[record.kind])(record.config)
            queued_spec = parse_sweep(config.sweep, source=config.source)
            resolve_program(queued_spec)
            same_storage = resolve_storage_url(config.storage) == url
        except (ConfigError, KeyError, TypeError, ValueError):  # a config this version cannot read
            continue
        if not same_storage:
            continue
        differences = search_differences(queued_spec.raw, spec.raw)
        if direction(queued_spec) != direction(spec):
            differences.insert(0, "goal")
        if differences:
            raise ConflictError(
                f"study {name!r} is the study of the queued {record.kind} run {record.id}, a different "
                f"sweep ({_differ(differences)}); submit the same sweep to share it or pick another --study "
                "NAME"
            )


# -- dead workers --------------------------------------------------------------------------------------------
def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def mark_worker(trial: optuna.Trial) -> None:
    trial.set_user_attr(WORKER_ATTR, {"host": platform.node(), "pid": os.getpid()})


def fail_dead_sweep_runs(study_name: str) -> list[str]:
    """Sweep runs of this study left "running" by a killed `tldrlab sweep run` on this host -> failed.
    Every running sweep is read (`limit=None`; the study is a tag, matched here): a cap left a dead one
    behind that many newer running sweeps running for good."""
    import time

    registry = open_registry()
    failed = []
    for record in registry.list(kind="sweep", status=RunStatus.RUNNING.value, limit=None):
        host, _, pid = (record.worker or "").rpartition(":")
        if record.tags.get("study") != study_name or host != platform.node() or not pid.isdigit():
            continue
        if int(pid) != os.getpid() and not pid_alive(int(pid)):
            message = f"failed: its process (pid {pid}) died; resumed by a later `tldrlab sweep run`"
            registry.update(record.id, status=RunStatus.FAILED, ended_at=time.time(), message=message,
                            error_code="worker_died")  # fmt: skip
            failed.append(record.id)
    return failed
