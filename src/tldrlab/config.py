"""Settings: `TLDRLAB_*` environment variables, then an optional `tldrlab.toml`, then defaults.

One home directory holds everything tldrlab writes (runs, the registry, stores, caches) unless a setting
points elsewhere. `get_settings()` is the one way to read them; tests call `get_settings.cache_clear()` after
changing the environment.
"""

from __future__ import annotations

import os
import re
import tomllib
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

from tldrlab.configmodel import ConfigModel
from tldrlab.errors import ConfigError, error_message


def expand_user(path: str | Path) -> Path:
    """`path` with a leading `~` or `~user` expanded. One naming a user this machine does not know is a
    ConfigError saying so: Path.expanduser raises RuntimeError there, a traceback on the command line and a
    500 over the API (`"data": {"path": "~nobody/x"}`)."""
    try:
        return Path(path).expanduser()
    except RuntimeError:
        prefix = str(path).split("/", 1)[0]
        raise ConfigError(f"{path}: cannot expand {prefix}: no such user's home directory here") from None


def load_yaml(text: str) -> Any:
    """YAML (or JSON, which is YAML) text as Python values, as `yaml.safe_load` reads it, except that a key
    given twice in one mapping is an error (a `yaml.YAMLError` naming the key and both lines). PyYAML keeps
    the last value silently: a job file with two `train:` sections trained with the first one's settings
    dropped."""
    import yaml

    class StrictLoader(yaml.SafeLoader):
        pass

    def mapping(loader: StrictLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
        first: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *defaults`, whose keys may be overridden
                continue
            key = loader.construct_object(key_node, deep=True)
            try:
                seen = first.setdefault(key, key_node.start_mark.line)
            except TypeError:  # an unhashable key: the constructor below says what is wrong with it
                continue
            if seen != key_node.start_mark.line:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first on line {seen + 1})", key_node.start_mark
                )
        return loader.construct_mapping(node, deep=deep)

    StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    return yaml.load(text, Loader=StrictLoader)  # a SafeLoader: no arbitrary objects


def default_home() -> Path:
    """A per-user data directory: $XDG_DATA_HOME/tldrlab, else ~/.local/share/tldrlab."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "tldrlab"


GIB = 1024**3
FinishedStatus = Literal["completed", "failed", "cancelled"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
FINISHED_STATUSES: tuple[FinishedStatus, ...] = ("completed", "failed", "cancelled")
DAY_S = 86400.0


class RetentionPolicy(ConfigModel):
    """What `tldrlab runs prune` and the periodic cleanup of `tldrlab serve` delete
    (`tldrlab.runs.retention`).

    Set as `TLDRLAB_RETENTION__<FIELD>` (`TLDRLAB_RETENTION__OLDER_THAN_DAYS=14`) or in a `[retention]` table
    of `tldrlab.toml`; `tldrlab runs prune` flags override it for one pass."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    enabled: bool = False
    """Run the cleanup periodically inside `tldrlab serve` (`tldrlab runs prune` works either way)."""
    every_s: float = Field(default=3600.0, gt=0)
    """Seconds between two periodic cleanups of `tldrlab serve`."""
    dry_run: bool = False
    """Only report what would be deleted (`cleanup_dry_run` events); delete nothing."""
    older_than_days: float = Field(default=30.0, ge=0)
    """A finished run is a candidate once it ended longer ago than this."""
    statuses: list[FinishedStatus] = Field(default_factory=lambda: list(FINISHED_STATUSES))
    """Statuses of the runs that may be pruned (queued and running runs never are)."""
    kinds: list[str] = Field(default_factory=list)
    """Run kinds that may be pruned; empty: every kind. An old name (`eval`) means its kind; an unknown name
    is refused (by `tldrlab serve`, its workers and `runs prune`)."""
    keep_best: int = Field(default=3, ge=0)
    """Keep the best N completed runs of each kind (and `group_by_tag` value) by `metric`."""
    metric: str = "best_eval_loss"
    """Summary metric ranking runs for `keep_best` (runs without it are not protected by it); the default is
    what a training run records for the default `train.best_metric` (`eval_loss`)."""
    metric_mode: Literal["min", "max"] = "min"
    """Whether a lower (`min`) or higher (`max`) `metric` is better."""
    group_by_tag: str | None = None
    """Rank `keep_best` within each value of this tag too (e.g. `experiment`), not only per kind."""
    grace_period_s: float = Field(default=DAY_S, ge=0)
    """A candidate is first marked, and deleted by a later pass once it stayed a candidate this long
    (0: at once)."""
    checkpoints_keep_last: int | None = Field(default=1, ge=0)
    """In finished runs that are kept: step checkpoints beyond the newest K are removed (`best` always
    stays); None leaves checkpoints alone."""
    tokenizers_unreferenced_days: float | None = Field(default=30.0, ge=0)
    """Tokenizer runs no run references for this many days (counted from when a pass first saw them
    unreferenced) are deleted; None keeps them."""
    cache_max_bytes: int | None = Field(default=5 * GIB, ge=0)
    """Caches under `<home>/cache` (embeddings, converted models) are trimmed, least recently used first,
    to this size; None: no limit."""
    cache_min_free_bytes: int | None = Field(default=1 * GIB, ge=0)
    """...and further while the home's file system has less free space than this; None: no limit."""


def _toml_path() -> Path:
    return Path(os.environ.get("TLDRLAB_CONFIG", "tldrlab.toml"))


WANDB_MODES = ("offline", "online", "disabled")
"""The Weights & Biases modes: the `wandb_mode` setting's and every config's `wandb` / `wandb_mode` field
(`tldrlab.runs.paths.WandbMode`)."""


class Settings(BaseSettings):
    """Process-wide settings. Every field can be set as `TLDRLAB_<FIELD>` or as a key in `tldrlab.toml`."""

    model_config = SettingsConfigDict(
        env_prefix="TLDRLAB_",
        env_nested_delimiter="__",
        extra="ignore",
        use_attribute_docstrings=True,
        allow_inf_nan=False,  # TLDRLAB_RUN_HEARTBEAT_S=inf is a mistake, not a setting
    )

    home: Path = Field(default_factory=default_home)
    """Directory for runs, the registry, stores and caches."""

    @field_validator("home", "embed_cache_dir", mode="before")
    @classmethod
    def _home_directory(cls, value: Any) -> Any:
        # `home = "~/tldrlab"` in tldrlab.toml (or a quoted TLDRLAB_HOME) made a directory named "~" in the
        # working directory, and an empty TLDRLAB_HOME put the home in the working directory itself
        if not isinstance(value, str | Path):
            return value
        if not str(value).strip():
            raise ValueError("is empty: give a directory (or leave it unset for the default)")
        return expand_user(value)

    database_url: str | None = None
    """`sqlite:///path.db` or `postgresql://...`; unset means a SQLite file `tldrlab.db` under `home`."""

    queue_url: str | None = None
    """`redis://...` selects Redis + RQ for jobs; unset means the embedded SQLite-backed queue."""

    redis_connect_timeout_s: float = Field(default=0.5, gt=0, le=30)
    """Seconds every Redis client of tldrlab waits for the host name of `queue_url` to be looked up (a DNS
    server that does not answer: "the host name ... could not be resolved within ...s"), and then for a
    connection to it to open. A command that meets a connection error or a timeout is tried once more
    (`service.redis_outage.RETRIES`), so against a host that does not answer (packets dropped, not refused)
    or a name whose DNS server does not, a call gives up after about twice this: `POST /runs` answers 503
    `service_unavailable`, a worker's maintenance pass moves on."""

    redis_timeout_s: float = Field(default=1.0, gt=0, le=300)
    """Seconds every Redis client of tldrlab waits for Redis to answer a command once connected (a hung
    server: twice this, with the one retry). Not the RQ worker's own connection, which blocks for a job
    for minutes and waits longer than that (`service.queue.rq`)."""

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

    max_file_bytes: int = 50 * GIB
    """Largest file `POST /files` stores (run archives; streamed to disk)."""

    file_store: str | None = None
    """Where run archives are kept, addressed by sha256: a directory (local or a mounted volume), or the URL
    of a tldrlab server (`http://host:8000`, its `/files` API, with `api_key`) so several machines share one;
    unset: `<home>/files`."""

    @field_validator("file_store", mode="before")
    @classmethod
    def _store_location(cls, value: Any) -> Any:
        # anything that is not http(s) was taken for a directory, relative to the working directory: an
        # `ftp://host/runs` store became the folder ./ftp:/host and uploads "succeeded" into it
        if not isinstance(value, str) or not re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", value.strip()):
            return value
        scheme, rest = value.strip().split("://", 1)
        if scheme.lower() not in ("http", "https"):
            raise ValueError(
                f"{scheme}:// is not a store tldrlab can use: give a directory, or the http(s):// URL of a "
                "tldrlab server"
            )
        return f"{scheme.lower()}://{rest}"  # HTTP://host is the server too, not a directory named HTTP:

    upload_runs: bool = False
    """Workers pack every finished run into an archive and upload it to the file store (verified, recorded in
    the manifest and registry); retention then only cleans run directories whose upload was verified."""

    retention: RetentionPolicy = Field(default_factory=RetentionPolicy)
    """What `tldrlab runs prune` and the periodic cleanup delete (see `RetentionPolicy`)."""

    max_config_bytes: int = 64 * 1024
    """Largest run config (as JSON) the API stores."""

    max_generate_tokens: int = 1024
    """Most tokens one API generation or summary may ask for."""

    max_model_parameters: int = Field(default=1_000_000_000, ge=1)
    """Most parameters a model built from a run config's settings may have (train, elm_train, lvm_train,
    experiment; the API's submit and the CLI alike): 1e9 is 8x the largest documented size (gpt2 `base`: 124M
    with GPT-2's 50k vocabulary) and 7x the bundled SmolLM2 (135M), and its weights, gradients and AdamW
    moments in fp32 take 16 GB (16 bytes a parameter, before activations). Pretrained models keep their
    checkpoint's size and are not bounded."""

    data_roots: str | None = None
    """Directories whose files API-submitted runs may read, separated by `:` (os.pathsep); unset means the
    home's `data/` folder. The CLI is not confined."""

    run_heartbeat_s: float = Field(default=2.0, gt=0)
    """Seconds between the heartbeats every executing run writes from a background thread."""

    sse_keepalive_s: float = 15.0
    """Seconds of silence after which server-sent event streams send a `: keep-alive` comment."""

    log_level: LogLevel = "WARNING"
    """Console level of tldrlab's own log lines, any case (`--verbose`: DEBUG); files always get DEBUG and
    above as JSON lines."""

    @field_validator("log_level", mode="before")
    @classmethod
    def _level_name(cls, value: Any) -> Any:
        # logging takes only its own names, upper case: anything else was a ValueError traceback from
        # every command, raised where the console was set up
        return value.strip().upper() if isinstance(value, str) else value

    threads: int | None = Field(default=None, ge=1)
    """CPU threads for torch, OpenMP, BLAS, ONNX Runtime and tokenizers (`--threads`); unset: chosen from the
    CPUs this process may use and how busy they are (`tldrlab.threads`)."""

    wandb_mode: str = "offline"
    """`offline` (default), `online` or `disabled` (`WANDB_MODES`); wandb files always stay inside the run
    directory."""

    sweep_storage: str | None = None
    """Default study storage of sweeps (`postgresql://...`); unset: SQLite under the home. A URL with a
    password is better here than in a sweep's config, which runs record."""

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
    def models_dir(self) -> Path:
        """The model store: `<home>/models/<name>/` (installed and imported models, `tldrlab models list`)."""
        return self.home / "models"

    @property
    def files_dir(self) -> Path:
        """The file store's directory when it is local (the default: `<home>/files`)."""
        store = self.file_store
        if store and not store.startswith(("http://", "https://")):
            return expand_user(store)
        return self.home / "files"

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'tldrlab.db'}"

    @property
    def resolved_data_roots(self) -> list[Path]:
        """The data roots, symlinks resolved (they need not exist yet)."""
        raw = [p for p in (self.data_roots or "").split(os.pathsep) if p.strip()]
        return [expand_user(p).resolve() for p in raw] or [(self.home / "data").resolve()]

    def ensure_home(self) -> Path:
        try:
            self.runs_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # a message and exit 2, not a traceback from every command
            raise ConfigError(
                f"cannot use {self.home} as the home directory (TLDRLAB_HOME, home in tldrlab.toml or "
                f"--home): {exc.strerror or exc}"
            ) from None
        return self.home


