"""Command-line options generated from pydantic config models, and the options every command shares.

`config_flags(TrainJobConfig)` gives one option per field, nested models as dotted names: `--model`,
`--data.path`, `--train.lr`, `--train.plot/--train.no-plot`. The help text is the field's docstring (config
classes set `use_attribute_docstrings=True`), followed by the default and the bounds; Literal fields become
choices; lists and dicts take JSON or, for lists, a comma list (`--arms baseline,compressed`). Underscores
are accepted in option names too (`--train.max_steps`).

`build_config` turns what a command was given into a config: the model's defaults, then `--config FILE`
(YAML or JSON), then the flags. A nested section given in part keeps the rest of its defaults.
"""

from __future__ import annotations

import inspect
import json
import os
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import annotated_types
import typer
import yaml
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from tldrlab.config import get_settings
from tldrlab.errors import ConfigError, NotFoundError
from tldrlab.logs import configure_console
from tldrlab.threads import configure_threads

COMMON_PANEL = "Common options"
CONTEXT_SETTINGS = {"token_normalize_func": lambda token: token.replace("_", "-"), "max_content_width": 110}
"""`--train.max_steps` works as well as `--train.max-steps` (choices compare the same way)."""


@dataclass(frozen=True)
class Flag:
    """One command-line option (or argument) that sets one dotted path of a config."""

    path: str
    """Dotted config path the value goes to, e.g. `train.lr`; "" merges a mapping into the config's top."""
    names: tuple[str, ...]
    """Option names (`--train.lr`, `--lr`), or () for a positional argument."""
    annotation: Any
    """What the command line parses: str, int, float, bool, a Literal, or list[str] for an argument."""
    help: str = ""
    structured: bool = False
    """The text is JSON, or a comma list for list fields (lists, dicts, unions of several types)."""
    panel: str | None = None
    convert: Callable[[Any], Any] | None = None
    """Turns the parsed value into what goes into the config (e.g. `--budget 30m` -> a mapping)."""

    @property
    def switch(self) -> bool:
        """A boolean without a `--no-` form: giving it means True, leaving it out sets nothing."""
        return self.annotation is bool and not any("/" in name for name in self.names)

    @property
    def param(self) -> str:
        """The parameter name the command function gets the value as (unique per option name)."""
        first = self.names[0].split("/")[0].lstrip("-") if self.names else self.path
        return "cfg__" + first.replace(".", "__").replace("-", "_")


# -- fields -> flags ----------------------------------------------------------------------------------------
def _unwrap_optional(annotation: Any) -> tuple[Any, bool]:
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) < len(get_args(annotation)):
            return (args[0] if len(args) == 1 else Union[tuple(args)]), True  # noqa: UP007
    return annotation, False


