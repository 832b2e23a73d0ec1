"""Confinement of API-submitted run configs: what a run may read and write, decided at submit.

`confine_config(kind, raw, settings=..., run_dir=...)` validates the config against its kind's config class
as the command line does (`tldrlab.kinds.validate_config`: 422 naming each field and its problem) and walks
the fields the class marks (`tldrlab.runs.paths`):

- `InputPath` values must resolve, symlinks resolved, inside a *read root*: the data roots
  (`TLDRLAB_DATA_ROOTS`, default `<home>/data`), uploaded data sets, or run directories. A client writes a
  path relative to a data root (`corpus.txt`, `wiki/train.jsonl`), `dataset:<id>` for an upload, or
  `run:<id>/<path>` for a run's file. `..` components are refused outright, as are absolute paths and
  symlinks leading outside the read roots (403 `path_not_allowed`, naming the rule, never saying what exists
  outside). The value is rewritten to the absolute path found, which is what the worker opens.
- `OutputPath` values must be relative without `..`: they are rewritten into the run's directory.
- `ModelRef` values are model names (installed, bundled, a run id) or paths under the same read roots.
- `ServerOnly` values (database URLs, endpoints) must stay at their defaults.
- `GenerationLength` values stay within `TLDRLAB_MAX_GENERATE_TOKENS`.
- `SettingsOf` dicts are validated by the class their sibling field names (`model_settings` by the model
  family's config) and walked the same way; an unknown name there is a 422.
- `SplitOf` values must be splits their data has, checked once the data's path is confined, with the rule
  reads use (`tldrlab.data.readers.split_files`: file names only, no records read): a 422 naming the field,
  as the command line refuses such a split before it creates a run. Evaluate with no `data` reads its
  model's training run's data, found as the evaluation finds it (`tldrlab.evaluate.model_run`: a run id or
  prefix, an alias, `run:<id>/model`): its split is checked there, and a model that is no run's (or a run
  that names no data) is a 422 at `data`. Only a relative path a command-line run stored is not checked:
  the worker reads it relative to its own working directory, which the API does not know.

The worker confines an API run again right before executing it (`confine_again`), so a file swapped for a
symlink after submission is still caught. `public_paths` rewrites server paths in what the API returns.
The CLI calls none of this: the machine's own user may name any path.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from tldrlab.choices import unknown_choice
from tldrlab.config import Settings, expand_user
from tldrlab.data.readers import split_files
from tldrlab.errors import (
    AmbiguousRunIdError,
    ConfigError,
    InvalidConfigError,
    InvalidInputError,
    NotFoundError,
    PathNotAllowedError,
    listed_problems,
)
from tldrlab.evaluate.model_run import model_run, training_data
from tldrlab.experiments.config import EXPERIMENT_ARMS
from tldrlab.kinds import config_errors, get_kind, validate_config
from tldrlab.models.resolve import resolve_model_ref, run_kind_refusal
from tldrlab.runs.datasets import REF_PREFIX as DATASET_PREFIX
from tldrlab.runs.datasets import datasets_dir, open_datasets, unchanged_location
from tldrlab.runs.paths import (
    GenerationLength,
    InputPath,
    ModelRef,
    OutputPath,
    PathSite,
    ServerOnly,
    SettingsOf,
    SplitOf,
    path_sites,
)
from tldrlab.runs.registry import RunRecord, open_registry
from tldrlab.sweep.config import SweepConfig
from tldrlab.sweep.spec import (
    BEST_FOLLOWS_METRIC,
    SweepSpec,
    apply_overrides,
    best_follows_metric,
    parse_sweep,
)

RUN_PREFIX = "run:"

READ_RULE = (
    "API runs read only inside the data roots (TLDRLAB_DATA_ROOTS; write paths relative to them), uploaded "
    "data sets (dataset:<id>) and run files (run:<id>/<path>); '..' and paths leading elsewhere are refused"
)
WRITE_RULE = "API runs write only inside their run directory: give a relative path without '..'"

Loc = str | tuple[str | int, ...]
"""Where a value is in the config (or a request's body): its path's parts, list indexes among them, or one
field's name; a refusal there is `InvalidConfigError.at(loc, ...)`, so the 422 lists it in `errors`."""


def dotted(loc: Loc) -> str:
    """`loc` as a message names it: `data.path`, `corpus.0`."""
    return loc if isinstance(loc, str) else ".".join(str(part) for part in loc)


def confine_config(kind: str, raw: dict[str, Any], *, settings: Settings, run_dir: Path) -> dict[str, Any]:
    """The config an API run of `kind` will execute: validated as the command line validates it
    (`kinds.validate_config`: a section given in part keeps the rest of its kind's default, e.g. ELM's `train`
    batch size and learning rate), paths checked and rewritten (see module)."""
    if get_kind(kind).config is SweepConfig:
        _refuse_sweep_base_config_file(raw)
    config = validate_config(kind, raw)
    _confine(config, settings, run_dir)
    if isinstance(config, SweepConfig):
        _confine_sweep(config, settings, run_dir)
    else:
        _refuse_paths_in_free_dicts(config)
    return config.model_dump(mode="json")


def _refuse_sweep_base_config_file(raw: dict[str, Any]) -> None:
    """A sweep file may name its program's base config as a file beside it (`config: base.yaml`), which
    `tldrlab sweep run` reads and stores inline. Over the API such a name is a path of the server, refused as
    the other paths outside a run's reach are (403), unread and in the same words whatever it names, so the
    answer never tells what exists there; the spec's own validation refuses it too, unread (422). A client
    gives the base config inline, as a mapping."""
    sweep = raw.get("sweep")
    if isinstance(sweep, dict) and isinstance(sweep.get("config"), str):
        raise PathNotAllowedError.at(
            ("sweep", "config"),
            "an API sweep gives its program's base config inline, as a mapping: a file name would be read "
            "on the server",
        )


def _refuse_paths_in_free_dicts(config: BaseModel, loc: tuple[str, ...] = ()) -> None:
    """Free-form dicts a config hands on unvalidated (settings of a backbone, of a scratch LM) may name a
    model or a file deep inside; with no class to declare it, a path-like string there is refused (names
    pass), so an undeclared path field is confined by default."""
    for name, field in type(config).model_fields.items():
        value = getattr(config, name)
        where = (*loc, name)
        if isinstance(value, BaseModel):
            _refuse_paths_in_free_dicts(value, where)
        elif isinstance(value, dict) and not any(isinstance(m, SettingsOf) for m in field.metadata):
            for inner_where, text in _strings(value, where):
                if _looks_like_path(text):
                    raise PathNotAllowedError.at(
                        inner_where, "paths are accepted only in fields declared as paths"
                    )


def _strings(value: Any, loc: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], str]]:
    if isinstance(value, str):
        yield loc, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, (*loc, str(key)))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _strings(item, (*loc, str(i)))


