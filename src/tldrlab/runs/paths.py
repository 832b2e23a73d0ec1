"""Path fields of run configs (and the few other values an API client may not choose freely), declared where
the config is defined, found by walking a validated config.

A config class marks each such field with one of these markers:

    data: Annotated[str, InputPath()]                   # a file or directory the run reads
    corpus: list[Annotated[str, InputPath()]]           # several
    out_dir: Annotated[str | None, OutputPath()] = None # where it writes
    from_pretrained: Annotated[str | None, ModelRef()]  # a model reference (tldrlab.models.resolve)
    store_url: Annotated[str | None, ServerOnly()]      # only the machine's own user may set it
    max_new_tokens: Annotated[int, GenerationLength()]  # bounded by the max_generate_tokens setting
    model_settings: Annotated[dict[str, Any], SettingsOf("model", "tldrlab.models.registry:MODELS")]
    split: Annotated[str | None, SplitOf("dataset")] = None  # a split of the data a sibling field names

`path_sites(config)` yields every marked value of a validated config (nested models, lists, dicts and unions
included) with a setter, so a caller can check and rewrite them in place. The service confines
API-submitted configs with it (`tldrlab.service.confine`): a new run kind is confined by declaring its fields,
not by a list kept elsewhere. The CLI does not confine: the machine's own user may name any path.
"""

from __future__ import annotations

import importlib
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, Field

from tldrlab.choices import OneOf
from tldrlab.config import WANDB_MODES
from tldrlab.pathmarks import InputPath as InputPath
from tldrlab.pathmarks import ModelRef as ModelRef
from tldrlab.pathmarks import OutputPath as OutputPath

WandbMode = Annotated[str | None, OneOf("wandb mode", WANDB_MODES)]
"""A config's Weights & Biases mode (None: the environment's, else the `wandb_mode` setting): an unknown one
is refused with the modes named, which `--help`, docs/config.md and the JSON schema list."""

SEED_MAX = 2**32 - 1
Seed = Annotated[int, Field(ge=0, le=SEED_MAX)]
"""A config's random seed: 0 to 2**32 - 1, what NumPy's and Optuna's seeding take; larger values overflowed
torch's 64-bit generators (the loop seeds each epoch's order with `seed * 100_003 + epoch`), so a run failed
after it had started."""


@dataclass(frozen=True)
class ServerOnly:
    """A setting only the machine's own user may change (a database URL, an endpoint, a key): API-submitted
    configs must leave it at its default."""


@dataclass(frozen=True)
class GenerationLength:
    """A number of tokens to generate: API-submitted configs stay within the `max_generate_tokens` setting."""


@dataclass(frozen=True)
class SettingsOf:
    """A dict validated by the config class that a sibling field names: `registry` is "module:attribute", a
    dict from that field's value to an entry whose `attribute` is the config class (or the class itself).
    With `field=""`, `registry` names the config class itself."""

    field: str
    registry: str
    attribute: str = "config_cls"

    def config_class(self, parent: BaseModel) -> type[BaseModel] | None:
        choice = getattr(parent, self.field, None) if self.field else ""  # "": a fixed class
        return self.classes().get(choice) if isinstance(choice, str) else None

    def classes(self) -> dict[str, type[BaseModel]]:
        """Every value of the sibling field -> the config class it picks (a fixed class: under "")."""
        module_name, _, name = self.registry.partition(":")
        entries = getattr(importlib.import_module(module_name), name)
        if not self.field:
            return {"": entries} if isinstance(entries, type) and issubclass(entries, BaseModel) else {}
        found = {
            choice: entry if isinstance(entry, type) else getattr(entry, self.attribute, None)
            for choice, entry in entries.items()
        }
        return {c: f for c, f in found.items() if isinstance(f, type) and issubclass(f, BaseModel)}


