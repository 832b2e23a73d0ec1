"""Weights & Biases tracking that keeps every file inside the run directory.

    tracker = WandbTracker.start(run, mode=wandb_mode(config.wandb), config=job_config_dict)
    tracker.log(step, {"train_loss": 1.2})
    tracker.log_table("eval_predictions", rows)
    tracker.log_model(run.dir / "model")
    tracker.finish()

One rule picks the mode (`wandb_mode`): the config's explicit value, else $TLDRLAB_WANDB_MODE, else
$WANDB_MODE, else the `wandb_mode` setting (tldrlab.toml; offline by default).
Modes: `offline` (default: files under <run_dir>/wandb, sync later with `wandb sync`), `online` (needs the
user's WANDB_API_KEY / `wandb login`), `disabled` (nothing is written; every method is a no-op).
WANDB_DIR, WANDB_DATA_DIR, WANDB_CACHE_DIR and WANDB_CONFIG_DIR all point inside the run directory, so wandb
writes nothing to the home directory (artifact staging and the settings file included).
"""

from __future__ import annotations

import netrc
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tldrlab.choices import unknown_choice
from tldrlab.config import WANDB_MODES, get_settings
from tldrlab.errors import (
    ConfigError,
    DependencyMissingError,
    ServiceUnavailableError,
    UnauthorizedError,
)
from tldrlab.runs.run import Run

WANDB_SUBDIR = "wandb"


def wandb_mode(explicit: str | None = None) -> str:
    """The W&B mode of a run: `explicit` (the config's), else $TLDRLAB_WANDB_MODE, else $WANDB_MODE, else the
    `wandb_mode` setting (offline by default). An environment value that is not a mode is ignored."""
    if explicit is not None:
        return explicit
    for variable in ("TLDRLAB_WANDB_MODE", "WANDB_MODE"):
        value = os.environ.get(variable)
        if value in WANDB_MODES:
            return value
    return get_settings().wandb_mode


def wandb_env(run_dir: Path) -> dict[str, str]:
    """The environment variables that keep wandb's files under `<run_dir>/wandb`."""
    base = run_dir / WANDB_SUBDIR
    return {
        "WANDB_DIR": str(base),
        "WANDB_DATA_DIR": str(base / "data"),
        "WANDB_CACHE_DIR": str(base / "cache"),
        "WANDB_CONFIG_DIR": str(base / "config"),
        "WANDB_ARTIFACT_DIR": str(base / "artifacts"),
    }


DEFAULT_BASE_URL = "https://api.wandb.ai"


def _netrc_path() -> Path:
    """The netrc file wandb reads its key from: $NETRC, else ~/.netrc, else ~/_netrc (as wandb looks)."""
    if given := os.environ.get("NETRC"):
        return Path(given).expanduser()
    unix = Path("~/.netrc").expanduser()
    windows = Path("~/_netrc").expanduser()
    return windows if not unix.exists() and windows.exists() else unix


def check_online_credentials(mode: str) -> None:
    """Refuse W&B `online` mode where wandb.init would find no API key, before a run exists: `--wandb online`
    without one was refused only by wandb.init inside the run, which stayed behind failed. The places wandb
    looks are read, no server is asked: $WANDB_API_KEY (or $WANDB_IDENTITY_TOKEN_FILE), else the netrc entry
    of the W&B host ($WANDB_BASE_URL, default api.wandb.ai). Whether the key is valid is still wandb.init's to
    find (`_start_refused`). ConfigError (exit 2) in one line; other modes are not checked."""
    if mode != "online":
        return
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return
    host = urlsplit(os.environ.get("WANDB_BASE_URL") or DEFAULT_BASE_URL).netloc
    path = _netrc_path()
    try:
        entry = netrc.netrc(path).authenticators(host) if host else None
    except (OSError, netrc.NetrcParseError):  # not there, unreadable or malformed: wandb finds no key there
        entry = None
    if entry is not None and entry[2]:
        return
    raise ConfigError(
        f"W&B online mode cannot start: No API key configured (WANDB_API_KEY is not set and {path} holds "
        f"none for {host or 'the W&B host'}); set WANDB_API_KEY or run `wandb login`, or give --wandb "
        "offline (sync the run later with `wandb sync`)"
    )