SWEEP_PROGRAM_KINDS = {"train": "train", "elm": "elm_train", "experiment": "experiment", "lvm": "lvm_train"}
"""The run kind whose config each tldrlab sweep program's trials take (a trial's config is the sweep's
`config` + parameters, validated by that kind's rule)."""


def _confine_sweep(config: SweepConfig, settings: Settings, run_dir: Path) -> None:
    """A sweep runs trials of a tldrlab program from its `config`: no command lines (they would run code on
    the server), the base config's paths confined like any config of that program, and no parameter that
    would choose a path (a confined field) per trial."""
    spec = parse_sweep(config.sweep)
    kind = SWEEP_PROGRAM_KINDS.get(spec.kind)
    if kind is None:
        raise PathNotAllowedError.at(
            ("sweep", "program"),
            "API sweeps run tldrlab programs (tldrlab.train, tldrlab.elm, tldrlab.experiment, tldrlab.lvm); "
            "a command line would run code on the server",
        )
    # an experiment's `arm` and `seed` pick what a trial trains, they are no fields of its config
    picks = ("arm", "seed") if spec.kind == "experiment" else ()
    base = {k: v for k, v in spec.config.items() if k not in picks}
    _check_experiment_picks(spec.config if picks else {})
    program = _program_config(kind, base, spec)
    _program_config(kind, base, spec, largest=True)  # the largest model a trial builds: the parameter budget
    sites = [
        ".".join(str(p) for p in site.loc)
        for site in path_sites(program)
        if not isinstance(site.marker, SplitOf)  # a split per trial is checked in the base config's data
    ]
    chosen = [p for p in spec.parameters if any(p == s or s.startswith(p + ".") for s in sites)]
    if chosen:
        # a parameter's dotted name is one key of the sweep's `parameters`
        raise PathNotAllowedError.at(
            ("sweep", "parameters", chosen[0]), "API sweeps may not choose paths per trial"
        )
    # its fields named as the client wrote them, under `sweep.config` (a refusal named `data.path`, which the
    # submitted config does not have)
    _confine(program, settings, run_dir, ("sweep", "config"))
    # what the client set (paths now confined), not every default: a trial builds its config from this base
    # as the command line does (the kind's section defaults, `best_metric` following the sweep's metric)
    confined = program.model_dump(mode="json", exclude_unset=True)
    as_written = _as_submitted(spec.config, confined, {*spec.parameters, *picks})
    config.sweep = {**config.sweep, "config": as_written}