@dataclass(frozen=True)
class SplitOf:
    """A split of the data the sibling field `data` names (read with the sibling field `format`; None
    detects it): API-submitted configs name a split that data has, checked once its path is confined. With
    `run`, when `data` is unset the data is that of the training run the sibling field `run` names."""

    data: str
    format: str = "format"
    run: str = ""


Marker = InputPath | OutputPath | ModelRef | ServerOnly | GenerationLength | SettingsOf | SplitOf
MARKERS = (InputPath, OutputPath, ModelRef, ServerOnly, GenerationLength, SettingsOf, SplitOf)


@dataclass
class PathSite:
    """One marked value in a config."""

    loc: tuple[str | int, ...]
    """Where it is (field names and list indexes), as in validation errors."""
    marker: Marker
    value: Any
    set: Callable[[Any], None]
    """Replace the value in the config."""
    default: Any = None
    """The field's default (for ServerOnly)."""
    parent: BaseModel | None = None
    """The model holding the field (for SettingsOf)."""

    @property
    def where(self) -> str:
        return ".".join(str(part) for part in self.loc)


def path_sites(config: BaseModel, loc: tuple[str | int, ...] = ()) -> Iterator[PathSite]:
    """Every marked value of a validated config, depth first."""
    for name, field in type(config).model_fields.items():
        value = getattr(config, name)

        def setter(new: Any, _name: str = name) -> None:
            setattr(config, _name, new)

        yield from _sites(
            value, field.annotation, list(field.metadata), (*loc, name), setter, field.default, config
        )


def _unannotated(annotation: Any) -> tuple[Any, list[Any]]:
    if get_origin(annotation) is Annotated:
        base, *metadata = get_args(annotation)
        inner, more = _unannotated(base)
        return inner, [*metadata, *more]
    return annotation, []


def _marker(metadata: list[Any]) -> Marker | None:
    return next((m for m in metadata if isinstance(m, MARKERS)), None)


def _sites(
    value: Any,
    annotation: Any,
    metadata: list[Any],
    loc: tuple[str | int, ...],
    setter: Callable[[Any], None],
    default: Any,
    parent: BaseModel,
) -> Iterator[PathSite]:
    base, more = _unannotated(annotation)
    marker = _marker([*metadata, *more])
    if marker is not None:
        if (
            isinstance(marker, SettingsOf | ServerOnly | GenerationLength | SplitOf)
            or value is None
            or isinstance(value, str)
        ):
            yield PathSite(loc, marker, value, setter, default, parent)
        elif isinstance(value, list):
            for i, item in enumerate(value):
                yield PathSite((*loc, i), marker, item, _item_setter(value, i), None, parent)
        return
    if value is None:
        return
    if isinstance(value, BaseModel):
        yield from path_sites(value, loc)
        return
    origin, args = get_origin(base), get_args(base)
    if origin in (Union, types.UnionType):
        for arm in args:
            arm_base, arm_meta = _unannotated(arm)
            if _fits(value, arm_base):
                yield from _sites(value, arm_base, arm_meta, loc, setter, default, parent)
                return
        return
    if isinstance(value, list) and args:
        item_base, item_meta = _unannotated(args[0])
        for i, item in enumerate(value):
            yield from _sites(item, item_base, item_meta, (*loc, i), _item_setter(value, i), None, parent)
    elif isinstance(value, dict) and len(args) == 2:
        value_base, value_meta = _unannotated(args[1])
        for key, item in value.items():
            yield from _sites(
                item, value_base, value_meta, (*loc, key), _item_setter(value, key), None, parent
            )


def _fits(value: Any, annotation: Any) -> bool:
    origin = get_origin(annotation) or annotation
    if origin is Annotated:
        return _fits(value, _unannotated(annotation)[0])
    if isinstance(origin, type):
        return isinstance(value, origin)
    return origin is Any


def _item_setter(container: Any, key: Any) -> Callable[[Any], None]:
    def setter(new: Any) -> None:
        container[key] = new

    return setter