def _start_refused(mode: str, exc: Exception) -> Exception:
    """What W&B's refusal to start a run in `mode` is here: one line saying what to do (wandb's own messages
    may run over lines)."""
    from wandb import errors

    problem = " ".join(str(exc).split()).rstrip(".")
    offline = "give --wandb offline (sync the run later with `wandb sync`)"
    if isinstance(exc, errors.AuthenticationError):
        return UnauthorizedError(
            f"W&B refused the API key: {problem}; set a valid WANDB_API_KEY or {offline}"
        )
    if isinstance(exc, errors.CommError):
        return ServiceUnavailableError(f"W&B cannot be reached: {problem}; {offline}")
    return ConfigError(f"W&B {mode} mode cannot start: {problem}; or set WANDB_API_KEY, or {offline}")


class WandbTracker:
    """A started wandb run (or a no-op when disabled)."""

    def __init__(self, wandb_run: Any | None, mode: str) -> None:
        self.wandb_run = wandb_run
        self.mode = mode

    @classmethod
    def start(
        cls,
        run: Run,
        *,
        mode: str = "offline",
        config: dict[str, Any] | None = None,
        project: str = "tldrlab",
        name: str | None = None,
        group: str | None = None,
        tags: list[str] | None = None,
    ) -> WandbTracker:
        if mode not in WANDB_MODES:
            raise ConfigError(unknown_choice("wandb mode", mode, WANDB_MODES))
        if mode == "disabled":
            return cls(None, mode)
        try:
            import wandb
        except ImportError as exc:  # pragma: no cover - wandb is a core dependency
            raise DependencyMissingError("wandb is not installed; use --wandb disabled") from exc
        datasets = run.manifest_value("datasets")
        if datasets:  # the registered data sets the run reads, by id (tldrlab data register, uploads)
            config = {**(config or {}), "datasets": datasets}
        env = wandb_env(run.dir)
        for key, value in env.items():
            Path(value).mkdir(parents=True, exist_ok=True)
            os.environ[key] = value
        os.environ.setdefault("WANDB_SILENT", "true")
        try:
            wandb_run = wandb.init(
                project=project,
                name=name or run.id,
                group=group,
                tags=tags or None,
                id=run.id.replace(":", "-"),
                dir=env["WANDB_DIR"],
                mode=mode,  # type: ignore[arg-type]
                config=config or {},
                resume="allow",
                reinit="finish_previous",  # sequential runs in one process (experiment arms, trials)
                settings=wandb.Settings(console="off", x_disable_stats=True),
            )
        except wandb.errors.Error as exc:  # a traceback ended the run: online without an API key, say
            raise _start_refused(mode, exc) from None
        return cls(wandb_run, mode)

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        if self.wandb_run is not None:
            self.wandb_run.log({k: v for k, v in metrics.items() if isinstance(v, int | float)}, step=step)

    def log_table(self, name: str, rows: list[dict[str, Any]], step: int | None = None) -> None:
        if self.wandb_run is None or not rows:
            return
        import wandb

        columns: list[str | int] = list(rows[0])
        table = wandb.Table(columns=columns, data=[[row.get(str(c)) for c in columns] for row in rows])
        self.wandb_run.log({name: table}, step=step)

    def log_model(self, model_dir: Path, name: str = "model") -> None:
        if self.wandb_run is None:
            return
        import wandb

        artifact = wandb.Artifact(name=f"{name}-{self.wandb_run.id}", type="model")
        artifact.add_dir(str(model_dir))
        self.wandb_run.log_artifact(artifact)

    def summary(self, values: dict[str, Any]) -> None:
        """Final values shown in the W&B run's summary."""
        if self.wandb_run is not None:
            self.wandb_run.summary.update({k: v for k, v in values.items() if isinstance(v, int | float)})

    def log_artifact(self, name: str, type_: str, paths: list[Path]) -> None:
        """One artifact of `type_` holding these files (an evaluation's summary, tables and plot)."""
        if self.wandb_run is None or not paths:
            return
        import wandb

        artifact = wandb.Artifact(name=name.replace(":", "-"), type=type_)
        for path in paths:
            artifact.add_file(str(path), name=path.name)
        self.wandb_run.log_artifact(artifact)

    def finish(self, exit_code: int = 0) -> None:
        if self.wandb_run is not None:
            self.wandb_run.finish(exit_code=exit_code)
            self.wandb_run = None