def _check_experiment_picks(config: dict[str, Any]) -> None:
    """An experiment sweep's base `arm` and `seed`, which every trial not drawing them trains: refused at
    submit as a trial would refuse them (`sweep.trials.experiment_config`, `check_experiment`)."""
    if "arm" in config and config["arm"] not in EXPERIMENT_ARMS:
        choice = unknown_choice("arm", config["arm"], EXPERIMENT_ARMS)
        raise InvalidConfigError.at(("sweep", "config", "arm"), choice)
    seed = config.get("seed", 1)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise InvalidConfigError.at(("sweep", "config", "seed"), f"must be an integer; got {seed!r}")


def _as_submitted(
    submitted: dict[str, Any], confined: dict[str, Any], as_given: set[str], prefix: str = ""
) -> dict[str, Any]:
    """The base config as the client wrote it, its paths as confinement rewrote them. `confined` was checked
    with parameter values drawn into it and its sections' defaults filled in: storing it gave the sweep run
    one trial's draw as its base (`train.lr: 0.0055` where the client wrote 0.005) and every default of a
    section the client gave in part. The dotted names in `as_given` keep the client's value: the parameters
    (none chooses a path: refused above) and an experiment's `arm` and `seed` (no config fields, so they
    were never in `confined`: dropping them made every trial train the default arm and seed)."""
    out: dict[str, Any] = {}
    for key, value in submitted.items():
        name = f"{prefix}{key}"
        if name in as_given:
            out[key] = value
        elif key not in confined:
            continue
        elif isinstance(value, dict) and isinstance(confined[key], dict):
            out[key] = _as_submitted(value, confined[key], as_given, f"{name}.")
        else:
            out[key] = confined[key]
    return out


def _program_config(kind: str, base: dict[str, Any], spec: SweepSpec, *, largest: bool = False) -> BaseModel:
    """The base config with plausible values of the sweep's parameters (with `largest`, numeric ones at their
    largest) applied as a trial applies them, validated by the trial kind's rule (`kinds.validate_config`, as
    the command line and the trials validate it); InvalidConfigError naming each field under `sweep.config`
    otherwise."""
    # imported here: it imports optuna, which the API process needs only when a sweep is submitted
    from tldrlab.sweep.mapping import largest_params, representative_params

    drawn = largest_params(spec) if largest else representative_params(spec)
    params = {k: v for k, v in drawn.items() if k not in ("arm", "seed")}
    try:
        raw = apply_overrides(base, params)
        if spec.kind in BEST_FOLLOWS_METRIC:  # as the trials train: a metric they cannot compute is refused
            raw = best_follows_metric(raw, spec)
    except ConfigError as exc:
        # placed in the sweep's spec (`config.train`, `parameters.train.lr`), which the request holds under
        # `sweep`; an invalid config as any other (a 400 with no `errors` and the spec's own field names)
        placed = exc.details.get("errors") or []
        if not placed:
            raise
        raise InvalidConfigError.at_fields((("sweep", *e["loc"]), e["msg"]) for e in placed) from None
    try:
        return validate_config(kind, raw)
    except InvalidConfigError as exc:
        errors = [{**e, "loc": ["sweep", "config", *e["loc"]]} for e in exc.details.get("errors") or []]
        where = listed_problems(exc, prefix=("sweep.config",))
        what = (
            "invalid sweep config with every numeric parameter at its largest"
            if largest
            else "invalid sweep config"
        )
        raise InvalidConfigError(f"{what}: {where}", errors=errors) from None


