"""Where studies live: a SQLite file under the home by default, PostgreSQL for several machines.

    storage = open_storage(None)                     # sqlite:///<home>/sweeps.db
    storage = open_storage("postgresql://u:p@db/sweeps")   # -> postgresql+psycopg:// for SQLAlchemy

Heartbeats: every running trial's worker writes a heartbeat every HEARTBEAT_S seconds. A trial whose
heartbeat is older than GRACE_S (its worker died: kill -9, power loss) is marked FAIL by the next worker that
starts a trial, and a copy with the same parameters is queued (RetryHeartbeatStaleTrialCallback). On the same
machine `reconcile_dead_workers` does this at once, without waiting for the grace period, when the dead
worker's process id no longer exists.
"""

from __future__ import annotations

import copy
import os
import platform
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import optuna
from optuna.trial import FrozenTrial, TrialState

from tldrlab.config import get_settings
from tldrlab.errors import ConfigError, NotFoundError

HEARTBEAT_S = 5
"""Seconds between a running trial's heartbeats."""

GRACE_S = 30
"""A running trial without a heartbeat for this long is considered dead (other machines' workers)."""

MAX_RETRY = 3
"""How many times one set of parameters is re-run after its worker died."""

WORKER_ATTR = "worker"
"""trial.user_attrs key: {host, pid} of the process running the trial."""

RUN_ATTR = "run_id"
"""trial.user_attrs key: the tldrlab run of the trial."""

SCHEMES = ("sqlite", "postgresql", "postgres", "postgresql+psycopg")


def default_storage_url() -> str:
    return f"sqlite:///{get_settings().ensure_home() / 'sweeps.db'}"


def resolve_storage_url(url: str | None) -> str:
    """SQLAlchemy's URL form of a storage: default SQLite, postgres:// -> postgresql+psycopg://."""
    if not url:
        return default_storage_url()
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme == "sqlite":
        path = url.removeprefix("sqlite:///")
        if path and path != ":memory:":
            Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)
        return url
    if scheme in ("postgresql", "postgres"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    if scheme == "postgresql+psycopg":
        return url
    raise ConfigError(
        f"--storage: unsupported URL scheme {scheme or url!r}; allowed: sqlite:///PATH, postgresql://..."
    )


def redact(url: str) -> str:
    """The URL without its password (for manifests and messages)."""
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def open_storage(url: str | None) -> optuna.storages.RDBStorage:
    resolved = resolve_storage_url(url)
    engine_kwargs: dict[str, Any] = (
        {"connect_args": {"timeout": 60}} if resolved.startswith("sqlite") else {"pool_pre_ping": True}
    )
    import warnings

    try:
        with warnings.catch_warnings():
            # heartbeats and the retry callback are "experimental" in Optuna (since v2.8): resume needs them
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return _rdb_storage(resolved, engine_kwargs)
    except Exception as exc:  # sqlalchemy / driver errors: unreachable server, bad path, ...
        from tldrlab.errors import ServiceUnavailableError

        raise ServiceUnavailableError(f"cannot open the sweep storage {redact(resolved)}: {exc}") from exc


def _rdb_storage(resolved: str, engine_kwargs: dict[str, Any]) -> optuna.storages.RDBStorage:
    return optuna.storages.RDBStorage(
        resolved,
        engine_kwargs=engine_kwargs,
        heartbeat_interval=HEARTBEAT_S,
        grace_period=GRACE_S,
        heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY),
    )


def study_names(storage: optuna.storages.BaseStorage) -> list[str]:
    return list(optuna.study.get_all_study_names(storage))


def load_study(name: str, storage_url: str | None) -> optuna.Study:
    storage = open_storage(storage_url)
    names = study_names(storage)
    if name not in names:
        known = ", ".join(names) if names else "none yet"
        raise NotFoundError(
            f"no study {name!r} in {redact(resolve_storage_url(storage_url))} (studies: {known})"
        )
    return optuna.load_study(study_name=name, storage=storage)


# -- dead workers --------------------------------------------------------------------------------------------
def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def retry_trial(study: optuna.Study, trial: FrozenTrial) -> None:
    """Queue a WAITING copy of a failed trial (same parameters), like Optuna does for stale heartbeats."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        callback = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)
    callback(study, copy.deepcopy(trial))


def fail_trial(study: optuna.Study, trial: FrozenTrial) -> bool:
    """Mark a running trial FAIL (False when another process finished it first)."""
    try:
        return bool(study._storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL))
    except optuna.exceptions.UpdateFinishedTrialError:
        return False


def reconcile_dead_workers(study: optuna.Study) -> list[FrozenTrial]:
    """Fail (and queue a retry of) running trials whose worker process on this host no longer exists."""
    failed: list[FrozenTrial] = []
    host, me = platform.node(), os.getpid()
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = trial.user_attrs.get(WORKER_ATTR) or {}
        pid = worker.get("pid")
        if worker.get("host") != host or not isinstance(pid, int) or pid == me or pid_alive(pid):
            continue
        if fail_trial(study, trial):
            frozen = study._storage.get_trial(trial._trial_id)
            retry_trial(study, frozen)
            _fail_run(frozen.user_attrs.get(RUN_ATTR), pid)
            failed.append(frozen)
    return failed


def _fail_run(run_id: Any, pid: int) -> None:
    """Record the dead trial's run as failed (it would otherwise stay "running" in the registry)."""
    import time

    from tldrlab.runs import open_registry
    from tldrlab.runs.registry import RunStatus

    if not isinstance(run_id, str):
        return
    registry = open_registry()
    try:
        record = registry.get(run_id)
    except NotFoundError:  # a run of another machine's home
        return
    if record.status == RunStatus.RUNNING:
        message = f"failed: its sweep worker (pid {pid}) died; the trial is re-run"
        registry.update(
            run_id, status=RunStatus.FAILED, ended_at=time.time(), message=message, error_code="worker_died"
        )


def mark_worker(trial: optuna.Trial) -> None:
    trial.set_user_attr(WORKER_ATTR, {"host": platform.node(), "pid": os.getpid()})


def fail_dead_sweep_runs(study_name: str) -> list[str]:
    """Sweep runs of this study left "running" by a killed `tldrlab sweep run` on this host -> failed."""
    import time

    from tldrlab.runs import open_registry
    from tldrlab.runs.registry import RunStatus

    registry = open_registry()
    failed = []
    for record in registry.list(kind="sweep", status=RunStatus.RUNNING.value, limit=1000):
        host, _, pid = (record.worker or "").rpartition(":")
        if record.tags.get("study") != study_name or host != platform.node() or not pid.isdigit():
            continue
        if int(pid) != os.getpid() and not pid_alive(int(pid)):
            message = f"failed: its process (pid {pid}) died; resumed by a later `tldrlab sweep run`"
            registry.update(record.id, status=RunStatus.FAILED, ended_at=time.time(), message=message,
                            error_code="worker_died")  # fmt: skip
            failed.append(record.id)
    return failed