def settings_error(exc: ValidationError, *, toml: bool = True) -> ConfigError:
    """A settings class's validation error as one message naming each setting and its variable."""
    problems = []
    for error in exc.errors():
        loc = [str(part) for part in error["loc"]]
        where = f"{'.'.join(loc)} (TLDRLAB_{'__'.join(loc).upper()}{f' or {_toml_path()}' if toml else ''})"
        problems.append(f"{where}: {error_message(error)}, got {error['input']!r}")
    return ConfigError("bad setting: " + "; ".join(problems))


@lru_cache(maxsize=1)
def get_settings(**overrides: Any) -> Settings:
    """The process's settings (cached; call `get_settings.cache_clear()` after changing the environment).

    A bad value (`TLDRLAB_THREADS=abc`) or a `tldrlab.toml` that is not TOML is a ConfigError naming the
    setting, its variable and the file: every command reads the settings first, so anything else would be a
    traceback from every command, `tldrlab --help` aside."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise settings_error(exc) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{_toml_path()}: not valid TOML ({exc})") from None
    except SettingsError as exc:  # a list or table setting's variable that is not JSON
        raise env_json_error(exc) from None


def env_json_error(exc: SettingsError) -> ConfigError:
    """pydantic-settings' refusal of an environment variable it decodes as JSON (a list or table setting,
    `TLDRLAB_RETENTION__KINDS=eval`) as one message naming the variables set for that setting."""
    match = re.search(r'field "(\w+)"', str(exc))
    field = match.group(1) if match else "?"
    prefix = f"TLDRLAB_{field.upper()}"
    given = sorted(name for name in os.environ if name.upper().split("__")[0] == prefix)
    refused = getattr(exc.__cause__, "doc", None)  # the text json.loads refused (a JSONDecodeError's)
    culprit = next((name for name in given if os.environ[name] == refused), None)
    if culprit is not None:
        shown = f"{culprit}={refused!r} is not valid JSON"
    else:
        shown = f"{', '.join(given) or prefix} could not be read"
    return ConfigError(
        f"bad setting: {field}: {shown}; a list or table setting in an environment variable is written as "
        """JSON, e.g. TLDRLAB_RETENTION__KINDS='["evaluate"]'"""
    )