def model_class(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model an annotation holds (`Section`, `Section | None`), else None."""
    inner, _ = _unwrap_optional(annotation)
    return inner if isinstance(inner, type) and issubclass(inner, BaseModel) else None


BOUNDS = (
    (annotated_types.Ge, "ge", ">="),
    (annotated_types.Gt, "gt", ">"),
    (annotated_types.Le, "le", "<="),
    (annotated_types.Lt, "lt", "<"),
    (annotated_types.MinLen, "min_length", "length >="),
    (annotated_types.MaxLen, "max_length", "length <="),
)


def bounds_text(info: FieldInfo) -> str:
    """The field's bounds as text, e.g. `>= 1, < 1`."""
    return ", ".join(
        f"{sign} {getattr(item, attr)}"
        for item in info.metadata
        for kind, attr, sign in BOUNDS
        if isinstance(item, kind)
    )


def show_value(value: Any) -> str:
    if isinstance(value, BaseModel):
        value = value.model_dump(exclude_unset=True)
    if isinstance(value, list | dict | tuple):
        return json.dumps(value, default=str)
    return str(value)


def field_help(info: FieldInfo, default: Any, *, required: bool) -> str:
    text = " ".join((info.description or "").split())
    notes = ["required"] if required else [f"default: {show_value(default)}"]
    if bounds := bounds_text(info):
        notes.append(bounds)
    return f"{text} [{'; '.join(notes)}]".strip()


def _cli_annotation(annotation: Any) -> tuple[Any, bool]:
    """(what the command line parses, whether the text is structured JSON / a comma list)."""
    inner, _ = _unwrap_optional(annotation)
    if inner in (str, int, float, bool):
        return inner, False
    if get_origin(inner) is Literal:
        return inner, False
    if isinstance(inner, type) and issubclass(inner, Path):
        return str, False
    return str, True


def option_name(path: str) -> str:
    return "--" + path.replace("_", "-")


def config_flags(
    model: type[BaseModel],
    *,
    aliases: Mapping[str, str | tuple[str, ...]] | None = None,
    arguments: tuple[str, ...] = (),
    prefix: str = "",
    defaults: BaseModel | None = None,
) -> list[Flag]:
    """One Flag per leaf field of `model` (nested models recursively), with `aliases` as extra names."""
    aliases = aliases or {}
    flags: list[Flag] = []
    for name, info in model.model_fields.items():
        path = f"{prefix}{name}"
        required = info.is_required() and defaults is None
        if defaults is not None:
            default = getattr(defaults, name)
        else:
            default = None if required else info.get_default(call_default_factory=True)
        section = model_class(info.annotation)
        if section is not None:
            nested_default = default if isinstance(default, BaseModel) else None
            flags += config_flags(
                section, aliases=aliases, arguments=arguments, prefix=path + ".", defaults=nested_default
            )
            continue
        annotation, structured = _cli_annotation(info.annotation)
        extra = aliases.get(path, ())
        extra_names = tuple(
            n for n in ((extra,) if isinstance(extra, str) else extra) if n != option_name(path)
        )
        if path in arguments:
            flags.append(
                Flag(
                    path,
                    (),
                    list[str] if structured else str,
                    field_help(info, default, required=required),
                    structured,
                )
            )
            continue
        if annotation is bool:
            names = (f"{option_name(path)}/{_negative(path)}", *extra_names)
        else:
            names = (option_name(path), *extra_names)
        panel = prefix.rstrip(".") + " options" if prefix else None
        flags.append(
            Flag(path, names, annotation, field_help(info, default, required=required), structured, panel)
        )
    return flags


def _negative(path: str) -> str:
    *parents, leaf = path.split(".")
    return "--" + ".".join([*parents, "no-" + leaf]).replace("_", "-")


def find_field(model: type[BaseModel], names: tuple[str, ...], prefix: str = "") -> str | None:
    """Dotted path of the first field called one of `names`, top level first, then one section down."""
    for name in model.model_fields:
        if name in names:
            return prefix + name
    if prefix:
        return None
    for name, info in model.model_fields.items():
        section = model_class(info.annotation)
        if section is not None and (found := find_field(section, names, prefix=f"{name}.")):
            return found
    return None


# -- raw configs --------------------------------------------------------------------------------------------
def read_config_file(path: Path) -> dict[str, Any]:
    """A YAML or JSON file holding a mapping of settings."""
    if not path.is_file():
        raise NotFoundError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))  # YAML is a superset of JSON
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: cannot parse the config: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the config must be a mapping of settings, got {type(data).__name__}")
    return data