def confine_again(kind: str, config: dict[str, Any], *, settings: Settings, run_dir: Path) -> None:
    """Re-check a stored API config right before it executes (its paths are absolute by now)."""
    confine_config(kind, config, settings=settings, run_dir=run_dir)


def _confine(config: BaseModel, settings: Settings, run_dir: Path, loc: tuple[str, ...] = ()) -> None:
    # value checks (server-only settings, generation lengths) before paths are looked up on disk, splits
    # once the paths of their data are confined
    def order(site: PathSite) -> int:
        if isinstance(site.marker, SplitOf):
            return 2
        return 1 if isinstance(site.marker, InputPath | OutputPath | ModelRef) else 0

    for site in sorted(path_sites(config, loc), key=order):
        _confine_site(site, settings, run_dir)


def _confine_site(site: PathSite, settings: Settings, run_dir: Path) -> None:
    marker = site.marker
    if isinstance(marker, SettingsOf):
        if site.value is not None:
            _confine_settings(site, marker, settings, run_dir)
    elif isinstance(marker, ServerOnly):
        if site.value != site.default:
            raise PathNotAllowedError.at(site.loc, "only the server's own configuration may set this")
    elif isinstance(marker, GenerationLength):
        limit = settings.max_generate_tokens
        if isinstance(site.value, int) and site.value > limit:
            raise InvalidConfigError.at(site.loc, f"at most {limit} tokens (TLDRLAB_MAX_GENERATE_TOKENS)")
    elif isinstance(marker, SplitOf):
        _check_split(site, marker, settings)  # with no split too: a run's data must be there to evaluate on
    elif site.value is None:
        return
    elif not isinstance(site.value, str):
        raise InvalidConfigError.at(site.loc, "expected a path string")
    elif isinstance(marker, InputPath):
        site.set(str(resolve_input(site.value, site.loc, settings)))
    elif isinstance(marker, OutputPath):
        site.set(str(resolve_output(site.value, site.loc, run_dir)))
    elif isinstance(marker, ModelRef) and site.value not in marker.keep:
        site.set(resolve_model(site.value, site.loc, settings))


def _check_split(site: PathSite, marker: SplitOf, settings: Settings) -> None:
    """The split `site` names exists in its (confined) data, by the rule reads use; 422 naming the field. With
    no data given and a `run` field, the data is the model's training run's (see `_run_data`)."""
    assert site.parent is not None
    data = getattr(site.parent, marker.data, None)
    data_format = getattr(site.parent, marker.format, None)
    if data is None and marker.run:
        reference = getattr(site.parent, marker.run, None)
        if isinstance(reference, str) and (refusal := run_kind_refusal(reference, settings)) is not None:
            # a run that holds no model has no training data either: "give data" sent the client to fix a
            # field that was not the one in the wrong
            raise InvalidConfigError.at((*site.loc[:-1], marker.run), refusal)
        data_loc = (*site.loc[:-1], marker.data)  # the sibling field that names the data
        data, data_format = _run_data(reference, data_loc, settings)
    if not isinstance(data, str) or not isinstance(site.value, str):
        return
    try:
        split_files(data, data_format if isinstance(data_format, str) else None, site.value)
    except (InvalidInputError, NotFoundError) as exc:
        raise InvalidConfigError.at(site.loc, public_paths(exc.message, settings)) from None


