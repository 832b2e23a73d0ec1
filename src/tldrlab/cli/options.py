"""Command-line options generated from pydantic config models, and the options every command shares.

`config_flags(TrainJobConfig)` gives one option per field, nested models as dotted names: `--model`,
`--data.path`, `--train.lr`, `--train.plot/--train.no-plot`. The help text is the field's docstring (config
classes are `tldrlab.configmodel.ConfigModel`s), followed by the default, the bounds and, for a field marked
`tldrlab.choices.OneOf`, the names it accepts (read from its registry each time, so a name registered later
is listed and accepted: help text, not a click.Choice fixed when the options are built); Literal fields become
choices; list fields repeat (`--seeds 1 --seeds 2`) and also take a comma list (`--seeds 1,2`, unless the
command marks the field verbatim) or JSON; mappings repeat as KEY=VALUE (`--map document=text`) or take a
JSON object; unions take JSON. Underscores work in option names too (`--train.max_steps`).

A run-kind command (`runkinds`) builds its config from the model's defaults, then `--config FILE` (YAML or
JSON), then the flags; `config_command` makes a command of any other class the same way (without the file).
What a shorthand only implies (`lvm train --steps N` warms up over min(50, N) steps: `Flag.implies`) is no
flag's value: it goes in below the file, so a warm-up the file sets is kept.
"""

from __future__ import annotations

import inspect
import json
import math
import os
import types
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import typer
import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from tldrlab.choices import choices_text
from tldrlab.config import expand_user, get_settings, load_yaml
from tldrlab.errors import ConfigError, InvalidConfigError, NotFoundError, yaml_problem
from tldrlab.kinds import (
    bounds_text,
    deep_merge,
    section_class,
    settings_help,
    show_value,
    validate_model,
)
from tldrlab.logs import configure_console, show_progress_bars
from tldrlab.targets import load_target
from tldrlab.threads import configure_threads

CONTEXT_SETTINGS = {"max_content_width": 110}

Parse = Literal["plain", "list", "json", "pairs", "text_pairs"]


@dataclass(frozen=True)
class Flag:
    """One command-line option (or argument) that sets one dotted path of a config."""

    path: str
    """Dotted config path the value goes to, e.g. `train.lr`; "" merges a mapping into the config's top."""
    names: tuple[str, ...]
    """Option names (`--train.lr`, `--lr`), or () for a positional argument."""
    annotation: Any
    """What the command line parses for one occurrence: str, int, float, bool or a Literal."""
    help: str = ""
    parse: Parse = "plain"
    """plain: the value as typed; list: repeatable, comma lists or JSON lists; json: JSON (else the text);
    pairs: repeatable KEY=VALUE (values as JSON when they parse) or JSON objects; text_pairs: values as is."""
    verbatim: bool = False
    """A list whose items may hold commas (prompts): one item per occurrence, never split."""
    convert: Callable[[Any], Any] | None = None
    """Turns the parsed value into what goes into the config (e.g. `--budget 30m` -> a mapping)."""
    metavar: str | None = None
    """A positional argument's name in the help (default: its path in capitals); one named so is required."""
    implies: Callable[[Any], dict[str, Any]] | None = None
    """Settings a shorthand implies besides what it sets, from its parsed value (`--steps N`: a warm-up of
    min(50, N) steps): the user gave none of them, so they rank below a config file's values as well as
    below every flag (`implied_settings`), while what the flag sets ranks as a flag."""

    @property
    def switch(self) -> bool:
        """A boolean without a `--no-` form: giving it means True, leaving it out sets nothing."""
        return self.annotation is bool and not any("/" in name for name in self.names)

    @property
    def shown(self) -> str:
        """The option as messages name it: the last long alias, as users know it (`--map` of `--mapping`)."""
        return next((n.split("/")[0] for n in reversed(self.names) if n[:2] == "--"), self.path)

    @property
    def param(self) -> str:
        """The parameter name the command function gets the value as (unique per option name)."""
        first = self.names[0].split("/")[0].lstrip("-") if self.names else self.path
        return "cfg__" + first.replace(".", "__").replace("-", "_")


