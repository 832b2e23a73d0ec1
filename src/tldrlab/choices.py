"""Names chosen from a known set (a reader format, a tokenizer method, an LVM backbone, an experiment arm):
one check, one message (`unknown <kind> '<name>'; choose one of <a>, <b>, ...`), and the names shown where
users look before they err: `--help`, docs/config.md and the JSON schema (`/openapi.json`).

    chunking: Annotated[str, OneOf("chunking", CHUNKING_METHODS)] = "sentence"
    ReaderFormat = Annotated[str | None, OneOf("format", READERS)]
    model: Annotated[str, OneOf("model", model_families)] = "t5"    # a function returning the registry
    raise ConfigError(unknown_choice("summarizer", name, SUMMARIZERS))      # outside a config class

Give a registry itself (a dict: its keys are the names) where the config module may import it, or a function
returning it where the config module may not, so that a new entry is accepted, and listed, without a second
list to keep equal: the names are read at each check, each JSON schema and each help text (made when a
command's options are built, once per process). The field stays a `str`, not a Literal or a click.Choice
built from the registry: those are fixed when the class is made, so a name registered later would be refused
or left out.
tests/test_choices.py fails on a module that words such a message itself.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from typing import Any

from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.fields import FieldInfo
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, core_schema

Names = Collection[str] | Callable[[], Collection[str]]
"""The known names: a registry (or any collection), or a function returning it (read at each use)."""


def choose_one_of(names: Iterable[str]) -> str:
    """`choose one of a, b, c`: the end of every message refusing a name."""
    return f"choose one of {', '.join(names)}"


def unknown_choice(kind: str, value: object, names: Iterable[str]) -> str:
    """The message refusing `value`, which is not among `names`."""
    return f"unknown {kind} {value!r}; {choose_one_of(names)}"


def current(names: Names) -> list[str]:
    """The names as they are now (a registry's keys, in its order)."""
    return list(names() if callable(names) else names)


def one_of(kind: str, names: Names) -> Callable[[Any], Any]:
    """A pydantic validator (`field_validator(field)(...)` or `AfterValidator(...)`) accepting a name among
    `names`, None (an optional field left unset) or a list of names; ValueError with `unknown_choice`'s
    message for the first unknown one."""

    def check(value: Any) -> Any:
        known = names() if callable(names) else names
        for name in [] if value is None else [value] if isinstance(value, str) else value:
            if name not in known:
                raise ValueError(unknown_choice(kind, name, known))
        return value

    check.__name__ = f"known_{kind.replace(' ', '_')}"
    return check


class OneOf:
    """`Annotated` metadata of a field naming one of `names` (a `str`, `str | None`, or a list of them):
    validated by `one_of`, and its names listed in the field's JSON schema (`enum` of its strings) and, by
    `field_choices`, in `--help`, docs/cli.md and docs/config.md."""

    def __init__(self, kind: str, names: Names) -> None:
        self.kind, self.names = kind, names

    def __repr__(self) -> str:
        return f"OneOf({self.kind!r}, {current(self.names)!r})"

    def __deepcopy__(self, memo: dict[int, Any]) -> OneOf:
        return self  # a copied registry would be a snapshot: names registered later would be refused

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        return core_schema.no_info_after_validator_function(one_of(self.kind, self.names), handler(source))

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = handler(schema)
        _list_names(handler.resolve_ref_schema(json_schema), current(self.names))
        return json_schema


def _list_names(schema: dict[str, Any], names: list[str]) -> None:
    """`enum: names` on every string the schema allows (the field itself, a list's items, a union's members
    other than null)."""
    if schema.get("type") == "string":
        schema["enum"] = names
    for member in schema.get("anyOf", []):
        _list_names(member, names)
    if isinstance(schema.get("items"), dict):
        _list_names(schema["items"], names)


def field_choices(info: FieldInfo) -> list[str] | None:
    """The names a field marked `OneOf` accepts now; None for any other field."""
    marker = next((item for item in info.metadata if isinstance(item, OneOf)), None)
    return None if marker is None else current(marker.names)


def choices_text(info: FieldInfo) -> str:
    """`choices: a, b, c` for a field marked `OneOf`, "" for any other (the help's and docs' note)."""
    names = field_choices(info)
    return "" if names is None else f"choices: {', '.join(names)}"