def _run_data(reference: Any, field: Loc, settings: Settings) -> tuple[str | None, str | None]:
    """(data path, format) an evaluation of the model `reference` reads when given no data: its training
    run's, found by the rule the evaluation itself follows (`evaluate.model_run`: a run by id or prefix, even
    one still training, an alias, a path to a run's model). InvalidConfigError naming `field` when the model
    is no run's, or its run names no data: the evaluation would stop at once for want of data. (None, None)
    when the data is not known here: a relative path a command-line run stored (the worker resolves it
    against its own working directory), or one that is not there."""
    if not isinstance(reference, str):
        return None, None
    try:
        record: RunRecord | None = open_registry(settings).find(reference)
    except NotFoundError:
        try:
            record = model_run(reference, settings).record
        except (NotFoundError, InvalidInputError):
            return None, None  # no model at all: the model reference's own check refuses it
    if record is None:
        shown = public_paths(reference, settings)
        raise InvalidConfigError.at(
            field,
            f"{shown!r} is not a training run's model, so there is no run data to evaluate on: "
            f"give {dotted(field)}",
        )
    data = training_data(record)
    if data is None:
        message = f"run {record.id} names no data to evaluate on: give {dotted(field)}"
        raise InvalidConfigError.at(field, message)
    path, data_format = Path(data["path"]), data.get("format")
    if not path.is_absolute() or not _exists(path):
        return None, None
    return str(path), data_format if isinstance(data_format, str) else None


def _confine_settings(site: PathSite, marker: SettingsOf, settings: Settings, run_dir: Path) -> None:
    assert site.parent is not None
    if not isinstance(site.value, dict):
        raise InvalidConfigError.at(site.loc, "expected an object")
    settings_cls = marker.config_class(site.parent)
    if settings_cls is None:
        if not marker.field:
            return
        value = getattr(site.parent, marker.field, None)
        raise InvalidConfigError.at((*site.loc[:-1], marker.field), f"unknown value {value!r}")
    try:
        validated = settings_cls.model_validate(site.value)
    except ValidationError as exc:
        raise InvalidConfigError.at_fields(
            ((*site.loc, *e["loc"]), e["msg"]) for e in config_errors(exc)
        ) from exc
    for inner in list(path_sites(validated, site.loc)):
        _confine_site(inner, settings, run_dir)
    site.set(validated.model_dump(mode="json", exclude_unset=True))


def read_roots(settings: Settings) -> list[Path]:
    """Where API runs may read: the data roots, uploaded data sets, run directories, and the data sets the
    machine's user registered where they are (`tldrlab data register`), all resolved."""
    # every registered one (the 10,000 newest data sets of any source left older registrations unreadable)
    registered = [
        record.location(settings).resolve()
        for record in open_datasets(settings).list(limit=None, source="register")
    ]
    return [
        *settings.resolved_data_roots,
        datasets_dir(settings).resolve(),
        settings.runs_dir.resolve(),
        *registered,
    ]


def _inside(path: Path, roots: list[Path]) -> bool:
    return any(path == root or path.is_relative_to(root) for root in roots)


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except (OSError, ValueError):
        return False


def resolve_input(value: str, where: Loc, settings: Settings) -> Path:
    """The absolute path an API run may read for `value` (see the module docstring)."""
    if "\x00" in value:
        raise InvalidConfigError.at(where, "paths cannot hold NUL characters")
    if value.startswith(DATASET_PREFIX):
        dataset_id = value[len(DATASET_PREFIX) :]
        try:
            record = open_datasets(settings).get(dataset_id)
        except NotFoundError:
            raise InvalidConfigError.at(where, f"no dataset {dataset_id!r} (see GET /datasets)") from None
        path = record.location(settings).resolve()
        # uploads live in the home's datasets directory; data sets the machine's user registered
        # (`tldrlab data register`) are read where they were registered
        allowed = record.source == "register" or _inside(path, [datasets_dir(settings).resolve()])
        if not _exists(path) or not allowed:
            raise InvalidConfigError.at(where, f"the files of dataset {dataset_id!r} are missing")
        unchanged_location(record, settings)  # its bytes now are not the ones its id names: 409
        return path
    if value.startswith(RUN_PREFIX):
        run_id, _, relative = value[len(RUN_PREFIX) :].partition("/")
        if ".." in Path(relative).parts or relative.startswith("/"):
            raise PathNotAllowedError.at(where, READ_RULE)
        try:
            run_root = Path(open_registry(settings).get(run_id).run_dir).resolve()
        except NotFoundError:
            raise InvalidConfigError.at(where, f"no run {run_id!r}") from None
        path = (run_root / relative).resolve()
        if not _inside(path, [run_root]):
            raise PathNotAllowedError.at(where, READ_RULE)
        if not _exists(path):
            raise InvalidConfigError.at(where, f"run {run_id} has no file {relative!r}")
        return path
    try:
        raw = expand_user(value) if value.startswith("~") else Path(value)
    except ConfigError:  # ~nobody: refused as ~root/x is (outside the roots), so users cannot be probed
        raise PathNotAllowedError.at(where, READ_RULE) from None
    if ".." in raw.parts:
        raise PathNotAllowedError.at(where, READ_RULE)
    roots = read_roots(settings)
    if raw.is_absolute():
        path = raw.resolve()
        if not _inside(path, roots):
            raise PathNotAllowedError.at(where, READ_RULE)
        if not _exists(path):
            raise InvalidConfigError.at(where, "no such file or directory in the read roots")
        return path
    for root in settings.resolved_data_roots:
        candidate = (root / raw).resolve()
        if _exists(root / raw):
            if not _inside(candidate, roots):
                raise PathNotAllowedError.at(where, READ_RULE)
            return candidate
    raise InvalidConfigError.at(
        where,
        "no such file or directory in the data roots (paths are relative to TLDRLAB_DATA_ROOTS; "
        "upload data with POST /datasets and name it dataset:<id>)",
    )


