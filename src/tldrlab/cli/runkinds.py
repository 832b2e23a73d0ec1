"""Commands for run kinds, generated from each kind's config class (see `options` for how).

A run kind's command is one `RunCommand`, declared in its verb group's module and added with
`add(app, RunCommand(...))`: the command path, the kind (its config class and help come from
`tldrlab.kinds`), an example; `aliases` keep short names users know (`--data` for `--data.path`),
`arguments` make fields positional, `verbatim` marks list fields whose items may hold commas, `extra` adds
options that are not fields. Every such command takes `--config FILE`, the config's fields as options and
the shared options of `options.RUN_KIND_OPTIONS`, builds the config as defaults < file < flags (the kind's
`inputs` and `outputs` made absolute), calls `launch` and prints the kind's `report` of the result.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import typer
import yaml
from pydantic import BaseModel

from tldrlab.cli.options import (
    EVERY_COMMAND,
    RUN_KIND_OPTIONS,
    Flag,
    add_command,
    apply_common,
    config_flags,
    find_field,
    flag_overrides,
    flag_params,
    implied_settings,
    option_name,
    read_config_file,
    set_path,
    shared_params,
    signature_callback,
)
from tldrlab.cli.tables import json_text, print_report
from tldrlab.config import expand_user, get_settings
from tldrlab.errors import ConfigError, InvalidConfigError
from tldrlab.kinds import deep_merge, get_kind, result_report, validate_config
from tldrlab.launch import is_follower, launch_run, preflight, prepare_run


@dataclass(frozen=True)
class RunCommand:
    """A command that starts (or resumes) a run of `kind` from a config of the kind's class."""

    path: str
    """Command path: `train`, `lvm train`."""
    kind: str
    example: str
    aliases: Mapping[str, str | tuple[str, ...]] = field(default_factory=dict)
    arguments: tuple[str, ...] = ()
    verbatim: tuple[str, ...] = ()
    extra: tuple[Flag, ...] = ()
    exclude: tuple[str, ...] = ()
    """Config fields without an option of their own (an extra flag sets them)."""
    help: str | None = None
    """The command's help (default: the kind's)."""
    launcher: Callable[[Any], tuple[str, Any]] | None = None
    """Starts a new run from the validated config, returning (run id, result); default `launch`."""
    defaults: Mapping[str, str] = field(default_factory=dict)
    """Settings the command fills in below the file and the flags: dotted path -> value, `<home>` standing for
    the home directory (`{"sequences": "<home>/lvm/sequences.npz"}`)."""
    settings: Mapping[str, type[BaseModel]] = field(default_factory=dict)
    """Dict fields holding another class's fields, which get an option each (`{"model_settings": LVMConfig}`:
    `--model-settings.hidden`)."""
    converts: Mapping[str, Callable[[Any], Any]] = field(default_factory=dict)
    """Dotted path -> what turns its option's parsed value into the config's (`Flag.convert`)."""
    same: tuple[tuple[str, ...], ...] = ()
    """Groups of dotted paths of fields that set one thing, the shorthand or duplicate last
    (`("max_steps", "train.max_steps")`, `("train.max_steps", "steps")`): their options given together with
    different values are a usage error, and the last one's help names the others it sets (`same_note`)."""

    @property
    def group(self) -> str:
        return self.path.rpartition(" ")[0]

    @property
    def name(self) -> str:
        return self.path.rpartition(" ")[2]

    def config_class(self) -> type[BaseModel]:
        return get_kind(self.kind).config

    def flags(self) -> list[Flag]:
        """The config's flags (shared names such as `--seed` on the fields they name), then the extras."""
        model = self.config_class()
        aliases = {p: (n,) if isinstance(n, str) else tuple(n) for p, n in self.aliases.items()}
        for option in RUN_KIND_OPTIONS:
            if option.fields and (path := find_field(model, option.fields)):
                aliases[path] = (*aliases.get(path, ()), *option.names)
        flags = config_flags(
            model,
            aliases=aliases,
            arguments=self.arguments,
            verbatim=self.verbatim,
            command_defaults=self.defaults,
            settings=self.settings,
        )
        # a field called like a shared option (`quiet`) is set by that option (see `quiet_settings`)
        shared = {
            n for option in (*RUN_KIND_OPTIONS, *EVERY_COMMAND) if not option.fields for n in option.names
        }
        flags = [f for f in flags if f.path not in self.exclude] + list(self.extra)
        flags = [replace(f, convert=self.converts[f.path]) if f.path in self.converts else f for f in flags]
        flags = [f for f in flags if not f.names or f.names[0].split("/")[0] not in shared]
        return same_note(flags, self.same)


def same_note(flags: list[Flag], same: tuple[tuple[str, ...], ...]) -> list[Flag]:
    """The last option of each group of `same` says in its help that it sets what the others set, and shows
    no default of its own (the others' decides): `elm train --help` listed `--max-steps` (default None) and
    `--train.max-steps` (default 1000) as two settings of the steps (`lvm train`: `--steps` and
    `--train.max-steps`)."""

    def of(path: str) -> Flag | None:
        return next((f for f in flags if option_name(path) in (n.split("/")[0] for n in f.names)), None)

    notes: dict[Flag, str] = {}
    for group in same:
        *others, last = (of(path) for path in group)
        named = [f.shown for f in others if f is not None]
        if last is not None and named:
            verb = "sets" if len(named) == 1 else "set"
            notes[last] = f"Sets what {', '.join(named)} {verb}: give one of them."

    def noted(flag: Flag) -> str:
        help = re.sub(r" \[\]$", "", re.sub(r"default: [^;\]]*(; )?", "", flag.help))
        return f"{help} {notes[flag]}".strip()

    return [replace(f, help=noted(f)) if f in notes else f for f in flags]


