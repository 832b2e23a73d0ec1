"""Settings: `TLDRLAB_*` environment variables, then an optional `tldrlab.toml`, then defaults.

One home directory holds everything tldrlab writes (runs, the registry, stores, caches) unless a setting
points elsewhere. `get_settings()` is the one way to read them; tests call `get_settings.cache_clear()` after
changing the environment.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)


def default_home() -> Path:
    """A per-user data directory: $XDG_DATA_HOME/tldrlab, else ~/.local/share/tldrlab."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "tldrlab"


def _toml_path() -> Path:
    return Path(os.environ.get("TLDRLAB_CONFIG", "tldrlab.toml"))


class Settings(BaseSettings):
    """Process-wide settings. Every field can be set as `TLDRLAB_<FIELD>` or as a key in `tldrlab.toml`."""

    model_config = SettingsConfigDict(env_prefix="TLDRLAB_", extra="ignore", use_attribute_docstrings=True)

    home: Path = Field(default_factory=default_home)
    """Directory for runs, the registry, stores and caches."""

    database_url: str | None = None
    """`sqlite:///path.db` or `postgresql://...`; unset means a SQLite file `tldrlab.db` under `home`."""

    queue_url: str | None = None
    """`redis://...` selects Redis + RQ for jobs; unset means the embedded SQLite-backed queue."""

    embedder: str = "minilm-onnx"
    """Default sentence embedder: `minilm-onnx` (all-MiniLM-L6-v2 on ONNX Runtime, attention int8: several
    times faster on a CPU, cosine >= 0.99 to the PyTorch vectors), `minilm` (the same model on PyTorch), or a
    sentence-transformers name/path."""

    embed_cache_dir: Path | None = None
    """Where ONNX exports of embedders are cached (made once, on first use); unset: `<home>/cache/embed`."""

    digest_model: str = "smollm2"
    """Language model of the default (two-stage) digest: any model reference (`smollm2`, the bundled
    SmolLM2-135M-Instruct, when installed; an installed name, a run id, a directory or `.gguf` file), or
    `none` (extractive only)."""

    api_key: SecretStr | None = None
    """When set, every API request except health checks must send it as `X-Api-Key`."""

    max_body_bytes: int = 20 * 1024 * 1024
    """Largest request body the API accepts (counted as received, chunked bodies included)."""

    max_upload_bytes: int = 1024 * 1024 * 1024
    """Largest data set `POST /datasets` accepts (streamed to disk)."""

    max_config_bytes: int = 64 * 1024
    """Largest run config (as JSON) the API stores."""

    max_generate_tokens: int = 1024
    """Most tokens one API generation or summary may ask for."""

    data_roots: str | None = None
    """Directories whose files API-submitted runs may read, separated by `:` (os.pathsep); unset means the
    home's `data/` folder. The CLI is not confined."""

    run_heartbeat_s: float = Field(default=2.0, gt=0)
    """Seconds between the heartbeats every executing run writes from a background thread."""

    sse_keepalive_s: float = 15.0
    """Seconds of silence after which server-sent event streams send a `: keep-alive` comment."""

    log_level: str = "WARNING"
    """Console level of tldrlab's own log lines (`--verbose`: DEBUG); files always get DEBUG and above as
    JSON lines."""

    threads: int | None = Field(default=None, ge=1)
    """CPU threads for torch, OpenMP, BLAS, ONNX Runtime and tokenizers (`--threads`); unset: chosen from the
    CPUs this process may use and how busy they are (`tldrlab.threads`)."""

    wandb_mode: str = "offline"
    """`offline` (default), `online` or `disabled`; wandb files always stay inside the run directory."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment beats the TOML file, which beats defaults.
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls, toml_file=_toml_path()))

    @property
    def runs_dir(self) -> Path:
        return self.home / "runs"

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'tldrlab.db'}"

    @property
    def resolved_data_roots(self) -> list[Path]:
        """The data roots, symlinks resolved (they need not exist yet)."""
        raw = [p for p in (self.data_roots or "").split(os.pathsep) if p.strip()]
        return [Path(p).expanduser().resolve() for p in raw] or [(self.home / "data").resolve()]

    def ensure_home(self) -> Path:
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        return self.home


@lru_cache(maxsize=1)
def get_settings(**overrides: Any) -> Settings:
    """The process's settings (cached; call `get_settings.cache_clear()` after changing the environment)."""
    return Settings(**overrides)