# -- fields -> flags ----------------------------------------------------------------------------------------
def _unwrap_optional(annotation: Any) -> Any:
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def field_help(info: FieldInfo, default: Any, *, required: bool, enforced: bool = False) -> str:
    """The field's docstring (a settings field's with the fields it takes), then its default (or
    "required"), bounds and choices (`OneOf` names); an `enforced` argument's help leaves "required" to typer,
    which says it of every required argument."""
    notes = ([] if enforced else ["required"]) if required else [f"default: {show_value(default)}"]
    notes += [note for note in (bounds_text(info), choices_text(info)) if note]
    text = " ".join(f"{info.description or ''} {settings_help(info)}".split())
    return f"{text} [{'; '.join(notes)}]".strip().removesuffix(" []")


def _parsing(annotation: Any) -> tuple[Any, Parse]:
    """(what one occurrence parses as, how the text becomes the value)."""
    inner = _unwrap_optional(annotation)
    while get_origin(inner) is Annotated:
        # a constrained type (`Annotated[str, StringConstraints(...)] | None`) is the type it constrains:
        # taken for a union, `--q` read its text as JSON, refusing "" and "[draft] recipes" as not JSON
        inner = get_args(inner)[0]
    if inner in (str, int, float, bool) or get_origin(inner) is Literal:
        return inner, "plain"
    if isinstance(inner, type) and issubclass(inner, Path):
        return str, "plain"
    if isinstance(inner, type) and issubclass(inner, Enum):  # choices, as a Literal of the values
        return Literal.__getitem__(tuple(member.value for member in inner)), "plain"
    if get_origin(inner) in (list, tuple, set):
        return str, "list"
    if get_origin(inner) is dict:
        return str, "text_pairs" if get_args(inner)[1:] == (str,) else "pairs"
    return str, "json"


def option_name(path: str) -> str:
    return "--" + path.replace("_", "-")


def _negative(path: str) -> str:
    *parents, leaf = path.split(".")
    return "--" + ".".join([*parents, "no-" + leaf]).replace("_", "-")


def config_flags(
    model: type[BaseModel],
    *,
    aliases: Mapping[str, str | tuple[str, ...]] | None = None,
    arguments: tuple[str, ...] = (),
    verbatim: tuple[str, ...] = (),
    command_defaults: Mapping[str, Any] | None = None,
    settings: Mapping[str, type[BaseModel]] | None = None,
    prefix: str = "",
    defaults: BaseModel | None = None,
    enforce_required: bool = False,
) -> list[Flag]:
    """One Flag per leaf field of `model` (nested models recursively), with `aliases` as extra names;
    `command_defaults` (dotted path -> value) are what the command fills in when nothing else does;
    `settings` names dict fields holding another class's fields (`model_settings`: LVMConfig), whose fields
    get options as a nested model's do (besides the dict's own JSON option); with `enforce_required` (a
    command without a config file that could give it) a required field taken positionally is a required
    argument (`Missing argument 'RUN'`, exit 2)."""
    aliases = {p: (n,) if isinstance(n, str) else tuple(n) for p, n in (aliases or {}).items()}
    command_defaults, settings = command_defaults or {}, settings or {}
    flags: list[Flag] = []
    for name, info in model.model_fields.items():
        path = f"{prefix}{name}"
        required = info.is_required() and defaults is None and path not in command_defaults
        if path in command_defaults:
            default = command_defaults[path]
        elif defaults is not None:
            default = getattr(defaults, name)
        else:
            default = None if required else info.get_default(call_default_factory=True)
        section = section_class(info.annotation) or settings.get(path)
        if section is None or path in settings:  # a leaf; a settings dict is one too (as JSON / KEY=VALUE)
            annotation, parse = _parsing(info.annotation)
            enforced = required and enforce_required and path in arguments
            text = field_help(info, default, required=required, enforced=enforced)
            if path in arguments:
                metavar = path.upper() if enforced else None
                flags.append(Flag(path, (), annotation, text, parse, verbatim=True, metavar=metavar))
            else:
                main = f"{option_name(path)}/{_negative(path)}" if annotation is bool else option_name(path)
                names = (main, *(n for n in aliases.get(path, ()) if n != main))
                flags.append(Flag(path, names, annotation, text, parse, verbatim=path in verbatim))
        if section is not None:
            flags += config_flags(
                section,
                aliases=aliases,
                arguments=arguments,
                verbatim=verbatim,
                command_defaults=command_defaults,
                settings=settings,
                prefix=f"{path}.",
                enforce_required=enforce_required,
                defaults=default if isinstance(default, BaseModel) else None,
            )
    return flags