def deep_merge(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def set_path(tree: dict[str, Any], path: str, value: Any) -> None:
    if not path:
        tree.update(deep_merge(tree, value))
        return
    *parents, leaf = path.split(".")
    for part in parents:
        child = tree.setdefault(part, {})
        if not isinstance(child, dict):
            child = tree[part] = {}
        tree = child
    tree[leaf] = value


def with_section_defaults(model: type[BaseModel], raw: Mapping[str, Any]) -> dict[str, Any]:
    """`raw` with every nested section it gives in part completed from that section's default value.

    ELM's `train` section defaults to batch_size 8 and lr 1e-3: `{"train": {"max_steps": 5}}` keeps them,
    where plain validation would fall back to TrainConfig's own defaults.
    """
    out = dict(raw)
    for name, info in model.model_fields.items():
        value = out.get(name)
        section = model_class(info.annotation)
        if section is not None and value is None and info.is_required():
            value = {}  # so that a missing required section is reported by its missing fields
        if section is None or not isinstance(value, Mapping):
            continue
        if not info.is_required():
            default = info.get_default(call_default_factory=True)
            if isinstance(default, BaseModel):
                value = deep_merge(default.model_dump(exclude_unset=True), value)
        out[name] = with_section_defaults(section, value)
    return out


def parse_structured(flag: Flag, text: str) -> Any:
    """JSON when the text is JSON (a list, a mapping, a number); otherwise a comma list or the text."""
    stripped = text.strip()
    if stripped[:1] in '[{"' or stripped in ("null", "true", "false"):
        try:
            return json.loads(stripped)
        except ValueError as exc:
            raise ConfigError(f"{flag.names[0] if flag.names else flag.path}: not valid JSON: {exc}") from exc
    return [item.strip() for item in stripped.split(",") if item.strip()] if "," in stripped else stripped


def flag_overrides(flags: list[Flag], values: Mapping[str, Any], model: type[BaseModel]) -> dict[str, Any]:
    """The config tree the given flags set (flags left out set nothing)."""
    tree: dict[str, Any] = {}
    for flag in flags:
        value = values.get(flag.param)
        if value is None or value == () or value == [] or (flag.switch and not value):
            continue
        if isinstance(value, tuple):
            value = list(value)
        if flag.structured and isinstance(value, str):
            value = parse_structured(flag, value)
            if _is_list_field(model, flag.path) and not isinstance(value, list):
                value = [value]
        if flag.convert is not None:
            value = flag.convert(value)
        set_path(tree, flag.path, value)
    return tree


def _is_list_field(model: type[BaseModel], path: str) -> bool:
    *parents, leaf = path.split(".")
    for part in parents:
        info = model.model_fields.get(part)
        section = model_class(info.annotation) if info else None
        if section is None:
            return False
        model = section
    info = model.model_fields.get(leaf)
    return info is not None and get_origin(_unwrap_optional(info.annotation)[0]) is list


def validate(model: type[BaseModel], raw: Mapping[str, Any], *, what: str) -> BaseModel:
    """`raw` validated against `model`; every problem named by its dotted path in one ConfigError."""
    try:
        return model.model_validate(with_section_defaults(model, raw))
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            where = ".".join(str(p) for p in error["loc"]) or "config"
            hint = (
                f" (give {option_name(where)} or set it in --config FILE)"
                if error["type"] == "missing"
                else ""
            )
            problems.append(f"{where}: {error['msg']}{hint}")
        raise ConfigError(f"invalid {what} config: " + "; ".join(problems)) from None


# -- shared options -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Shared:
    """An option every command (or every run-kind command) has, declared once here."""

    param: str
    names: tuple[str, ...]
    annotation: Any
    help: str
    fields: tuple[str, ...] = ()
    """For run kinds: the config field it sets, wherever the config keeps it (e.g. seed or train.seed)."""


HOME = Shared("home", ("--home",), Path | None, "Home directory for this command (runs, registry, stores).")
QUIET = Shared("quiet", ("--quiet", "-q"), bool, "Warnings and errors only; no progress bars.")
VERBOSE = Shared(
    "verbose",
    ("--verbose", "-v"),
    bool,
    "Everything on the console: debug lines, library warnings, W&B banners (default: progress bars, results, "
    "warnings and errors).",
)
THREADS = Shared(
    "threads",
    ("--threads",),
    int | None,
    "CPU threads for torch, OpenMP, BLAS, ONNX Runtime and tokenizers (default: TLDRLAB_THREADS, else the "
    "CPUs this process may use, shared between workers / jobs and capped by those idle).",
)
EVERY_COMMAND = (HOME, QUIET, VERBOSE, THREADS)
"""Options of every command: the root takes them (`tldrlab --home DIR runs list`), run kinds too."""

RUN_KIND_OPTIONS = (
    Shared("config_file", ("--config",), Path | None, "A YAML or JSON file of settings; flags override it."),
    Shared("resume", ("--resume",), str | None, "Continue this run (id or prefix) from its last checkpoint."),
    Shared("print_config", ("--print-config",), bool, "Print the config this would run (YAML), then exit."),
    Shared("as_json", ("--json",), bool, "Print the result as JSON."),
    Shared("seed", ("--seed",), int | None, "Seed of everything random in the run.", ("seed",)),
    Shared("device", ("--device",), str | None, "auto, cpu or cuda.", ("device",)),
    Shared(
        "wandb", ("--wandb",), str | None, "W&B mode: offline, online or disabled.", ("wandb", "wandb_mode")
    ),
)
"""Options of every run-kind command; those with `fields` appear when the kind's config has that field."""


def apply_common(home: Path | None, quiet: bool, verbose: bool, threads: int | None = None) -> None:
    """What the options of every command do: the home for this process, the console, the thread count."""
    if home is not None:
        os.environ["TLDRLAB_HOME"] = str(home.expanduser().resolve())
        get_settings.cache_clear()
    if verbose or quiet:
        configure_console("DEBUG" if verbose else "WARNING", verbose=verbose)
    if threads is not None:
        if threads < 1:
            raise ConfigError(f"--threads must be at least 1, got {threads}")
        configure_threads(threads)


# -- commands -----------------------------------------------------------------------------------------------
def _option(default: Any, names: tuple[str, ...], help: str, panel: str | None) -> Any:
    return typer.Option(default, *names, help=help, show_default=False, rich_help_panel=panel)


def signature_callback(params: list[tuple[str, Any, Any]], body: Callable[[dict[str, Any]], None]) -> Any:
    """A function typer can read: keyword parameters (name, annotation, typer.Option/Argument) -> body."""

    def callback(**values: Any) -> None:
        body(values)

    callback.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=d, annotation=a) for n, a, d in params]
    )
    callback.__annotations__ = {n: a for n, a, _ in params}
    return callback