def resolve_output(value: str, where: Loc, run_dir: Path) -> Path:
    """`value` inside the run directory (relative paths only; an absolute one already inside is kept)."""
    if "\x00" in value:
        raise InvalidConfigError.at(where, "paths cannot hold NUL characters")
    raw = Path(value)
    if ".." in raw.parts:
        raise PathNotAllowedError.at(where, WRITE_RULE)
    if raw.is_absolute():
        if raw.resolve().is_relative_to(run_dir.resolve()):
            return raw.resolve()
        raise PathNotAllowedError.at(where, WRITE_RULE)
    return (run_dir / raw).resolve()


def resolve_model(value: str, where: Loc, settings: Settings) -> str:
    """A model reference an API run may load: a name (installed, bundled, a run) kept as given, or a path
    under the read roots rewritten to where it is."""
    if not value.strip():  # not the working directory, nor "the run id is empty" without the field's name
        raise InvalidConfigError.at(
            where, "is empty: give a model name, a run id or a path in the data roots"
        )
    simple = bool(value) and "/" not in value and "\\" not in value and not value.startswith((".", "~"))
    if simple and not value.startswith((DATASET_PREFIX, RUN_PREFIX)):
        try:  # a run (its model may not be saved yet: the routes that start child runs check that)
            open_registry(settings).find(value)
            return value
        except NotFoundError:
            pass  # an ambiguous prefix may still be an installed model's or an alias's name: ask the resolver
        try:  # never the server's working directory: a client names the store's models or data-root paths
            resolved = resolve_model_ref(value, settings, working_dir=False)
        except AmbiguousRunIdError as exc:  # names only the prefix and a count: no server path to hide
            raise InvalidConfigError.at(where, exc.message) from None
        except Exception:  # the resolver's messages may name server paths
            # no name: a path relative to a data root, as the API's paths are (`mine` for <root>/mine was
            # refused with "no such path in the data roots" while `mine/` was found)
            if not any(_exists(root / value) for root in settings.resolved_data_roots):
                raise InvalidConfigError.at(
                    where,
                    f"no model {value!r} (installed, bundled or a run's) and no such path in the data roots",
                ) from None
            return _model_in_read_roots(resolve_input(value, where, settings), where, settings)
        if resolved.source not in ("path", "home"):
            return value
        if not _inside(resolved.path.resolve(), read_roots(settings)):
            raise PathNotAllowedError.at(where, READ_RULE)
        return str(resolved.path)
    return _model_in_read_roots(resolve_input(value, where, settings), where, settings)


def _model_in_read_roots(path: Path, where: Loc, settings: Settings) -> str:
    """The model at `path` (a confined input path), which must hold one inside the read roots."""
    try:
        resolved = resolve_model_ref(str(path), settings)
    except Exception:
        raise InvalidConfigError.at(
            where, "no model there (a model directory, a run or a .gguf file)"
        ) from None
    if not _inside(resolved.path.resolve(), read_roots(settings)):
        raise PathNotAllowedError.at(where, READ_RULE)
    return str(resolved.path)