def find_field(model: type[BaseModel], names: tuple[str, ...]) -> str | None:
    """Dotted path of the first field called one of `names`, top level first, then one section down."""
    if found := next((n for n in model.model_fields if n in names), None):
        return found
    for name, info in model.model_fields.items():
        section = section_class(info.annotation)
        if section and (inner := next((n for n in section.model_fields if n in names), None)):
            return f"{name}.{inner}"
    return None


# -- raw configs --------------------------------------------------------------------------------------------
def read_config_file(path: Path) -> dict[str, Any]:
    """A YAML or JSON file holding a mapping of settings."""
    if path.is_dir():  # "not found" misled: it is there, as a directory
        raise ConfigError(f"{path} is a directory: give a config file (YAML or JSON)")
    # a pipe (`--config <(yq ... base.yaml)`, /dev/stdin) is read as a file is: "config file not found"
    # answered one that was there
    if not path.exists():
        raise NotFoundError(f"config file not found: {path}")
    try:
        data = load_yaml(path.read_text(encoding="utf-8"))  # YAML is a superset of JSON
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: cannot parse the config: {yaml_problem(exc)}") from exc
    except UnicodeDecodeError as exc:  # a binary file or another encoding: not a traceback
        raise ConfigError(f"{path}: the config is not UTF-8 text (byte {exc.start})") from None
    if not isinstance(data, dict | None):
        raise ConfigError(f"{path}: the config must be a mapping of settings, got {type(data).__name__}")
    return data or {}


def set_path(tree: dict[str, Any], path: str, value: Any) -> None:
    if not path:
        tree.update(deep_merge(tree, value))
        return
    *parents, leaf = path.split(".")
    for part in parents:
        if not isinstance(tree.get(part), dict):
            tree[part] = {}
        tree = tree[part]
    tree[leaf] = value