def flag_params(flags: list[Flag]) -> list[tuple[str, Any, Any]]:
    params: list[tuple[str, Any, Any]] = []
    for flag in flags:
        if not flag.names:
            annotation = list[str] | None if get_origin(flag.annotation) is list else str | None
            params.append((flag.param, annotation, typer.Argument(None, help=flag.help, show_default=False)))
        elif flag.switch:
            params.append((flag.param, bool, _option(False, flag.names, flag.help, flag.panel)))
        else:
            params.append(
                (flag.param, flag.annotation | None, _option(None, flag.names, flag.help, flag.panel))
            )
    return params


def shared_params(shared: tuple[Shared, ...]) -> list[tuple[str, Any, Any]]:
    out = []
    for option in shared:
        default = False if option.annotation is bool else None
        out.append(
            (option.param, option.annotation, _option(default, option.names, option.help, COMMON_PANEL))
        )
    return out


class LazyCommand(typer.core.TyperCommand):
    """A command whose options are built the first time they are needed (parsing, `--help`, docs), so that
    listing commands never imports a config class."""

    build: Callable[[], Any] = staticmethod(lambda: None)  # set by `lazy_command`: returns the callback

    def __init__(self, **kwargs: Any) -> None:
        self._built_params: list[Any] | None = None
        super().__init__(**kwargs)

    @property  # type: ignore[override]
    def params(self) -> list[Any]:
        if self._built_params is None:
            built = typer.main.get_command_from_info(
                typer.models.CommandInfo(name=self.name, callback=self.build()),
                pretty_exceptions_short=True,
                rich_markup_mode=self.rich_markup_mode,
            )
            self._built_params, self.callback = built.params, built.callback
        return self._built_params

    @params.setter
    def params(self, value: list[Any]) -> None:
        pass  # built from the config class instead


def lazy_command(build: Callable[[], Any]) -> type[LazyCommand]:
    return type("GeneratedCommand", (LazyCommand,), {"build": staticmethod(build)})