# -- what the API returns ----------------------------------------------------------------------------------
# an absolute path not inside a URL, or the path of a SQLite URL, which follows its "///" (a store's message
# named sqlite:////home/.../concepts.db in full)
_ABSOLUTE_PATH = re.compile(r"(?:(?<![\w:/.~-])|(?<=sqlite:///))/(?:[\w.~+@%=-]+/?)+")


def public_paths(value: Any, settings: Settings) -> Any:
    """`value` (str, list or dict, recursively) with server paths rewritten the way a client names them:
    data-root paths relative to their root, `dataset:<id>`, `run:<id>/<path>`; other absolute paths become
    `<path>`."""
    if isinstance(value, str):
        return _public_text(value, settings)
    if isinstance(value, list):
        return [public_paths(v, settings) for v in value]
    if isinstance(value, dict):
        return {k: public_paths(v, settings) for k, v in value.items()}
    return value


def _public_text(text: str, settings: Settings) -> str:
    if "/" not in text:
        return text
    replacements: list[tuple[str, str]] = []
    for root in (datasets_dir(settings), settings.runs_dir):
        for form in {str(root), str(root.resolve())}:
            prefix = DATASET_PREFIX if root == datasets_dir(settings) else RUN_PREFIX
            replacements.append((form + "/", prefix))
    for root in settings.resolved_data_roots:
        replacements.append((str(root) + "/", ""))
    for form in {str(settings.home), str(settings.home.resolve())}:
        replacements.append((form + "/", "<home>/"))

    def rewrite(match: re.Match[str]) -> str:
        found = match.group(0)
        for prefix, replacement in replacements:
            if found.startswith(prefix):
                rest = found[len(prefix) :]
                if replacement == DATASET_PREFIX:  # datasets/<id>/<name> -> dataset:<id>
                    return DATASET_PREFIX + rest.split("/", 1)[0]
                return replacement + rest
        return "<path>"

    return _ABSOLUTE_PATH.sub(rewrite, text)


# -- summarizer parameters ---------------------------------------------------------------------------------
# Summarizers take free-form params (no config classes yet): the keys that name models, endpoints or lengths.
# Any other string that looks like a path is refused too, so a new summarizer is confined by default.
SUMMARIZER_PARAMS: dict[str, dict[str, Any]] = {
    "local": {"model_path": ModelRef(), "model": ModelRef(), "max_new_tokens": GenerationLength()},
    "openai": {"base_url": ServerOnly(), "api_key": ServerOnly(), "max_tokens": GenerationLength()},
}
NESTED_SUMMARIZERS = {
    "two_stage": {"draft_params": ("draft", "extractive"), "final_params": ("final", "local")}
}


def _looks_like_path(value: str) -> bool:
    return "/" in value or "\\" in value or value.startswith((".", "~"))


def confine_summarizer_params(
    name: str, params: dict[str, Any], settings: Settings, where: tuple[str, ...] = ("params",)
) -> dict[str, Any]:
    """Summarizer params from an API client: models confined like run configs, endpoints and keys left to
    the server's settings, lengths bounded, nothing else that looks like a path."""
    nested = NESTED_SUMMARIZERS.get(name, {})
    # two_stage hands its own params to the final summarizer when final_params is absent.
    rules = SUMMARIZER_PARAMS.get(name) or SUMMARIZER_PARAMS.get(str(params.get("final", "local")), {})
    confined: dict[str, Any] = {}
    for key, value in params.items():
        loc = (*where, key)
        rule = rules.get(key)
        if key in nested and isinstance(value, dict):
            name_key, default = nested[key]
            confined[key] = confine_summarizer_params(
                str(params.get(name_key, default)), value, settings, loc
            )
        elif isinstance(rule, ServerOnly):
            raise PathNotAllowedError.at(loc, "only the server's own configuration may set this")
        elif isinstance(rule, GenerationLength):
            limit = settings.max_generate_tokens
            if not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= limit:
                raise InvalidConfigError.at(loc, f"a whole number from 1 to {limit}")
            confined[key] = value
        elif isinstance(rule, ModelRef):
            if not isinstance(value, str):
                raise InvalidConfigError.at(loc, "expected a model reference")
            confined[key] = resolve_model(value, loc, settings)
        elif isinstance(value, str) and _looks_like_path(value):
            raise PathNotAllowedError.at(loc, "paths are not accepted in these params")
        else:
            confined[key] = value
    return confined