RUN_COMMANDS: list[RunCommand] = []
"""Every run-kind command, in the order the groups added them."""


def _resolve_paths(tree: dict[str, Any], paths: tuple[str, ...], *, always: bool = False) -> None:
    def absolute(value: Any) -> Any:
        if isinstance(value, list):
            return [absolute(v) for v in value]
        # a blank value stays as given, for validation to refuse by name: Path("") is the working directory
        path = expand_user(value) if isinstance(value, str) and value.strip() else None
        return str(path.resolve()) if path is not None and (always or path.exists()) else value

    for dotted in paths:
        *parents, leaf = dotted.split(".")
        node: Any = tree
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict) and leaf in node:
            node[leaf] = absolute(node[leaf])


def quiet_settings(model: type[BaseModel]) -> dict[str, Any]:
    """What `--quiet` sets in a config: progress bars off, `quiet` on (where the config has them)."""
    settings: dict[str, Any] = {}
    for name, value in (("progress", False), ("quiet", True)):
        if path := find_field(model, (name,)):
            set_path(settings, path, value)
    return settings


def show_result(kind: str, run_id: str, result: Any, *, as_json: bool = False) -> None:
    """The kind's report of a run's result, or the run id and the result as JSON."""
    report = get_kind(kind).report
    if as_json or report is None:
        shown = result if isinstance(result, dict) else {"result": result}
        typer.echo(json_text({"run_id": run_id, **shown}, indent=2))
    else:
        print_report(result_report(kind, run_id, result))


def how_to_give(spec: RunCommand, path: str) -> str:
    """How the command line gives the field at dotted `path`: its option, or its positional argument by the
    name the usage line shows (`tldrlab tokenizer train` without a corpus said "give --corpus", an option
    that does not exist: the corpus is the CORPUS argument)."""
    return f"the {path.upper()} argument" if path in spec.arguments else option_name(path)


def build_callback(spec: RunCommand) -> Any:
    """The command's function (options from the config class) for typer."""
    model, flags, kind = spec.config_class(), spec.flags(), get_kind(spec.kind)
    resumable = kind.resume_fields is not None
    shared = tuple(
        option
        for option in (*RUN_KIND_OPTIONS, *EVERY_COMMAND)
        if not option.fields and (option.param != "resume" or resumable)
    )

    def body(values: dict[str, Any]) -> None:
        apply_common(values["home"], values["quiet"], values["verbose"], values["threads"])
        overrides = flag_overrides(flags, values)
        config_file: Path | None = values["config_file"]
        if values.get("resume") is not None:  # `--resume ""` is refused (launch_run), never a new run
            if config_file or overrides:
                raise ConfigError(
                    "--resume continues a run with its recorded config: leave out other settings"
                )
            changes = quiet_settings(model) if values["quiet"] else {}
            launched = launch_run(spec.kind, changes, resume=values["resume"])
            run_id, result = launched.record.id, launched.result
        else:
            overrides = deep_merge(overrides, quiet_settings(model) if values["quiet"] else {})
            raw: dict[str, Any] = {}
            for dotted, value in spec.defaults.items():
                set_path(raw, dotted, value.replace("<home>", str(get_settings().home)))
            # defaults < what a shorthand implies < the file < the flags (a shorthand's own field among them)
            raw = deep_merge(raw, implied_settings(flags, values))
            raw = deep_merge(deep_merge(raw, read_config_file(config_file) if config_file else {}), overrides)
            _resolve_paths(raw, kind.inputs)
            _resolve_paths(raw, kind.outputs, always=True)
            try:
                config = validate_config(spec.kind, raw)
            except InvalidConfigError as exc:
                errors = exc.details.get("errors", [])
                if missing := [
                    how_to_give(spec, ".".join(map(str, e["loc"])))
                    for e in errors
                    if e["msg"] == "Field required"
                ]:
                    exc.message += f" (give {', '.join(missing)} or set it in --config FILE)"
                raise
            if values["print_config"]:
                # what the run records: its kind's prepare step writes in what it finds (a data-set
                # directory's splits, a registered data set's path); printed before it, `train_split: null`
                # was shown for a run that then recorded `train`
                _, prepared = prepare_run(spec.kind, config)
                typer.echo(yaml.safe_dump(prepared.model_dump(mode="json"), sort_keys=False), nl=False)
                return
            preflight(spec.kind, config)
            if spec.launcher is not None:
                run_id, result = spec.launcher(config)
            else:
                launched = launch_run(spec.kind, config)
                run_id, result = launched.record.id, launched.result
        if is_follower():
            return  # a follower rank has no run of its own: rank 0 reports the run (once)
        show_result(spec.kind, run_id, result, as_json=values["as_json"])

    return signature_callback([*flag_params(flags), *shared_params(shared)], body)


def add(app: typer.Typer, spec: RunCommand) -> None:
    """Add a run kind's generated command to `app` (the group of `spec.path`)."""
    RUN_COMMANDS.append(spec)
    help = f"{spec.help or get_kind(spec.kind).help}\n\nExample: {spec.example}"
    same = tuple(tuple(option_name(path) for path in group) for group in spec.same)
    build = functools.partial(build_callback, spec)
    add_command(app, spec.name, build, help, config=spec.config_class, same_setting=same)