def _json(flag: Flag, text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{flag.shown}: not valid JSON: {exc}") from exc


def pair_value(flag: Flag, key: str, text: str) -> Any:
    """The value of a `KEY=VALUE` pair: JSON when it parses (numbers, booleans, ...), else the text. A number
    that is not finite is a usage error here, however it is spelled: JSON's `Infinity` / `NaN` / `1e400`,
    and Python's bare `inf` / `nan`, which are not JSON and would otherwise stay text that only the code
    using the value refuses, after the command has done its first work."""
    try:
        value = number = json.loads(text)
    except ValueError:  # not JSON: the text, unless Python reads it as a number (`inf`, `nan`)
        value = text
        try:
            number = float(text)
        except ValueError:
            return value
    if isinstance(number, float) and not math.isfinite(number):
        raise ConfigError(
            f"{flag.shown} {key}={text}: not a finite number; give a finite one "
            f"(or the word as a JSON string: {key}='\"{text}\"')"
        )
    return value


def parse_value(flag: Flag, value: Any) -> Any:
    """One flag's parsed value as it goes into the config."""
    if flag.parse in ("pairs", "text_pairs"):
        pairs: dict[str, Any] = {}
        for text in value if isinstance(value, list | tuple) else [value]:
            if text.lstrip().startswith("{"):  # a JSON object
                pairs.update(_json(flag, text))
                continue
            key, sep, rest = (part.strip() for part in text.partition("="))
            if not sep or not key:
                raise ConfigError(f"{flag.shown} expects KEY=VALUE (key=value), got {text!r}")
            pairs[key] = pair_value(flag, key, rest) if flag.parse == "pairs" else rest
        value = pairs
    elif flag.parse == "list":
        items: list[Any] = []
        for text in value if isinstance(value, list | tuple) else [value]:
            if text.lstrip().startswith("["):
                items += _json(flag, text)
            elif flag.verbatim:
                items.append(text)
            else:
                parts = [t.strip() for t in text.split(",") if t.strip()]
                if not parts:  # dropped, `runs prune --kind ''` read as no kinds: every kind pruned
                    raise ConfigError(f"{flag.shown} is empty: give a value (or [] for none)")
                items += parts
        value = items
    elif flag.parse == "json" and isinstance(value, str):
        looks_json = value.strip()[:1] in '[{"' or value.strip() in ("null", "true", "false")
        value = _json(flag, value) if looks_json else value
    return flag.convert(value) if flag.convert is not None else value


def _left_out(flag: Flag, value: Any) -> bool:
    return value is None or value in ((), []) or (flag.switch and not value)


def flag_overrides(flags: list[Flag], values: Mapping[str, Any]) -> dict[str, Any]:
    """The config tree the given flags set (flags left out set nothing; what shorthands imply:
    `implied_settings`)."""
    tree: dict[str, Any] = {}
    for flag in flags:
        value = values.get(flag.param)
        if _left_out(flag, value):
            continue
        if not flag.path:
            # a shorthand setting several fields (`lvm train --steps N` also sets the warm-up) yields to a
            # flag naming one of them: `--steps 10 --train.warmup-steps 5` warmed up over all 10 steps
            tree.update(deep_merge(parse_value(flag, value), tree))
            continue
        set_path(tree, flag.path, parse_value(flag, value))
    return tree


def implied_settings(flags: list[Flag], values: Mapping[str, Any]) -> dict[str, Any]:
    """The config tree the given shorthands imply (`Flag.implies`), to go in below a config file's values:
    `lvm train --config c.yaml --steps 10` warmed up over 10 steps though c.yaml set 5."""
    tree: dict[str, Any] = {}
    for flag in flags:
        value = values.get(flag.param)
        if flag.implies is not None and not _left_out(flag, value):
            tree = deep_merge(tree, flag.implies(value))
    return tree


# -- shared options -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Shared:
    """An option every command (or every run-kind command) has, declared once here."""

    param: str
    names: tuple[str, ...]
    annotation: Any
    help: str
    fields: tuple[str, ...] = ()
    """For run kinds: the config field it names, wherever the config keeps it (e.g. seed or train.seed)."""


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

JSON = Shared("as_json", ("--json",), bool, "Print the result as JSON (for scripts).")
"""`--json` of every command that prints a result (a listing: one JSON line per item)."""
RUN_KIND_OPTIONS = (
    Shared("config_file", ("--config",), Path | None, "A YAML or JSON file of settings; flags override it."),
    Shared("resume", ("--resume",), str | None, "Continue this run (id or prefix) from its last checkpoint."),
    Shared("print_config", ("--print-config",), bool, "Print the config this would run (YAML), then exit."),
    JSON,
    Shared("seed", ("--seed",), int | None, "Seed of everything random in the run.", ("seed",)),
    Shared("device", ("--device",), str | None, "auto, cpu or cuda.", ("device",)),
    Shared(
        "wandb", ("--wandb",), str | None, "W&B mode: offline, online, disabled.", ("wandb", "wandb_mode")
    ),
)
"""Options of every run-kind command; those with `fields` name that field when the kind's config has it."""


def apply_common(home: Path | None, quiet: bool, verbose: bool, threads: int | None = None) -> None:
    """What the options of every command do: the home for this process, the console, the thread count."""
    if home is not None:
        os.environ["TLDRLAB_HOME"] = str(expand_user(home).resolve())
        get_settings.cache_clear()
    if verbose or quiet:
        configure_console("DEBUG" if verbose else "WARNING", verbose=verbose)
    if quiet:  # "Warnings and errors only; no progress bars": every bar of the runs this command starts
        show_progress_bars(False)
    if threads is not None:
        if threads < 1:
            raise ConfigError(f"--threads must be at least 1, got {threads}")
        configure_threads(threads)


# -- commands -----------------------------------------------------------------------------------------------
def path_parser(name: str) -> Callable[[str], Path]:
    """A typer `parser` for a path option or argument `name`: a blank value is a usage error naming it.
    Click would turn "" into Path(".") before any check could see it, so that `--home ""` quietly meant
    the working directory and `--config ""` read "config file not found: .". A leading `~` is the user's home
    (`expand_user`): a shell leaves `--out=~/backups/` as it is, which named a directory `~` here."""

    def path(value: str | Path) -> Path:
        if isinstance(value, Path):  # a default, already a path
            return value
        if not value.strip():
            raise ConfigError(f"{name} is empty: give a path")
        return expand_user(value)

    return path


def _option(default: Any, names: tuple[str, ...], help: str, annotation: Any = None) -> Any:
    parser = path_parser(names[0]) if annotation in (Path, Path | None) else None
    return typer.Option(default, *names, help=help, show_default=False, parser=parser)


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
        many = flag.parse in ("list", "pairs", "text_pairs")
        if not flag.names:
            annotation = list[str] | None if many else str | None
            required = ... if flag.metavar else None
            argument = typer.Argument(
                required, help=flag.help, show_default=False, metavar=flag.metavar or flag.path.upper()
            )
            params.append((flag.param, annotation, argument))
        elif flag.switch:
            params.append((flag.param, bool, _option(False, flag.names, flag.help)))
        else:
            annotation = list[flag.annotation] | None if many else flag.annotation | None  # type: ignore[name-defined]
            params.append((flag.param, annotation, _option(None, flag.names, flag.help)))
    return params


def shared_params(shared: tuple[Shared, ...]) -> list[tuple[str, Any, Any]]:
    return [
        (
            o.param,
            o.annotation,
            _option(False if o.annotation is bool else None, o.names, o.help, o.annotation),
        )
        for o in shared
    ]


@contextmanager
def _usage_errors_in(ctx: Any) -> Iterator[None]:
    """Usage errors raised within give `ctx` as where they arose, when they name none: click's parser raises
    "Option '--tail' requires an argument." without it, and the help hint is made from it."""
    try:
        yield
    except typer.TyperException as exc:
        if getattr(exc, "ctx", False) is None:  # a usage error (it has `ctx`) that names no command
            exc.ctx, exc.cmd = ctx, ctx.command  # type: ignore[attr-defined]
        raise


def _typed(param: Any, ctx: Any, text: str) -> Any:
    """An option's text as its type reads it (`1e-3` is `0.001`), or the text where it does not read: the
    parse that follows says why."""
    try:
        return param.process_value(ctx, text)
    except Exception:
        return text


def refuse_two_values_for_one_setting(
    params: list[Any], ctx: Any, args: list[str], same_setting: tuple[tuple[str, ...], ...] = ()
) -> None:
    """A usage error naming both when two names of one option (`--lr` and `--train.lr`, `--bertscore` and
    `--no-bertscore`), or two options of one `same_setting` group, are given different values: click keeps
    the last occurrence of an option and the config one of two fields, dropping the other without a word.
    One name given twice keeps its last value, as options always do (a command line that overrides itself)."""
    options: dict[str, tuple[Any, Any]] = {}  # option name -> (its parameter, the setting it sets)
    for param in params:
        if param.param_type_name != "option":
            continue
        names = [*param.opts, *param.secondary_opts]
        setting = next((group for group in same_setting if set(group) & set(names)), param.name)
        options.update((name, (param, setting)) for name in names)
    first: dict[Any, tuple[str, str, Any]] = {}  # setting -> (name, as shown, value) of its first occurrence
    tokens = iter(args)
    for token in tokens:
        if token == "--":  # what follows is arguments
            return
        name, equals, text = token.partition("=")
        param, setting = options.get(name, (None, None)) if token[:1] == "-" else (None, None)
        if param is None:
            continue
        if param.is_flag:
            if equals or not param.secondary_opts:  # a switch: giving it only ever says yes
                continue
            shown, value = name, name in param.opts
        else:
            values = [text] if equals else [next(tokens, "") for _ in range(param.nargs)]
            if param.multiple or param.nargs != 1:  # repeatable, or several values: each occurrence counts
                continue
            shown, value = f"{name} {values[0]}", _typed(param, ctx, values[0])
        seen = first.setdefault(setting, (name, shown, value))
        if seen[0] != name and seen[2] != value:
            ctx.fail(f"{seen[1]} and {shown} set the same setting: give one of them")


class ContextCommand(typer.core.TyperCommand):
    """A command whose usage errors all name it (see `_usage_errors_in`), and that refuses two values for one
    setting (see `refuse_two_values_for_one_setting`)."""

    same_setting: tuple[tuple[str, ...], ...] = ()
    """Groups of option names of different fields that set one thing (`--max-steps`, `--train.max-steps`)."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        with _usage_errors_in(ctx):
            refuse_two_values_for_one_setting(self.params, ctx, args, self.same_setting)
            return super().parse_args(ctx, args)


class ContextGroup(typer.core.TyperGroup):
    """A group whose usage errors all name it (`tldrlab --threads`, see `_usage_errors_in`)."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        with _usage_errors_in(ctx):
            return super().parse_args(ctx, args)


def name_every_usage_error(app: typer.Typer) -> None:
    """Make `app`'s groups and commands, its sub-apps' too, ContextGroup and ContextCommand where they are
    typer's own classes (once every module registered its commands), so no usage error goes without the
    command it arose in, whichever way a command was added."""
    if isinstance(app.info.cls, typer.models.DefaultPlaceholder) or app.info.cls is None:
        app.info.cls = ContextGroup
    for command in app.registered_commands:
        if command.cls in (None, typer.core.TyperCommand):
            command.cls = ContextCommand
    for group in app.registered_groups:
        if group.typer_instance is not None:
            name_every_usage_error(group.typer_instance)


class LazyCommand(ContextCommand):
    """A command whose options are built the first time they are needed (parsing, `--help`, docs), so that
    listing commands never imports a config class."""

    build: Callable[[], Any] = staticmethod(lambda: None)  # set by `add_command`: returns the callback
    config: Callable[[], type[BaseModel]] | None = None  # set by `add_command`: the class the options fill

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

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        """`--train.max_steps` works as well as `--train.max-steps` (option names only, never values)."""
        names = [a.split("=", 1) for a in args]
        args = [n[0].replace("_", "-") + "".join("=" + v for v in n[1:]) if n[0][:2] == "--" else a
                for n, a in zip(names, args, strict=True)]  # fmt: skip
        return super().parse_args(ctx, args)


def add_command(
    app: typer.Typer,
    name: str,
    build: Callable[[], Any],
    help: str | None,
    *,
    config: Callable[[], type[BaseModel]],
    same_setting: tuple[tuple[str, ...], ...] = (),
    **kw: Any,
) -> None:
    """Add command `name` whose callback (options included) `build` makes when first needed; `config` gives
    the class its options are validated as (imported when called; tests walk every command's);
    `same_setting` groups option names of different fields that set one thing (ContextCommand)."""
    attributes = {"build": staticmethod(build), "config": staticmethod(config), "same_setting": same_setting}
    command = type("GeneratedCommand", (LazyCommand,), attributes)
    app.command(name, cls=command, help=help, context_settings=CONTEXT_SETTINGS, **kw)(lambda: None)


AS_JSON: Any = _option(False, JSON.names, JSON.help)
"""`--json` as a parameter default of a command written with typer."""


def config_command(
    app: typer.Typer,
    name: str,
    model: type[BaseModel] | str,
    run: Callable[..., None],
    *,
    aliases: Mapping[str, str | tuple[str, ...]] | None = None,
    arguments: tuple[str, ...] = (),
    verbatim: tuple[str, ...] = (),
    extra: tuple[Flag, ...] = (),
    exclude: tuple[str, ...] = (),
    defaults: Mapping[str, Any] | None = None,
    base: Callable[[], Mapping[str, Any]] = dict,
    as_json: bool = False,
    hidden: bool = False,
) -> None:
    """Add command `name`: its options are `model`'s fields (a class or "module:Class", imported when the
    options are built) (less `exclude`, `arguments` positional, `verbatim` lists never split at commas, plus
    `extra` flags, and `--json` with `as_json`); it validates base() < `defaults` (dotted path -> value,
    shown as the defaults) < flags as a `model` and calls `run(config)` (`run(config, as_json=...)`). Its
    help is `run`'s docstring."""

    def config_class() -> type[BaseModel]:
        return load_target(model) if isinstance(model, str) else model  # type: ignore[no-any-return]

    def build() -> Any:
        cls = config_class()
        flags = config_flags(
            cls,
            aliases=aliases,
            arguments=arguments,
            verbatim=verbatim,
            command_defaults=defaults,
            enforce_required=True,
        )
        flags = [f for f in flags if f.path not in exclude] + list(extra)

        def body(values: dict[str, Any]) -> None:
            raw = dict(base())
            for path, value in (defaults or {}).items():
                set_path(raw, path, value)
            raw = deep_merge(deep_merge(raw, implied_settings(flags, values)), flag_overrides(flags, values))
            try:
                config = validate_model(cls, raw, what=f"{name} options")
            except InvalidConfigError as exc:
                # "out: Field required" named the field, not the option that gives it (a required argument
                # is typer's own "Missing argument")
                errors = exc.details.get("errors") or []
                required = {".".join(map(str, e["loc"])) for e in errors if e["msg"] == "Field required"}
                if missing := [f.shown for f in flags if f.path in required and f.names]:
                    exc.message += f" (give {', '.join(missing)})"
                raise
            run(config, **({"as_json": values["as_json"]} if as_json else {}))

        return signature_callback([*flag_params(flags), *shared_params((JSON,) if as_json else ())], body)

    add_command(app, name, build, inspect.getdoc(run), config=config_class, hidden=hidden)
